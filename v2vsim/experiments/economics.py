"""Incremental cost-effectiveness of scenarios against a comparator, and budget impact.

Every scenario is compared with the first (the *comparator*) on the same virtual patients:
replication *r* of every scenario has the same referrals and draws (common random numbers), so
each quantity is a per-replication paired difference, per referred patient:

- incremental cost, discounted and undiscounted (``cost_discounted_per_referred``,
  ``cost_per_referred``), incremental life-years and QALYs, discounted and undiscounted;
- the ICER: discounted incremental cost over discounted incremental QALYs (and over discounted
  incremental life-years), the ratio of the mean paired differences;
- net monetary benefit at each willingness-to-pay threshold ``λ``: ``NMB = λ·ΔQALY − Δcost``
  (discounted), per replication.

Intervals (95% by default): the t-interval of the per-replication paired differences for
Δcost, ΔLY, ΔQALY and NMB (:func:`v2vsim.metrics.paired_difference`). The ICER is a ratio of
two means, so its interval is Fieller's (:func:`fieller_interval`) on the per-replication
paired differences of cost and effect: the set of ratios ``R`` for which the t-test of
``mean(Δcost − R·Δeffect) = 0`` is not rejected. When the effect's own t-interval includes 0
that set is not a bounded interval (the whole line, or two rays), and the ICER's interval is
reported as unbounded (``-inf`` to ``inf``) with a note.

Dominance is stated in words from the point estimates (:func:`dominance_sentence`): the ICER is
only a meaningful summary in the north-east quadrant (more effective, more costly) and the
south-west one (less costly, less effective: cost saved per QALY forgone).

Budget impact (:func:`budget_summary`, :func:`budget_impact`): the payer's undiscounted cost
charged in each calendar year of the horizon, by cost category and in total, mean across
replications with a t-interval; against the comparator, the paired difference per year. Both
are computed in :mod:`v2vsim.metrics.budget` (a run's results directory needs them without the
experiments) and re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from .. import metrics
from ..metrics.budget import BUDGET_COLUMNS, budget_impact, budget_summary

__all__ = [
    "BUDGET_COLUMNS",
    "ECONOMIC_COLUMNS",
    "ECONOMIC_METRICS",
    "EconomicComparison",
    "RatioInterval",
    "budget_impact",
    "budget_summary",
    "dominance",
    "dominance_sentence",
    "economic_comparison",
    "fieller_interval",
    "incremental_analysis",
]

#: The per-replication columns (of ``Results.replications``) the analysis reads.
ECONOMIC_METRICS: Final = ("cost_discounted_per_referred", "cost_per_referred",
                           "life_years_discounted_per_referred", "life_years_per_referred",
                           "qalys_discounted_per_referred", "qalys_per_referred")

#: Columns of the tidy incremental table (:func:`incremental_analysis`).
ECONOMIC_COLUMNS: Final = ("scenario", "comparator", "measure", "label", "unit", "wtp",
                           "estimate", "ci_low", "ci_high", "n", "note")

#: Incremental measures that are paired differences of one column: (measure, column, label, unit).
_DIFFERENCES: Final = (
    ("incremental_cost_discounted", "cost_discounted_per_referred",
     "Incremental cost per referred patient, discounted", "currency"),
    ("incremental_cost", "cost_per_referred",
     "Incremental cost per referred patient, undiscounted", "currency"),
    ("incremental_life_years_discounted", "life_years_discounted_per_referred",
     "Incremental life-years per referred patient, discounted", "years"),
    ("incremental_life_years", "life_years_per_referred",
     "Incremental life-years per referred patient, undiscounted", "years"),
    ("incremental_qalys_discounted", "qalys_discounted_per_referred",
     "Incremental QALYs per referred patient, discounted", "QALYs"),
    ("incremental_qalys", "qalys_per_referred",
     "Incremental QALYs per referred patient, undiscounted", "QALYs"),
)

#: Quadrants of the cost-effectiveness plane, as :func:`dominance` names them.
QUADRANTS: Final = ("dominant", "dominated", "more_effective_more_costly",
                    "less_costly_less_effective", "no_qaly_difference")


# --------------------------------------------------------------------------------------------
# Fieller's interval of a ratio of paired mean differences
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatioInterval:
    """A ratio of means with its Fieller interval; ``bounded`` is False when the denominator's
    t-interval includes 0 (then ``low, high = -inf, inf``)."""

    estimate: float
    low: float
    high: float
    n: int
    bounded: bool


def fieller_interval(numerator: Sequence[float] | np.ndarray, denominator: Sequence[float] | np.ndarray,
                     level: float = 0.95) -> RatioInterval:
    """``mean(numerator) / mean(denominator)`` and its Fieller confidence interval.

    Element *i* of both arrays is one replication (here: the paired differences of cost and of
    QALYs, scenario minus comparator); pairs with a missing value are dropped. With means
    ``x, y``, the variances and covariance of the means ``vxx, vyy, vxy`` (sample
    (co)variances over ``n``) and ``t`` the t quantile with ``n - 1`` degrees of freedom, the
    interval is the set of ``R`` with ``(x - R y)^2 <= t^2 (vxx - 2 R vxy + R^2 vyy)``: the roots
    of ``a R^2 - 2 b R + c = 0`` with ``a = y^2 - t^2 vyy``, ``b = x y - t^2 vxy``,
    ``c = x^2 - t^2 vxx``. It is bounded exactly when ``a > 0``, i.e. when the t-interval of
    the denominator excludes 0; otherwise it is reported as ``(-inf, inf)``.
    """
    x_all = np.asarray(numerator, dtype=float)
    y_all = np.asarray(denominator, dtype=float)
    if x_all.shape != y_all.shape:
        raise ValueError(f"numerator and denominator must have the same shape, got {x_all.shape} "
                         f"and {y_all.shape}")
    keep = np.isfinite(x_all) & np.isfinite(y_all)
    xs, ys = x_all[keep], y_all[keep]
    n = int(xs.size)
    if n == 0:
        return RatioInterval(math.nan, math.nan, math.nan, 0, False)
    x, y = float(xs.mean()), float(ys.mean())
    estimate = x / y if y != 0 else math.nan
    if n == 1:
        return RatioInterval(estimate, math.nan, math.nan, 1, False)
    cov = np.cov(np.vstack([xs, ys]), ddof=1) / n
    vxx, vxy, vyy = float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])
    t2 = metrics.t_quantile(0.5 + level / 2, n - 1) ** 2
    a = y * y - t2 * vyy
    if not a > 0:
        return RatioInterval(estimate, -math.inf, math.inf, n, False)
    b = x * y - t2 * vxy
    c = x * x - t2 * vxx
    root = math.sqrt(max(b * b - a * c, 0.0))  # >= 0 whenever a > 0 (Cauchy-Schwarz)
    return RatioInterval(estimate, (b - root) / a, (b + root) / a, n, True)


# --------------------------------------------------------------------------------------------
# Dominance in words
# --------------------------------------------------------------------------------------------


def _is_zero(value: float, scale: float) -> bool:
    """No difference: zero up to rounding of sums of the size of ``scale``."""
    return abs(value) <= 1e-9 * max(abs(scale), 1.0)


def dominance(delta_cost: float, delta_qalys: float, *, qaly_scale: float = 1.0,
              cost_scale: float = 1.0) -> str:
    """The quadrant of the cost-effectiveness plane (one of :data:`QUADRANTS`) of a scenario
    with these mean differences against its comparator. Differences within rounding of
    ``*_scale`` (the comparator's own values) count as none."""
    no_cost = _is_zero(delta_cost, cost_scale)
    if _is_zero(delta_qalys, qaly_scale):
        return "no_qaly_difference"
    if delta_qalys > 0:
        return "dominant" if no_cost or delta_cost < 0 else "more_effective_more_costly"
    return "dominated" if no_cost or delta_cost > 0 else "less_costly_less_effective"


def _money(value: float, currency: str) -> str:
    text = f"{abs(value):,.0f}"
    return f"{text} {currency}" if currency else text


def dominance_sentence(name: str, delta_cost: float, delta_qalys: float, currency: str = "", *,
                       qaly_scale: float = 1.0, cost_scale: float = 1.0) -> str:
    """The comparison in words, e.g. ``"local is cheaper and more effective (dominant)"``.

    From the discounted mean differences (scenario minus comparator, per referred patient):
    dominant (cheaper and more effective), dominated (more costly and less effective), the ICER
    when more effective and more costly, the cost saved per QALY forgone when less costly and
    less effective, and "no difference in QALYs" when the QALYs are the same.
    """
    quadrant = dominance(delta_cost, delta_qalys, qaly_scale=qaly_scale, cost_scale=cost_scale)
    same_cost = _is_zero(delta_cost, cost_scale)
    if quadrant == "no_qaly_difference":
        if same_cost:
            return f"{name}: no difference in QALYs and no difference in cost"
        more = "more" if delta_cost > 0 else "less"
        return (f"{name}: no difference in QALYs; it costs {_money(delta_cost, currency)} {more} "
                "per referred patient (no ICER)")
    if quadrant == "dominant":
        return (f"{name} costs the same and is more effective (dominant)" if same_cost
                else f"{name} is cheaper and more effective (dominant)")
    if quadrant == "dominated":
        return (f"{name} costs the same and is less effective (dominated)" if same_cost
                else f"{name} is more costly and less effective (dominated)")
    ratio = delta_cost / delta_qalys
    if quadrant == "more_effective_more_costly":
        return f"{name} is more effective and more costly: ICER {_money(ratio, currency)} per QALY"
    return f"{name} is less costly and less effective: saves {_money(ratio, currency)} per QALY forgone"


# --------------------------------------------------------------------------------------------
# The incremental table
# --------------------------------------------------------------------------------------------


def _indexed(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    names = list(tables)
    indexed = {name: table.set_index("replication").sort_index() for name, table in tables.items()}
    reps = indexed[names[0]].index
    for name in names[1:]:
        if not indexed[name].index.equals(reps):
            raise ValueError(f"scenario '{name}' has different replications from '{names[0]}'; "
                             "an incremental analysis needs the same replications and seed")
    for name, table in indexed.items():
        missing = [c for c in ECONOMIC_METRICS if c not in table.columns]
        if missing:
            raise ValueError(f"scenario '{name}' has no economic results ({', '.join(missing)}); "
                             "give it an economics section")
    return indexed


def _unit(unit: str, currency: str) -> str:
    return currency if unit == "currency" else unit


def incremental_analysis(tables: Mapping[str, pd.DataFrame], wtp: Sequence[float] = (),
                         currency: str = "", level: float = 0.95) -> pd.DataFrame:
    """Every scenario against the first (the comparator): one row per scenario and measure.

    ``tables`` maps scenario names to their per-replication tables (``Results.replications``
    with the economic columns :data:`ECONOMIC_METRICS`), comparator first, with the same
    replications (one seed: common random numbers pair them). Returns :data:`ECONOMIC_COLUMNS`:
    the measures of :data:`_DIFFERENCES` (t-interval of the paired differences),
    ``icer_per_qaly`` and ``icer_per_life_year`` (discounted; Fieller interval, ``note``
    "unbounded ..." when it is not bounded) and one ``nmb`` row per threshold in ``wtp``
    (``wtp`` column; t-interval of the per-replication NMB). ``estimate`` is the mean paired
    difference (the ratio of them for ICERs); values are per referred patient.
    """
    if len(tables) < 2:
        raise ValueError("an incremental analysis needs a comparator and at least one other scenario")
    indexed = _indexed(tables)
    names = list(indexed)
    comparator = indexed[names[0]]
    rows: list[dict[str, Any]] = []

    def column(table: pd.DataFrame, name: str) -> np.ndarray:
        return table[name].to_numpy(dtype=float)

    for name in names[1:]:
        table = indexed[name]
        base = dict(scenario=name, comparator=names[0], wtp=math.nan, note="")
        for measure, col, label, unit in _DIFFERENCES:
            mean, low, high, n = metrics.paired_difference(column(comparator, col), column(table, col), level)
            rows.append(dict(base, measure=measure, label=label, unit=_unit(unit, currency),
                             estimate=mean, ci_low=low, ci_high=high, n=n))
        d_cost = column(table, "cost_discounted_per_referred") - column(comparator, "cost_discounted_per_referred")
        for measure, col, label, per in (
                ("icer_per_qaly", "qalys_discounted_per_referred",
                 "ICER: discounted cost per QALY gained", "QALY"),
                ("icer_per_life_year", "life_years_discounted_per_referred",
                 "ICER: discounted cost per life-year gained", "life-year")):
            d_effect = column(table, col) - column(comparator, col)
            ratio = fieller_interval(d_cost, d_effect, level)
            note = "" if ratio.bounded or ratio.n < 2 else (
                f"unbounded: the {level:.0%} CI of the incremental "
                f"{'QALYs' if per == 'QALY' else 'life-years'} includes 0")
            rows.append(dict(base, measure=measure, label=label,
                             unit=f"{currency} per {per}" if currency else f"per {per}",
                             estimate=ratio.estimate, ci_low=ratio.low, ci_high=ratio.high,
                             n=ratio.n, note=note))
        for threshold in wtp:
            lam = float(threshold)

            def benefit(t: pd.DataFrame, lam: float = lam) -> np.ndarray:
                return lam * column(t, "qalys_discounted_per_referred") - column(t, "cost_discounted_per_referred")

            mean, low, high, n = metrics.paired_difference(benefit(comparator), benefit(table), level)
            rows.append(dict(base, measure="nmb", wtp=lam,
                             label=f"Net monetary benefit at {_money(lam, currency)} per QALY",
                             unit=_unit("currency", currency), estimate=mean, ci_low=low,
                             ci_high=high, n=n))
    return pd.DataFrame(rows, columns=list(ECONOMIC_COLUMNS))


# --------------------------------------------------------------------------------------------
# The economic comparison
# --------------------------------------------------------------------------------------------


@dataclass
class EconomicComparison:
    """The incremental analysis of a comparison and its budget impact (see the module text)."""

    #: :func:`incremental_analysis`.
    table: pd.DataFrame
    #: :func:`budget_impact` (empty when the runs have no budget).
    budget: pd.DataFrame
    comparator: str
    currency: str
    wtp: list[float]
    level: float = 0.95
    #: Per scenario (not the comparator): the comparator's discounted cost and QALYs per
    #: referred patient, the scale below which a difference is rounding.
    scales: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def scenarios(self) -> list[str]:
        """The scenarios compared with the comparator, in order."""
        return list(dict.fromkeys(self.table["scenario"]))

    def value(self, scenario: str, measure: str, wtp: float | None = None) -> pd.Series:
        """The row of one measure of one scenario (``wtp`` for ``nmb``)."""
        rows = self.table[(self.table["scenario"] == scenario) & (self.table["measure"] == measure)]
        if wtp is not None:
            rows = rows[rows["wtp"] == float(wtp)]
        if rows.empty:
            raise KeyError(f"no {measure} for {scenario}")
        return rows.iloc[0]

    def quadrant(self, scenario: str) -> str:
        """:func:`dominance` of ``scenario`` (discounted cost and QALYs)."""
        cost_scale, qaly_scale = self.scales.get(scenario, (1.0, 1.0))
        return dominance(float(self.value(scenario, "incremental_cost_discounted")["estimate"]),
                         float(self.value(scenario, "incremental_qalys_discounted")["estimate"]),
                         qaly_scale=qaly_scale, cost_scale=cost_scale)

    def sentence(self, scenario: str) -> str:
        """:func:`dominance_sentence` of ``scenario`` against the comparator."""
        cost_scale, qaly_scale = self.scales.get(scenario, (1.0, 1.0))
        return dominance_sentence(
            scenario, float(self.value(scenario, "incremental_cost_discounted")["estimate"]),
            float(self.value(scenario, "incremental_qalys_discounted")["estimate"]), self.currency,
            qaly_scale=qaly_scale, cost_scale=cost_scale)

    def sentences(self) -> dict[str, str]:
        """Every scenario's :meth:`sentence`."""
        return {name: self.sentence(name) for name in self.scenarios}

    def comparison_rows(self) -> pd.DataFrame:
        """The incremental table in the columns of ``comparison.csv``
        (:data:`v2vsim.metrics.COMPARISON_COLUMNS`): the estimate and its interval in ``diff*``
        (they are differences from the comparator), ``mean`` and ``ci*`` empty; NMB rows are
        named ``nmb_<threshold>``."""
        table = self.table
        metric = [m if m != "nmb" else f"nmb_{_threshold_name(w)}" for m, w in zip(table["measure"], table["wtp"])]
        frame = pd.DataFrame({
            "metric": metric, "label": table["label"], "unit": table["unit"],
            "scenario": table["scenario"], "mean": math.nan, "ci_low": math.nan,
            "ci_high": math.nan, "n": table["n"], "diff": table["estimate"],
            "diff_ci_low": table["ci_low"], "diff_ci_high": table["ci_high"]})
        return frame[list(metrics.COMPARISON_COLUMNS)]

    def to_dict(self) -> dict[str, Any]:
        """The ``economics`` part of ``comparison.json``."""
        return {
            "comparator": self.comparator,
            "currency": self.currency,
            "wtp": list(self.wtp),
            "level": self.level,
            "perspective": "payer; per referred patient; costs and outcomes discounted as each scenario states",
            "quadrants": {name: self.quadrant(name) for name in self.scenarios},
            "statements": self.sentences(),
            "rows": self.table.to_dict(orient="records"),
        }


def economic_comparison(tables: Mapping[str, pd.DataFrame],
                        budgets: Mapping[str, pd.DataFrame] | None = None,
                        wtp: Sequence[float] = (), currency: str = "",
                        level: float = 0.95) -> EconomicComparison:
    """:func:`incremental_analysis` and :func:`budget_impact` of scenarios, comparator first.

    ``tables`` are the per-replication tables and ``budgets`` the ``Results.budget`` frames,
    keyed by scenario name in the same order.
    """
    names = list(tables)
    table = incremental_analysis(tables, wtp, currency, level)
    reps = {n: t["replication"].tolist() for n, t in tables.items()}
    budget = (budget_impact(budgets, reps, level) if budgets
              else pd.DataFrame(columns=["scenario", *BUDGET_COLUMNS, "diff", "diff_ci_low", "diff_ci_high"]))
    first = tables[names[0]]

    def scale(column: str) -> float:
        values = np.abs(first[column].to_numpy(dtype=float))
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else 1.0

    scales = {n: (scale("cost_discounted_per_referred"), scale("qalys_discounted_per_referred"))
              for n in names[1:]}
    return EconomicComparison(table=table, budget=budget, comparator=names[0], currency=currency,
                              wtp=[float(w) for w in wtp], level=level, scales=scales)


def _threshold_name(wtp: float) -> str:
    """A threshold as a metric name's suffix: ``1119000``, ``2500.5`` (never ``1.119e+06``)."""
    return str(int(wtp)) if float(wtp).is_integer() else repr(float(wtp))
