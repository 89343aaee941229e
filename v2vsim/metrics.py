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


#: Human labels for metrics: (label, unit). Units: "%" for fractions shown as percentages,
#: "days", "count" (per replication), "currency".
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "referred": ("Referred patients", "count"),
    "infused": ("Infused patients", "count"),
    "infused_fraction": ("Infused (% of referred)", "%"),
    "died": ("Died before infusion", "count"),
    "ineligible": ("Became ineligible", "count"),
    "screen_failed": ("Failed screening", "count"),
    "collection_failed": ("Collection failed", "count"),
    "lost_in_transit": ("Lost in transit", "count"),
    "manufacturing_failed": ("Manufacturing failed", "count"),
    "out_of_specification": ("Out of specification", "count"),
    "product_expired": ("Product expired", "count"),
    "step_failed": ("Other step failed", "count"),
    "unresolved": ("Unresolved at end of run", "count"),
    "vein_to_vein_median": ("Vein-to-vein, median", "days"),
    "vein_to_vein_mean": ("Vein-to-vein, mean", "days"),
    "vein_to_vein_p90": ("Vein-to-vein, 90th percentile", "days"),
    "referral_to_infusion_median": ("Referral to infusion, median", "days"),
    "referral_to_infusion_mean": ("Referral to infusion, mean", "days"),
    "queue_wait_mean": ("Queue wait per patient, mean", "days"),
    "responders": ("Responders", "count"),
    "icu_admissions": ("ICU admissions", "count"),
    "cost_total": ("Total cost", "currency"),
    "cost_per_infused": ("Cost per infused patient", "currency"),
    "cost_per_referred": ("Cost per referred patient", "currency"),
    "end_day": ("Run length", "days"),
}

#: Loss causes in the order they are shown.
LOSS_CAUSES = tuple(c for c in OUTCOME_COLUMNS if c != "infused")


def metric_label(metric: str, currency: str = "") -> tuple[str, str]:
    """Label and unit of a metric, including ``utilization_<site>``."""
    if metric.startswith("utilization_"):
        return f"Utilisation of {metric[len('utilization_'):]}", "%"
    label, unit = METRIC_LABELS.get(metric, (metric.replace("_", " ").capitalize(), ""))
    return label, (currency if unit == "currency" else unit)


def format_value(value: float, unit: str) -> str:
    """A value for tables: percentages, days with one decimal, money without decimals."""
    if value is None or not np.isfinite(value):
        return "–"
    if unit == "%":
        return f"{100 * value:.1f}%"
    if unit == "days":
        return f"{value:.1f}"
    if unit == "count":
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,.0f}"


def headline_rows(summary: pd.DataFrame, currency: str = "") -> list[tuple[str, str, str, str]]:
    """Rows ``(metric, label, mean, 95% CI)`` for the terminal summary of a run."""
    by_metric = summary.set_index("metric")
    order = ["referred", "infused_fraction"]
    # Death and ineligibility always; other causes when they happen.
    order += [c for c in LOSS_CAUSES if c in by_metric.index
              and (c in ("died", "ineligible") or by_metric.loc[c, "mean"] > 0)]
    order += ["vein_to_vein_median", "vein_to_vein_p90", "referral_to_infusion_median",
              "queue_wait_mean"]
    order += [m for m in by_metric.index if m.startswith("utilization_")]
    order += ["cost_per_infused", "cost_per_referred"]
    rows = []
    for metric in order:
        if metric not in by_metric.index:
            continue
        label, unit = metric_label(metric, currency)
        if unit and unit not in ("%", "count"):
            label = f"{label} ({unit})"
        elif unit == "count":
            label = f"{label} (per replication)"
        row = by_metric.loc[metric]
        ci = f"{format_value(row['ci_low'], unit)} – {format_value(row['ci_high'], unit)}"
        rows.append((metric, label, format_value(row["mean"], unit), ci))
    return rows


def overload_warnings(replications: pd.DataFrame, site_days: pd.DataFrame,
                      horizon_days: float, stop_day: float) -> list[str]:
    """Warnings for sites whose demand exceeds capacity, and for unresolved patients.

    A site is flagged when its mean queue over the last quarter of the referral window is
    larger than over the first quarter by at least one patient and its utilisation is 90% or
    more: the queue is growing, not fluctuating.
    """
    warnings: list[str] = []
    quarter = horizon_days / 4
    for site, frame in site_days.groupby("site", sort=True):
        early = frame.loc[frame["day"] < quarter, "queue"].mean()
        late = frame.loc[(frame["day"] >= horizon_days - quarter) & (frame["day"] < horizon_days),
                         "queue"].mean()
        util_col = f"utilization_{site}"
        util = float(replications[util_col].mean()) if util_col in replications else math.nan
        if np.isfinite(early) and np.isfinite(late) and late - early >= 1 and util >= 0.9:
            growth = (late - early) / (0.75 * horizon_days / 365)
            warnings.append(
                f"site '{site}' is overloaded: utilisation {100 * util:.1f}%, its queue grew from "
                f"{early:.1f} to {late:.1f} waiting patients over the referral window "
                f"(+{growth:.1f} a year); demand exceeds capacity")
    unresolved = int(replications["unresolved"].sum()) if "unresolved" in replications else 0
    if unresolved:
        per_rep = unresolved / max(len(replications), 1)
        warnings.append(
            f"{unresolved:,} patients ({per_rep:,.1f} per replication) were still in the pathway "
            f"when the run stopped at day {stop_day:g} (horizon_days + drain_days); they are "
            "reported as 'unresolved', not dropped")
    return warnings
