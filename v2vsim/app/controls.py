"""The questions the web app lets a user change, each one a documented ``--set PATH=VALUE``.

:func:`controls_for` lists, for a scenario, the values worth changing in a what-if (devices at
each site, referrals per year, the cohort mix, each step's duration as its median and 90th
percentile, failure probabilities, shelf lives and costs) with labels, units and bounds;
:func:`assignments` turns what the user set into the ``--set`` texts the command line takes, so
that what was done in the browser can be repeated in a terminal. Nothing here knows Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..scenario import Scenario

__all__ = ["Control", "assignments", "controls_for", "duration_value", "format_number"]

#: Most slots a control offers (the command line takes more).
MAX_SLOTS = 200


@dataclass(frozen=True)
class Control:
    """One value of a scenario a user may change.

    ``kind`` is ``"int"``, ``"float"``, ``"probability"`` (0 to 1) or ``"duration"``, whose
    ``value`` is the pair ``(median, p90)`` in days (set as a lognormal with those quantiles,
    or a fixed duration when they are equal).
    """

    path: str
    label: str
    unit: str
    value: Any
    kind: str
    group: str
    minimum: float = 0.0
    maximum: float | None = None
    help: str = ""

    @property
    def key(self) -> str:
        """A key for the control's widget, unique within a scenario."""
        return self.path


def format_number(value: float) -> str:
    """A number as YAML would read it back exactly, without a needless ``.0`` (``2``, ``0.05``)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def duration_value(median: float, p90: float) -> str:
    """The ``--set`` value of a duration given by its median and 90th percentile (days)."""
    if math.isclose(median, p90, rel_tol=0, abs_tol=1e-12):
        return format_number(median)
    return f"{{dist: lognormal, median: {format_number(median)}, p90: {format_number(p90)}}}"


def _quantiles(dist: Any) -> tuple[float, float]:
    median, p90 = (float(x) for x in dist.ppf(np.array([0.5, 0.9])))
    return round(median, 3), round(p90, 3)


def _title(key: str) -> str:
    return key.replace("_", " ")


def controls_for(scenario: Scenario) -> list[Control]:
    """The changeable values of ``scenario``, grouped ("Capacity", "Referrals", "Cohort mix",
    then one group per pathway step), with the scenario's own values as defaults."""
    controls: list[Control] = []
    currency = scenario.currency
    for key, site in scenario.sites.items():
        if isinstance(site.slots, int):
            controls.append(Control(
                f"sites.{key}.slots", f"Slots (devices) at {_title(key)}", "slots", site.slots,
                "int", "Capacity", 0, MAX_SLOTS,
                "Products that can be manufactured at the same time at this site."))
    rate = scenario.arrivals.rate_per_year
    if rate is not None:
        controls.append(Control("arrivals.rate_per_year", "Referrals per year", "per year",
                                float(rate), "float", "Referrals", 0.01, 100_000.0,
                                "Mean number of patients referred each year (Poisson arrivals)."))
    if len(scenario.cohorts) > 1:
        for cohort in scenario.cohorts:
            controls.append(Control(
                f"cohorts.{cohort.name}.share", f"Share of {_title(cohort.name)}", "weight",
                float(cohort.share), "float", "Cohort mix", 0.0, 1_000.0,
                "Relative weight of the cohort among referrals (the shares are normalised)."))
    for key, site in scenario.sites.items():
        if site.cost_per_use or site.fixed_cost_per_year:
            controls.append(Control(f"sites.{key}.cost_per_use", f"Cost per batch at {_title(key)}",
                                    currency, float(site.cost_per_use), "float", "Costs", 0.0, None))
            controls.append(Control(f"sites.{key}.fixed_cost_per_year",
                                    f"Fixed cost per year at {_title(key)}", f"{currency} per year",
                                    float(site.fixed_cost_per_year), "float", "Costs", 0.0, None))
    for pathway_key, pathway in scenario.pathways.items():
        for step in pathway.steps:
            group = f"Step: {_title(step.name)} ({_title(pathway_key)} pathway)"
            prefix = f"pathways.{pathway_key}.steps.{step.name}"
            controls.append(Control(
                f"{prefix}.duration", "Duration: median and 90th percentile", "days",
                _quantiles(step.duration), "duration", group, 0.0, None,
                "A change replaces the step's distribution by a lognormal with this median and "
                "90th percentile (a fixed duration when they are equal)."))
            controls.append(Control(f"{prefix}.failure_probability", "Failure probability",
                                    "probability", float(step.failure_probability), "probability",
                                    group, 0.0, 1.0))
            if step.shelf_life is not None:
                controls.append(Control(f"{prefix}.shelf_life", "Shelf life", "days",
                                        float(step.shelf_life), "float", group, 0.001, None,
                                        "The product expires if the step has not started within "
                                        "this many days of the previous step's end."))
            controls.append(Control(f"{prefix}.cost", "Cost", currency, float(step.cost), "float",
                                    group, 0.0, None))
    return controls


def _same(control: Control, value: Any) -> bool:
    if control.kind == "duration":
        return all(math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
                   for a, b in zip(control.value, value))
    return math.isclose(float(control.value), float(value), rel_tol=1e-9, abs_tol=1e-12)


def assignments(controls: Sequence[Control], values: Mapping[str, Any]) -> list[str]:
    """``PATH=VALUE`` for every control whose value in ``values`` (by path) differs from the
    scenario's, in the controls' order: the ``--set`` texts of what the user changed."""
    out = []
    for control in controls:
        if control.path not in values or _same(control, values[control.path]):
            continue
        value = values[control.path]
        if control.kind == "duration":
            median, p90 = (float(v) for v in value)
            text = duration_value(median, p90)
        elif control.kind == "int":
            text = str(int(value))
        else:
            text = format_number(value)
        out.append(f"{control.path}={text}")
    return out
