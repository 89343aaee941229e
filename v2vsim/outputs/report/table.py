"""The report's numbers: the comparison table of run directories (differences paired by
replication), the order of its metrics, the scale of its percentages, and how values, intervals
and differences are written."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from ...metrics import (
    LOSS_CAUSES,
    PER_100,
    RATE_COUNTS,
    count_of_rate,
    difference_support,
    format_value,
    is_fraction,
    metric_label,
    per_year,
    rate_metric,
    t_interval,
)
from .load import _COMPARISON_COLUMNS, RunDir

__all__ = ["count_a_year", "fmt_ci", "fmt_diff", "fmt_unit", "fmt_value", "paired_comparison"]

_MINUS = "\u2212"


def _unique_labels(runs: Sequence[RunDir]) -> None:
    names = [r.label or r.name for r in runs]
    for run, name in zip(runs, names):
        run.label = name if names.count(name) == 1 else f"{name} ({run.path.name})"


def _metric_order(metrics: Iterable[str], means: Mapping[str, float]) -> tuple[list[str], int]:
    """Headline metrics first (as in the terminal summary), then the rest; and how many lead.

    ``means`` holds the largest mean of each metric across scenarios: a loss cause is a
    headline metric when it happens in some scenario. A count of patients leads as its rate
    per 100 referred when the table has it; the per-replication count follows with the rest.
    """
    present = list(dict.fromkeys(metrics))

    def shown(metric: str) -> str:
        return rate_metric(metric) if (metric in RATE_COUNTS
                                       and rate_metric(metric) in present) else metric

    head = ["referred", "infused_fraction"]
    head += [shown(c) for c in LOSS_CAUSES
             if c in ("died", "ineligible") or (_finite(means.get(c)) and float(means[c]) > 0)]
    head += ["vein_to_vein_median", "vein_to_vein_p90", "referral_to_infusion_median",
             "queue_wait_mean"]
    head += [shown(c) for c in ("rerouted", "bridged", "bridging_toxicities")
             if _finite(means.get(c)) and float(means[c]) > 0]
    head += [m for m in present if m.startswith("utilization_")]
    head += ["cost_per_infused", "cost_per_referred"]
    ordered = [m for m in head if m in present]
    return ordered + [m for m in present if m not in ordered], len(ordered)


def paired_comparison(runs: Sequence[RunDir]) -> tuple[pd.DataFrame, str]:
    """The comparison table (``comparison.csv`` columns) of run directories.

    Differences are paired by replication (scenario minus the first scenario, t-interval of
    the per-replication differences) when every run used the same seed and the same
    replications, so that common random numbers pair them; otherwise they are left empty and
    the returned note says why.
    """
    base = runs[0]
    note = ""
    paired = len(runs) > 1 and all(r.replications is not None for r in runs) \
        and len({str(r.seed) for r in runs}) == 1
    if paired:
        rep_sets = {tuple(sorted(r.replications["replication"].tolist())) for r in runs}  # type: ignore[index]
        paired = len(rep_sets) == 1
    if len(runs) > 1 and not paired:
        note = ("The runs do not share a seed and replication numbers (or lack replications.csv), "
                "so they are not paired by common random numbers: differences are not shown.")
    rows = []
    for run in runs:
        summary = run.summary.set_index("metric")
        for metric in summary.index:
            label, unit = metric_label(str(metric), run.currency)
            row = {"metric": metric, "label": label, "unit": unit, "scenario": run.label,
                   "mean": summary.loc[metric, "mean"], "ci_low": summary.loc[metric, "ci_low"],
                   "ci_high": summary.loc[metric, "ci_high"], "n": summary.loc[metric, "n"],
                   "diff": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan}
            if paired and run is not base:
                a = base.replications.set_index("replication")  # type: ignore[union-attr]
                b = run.replications.set_index("replication")  # type: ignore[union-attr]
                if metric in a.columns and metric in b.columns \
                        and pd.api.types.is_numeric_dtype(b[metric]):
                    diff = (b[metric] - a[metric].reindex(b.index)).to_numpy(dtype=float)
                    mean, low, high, _n = t_interval(diff, bounds=difference_support(str(metric)))
                    row.update(diff=mean, diff_ci_low=low, diff_ci_high=high)
            rows.append(row)
    return pd.DataFrame(rows, columns=_COMPARISON_COLUMNS), note


def _as_fractions(table: pd.DataFrame, summaries: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Percent metrics as fractions (as in ``summary.csv``), whichever scale the table uses.

    A comparison table may give ``%`` metrics in percent (differences in percentage points);
    the scale of each metric is told by the scenario's own ``summary.csv`` when it has the
    metric, else by magnitude (a fraction never exceeds 1.5 in absolute value).
    """
    table = table.copy()
    values = ["mean", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high"]
    for metric, rows in table[table["unit"].map(is_fraction)].groupby("metric"):
        percent = None
        for _, row in rows.iterrows():
            summary = summaries.get(str(row["scenario"]))
            if summary is None or not _finite(row["mean"]):
                continue
            own = summary.loc[summary["metric"] == metric, "mean"]
            if len(own) and _finite(own.iloc[0]):
                percent = abs(float(row["mean"]) - 100 * float(own.iloc[0])) < \
                    abs(float(row["mean"]) - float(own.iloc[0]))
                break
        if percent is None:
            percent = bool((rows["mean"].abs() > 1.5).any())
        if percent:
            table.loc[rows.index, values] = table.loc[rows.index, values].astype(float) / 100.0
    return table


def count_a_year(table: pd.DataFrame, metric: str, scenario: str, column: str,
                 horizon_days: Any) -> float | None:
    """For a rate per 100 referred (``died_per_100_referred``): its count's ``column`` (``mean``
    or ``diff``) in ``table`` as a number a year over the referral window of ``horizon_days``;
    None for other metrics, or when the count or the horizon is not known."""
    count = count_of_rate(metric)
    if count is None or not _finite(horizon_days):
        return None
    row = table[(table["metric"] == count) & (table["scenario"] == scenario)]
    if row.empty or not _finite(row.iloc[0][column]):
        return None
    return per_year(float(row.iloc[0][column]), float(horizon_days))


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt_value(value: Any, unit: str) -> str:
    """A value for the report (``metrics.format_value`` with the currency named)."""
    if not _finite(value):
        return "–"
    text = format_value(float(value), unit)
    return text.replace("-", _MINUS)


def fmt_ci(low: Any, high: Any, unit: str) -> str:
    if not (_finite(low) and _finite(high)):
        return ""
    return f"{fmt_value(low, unit)} to {fmt_value(high, unit)}"


def fmt_diff(value: Any, unit: str) -> str:
    """A signed difference: percentage points for percentages."""
    if not _finite(value):
        return "–"
    value = float(value)
    shown = (f"{abs(100 * value):.1f} pp" if is_fraction(unit)
             else format_value(abs(value), unit))
    if not any(c in "123456789" for c in shown):  # rounds to zero
        return ("±" + shown) if value == 0 else shown
    sign = "+" if value > 0 else (_MINUS if value < 0 else "±")
    return sign + shown


def fmt_unit(unit: str) -> str:
    if is_fraction(unit) or unit == PER_100:
        return ""
    if unit == "count":
        return "per replication"
    return unit
