"""How figures name things and write numbers: display labels of sites, steps and cohorts
(:class:`ScenarioDisplay`, from a scenario's ``label`` fields), simulation days as calendar dates
from the scenario's start date (:func:`day_axis`) and thousands separators (:func:`thousands`).

Labels are display only: nothing here changes a result, and a figure given no scenario shows
config keys and simulation days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import FuncFormatter, Locator, StrMethodFormatter

__all__ = ["ScenarioDisplay", "day_axis", "scenario_display", "thousands"]


class ScenarioDisplay:
    """How figures name a scenario's sites, steps and cohorts, and the date of day 0.

    Built from a scenario by :func:`scenario_display`; the default (nothing known) shows config
    keys as they are and time as simulation days. Labels are display only.
    """

    def __init__(self, sites: Mapping[str, str] | None = None,
                 steps: Mapping[str, str] | None = None,
                 cohorts: Mapping[str, str] | None = None,
                 start_date: dt.date | None = None, warmup_days: float = 0.0) -> None:
        self.sites: dict[str, str] = dict(sites or {})
        self.steps: dict[str, str] = dict(steps or {})
        self.cohorts: dict[str, str] = dict(cohorts or {})
        self.start_date = start_date
        #: The scenario's warm-up (days; 0: none), marked on time axes.
        self.warmup_days = float(warmup_days)

    def site(self, key: str) -> str:
        return self.sites.get(key) or key

    def step(self, name: str) -> str:
        return self.steps.get(name) or name

    def cohort(self, name: str) -> str:
        return self.cohorts.get(name) or name

    def site_short(self, key: str) -> str:
        """A site's label without a closing parenthesis ("HKIB (Hong Kong Institute of
        Biotechnology)" is "HKIB"), for axis labels."""
        return _short_label(self.site(key))

    def parameter(self, path: str) -> str:
        """A ``--set`` path in words: ``sites.hkib.slots`` is "Slots at <site label>",
        ``arrivals.rate_per_year`` "Referrals a year", ``cohorts.<name>.share`` "<cohort>:
        share", ``pathways.<p>.steps.<step>.failure_probability`` "<step>: failure
        probability"; distribution fields follow (``duration.median`` "duration, median")."""
        keys = path.split(".")

        def words(parts: Sequence[str]) -> str:
            return ", ".join(p.replace("_", " ") for p in parts)

        if keys[:1] == ["sites"] and len(keys) >= 3:
            what = words(keys[2:])
            if keys[2:] == ["slots"]:
                return f"Slots at {self.site_short(keys[1])}"
            return f"{what[:1].upper() + what[1:]} at {self.site_short(keys[1])}"
        if keys == ["arrivals", "rate_per_year"]:
            return "Referrals a year"
        if keys[:1] == ["cohorts"] and len(keys) >= 3:
            return f"{_short_label(self.cohort(keys[1]))}: {words(keys[2:])}"
        if keys[:1] == ["pathways"] and len(keys) >= 5 and keys[2] == "steps":
            step = _short_label(self.step(keys[3]))
            return f"{step[:1].upper() + step[1:]}: {words(keys[4:])}"
        text = words(keys)
        return text[:1].upper() + text[1:]

    def metric(self, label: str, metric: str) -> str:
        """A metric's label with site keys in words (``utilization_hkib``: "Utilisation of
        <site label>")."""
        if metric.startswith("utilization_"):
            key = metric[len("utilization_"):]
            return label.replace(f"of {key}", f"of {self.site_short(key)}")
        return label

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScenarioDisplay) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return (f"ScenarioDisplay(sites={self.sites}, steps={self.steps}, "
                f"cohorts={self.cohorts}, start_date={self.start_date!r})")


def _short_label(label: str) -> str:
    """A label without a trailing parenthesis ("HKIB (Hong Kong ...)" -> "HKIB")."""
    if label.endswith(")") and " (" in label:
        head = label[: label.index(" (")].strip()
        return head or label
    return label


def scenario_display(scenario: Any | None) -> ScenarioDisplay:
    """The display names (``label``, else the key or name) and start date of a scenario, or
    the default display for ``None``. Reads only the scenario's fields (no model import)."""
    if scenario is None:
        return ScenarioDisplay()
    steps: dict[str, str] = {}
    for pathway in getattr(scenario, "pathways", {}).values():
        for step in pathway.steps:
            steps.setdefault(step.name, getattr(step, "label", None) or step.name)
    return ScenarioDisplay(
        sites={k: getattr(v, "label", None) or k for k, v in getattr(scenario, "sites", {}).items()},
        steps=steps,
        cohorts={c.name: getattr(c, "label", None) or c.name
                 for c in getattr(scenario, "cohorts", [])},
        start_date=getattr(scenario, "start_date", None),
        warmup_days=float(getattr(scenario, "warmup_days", 0.0) or 0.0),
    )


class _DateTicks(Locator):
    """Ticks at month or year starts (matplotlib's date locator) on an axis of simulation days
    counted from ``origin`` (a matplotlib date number)."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.dates = mdates.AutoDateLocator(minticks=4, maxticks=8)

    def __call__(self) -> Sequence[float]:
        low, high = self.axis.get_view_interval()  # type: ignore[union-attr]
        return self.tick_values(low, high)

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        ticks = self.dates.tick_values(mdates.num2date(vmin + self.origin),
                                       mdates.num2date(vmax + self.origin))
        return [t - self.origin for t in ticks]


def day_axis(ax: Axes, start_date: dt.date | None, *, what: str = "Simulation day") -> None:
    """Label an x axis of simulation days: calendar dates when ``start_date`` (day 0) is known
    (the data stay in days; ticks fall on month or year starts), else ``what``."""
    if start_date is None:
        ax.set_xlabel(what)
        return
    origin = float(mdates.date2num(dt.datetime.combine(start_date, dt.time())))

    def label(x: float, pos: int | None = None) -> str:
        day = mdates.num2date(x + origin)
        low, high = ax.get_xlim()
        if high - low > 3 * 365:
            return f"{day:%Y}" if day.month == 1 else f"{day:%b %Y}"
        # Months over a shorter run: the year only under the first tick and each January, so
        # that "Apr 2025" labels do not run into each other on a narrow panel.
        return f"{day:%b}\n{day:%Y}" if pos == 0 or day.month == 1 else f"{day:%b}"

    ax.xaxis.set_major_locator(_DateTicks(origin))
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    ax.set_xlabel(f"Date (day 0 = {start_date:%d %b %Y})")


def thousands(axis: Axis, decimals: int = 0) -> None:
    """Tick labels with thousands separators (``12,500``) on a count or cost axis."""
    axis.set_major_formatter(StrMethodFormatter(f"{{x:,.{decimals}f}}"))
