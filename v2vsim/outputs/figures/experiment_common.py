"""What the figures of sweeps, sensitivity analyses and capacity searches share: axis fitting,
whole-number ticks, the heatmap colours by which way a metric is better, panel grids, and
parameters and metrics in words (:class:`Words`).

Split from :mod:`.experiments` (sweeps and capacity) and :mod:`.sensitivity` (tornado, Morris,
Sobol), which both draw with these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from ...metrics import PER_100, is_fraction, metric_direction, metric_label
from .display import ScenarioDisplay
from .style import OKABE_ITO, side_legend


_GREY = "#555555"
_WARNING = OKABE_ITO["vermillion"]

#: A panel of a metric spans at least this share of the metric's level either side of it, so
#: that noise around a flat line (a median of 13.99 ± 0.05 days) is not drawn as a trend.
MIN_RELATIVE_HALF_RANGE = 0.05

# How far beyond 0 and 1 a Sobol axis may go for whiskers before they are cut at its edge.
_SOBOL_SLACK = 0.2

def _colormap(metric: str) -> tuple[str, str]:
    """The heatmap colour map of ``metric`` and the direction for its colour bar's label:
    light yellow is better and dark red worse, whichever way the metric counts."""
    direction = metric_direction(metric)
    if direction > 0:
        return "YlOrRd_r", "darker red = worse (lower)"
    if direction < 0:
        return "YlOrRd", "darker red = worse (higher)"
    return "Blues", "darker = higher"


def _is_integer_valued(values: Any) -> bool:
    """Whether every finite value is a whole number (slot counts, referrals per year)."""
    array = pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce").to_numpy(dtype=float)
    finite = array[np.isfinite(array)]
    return bool(finite.size) and bool(np.all(finite == np.round(finite)))


def _integer_ticks(axis: Axis, values: Any) -> None:
    """Whole-number ticks: at each value when there are few, else at whole numbers only, so
    that an axis of slot counts never shows 1.25 or 1.5 slots."""
    array = np.asarray(values, dtype=float)
    distinct = np.unique(array[np.isfinite(array)])
    if 0 < distinct.size <= 12:
        axis.set_major_locator(FixedLocator(distinct))
    else:
        axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def _thousands(axis: Axis, values: Any) -> None:
    """Thousands separators on an axis of large numbers (costs): 950,000 rather than 950000."""
    array = np.asarray(values, dtype=float)
    finite = array[np.isfinite(array)]
    if finite.size and float(np.max(np.abs(finite))) >= 10_000:
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}".replace("-", "\N{MINUS SIGN}")))


def _fit_y(ax: Axes, values: Sequence[np.ndarray], *, percent: bool = False,
           relative: float = MIN_RELATIVE_HALF_RANGE) -> tuple[float, float]:
    """Set y limits that hold every value (means and CI bounds) and span at least
    ``relative`` of the level either side of it; percentages stay within 0–100 and
    non-negative metrics above 0. Returns the limits."""
    data = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values]) if values else np.array([])
    data = data[np.isfinite(data)]
    if not data.size:
        return ax.get_ylim()
    lo, hi = float(data.min()), float(data.max())
    center = (lo + hi) / 2
    half = max((hi - lo) / 2, relative * abs(center)) or 0.5
    bottom, top = center - half, center + half
    if lo >= 0 and bottom < 0:  # a non-negative metric: the range starts at 0
        bottom, top = 0.0, top - bottom
    if percent and hi <= 100 and top > 100:  # a share: the range ends at 100%
        bottom, top = bottom - (top - 100), 100.0
        if lo >= 0:
            bottom = max(bottom, 0.0)
    margin = 0.06 * (top - bottom)
    ax.set_ylim(bottom - margin, top + margin)
    return bottom - margin, top + margin


def _panel_grid(n: int, max_cols: int = 2) -> tuple[int, int]:
    """Rows and columns for ``n`` panels: one row up to ``max_cols`` panels (or three), else
    ``max_cols`` columns."""
    if n <= 3:
        return 1, max(1, n)
    return math.ceil(n / max_cols), max_cols


def _legend_in_free_cell(axes: np.ndarray, n: int, handles: Sequence[Any]) -> None:
    """Remove the cells of a panel grid that hold no panel; the legend goes in the first free
    cell if there is one, else to the right of the top-right panel."""
    nrows, ncols = axes.shape
    free = [axes[k // ncols, k % ncols] for k in range(n, nrows * ncols)]
    if free:
        holder = free[0]
        holder.set_axis_off()
        holder.set_label("legend")
        holder.legend(handles=list(handles), loc="upper left", bbox_to_anchor=(0.0, 1.0), borderaxespad=0.0)
        for ax in free[1:]:
            ax.remove()
    else:
        side_legend(axes[0, ncols - 1], handles)


def _luminance(rgb: Sequence[float]) -> float:
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _scale(metric: str, currency: str = "") -> tuple[float, str]:
    """Factor to display a metric and its axis label (fractions as percentages)."""
    label, unit = metric_label(metric, currency)
    if is_fraction(unit):
        return 100.0, label if "%" in label else f"{label} (%)"
    if unit in ("days",):
        return 1.0, f"{label} (days)"
    if unit == "count":
        return 1.0, f"{label} (per replication)"
    if unit == PER_100:  # the label says it
        return 1.0, label
    return 1.0, f"{label} ({unit})" if unit else label


def _name(metric: str, currency: str = "") -> str:
    """The metric's name for titles ("Infused (% of referred)")."""
    return metric_label(metric, currency)[0]


def _short(path: str) -> str:
    """A parameter path for axis labels: the last three keys are enough to recognise it."""
    keys = path.split(".")
    return path if len(keys) <= 3 else "…" + ".".join(keys[-3:])


class _Words:
    """Parameters and metrics in words, with the scenario's display labels when known."""

    def __init__(self, display: ScenarioDisplay | None) -> None:
        self.display = display or ScenarioDisplay()

    def param(self, path: str) -> str:
        return self.display.parameter(path) if self.display.sites or self.display.cohorts \
            else _short(path)

    def name(self, metric: str, currency: str = "") -> str:
        return self.display.metric(_name(metric, currency), metric)

    def scale(self, metric: str, currency: str = "") -> tuple[float, str]:
        factor, label = _scale(metric, currency)
        return factor, self.display.metric(label, metric)


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values)


def _metric_rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    return table[table["metric"] == metric]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _fmt_value(value: float) -> str:
    """A metric's value for labels: three significant figures, thousands separated."""
    if not np.isfinite(value):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
