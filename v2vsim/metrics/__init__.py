"""Per-replication metrics and summaries across replications (pure numpy/pandas).

This module reads result frames; it never imports the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .sites import SITE_DAY_COLUMNS, Runs, SiteBlock, SiteDays
from .waitlist import WAITLIST_WITHIN_DAYS, waitlist_metrics as _waitlist_metrics
from .units import (
    clip_interval,
    CLIPPED_NOTE,
    counted_window,
    count_of_rate,
    difference_support,
    format_value,
    FRACTION,
    is_fraction,
    LOSS_CAUSES,
    metric_direction,
    metric_label,
    METRIC_LABELS,
    OUTCOME_COLUMNS,
    PER_100,
    PER_100_REFERRED,
    per_year,
    RATE_COUNTS,
    rate_metric,
    support,
    unsigned_zero,
)

__all__ = [
    "OUTCOME_COLUMNS",
    "KEY_METRICS",
    "WARMUP_COLUMN",
    "counted",
    "mark_warmup",
    "replication_table",
    "summarise",
    "t_interval",
    "t_quantile",
    "Runs",
    "SiteBlock",
    "SITE_DAY_COLUMNS",
    "SiteDays",
    "COMPARISON_COLUMNS",
    "paired_difference",
    "paired_comparison",
    "RATE_COUNTS",
    "WAITLIST_WITHIN_DAYS",
    "rate_metric",
    "count_of_rate",
    "is_fraction",
    "per_year",
    "counted_window",
    "support",
    "clip_interval",
    "difference_support",
    "metric_direction",
    "CLIPPED_NOTE",
    "FRACTION",
    "PER_100",
    "PER_100_REFERRED",
    "LOSS_CAUSES",
    "METRIC_LABELS",
    "metric_label",
    "format_value",
    "unsigned_zero",
]


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


def _positions(values: pd.Series, labels: Sequence[str]) -> np.ndarray:
    """Each value's position in ``labels`` (-1: not there, or missing)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        lookup = np.append(pd.Index(list(labels)).get_indexer(values.cat.categories), -1)
        return lookup[values.cat.codes.to_numpy()]  # code -1 (missing) reads the last entry
    return pd.Index(list(labels)).get_indexer(values)


#: The patients table's column marking the patients referred in the warm-up (``referral_day <
#: warmup_days``): simulated and kept in the table, counted by no metric. Only with a warm-up.
WARMUP_COLUMN = "in_warmup"


def mark_warmup(patients: pd.DataFrame, warmup_days: float) -> pd.DataFrame:
    """``patients`` with :data:`WARMUP_COLUMN` added when ``warmup_days > 0`` (else as it is)."""
    if not warmup_days > 0:
        return patients
    return patients.assign(**{WARMUP_COLUMN: patients["referral_day"].to_numpy() < warmup_days})


def counted(patients: pd.DataFrame) -> pd.DataFrame:
    """The patients that metrics and figures count: all but those of the warm-up."""
    if WARMUP_COLUMN not in patients.columns:
        return patients
    return patients.loc[~patients[WARMUP_COLUMN].to_numpy(dtype=bool)]


def replication_table(patients: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row of metrics per replication, of the :func:`counted` patients.

    ``runs`` has one row per replication with ``replication``, ``end_day``, ``fixed_cost``
    and, for every site, ``busy_<site>`` (slot-days held) and ``slots_<site>``; with a warm-up,
    ``start_day`` (the warm-up's end), from which the slot-days and capacity are measured.
    """
    patients = counted(patients)
    reps = runs["replication"].to_numpy()
    grouped = patients.groupby("replication", sort=True)
    # Patients by replication (of runs) and outcome (of OUTCOME_COLUMNS), others not counted.
    row = pd.Index(reps).get_indexer(patients["replication"])
    col = _positions(patients["outcome"], OUTCOME_COLUMNS)
    k = len(OUTCOME_COLUMNS)
    known = (row >= 0) & (col >= 0)
    counts = np.bincount(row[known] * k + col[known], minlength=len(reps) * k).reshape(len(reps), k)
    # The columns, in order, as arrays (one frame built at the end: a frame's column insertion
    # costs more than most of these computations).
    table: dict[str, np.ndarray] = {"replication": reps}
    referred = np.bincount(row[row >= 0], minlength=len(reps))
    table["referred"] = referred
    for j, name in enumerate(OUTCOME_COLUMNS):
        table[name] = counts[:, j].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["infused_fraction"] = np.where(referred > 0, table["infused"] / np.maximum(referred, 1), math.nan)
    # Only the columns read below (a row filter copies every column it keeps).
    infused = patients.loc[patients["outcome"] == "infused", ["replication", "vein_to_vein_days",
                           "referral_to_infusion_days", "responded", "icu"]]
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
    # Optional policies: their metrics appear only when the scenario uses them.
    if "rerouted" in patients and patients["rerouted"].notna().any():
        table["rerouted"] = grouped["rerouted"].sum().reindex(reps, fill_value=0).to_numpy()
    if "re_referred" in patients and patients["re_referred"].notna().any():
        table["re_referred"] = grouped["re_referred"].sum().reindex(reps, fill_value=0).to_numpy()
    if "bridging_day" in patients and patients["bridging_day"].notna().any():
        table["bridged"] = grouped["bridging_day"].count().reindex(reps, fill_value=0).to_numpy()
        table["bridging_toxicities"] = (
            grouped["bridging_toxicity"].sum().reindex(reps, fill_value=0).to_numpy())
    if ("infused_out_of_specification" in patients
            and patients["infused_out_of_specification"].notna().any()):
        table["infused_out_of_specification"] = (
            grouped["infused_out_of_specification"].sum().reindex(reps, fill_value=0).to_numpy())
    if "life_years" in patients and patients["life_years"].notna().any():
        # Over every referred patient (a cohort without a survival model makes it NaN).
        life = patients["life_years"].groupby(patients["replication"]).sum(min_count=1)
        complete = patients["life_years"].notna().groupby(patients["replication"]).all()
        life = life.where(complete).reindex(reps).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            table["life_years_per_referred"] = np.where(referred > 0, life / np.maximum(referred, 1), math.nan)
        table["deaths_in_follow_up"] = grouped["death_day"].count().reindex(reps, fill_value=0).to_numpy()
    if "listed_day" in patients and patients["listed_day"].notna().any():
        _waitlist_metrics(table, patients, reps, referred, row)
    patient_cost = grouped["cost"].sum().reindex(reps, fill_value=0.0).to_numpy()
    economic = "qalys" in patients
    if economic:  # ICU, CRS and follow-up costs count too
        patient_cost = patient_cost + grouped["cost_after_pathway"].sum().reindex(reps, fill_value=0.0).to_numpy()
    table["cost_total"] = patient_cost + runs["fixed_cost"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["cost_per_infused"] = np.where(
            table["infused"] > 0, table["cost_total"] / np.maximum(table["infused"], 1), math.nan)
        table["cost_per_referred"] = np.where(
            referred > 0, table["cost_total"] / np.maximum(referred, 1), math.nan)
    if economic:
        # Per referred patient, from each patient's own referral (fixed costs from day 0).
        with np.errstate(invalid="ignore", divide="ignore"):
            per = np.maximum(referred, 1)
            cost_d = grouped["cost_discounted"].sum().reindex(reps, fill_value=0.0).to_numpy()
            table["cost_discounted_per_referred"] = np.where(
                referred > 0, (cost_d + runs["fixed_cost_discounted"].to_numpy()) / per, math.nan)
            for column in ("life_years_discounted", "qalys", "qalys_discounted"):
                total = grouped[column].sum().reindex(reps, fill_value=0.0).to_numpy()
                table[f"{column}_per_referred"] = np.where(referred > 0, total / per, math.nan)
    end = runs["end_day"].to_numpy()
    table["end_day"] = end
    span = end - runs["start_day"].to_numpy() if "start_day" in runs else end
    for column in runs.columns:
        if column.startswith("busy_"):
            site = column[len("busy_"):]
            slots = runs[f"slots_{site}"].to_numpy()
            table[f"utilization_{site}"] = runs[column].to_numpy() / (slots * span)
    # Counts as rates per 100 referred patients, per replication (then summarised like any
    # metric, so a rate's interval and paired difference come from the per-replication rates).
    safe = np.maximum(referred, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        for count in RATE_COUNTS:
            if count in table:
                table[rate_metric(count)] = np.where(
                    referred > 0, 100.0 * np.asarray(table[count], dtype=float) / safe, math.nan)
    return pd.DataFrame(table)


def t_quantile(q: float, df: int) -> float:
    """``scipy.stats.t.ppf(q, df)``, computed as SciPy computes it (``scipy.special.stdtrit``)
    without importing ``scipy.stats``, whose import is most of a short run's start-up; a test
    checks that the two agree to the last bit."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95,
               bounds: tuple[float, float] | None = None) -> tuple[float, float, float, int]:
    """Mean and two-sided t confidence interval of the non-missing values; with ``bounds``
    (the range the mean can take, :func:`support`) the interval is cut to it
    (:data:`CLIPPED_NOTE`)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    sd = float(x.std(ddof=1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = clip_interval(low, high, bounds)
    return mean, low, high, n


def summarise(replications: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """``metric, mean, ci_low, ci_high, n``: a t-interval across replications per metric, cut
    to the range the metric can take (:func:`support`, :data:`CLIPPED_NOTE`)."""
    rows = []
    for column in replications.columns:
        if column == "replication" or not pd.api.types.is_numeric_dtype(replications[column]):
            continue
        mean, low, high, n = t_interval(replications[column].to_numpy(dtype=float), level,
                                        support(str(column)))
        rows.append({"metric": column, "mean": mean, "ci_low": low, "ci_high": high, "n": n})
    return pd.DataFrame(rows, columns=["metric", "mean", "ci_low", "ci_high", "n"])


#: The metrics of a scenario's optional policies, in the order the run's summary shows them:
#: a routing rule, bridging therapy, out-of-specification infusions, survival after infusion,
#: an economics section. The
#: replications table has them only when the scenario has the policy.
POLICY_METRICS = {
    "routing": ("rerouted", "re_referred"),
    "bridging": ("bridged", "bridging_toxicities"),
    "waitlist": ("listed", "slot_fraction_of_listed", "died_while_listed", "time_to_slot_median", "treated_within_30_days",
                 "treated_within_90_days"),
    "exception": ("infused_out_of_specification",),
    "survival": ("life_years_per_referred", "deaths_in_follow_up"),
    "economics": ("life_years_discounted_per_referred", "qalys_per_referred",
                  "qalys_discounted_per_referred", "cost_discounted_per_referred"),
}


def headline_rows(summary: pd.DataFrame, currency: str = "",
                  horizon_days: float | None = None) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(metric, label, mean, 95% CI, a year)`` for the terminal summary of a run:
    referrals, outcomes, times, utilisation and costs, then the metrics of the scenario's
    policies (:data:`POLICY_METRICS`) that its summary has.

    A count of patients is shown as its rate per 100 referred patients when the summary has it
    (``died`` as ``died_per_100_referred``), and with ``horizon_days`` (the referral window)
    its mean number a year in the last field (empty for other metrics)."""
    by_metric = summary.set_index("metric")
    order = ["referred", "infused_fraction"]
    # Death and ineligibility always; other causes when they happen.
    order += [c for c in LOSS_CAUSES if c in by_metric.index
              and (c in ("died", "ineligible") or by_metric.loc[c, "mean"] > 0)]
    order += ["vein_to_vein_median", "vein_to_vein_p90", "referral_to_infusion_median",
              "queue_wait_mean"]
    if any(m in by_metric.index and by_metric.loc[m, "mean"] > 0 for m in ("died_while_listed", "time_to_slot_mean")):
        order += list(POLICY_METRICS["waitlist"])  # a waitlist formed
    order += [*POLICY_METRICS["routing"], *POLICY_METRICS["bridging"], *POLICY_METRICS["exception"]]
    order += [m for m in by_metric.index if m.startswith("utilization_")]
    order += ["cost_per_infused", "cost_per_referred", *POLICY_METRICS["survival"],
              *POLICY_METRICS["economics"]]
    rows = []
    for metric in order:
        if metric not in by_metric.index:
            continue
        shown = metric
        if metric in RATE_COUNTS and rate_metric(metric) in by_metric.index:
            shown = rate_metric(metric)
        label, unit = metric_label(shown, currency)
        if unit == "count":  # a count without a rate (the referrals)
            label = f"{label} (over the referral window)"
        elif unit and not is_fraction(unit) and unit != PER_100:
            label = f"{label} ({unit})"
        row = by_metric.loc[shown]
        ci = f"{format_value(row['ci_low'], unit)} – {format_value(row['ci_high'], unit)}"
        yearly = ""
        if horizon_days and metric_label(metric)[1] == "count" and metric != "end_day":
            yearly = format_value(per_year(float(by_metric.loc[metric, "mean"]), horizon_days),
                                  "count")
        rows.append((metric, label, format_value(row["mean"], unit), ci, yearly))
    return rows


def overload_warnings(replications: pd.DataFrame, site_days: pd.DataFrame | SiteDays,
                      horizon_days: float, stop_day: float) -> list[str]:
    """Warnings for sites whose demand exceeds capacity, and for unresolved patients.

    A site is flagged when its mean queue over the last quarter of the referral window is
    larger than over the first quarter by at least one patient, and either its utilisation is
    90% or more or the queue has at least doubled: the queue is growing, not fluctuating. (With
    a monthly or weekly allocation the queue can grow while the slots are mostly idle.)
    """
    warnings: list[str] = []
    quarter = horizon_days / 4
    by_site = ([(site, site_days.site_frame(site)) for site in sorted(site_days.site_names())]
               if isinstance(site_days, SiteDays) else site_days.groupby("site", sort=True))
    for site, frame in by_site:
        early = frame.loc[frame["day"] < quarter, "queue"].mean()
        late = frame.loc[(frame["day"] >= horizon_days - quarter) & (frame["day"] < horizon_days),
                         "queue"].mean()
        util_col = f"utilization_{site}"
        util = float(replications[util_col].mean()) if util_col in replications else math.nan
        growing = np.isfinite(early) and np.isfinite(late) and late - early >= 1
        if growing and (util >= 0.9 or late >= 2 * early):
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


# --------------------------------------------------------------------------------------------
# Paired comparisons between scenarios (common random numbers)
# --------------------------------------------------------------------------------------------

#: Columns of a comparison table (``v2vsim compare``'s ``comparison.csv``).
COMPARISON_COLUMNS = ("metric", "label", "unit", "scenario", "mean", "ci_low", "ci_high", "n",
                      "diff", "diff_ci_low", "diff_ci_high")

#: Metrics listed first in a comparison, in this order; every other numeric column follows.
COMPARISON_METRICS = (
    "infused_fraction",
    *LOSS_CAUSES,
    "vein_to_vein_median",
    "vein_to_vein_p90",
    "referral_to_infusion_median",
    "queue_wait_mean",
    "cost_per_referred",
    "cost_per_infused",
    "icu_admissions",
    "responders",
    "life_years_per_referred",
    "life_years_discounted_per_referred",
    "qalys_per_referred",
    "qalys_discounted_per_referred",
    "cost_discounted_per_referred",
)


def paired_difference(
    baseline: Sequence[float] | np.ndarray,
    other: Sequence[float] | np.ndarray,
    level: float = 0.95,
) -> tuple[float, float, float, int]:
    """Mean and t confidence interval of ``other - baseline``, paired element by element.

    Element *i* of both arrays is the same replication (same seed, so the same patients under
    common random numbers); pairs with a missing value on either side are dropped. The
    interval is the t-interval of the per-replication differences; the mean is computed as the
    difference of the two means over the kept pairs, which is the same number and equals the
    difference of the scenarios' own means exactly when nothing is missing.
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(other, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same shape, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(b.mean()) - float(a.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    sd = float((b - a).std(ddof=1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def comparison_metrics(tables: Sequence[pd.DataFrame]) -> list[str]:
    """The metrics of a comparison: :data:`COMPARISON_METRICS` first, then every other numeric
    column of any of the replication tables (in the order they first appear)."""
    numeric: list[str] = []
    for table in tables:
        for column in table.columns:
            if (column != "replication" and column not in numeric
                    and pd.api.types.is_numeric_dtype(table[column])):
                numeric.append(column)
    return [m for m in COMPARISON_METRICS if m in numeric] + [
        m for m in numeric if m not in COMPARISON_METRICS]


def paired_comparison(
    tables: Mapping[str, pd.DataFrame],
    currency: str = "",
    level: float = 0.95,
) -> pd.DataFrame:
    """Each scenario's mean per metric and its paired difference against the first scenario.

    ``tables`` maps scenario names to their ``replications`` tables, baseline first; the
    tables must hold the same replication numbers (the same seed), which pairs them. Returns
    one row per metric and scenario with :data:`COMPARISON_COLUMNS`: the mean and t-interval
    across replications, ``n`` replications with a value, and ``diff`` = this scenario minus
    the baseline with the t-interval of the per-replication differences
    (:func:`paired_difference`); ``diff*`` are NaN on the baseline's rows.

    Values are on the scale of the ``replications`` table and ``unit`` follows
    :data:`METRIC_LABELS`: unit ``fraction`` marks a fraction of 0..1 shown as a percentage
    (``infused_fraction`` 0.82 is 82%, a ``diff`` of -0.029 is -2.9 percentage points), as in
    ``summary.csv`` and :func:`format_value`; ``count`` is patients per replication (one
    referral window) and ``per 100 referred`` a rate. Intervals are cut to the range a metric
    (or a difference) can take (:data:`CLIPPED_NOTE`). A metric a scenario lacks (the utilisation of a
    site it does not have) has no row for that scenario.
    """
    if not tables:
        raise ValueError("a comparison needs at least one scenario")
    names = list(tables)
    indexed = {name: table.set_index("replication").sort_index() for name, table in tables.items()}
    reps = indexed[names[0]].index
    for name in names[1:]:
        if not indexed[name].index.equals(reps):
            raise ValueError(
                f"scenario '{name}' has different replications from '{names[0]}'; a paired "
                "comparison needs the same replications and seed")
    rows = []
    for metric in comparison_metrics(list(tables.values())):
        label, unit = metric_label(metric, currency)
        base = indexed[names[0]].get(metric)
        for name in names:
            if metric not in indexed[name]:
                continue
            values = indexed[name][metric].to_numpy(dtype=float)
            mean, low, high, n = t_interval(values, level, support(metric))
            diff = diff_low = diff_high = math.nan
            if name != names[0] and base is not None:
                diff, diff_low, diff_high, _ = paired_difference(
                    base.to_numpy(dtype=float), values, level)
                diff_low, diff_high = clip_interval(diff_low, diff_high, difference_support(metric))
            rows.append({"metric": metric, "label": label, "unit": unit, "scenario": name,
                         "mean": mean, "ci_low": low, "ci_high": high, "n": n, "diff": diff,
                         "diff_ci_low": diff_low, "diff_ci_high": diff_high})
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
