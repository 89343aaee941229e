"""Per-replication metrics and summaries across replications (pure numpy/pandas).

This module reads result frames; it never imports the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "OUTCOME_COLUMNS",
    "KEY_METRICS",
    "replication_table",
    "summarise",
    "t_interval",
    "daily_site_profile",
]

#: Outcomes counted per replication, in the order of the ``replications`` table.
OUTCOME_COLUMNS = (
    "infused",
    "died",
    "ineligible",
    "screen_failed",
    "collection_failed",
    "lost_in_transit",
    "manufacturing_failed",
    "out_of_specification",
    "product_expired",
    "step_failed",
    "unresolved",
)

#: Metrics shown first in terminal tables and reports.
KEY_METRICS = (
    "infused_fraction",
    "died",
    "ineligible",
    "vein_to_vein_median",
    "vein_to_vein_p90",
    "referral_to_infusion_median",
    "queue_wait_mean",
    "cost_per_infused",
)


def _quantile(values: pd.Series, q: float) -> float:
    values = values.dropna()
    return float(np.quantile(values.to_numpy(), q)) if len(values) else math.nan


def replication_table(patients: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row of metrics per replication.

    ``runs`` has one row per replication with ``replication``, ``end_day``, ``fixed_cost``
    and, for every site, ``busy_<site>`` (slot-days held) and ``slots_<site>``.
    """
    reps = runs["replication"].to_numpy()
    grouped = patients.groupby("replication", sort=True)
    counts = (
        pd.crosstab(patients["replication"], patients["outcome"])
        .reindex(index=reps, columns=list(OUTCOME_COLUMNS), fill_value=0)
    )
    table = pd.DataFrame({"replication": reps})
    referred = grouped.size().reindex(reps, fill_value=0).to_numpy()
    table["referred"] = referred
    for name in OUTCOME_COLUMNS:
        table[name] = counts[name].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["infused_fraction"] = np.where(referred > 0, table["infused"] / np.maximum(referred, 1), math.nan)
    infused = patients[patients["outcome"] == "infused"]
    by_rep = infused.groupby("replication", sort=True)
    v2v = by_rep["vein_to_vein_days"]
    r2i = by_rep["referral_to_infusion_days"]
    table["vein_to_vein_median"] = v2v.median().reindex(reps).to_numpy()
    table["vein_to_vein_mean"] = v2v.mean().reindex(reps).to_numpy()
    table["vein_to_vein_p90"] = v2v.quantile(0.9).reindex(reps).to_numpy()
    table["referral_to_infusion_median"] = r2i.median().reindex(reps).to_numpy()
    table["referral_to_infusion_mean"] = r2i.mean().reindex(reps).to_numpy()
    table["queue_wait_mean"] = grouped["queue_wait_days"].mean().reindex(reps).to_numpy()
    table["responders"] = by_rep["responded"].sum().reindex(reps, fill_value=0).to_numpy()
    table["icu_admissions"] = by_rep["icu"].sum().reindex(reps, fill_value=0).to_numpy()
    patient_cost = grouped["cost"].sum().reindex(reps, fill_value=0.0).to_numpy()
    table["cost_total"] = patient_cost + runs["fixed_cost"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["cost_per_infused"] = np.where(
            table["infused"] > 0, table["cost_total"] / np.maximum(table["infused"], 1), math.nan)
        table["cost_per_referred"] = np.where(
            referred > 0, table["cost_total"] / np.maximum(referred, 1), math.nan)
    end = runs["end_day"].to_numpy()
    table["end_day"] = end
    for column in runs.columns:
        if column.startswith("busy_"):
            site = column[len("busy_"):]
            slots = runs[f"slots_{site}"].to_numpy()
            table[f"utilization_{site}"] = runs[column].to_numpy() / (slots * end)
    return table


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean and two-sided t confidence interval of the non-missing values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def summarise(replications: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """``metric, mean, ci_low, ci_high, n``: a t-interval across replications per metric."""
    rows = []
    for column in replications.columns:
        if column == "replication" or not pd.api.types.is_numeric_dtype(replications[column]):
            continue
        mean, low, high, n = t_interval(replications[column].to_numpy(dtype=float), level)
        rows.append({"metric": column, "mean": mean, "ci_low": low, "ci_high": high, "n": n})
    return pd.DataFrame(rows, columns=["metric", "mean", "ci_low", "ci_high", "n"])


def daily_site_profile(log: np.ndarray, slots: float, end_day: float) -> pd.DataFrame:
    """Mean slots held and mean queue length per one-day bin from a change log.

    ``log`` rows are ``(time, in_use, queue)`` after each change; values hold until the next row.
    """
    n_days = max(1, int(math.ceil(end_day)))
    edges = np.arange(n_days + 1, dtype=float)
    out = {"day": np.arange(n_days), "slots": np.full(n_days, float(slots))}
    if log.size == 0:
        out["in_use"] = np.zeros(n_days)
        out["queue"] = np.zeros(n_days)
        return pd.DataFrame(out)
    times = log[:, 0]
    k = np.searchsorted(times, edges, side="right") - 1  # last change at or before each edge
    seen = k >= 0
    kk = np.maximum(k, 0)
    for col, name in ((1, "in_use"), (2, "queue")):
        values = log[:, col]
        # Integral of the step function up to each change time, then up to each bin edge.
        at_change = np.concatenate(([0.0], np.cumsum(values[:-1] * np.diff(times))))
        cum = np.where(seen, at_change[kk] + values[kk] * (edges - times[kk]), 0.0)
        out[name] = np.diff(cum)
    return pd.DataFrame(out)
