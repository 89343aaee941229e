"""What metrics are and how they are written: units (a ``fraction`` shown as a percentage, a
``count`` of patients per replication, a rate ``per 100 referred``), labels, the rates per 100
referred made from counts, which way a metric is better, the range a metric's interval may take,
and number formats. One definition for tables, figures, captions and the report.

Split from :mod:`v2vsim.metrics` (which re-exports every name) to keep each module short.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..scenario import OUTCOMES

#: Outcomes counted per replication, in the order of the ``replications`` table.
OUTCOME_COLUMNS = OUTCOMES

#: Loss causes in the order they are shown.
LOSS_CAUSES = tuple(c for c in OUTCOME_COLUMNS if c != "infused")

#: Counts of patients per replication that the replications table also gives as a rate per 100
#: referred patients (``<count>_per_100_referred``), when the count is there.
RATE_COUNTS = (*LOSS_CAUSES, "responders", "icu_admissions", "rerouted", "bridged",
               "bridging_toxicities", "deaths_in_follow_up", "listed", "died_while_listed", "re_referred",
               "infused_out_of_specification")

#: The suffix of a rate per 100 referred patients.
PER_100_REFERRED = "_per_100_referred"

#: The unit of a fraction of 0..1 (shown as a percentage, its differences in percentage points).
FRACTION = "fraction"

#: The unit of a rate per 100 referred patients.
PER_100 = "per 100 referred"


def rate_metric(count: str) -> str:
    """The name of the rate per 100 referred patients of a count metric."""
    return count + PER_100_REFERRED


def count_of_rate(metric: str) -> str | None:
    """The count metric a ``<count>_per_100_referred`` rate is made from, else None."""
    if metric.endswith(PER_100_REFERRED):
        count = metric[: -len(PER_100_REFERRED)]
        return count if count in RATE_COUNTS else None
    return None


def is_fraction(unit: str) -> bool:
    """True for the unit of a fraction shown as a percentage (``"%"`` in older results)."""
    return unit in (FRACTION, "%")


def counted_window(scenario: Any) -> float:
    """The days of referrals whose patients are counted: ``horizon_days - warmup_days``, of a
    :class:`~v2vsim.scenario.Scenario` or its mapping (as in ``scenario.yaml``; NaN without a
    horizon). Counts a year are over this window."""
    get = scenario.get if isinstance(scenario, Mapping) else (lambda k, d=None: getattr(scenario, k, d))
    try:
        return float(get("horizon_days", math.nan)) - float(get("warmup_days", 0.0) or 0.0)
    except (TypeError, ValueError):
        return math.nan


def per_year(value: float, horizon_days: float) -> float:
    """A count over a replication's referral window of ``horizon_days``, per year (365 days)."""
    return value * 365.0 / horizon_days if horizon_days and horizon_days > 0 else math.nan


#: Human labels for metrics: (label, unit). Units: "fraction" for fractions of 0..1 shown as
#: percentages, "days", "count" (patients per replication, i.e. over one referral window),
#: "per 100 referred" (:data:`RATE_COUNTS`' rates), "years", "QALYs", "currency".
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "referred": ("Referred patients", "count"),
    "infused": ("Infused patients", "count"),
    "infused_fraction": ("Infused (% of referred)", FRACTION),
    "died": ("Died before infusion", "count"),
    "ineligible": ("Became ineligible", "count"),
    "screen_failed": ("Failed screening", "count"),
    "collection_failed": ("Collection failed", "count"),
    "lost_in_transit": ("Lost in transit", "count"),
    "manufacturing_failed": ("Manufacturing failed", "count"),
    "out_of_specification": ("Out of specification", "count"),
    "product_expired": ("Product expired", "count"),
    "infusion_failed": ("Infusion failed", "count"),
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
    "rerouted": ("Routed to the fallback pathway", "count"),
    "bridged": ("Given bridging therapy", "count"),
    "bridging_toxicities": ("Bridging toxicities", "count"),
    "re_referred": ("Left the list for another pathway (re-referred)", "count"),
    "listed": ("Listed for a slot", "count"),
    "slot_fraction_of_listed": ("Got a slot (% of listed)", FRACTION),
    "died_while_listed": ("Died while listed (before a slot)", "count"),
    "time_to_slot_median": ("Listing to slot, median", "days"),
    "time_to_slot_mean": ("Listing to slot, mean", "days"),
    "treated_within_30_days": ("Infused within 30 days of referral (% of referred)", FRACTION),
    "treated_within_90_days": ("Infused within 90 days of referral (% of referred)", FRACTION),
    "infused_out_of_specification": ("Infused out of specification", "count"),
    "life_years_per_referred": ("Life-years in follow-up per referred patient", "years"),
    "life_years_discounted_per_referred": ("Life-years per referred patient, discounted", "years"),
    "qalys_per_referred": ("QALYs per referred patient", "QALYs"),
    "qalys_discounted_per_referred": ("QALYs per referred patient, discounted", "QALYs"),
    "cost_discounted_per_referred": ("Cost per referred patient, discounted", "currency"),
    "deaths_in_follow_up": ("Deaths within follow-up", "count"),
    "cost_total": ("Total cost", "currency"),
    "cost_per_infused": ("Cost per infused patient", "currency"),
    "cost_per_referred": ("Cost per referred patient", "currency"),
    "end_day": ("Run length", "days"),
}

def metric_label(metric: str, currency: str = "") -> tuple[str, str]:
    """Label and unit of a metric, including ``utilization_<site>`` and the rates per 100
    referred patients (``died_per_100_referred``: "Died before infusion, per 100 referred")."""
    if metric.startswith("utilization_"):
        return f"Utilisation of {metric[len('utilization_'):]}", FRACTION
    count = count_of_rate(metric)
    if count is not None:
        return f"{metric_label(count)[0]}, per 100 referred", PER_100
    label, unit = METRIC_LABELS.get(metric, (metric.replace("_", " ").capitalize(), ""))
    return label, (currency if unit == "currency" else unit)


def unsigned_zero(text: str) -> str:
    """A number written as rounding to zero, without its sign (``-0.00``, ``+0.0`` as ``0.00``,
    ``0.0``)."""
    if text[:1] in "+-" and not any(c in "123456789" for c in text):
        return text[1:]
    return text


def format_value(value: float, unit: str) -> str:
    """A value for tables: percentages, days with one decimal, money without decimals, counts
    and rates with three decimals below 0.1, two below 10, one below 1,000, none above."""
    if value is None or not np.isfinite(value):
        return "–"
    if is_fraction(unit):
        text = f"{100 * value:.1f}%"
    elif unit == "days":
        text = f"{value:,.1f}"
    elif unit in ("years", "QALYs"):
        text = f"{value:.2f}"
    elif unit in ("count", PER_100):
        size = abs(value)
        text = (f"{value:.3f}" if 0 < size < 0.1 else f"{value:.2f}" if size < 10
                else f"{value:,.1f}" if size < 1000 else f"{value:,.0f}")
    else:
        text = f"{value:,.0f}"
    return unsigned_zero(text)


# Metrics where more is better; outcome counts, times and costs are better lower; the metrics in
# _NEUTRAL have no better direction (how busy a site is, how many patients came).
_HIGHER_IS_BETTER = frozenset({
    "infused", "infused_fraction", "responders", "life_years_per_referred",
    "life_years_discounted_per_referred", "qalys_per_referred", "qalys_discounted_per_referred",
})
_NEUTRAL = frozenset({"referred", "end_day", "bridged", "rerouted", "infused_out_of_specification"})


def metric_direction(metric: str) -> int:
    """+1 if more of ``metric`` is better (infused share, responders, QALYs), -1 if less is
    better (deaths, waits, times, costs), 0 if neither (utilisation, referrals); a rate per 100
    referred counts as its count does."""
    metric = count_of_rate(metric) or metric
    if metric in _HIGHER_IS_BETTER:
        return 1
    if metric in _NEUTRAL or metric.startswith("utilization_"):
        return 0
    return -1


def support(metric: str) -> tuple[float, float]:
    """The range a metric's mean can take: ``[0, 1]`` for a fraction, ``[0, 100]`` for a rate
    per 100 referred, ``[0, inf)`` for counts, times, costs, life-years and QALYs; ``(-inf,
    inf)`` for a metric of unknown unit."""
    _label, unit = metric_label(metric, currency="currency")
    if is_fraction(unit):
        return 0.0, 1.0
    if unit == PER_100:
        return 0.0, 100.0
    if unit in ("count", "days", "years", "QALYs", "currency"):
        return 0.0, math.inf
    return -math.inf, math.inf


def difference_support(metric: str) -> tuple[float, float]:
    """The range a difference of two means of ``metric`` can take (``[-1, 1]`` for a fraction,
    ``[-100, 100]`` for a rate per 100 referred, unbounded otherwise)."""
    low, high = support(metric)
    if math.isfinite(high):
        return low - high, high - low
    return -math.inf, math.inf


#: What the tables say about intervals clipped to a metric's range.
CLIPPED_NOTE = ("A t-interval that crosses the range a metric can take (a count or a time below "
                "zero, a share outside 0–100%) is cut at the end of that range.")


def clip_interval(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """``(low, high)`` cut to ``bounds`` (NaN stays NaN); see :data:`CLIPPED_NOTE`."""
    lo, hi = bounds
    if np.isfinite(low):
        low = min(max(low, lo), hi)
    if np.isfinite(high):
        high = max(min(high, hi), lo)
    return low, high
