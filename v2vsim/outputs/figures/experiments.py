"""Figures of sweeps, sensitivity analyses and capacity searches: DataFrames in, Figures out.

Same house style as the other figures (:mod:`.style`: :func:`~.style.house_style`,
:func:`~.style.new_figure`, :func:`~.style.draw_band`, :func:`~.style.side_legend` and
:func:`~.style.scenario_colors`): a mean line with its 95% confidence band across
replications, legends to the right, a footer line.
Tables are the tidy ones written by ``v2vsim sweep`` (``point, <parameters>, metric, mean,
ci_low, ci_high, n``), ``sensitivity`` and ``capacity``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from ...metrics import PER_100, is_fraction, metric_direction, metric_label
from .display import ScenarioDisplay
from .style import OKABE_ITO, draw_band, house_style, new_figure, scenario_colors, side_legend

__all__ = [
    "capacity_figure",
    "metric_direction",
    "morris_figure",
    "sobol_figure",
    "sweep_curves_figure",
    "sweep_heatmap_figure",
    "sweep_scatter_figure",
    "tornado_figure",
]

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


def sweep_curves_figure(
    table: pd.DataFrame,
    x: str,
    metrics: Sequence[str],
    *,
    group: Sequence[str] = (),
    scenario_name: str = "",
    footer: str = "",
    currency: str = "",
    display: ScenarioDisplay | None = None,
) -> Figure:
    """Each metric against parameter ``x`` with its 95% CI band; one line per combination
    of the ``group`` parameters (capacity curves: devices vs attrition, vs queue wait).

    Each panel's y axis spans at least :data:`MIN_RELATIVE_HALF_RANGE` of the level either
    side of it, so a flat metric reads as flat; a whole-number ``x`` has whole-number ticks."""
    words = _Words(display)
    metrics = [m for m in metrics if (table["metric"] == m).any()]
    nrows, ncols = _panel_grid(len(metrics), 2)
    with house_style():
        fig, axes = new_figure(nrows, ncols, figsize=(13 if ncols >= 2 else 9, 1.2 + 3.6 * nrows),
                               title=f"Sweep of {words.param(x)} — {scenario_name}" if scenario_name
                               else f"Sweep of {words.param(x)}", footer=footer)
        keys: list[tuple[Any, ...]] = [()]
        if group:
            keys = list(table[list(group)].drop_duplicates().itertuples(index=False, name=None))
        colors = scenario_colors(len(keys))
        styles = ["-", "--", ":", "-."]
        numeric = _is_numeric(table[x])
        categories = list(pd.unique(table[x])) if not numeric else []
        for k, metric in enumerate(metrics):
            ax = axes[k // ncols, k % ncols]
            factor, label = words.scale(metric, currency)
            ax.set_title(words.name(metric, currency))
            ax.set_ylabel(label)
            ax.set_xlabel(words.param(x))
            rows = _metric_rows(table, metric)
            shown: list[np.ndarray] = []
            for j, key in enumerate(keys):
                sel = rows
                for name, value in zip(group, key):
                    sel = sel[sel[name] == value]
                if numeric:
                    sel = sel.sort_values(x, kind="stable")
                    xs = sel[x].to_numpy(dtype=float)
                else:
                    xs = np.array([categories.index(v) for v in sel[x]], dtype=float)
                    order = np.argsort(xs, kind="stable")
                    sel, xs = sel.iloc[order], xs[order]
                mean = sel["mean"].to_numpy(dtype=float) * factor
                low = sel["ci_low"].to_numpy(dtype=float) * factor
                high = sel["ci_high"].to_numpy(dtype=float) * factor
                shown += [mean, low, high]
                draw_band(ax, xs, low, mean, high, color=colors[j],
                          linestyle=styles[(j // 8) % len(styles)], marker="o", markersize=4)
            _fit_y(ax, shown, percent=factor == 100.0)
            _thousands(ax.yaxis, np.concatenate(shown) if shown else [])
            if not numeric:
                ax.set_xticks(range(len(categories)), [str(c) for c in categories])
            elif _is_integer_valued(table[x]):
                _integer_ticks(ax.xaxis, table[x].to_numpy(dtype=float))
        handles: list[Any] = []
        if group:
            for j, key in enumerate(keys):
                text = ", ".join(f"{words.param(n)} = {v}" for n, v in zip(group, key))
                handles.append(Line2D([], [], color=colors[j], linestyle=styles[(j // 8) % len(styles)],
                                      marker="o", markersize=4, label=text))
        else:
            handles.append(Line2D([], [], color=colors[0], marker="o", markersize=4, label="Mean"))
        handles.append(Patch(color="#999999", alpha=0.35, linewidth=0, label="95% confidence\ninterval"))
        _legend_in_free_cell(axes, len(metrics), handles)
    return fig


def sweep_heatmap_figure(
    table: pd.DataFrame, x: str, y: str, metric: str, *,
    scenario_name: str = "", footer: str = "", currency: str = "",
    display: ScenarioDisplay | None = None,
) -> Figure:
    """Mean of ``metric`` over a grid of two parameters, each cell labelled with its value.

    One colour convention for every metric (:func:`metric_direction`): light yellow is
    better, dark red worse, so an infused share and a queue wait read the same way."""
    words = _Words(display)
    rows = _metric_rows(table, metric)
    factor, label = words.scale(metric, currency)
    grid = rows.pivot_table(index=y, columns=x, values="mean", aggfunc="first", sort=True) * factor
    cmap, direction = _colormap(metric)
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(11, 6.5),
                               title=f"{words.name(metric, currency)} by {words.param(x)} and {words.param(y)}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        ax = axes[0, 0]
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(values, origin="lower", aspect="auto", cmap=cmap)
        ax.set_xticks(range(grid.shape[1]), [_fmt(v) for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [_fmt(v) for v in grid.index])
        ax.set_xlabel(words.param(x))
        ax.set_ylabel(words.param(y))
        ax.grid(False)
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                if np.isfinite(v):
                    text = f"{v:.1f}" if abs(v) < 1000 else f"{v:,.0f}"
                    dark = _luminance(image.cmap(image.norm(v))) < 0.35
                    color = "white" if dark else "black"
                else:
                    text, color = "–", _GREY
                ax.text(j, i, text, ha="center", va="center", fontsize=11, color=color)
        bar = fig.colorbar(image, ax=ax)
        bar.set_label(f"{label}\n{direction}")
        finite = values[np.isfinite(values)]
        _thousands(bar.ax.yaxis, finite)
    return fig


def sweep_scatter_figure(
    table: pd.DataFrame, parameters: Sequence[str], metric: str, *,
    scenario_name: str = "", footer: str = "", currency: str = "",
    display: ScenarioDisplay | None = None,
) -> Figure:
    """A Latin-hypercube sweep: the metric (mean and 95% CI per point) against each parameter.

    Points at the same whole-number value (slot counts) are spread sideways by a fixed
    pseudo-random jitter so that they do not hide one another; many points are drawn smaller,
    translucent and without their intervals."""
    words = _Words(display)
    rows = _metric_rows(table, metric)
    factor, label = words.scale(metric, currency)
    n = max(1, len(parameters))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    many = len(rows) > 300
    with house_style():
        fig, axes = new_figure(nrows, ncols, figsize=(4.4 * ncols + 1, 1.2 + 3.6 * nrows), sharey=True,
                               title=f"{words.name(metric, currency)} across the sampled points"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        mean = rows["mean"].to_numpy(dtype=float) * factor
        low = rows["ci_low"].to_numpy(dtype=float) * factor
        high = rows["ci_high"].to_numpy(dtype=float) * factor
        err = np.vstack([mean - low, high - mean])
        for k, name in enumerate(parameters):
            ax = axes[k // ncols, k % ncols]
            xs = pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)
            integer = _is_integer_valued(xs)
            distinct = np.unique(xs[np.isfinite(xs)])
            jittered = integer and 0 < distinct.size <= 12 and distinct.size < len(xs)
            shown = xs
            if jittered:
                # A fixed generator: the same table gives the same figure.
                step = float(np.min(np.diff(distinct))) if distinct.size > 1 else 1.0
                shown = xs + np.random.default_rng(0).uniform(-0.18, 0.18, len(xs)) * step
            if many:
                ax.plot(shown, mean, "o", color=OKABE_ITO["blue"], alpha=0.35, markersize=3,
                        markeredgewidth=0)
            else:
                ax.errorbar(shown, mean, yerr=np.where(np.isfinite(err), err, 0.0), fmt="o",
                            color=OKABE_ITO["blue"], ecolor="#9A9A9A", elinewidth=0.9, markersize=3.5,
                            alpha=0.75, markeredgewidth=0)
            ax.set_xlabel(words.param(name) + ("\n(points spread sideways at each value)" if jittered else ""))
            if integer:
                _integer_ticks(ax.xaxis, distinct if jittered else xs)
            if k % ncols == 0:
                ax.set_ylabel(label)
        for k in range(n, nrows * ncols):
            axes[k // ncols, k % ncols].remove()
        _thousands(axes[0, 0].yaxis, mean)
        handle = (Line2D([], [], color=OKABE_ITO["blue"], marker="o", linestyle="none", alpha=0.35,
                         markersize=4, label="Mean at a point") if many else
                  Line2D([], [], color=OKABE_ITO["blue"], marker="o", markersize=4, linestyle="none",
                         label="Mean at a point\nwith its 95% CI"))
        side_legend(axes[0, ncols - 1], [handle])
    return fig


def tornado_figure(
    indices: pd.DataFrame, metric: str, *, scenario_name: str = "", footer: str = "", currency: str = "",
    display: ScenarioDisplay | None = None,
) -> Figure:
    """One-at-a-time sensitivity: the metric with each parameter at its low and its high value,
    the others at base; bars sorted by swing, the base value as a vertical line, each bar's
    value at its end. A value equal to the base (a bar of no length) is drawn as a diamond on
    the base line and labelled "= base"."""
    words = _Words(display)
    factor, label = words.scale(metric, currency)
    data = indices.sort_values("swing", ascending=True, kind="stable")
    n = len(data)
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(13, 1.8 + 0.75 * max(n, 2)),
                               title=f"One-at-a-time sensitivity of {words.name(metric, currency)[:1].lower() + words.name(metric, currency)[1:]}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        ax = axes[0, 0]
        base = float(data["base_mean"].iloc[0]) * factor if n else math.nan
        y = np.arange(n)
        low_color, high_color = OKABE_ITO["sky_blue"], OKABE_ITO["vermillion"]
        ends = [base] + [float(v) * factor for c in ("low_mean", "high_mean", "low_ci_low", "low_ci_high",
                                                     "high_ci_low", "high_ci_high")
                         for v in data[c] if np.isfinite(v)]
        span = (max(ends) - min(ends)) if ends and all(np.isfinite(ends)) else 0.0
        tiny = 0.002 * span if span > 0 else 1e-12
        for i, row in enumerate(data.itertuples(index=False)):
            sides = [np.sign(v * factor - base) for v in (row.low_mean, row.high_mean)]
            same_side = sides[0] == sides[1] != 0
            for k, (value, lo, hi, color, name) in enumerate((
                    (row.low_mean, row.low_ci_low, row.low_ci_high, low_color, "low"),
                    (row.high_mean, row.high_ci_low, row.high_ci_high, high_color, "high"))):
                v = value * factor
                # Both bars on one side of the base would hide each other: half rows then.
                at = i + ((0.16 if k == 0 else -0.16) if same_side else 0.0)
                height = 0.3 if same_side else 0.6
                if not np.isfinite(v):
                    continue
                if np.isfinite(lo) and np.isfinite(hi):
                    ax.errorbar(v, at, xerr=[[max(v - lo * factor, 0.0)], [max(hi * factor - v, 0.0)]],
                                fmt="none", ecolor="#333333", elinewidth=1, capsize=3, zorder=4)
                right = v >= base
                if abs(v - base) <= tiny:  # label it on the side away from the other bar
                    other = (row.high_mean if k == 0 else row.low_mean) * factor
                    right = not (np.isfinite(other) and other > base + tiny)
                end = hi * factor if right and np.isfinite(hi) else lo * factor if np.isfinite(lo) else v
                if abs(v - base) <= tiny:
                    ax.plot([base], [at + (0.16 if k == 0 and not same_side else 0.0)], marker="D",
                            markersize=9, color=color, markeredgecolor="black", linestyle="none", zorder=5,
                            label=f"{name} = base")
                    text = f"{name} = base ({_fmt_value(v)})"
                else:
                    ax.barh(at, v - base, left=base, height=height, color=color, edgecolor="white", zorder=3)
                    text = _fmt_value(v)
                ax.annotate(text, xy=(end if np.isfinite(end) else v, at), xytext=(5 if right else -5, 0),
                            textcoords="offset points", ha="left" if right else "right", va="center",
                            fontsize=10.5, color="#333333", zorder=6)
        ax.axvline(base, color="black", linewidth=1.5, zorder=4)
        if ends and span > 0:
            ax.set_xlim(min(ends) - 0.12 * span, max(ends) + 0.12 * span)  # room for the values
        labels = [f"{words.param(r.parameter)}\n{_fmt(r.low)} – {_fmt(r.high)} (base {_fmt(r.base_value)})"
                  for r in data.itertuples(index=False)]
        ax.set_yticks(y, labels)
        ax.set_ylim(-0.6, n - 0.4)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(label)
        _thousands(ax.xaxis, ends)
        ax.set_title(f"Base: {_fmt_value(base)}", loc="right", fontsize=11.5, color=_GREY)
        side_legend(ax, [Patch(color=low_color, label="Parameter at low"),
                         Patch(color=high_color, label="Parameter at high"),
                         Line2D([], [], color="#777777", marker="D", markeredgecolor="black", linestyle="none",
                                markersize=8, label="Equal to the base"),
                         Line2D([], [], color="black", linewidth=1.5, label="Base scenario"),
                         Line2D([], [], color="#333333", marker="|", linestyle="none", markersize=10,
                                label="95% confidence\ninterval")])
    return fig


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _fmt_value(value: float) -> str:
    """A metric's value for labels: three significant figures, thousands separated."""
    if not np.isfinite(value):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def morris_figure(
    indices: pd.DataFrame, metric: str, *, scenario_name: str = "", footer: str = "", currency: str = "",
    display: ScenarioDisplay | None = None,
) -> Figure:
    """Morris screening: mu* (mean absolute elementary effect, with its 95% bootstrap CI) per
    parameter, and mu* against sigma (spread: interactions and non-linearity).

    Both panels are scaled to their data (mu* is never below 0, so neither is its CI); the
    points of the second panel are labelled beside them, so no legend column is needed."""
    words = _Words(display)
    factor, label = words.scale(metric, currency)
    data = indices.sort_values("mu_star", ascending=True, kind="stable")
    n = len(data)
    colors = scenario_colors(n)
    mu = data["mu_star"].to_numpy(dtype=float) * factor
    conf = data["mu_star_conf"].to_numpy(dtype=float) * factor
    sigma = data["sigma"].to_numpy(dtype=float) * factor
    lower = np.minimum(np.where(np.isfinite(conf), conf, 0.0), np.where(np.isfinite(mu), mu, 0.0))
    upper = np.where(np.isfinite(conf), conf, 0.0)
    with house_style():
        fig, axes = new_figure(1, 2, figsize=(13, 1.8 + max(3.4, 0.55 * n)),
                               title=f"Morris screening of {words.name(metric, currency)[:1].lower() + words.name(metric, currency)[1:]}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        bars, scatter = axes[0, 0], axes[0, 1]
        y = np.arange(n)
        bars.barh(y, mu, xerr=np.vstack([lower, upper]), height=0.6,
                  color=colors, ecolor="#333333", capsize=3)
        bars.set_yticks(y, [words.param(p) for p in data["parameter"]])
        bars.grid(axis="y", visible=False)
        bars.set_xlabel(f"μ* ({label})")
        bars.set_title("Importance: μ* with 95% CI")
        x_top = float(np.nanmax(np.concatenate([mu + upper, [1e-12]])))
        y_top = float(np.nanmax(np.concatenate([sigma, [1e-12]])))
        bars.set_xlim(0, x_top * 1.05)
        for i, row in enumerate(data.itertuples(index=False)):
            scatter.errorbar(mu[i], sigma[i], xerr=[[lower[i]], [upper[i]]],
                             fmt="o", color=colors[i], ecolor=colors[i], markersize=8, capsize=3)
            scatter.annotate(words.param(row.parameter), xy=(mu[i], sigma[i]), xytext=(6, 6),
                             textcoords="offset points", fontsize=10.5, color="#333333")
        line_top = max(x_top, y_top) * 1.1
        scatter.plot([0, line_top], [0, line_top], color="#9A9A9A", linestyle="--", linewidth=1,
                     label="σ = μ*")
        scatter.set_xlim(0, x_top * 1.1)
        scatter.set_ylim(0, y_top * 1.15)
        for axis, values in ((bars.xaxis, mu + upper), (scatter.xaxis, mu + upper), (scatter.yaxis, sigma)):
            _thousands(axis, values)
        scatter.set_xlabel("μ* (mean |elementary effect|)")
        scatter.set_ylabel("σ (spread of effects)")
        scatter.set_title("Above σ = μ* (dashed): interactions or non-linearity")
    return fig


def sobol_figure(
    indices: pd.DataFrame, metric: str, *, scenario_name: str = "", footer: str = "", currency: str = "",
    warnings: Sequence[str] = (), display: ScenarioDisplay | None = None,
) -> Figure:
    """Sobol indices per parameter: first-order S1 and total ST, with 95% bootstrap CIs.

    The axis fits the indices and their whiskers with a small margin (0 and 1, all of the
    variance, are drawn when in range); each bar is labelled with its value and CI.
    ``warnings`` (e.g. :meth:`v2vsim.experiments.sensitivity.SobolDiagnosis.lines`) are
    shown in a box above the bars."""
    words = _Words(display)
    _, label = words.scale(metric, currency)
    data = indices.sort_values("ST", ascending=True, kind="stable")
    n = len(data)
    warning_lines = [line for text in warnings for line in textwrap.wrap(text, 88)]
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(13, 1.8 + max(3.0, 0.8 * n) + 0.3 * len(warning_lines)),
                               title=f"Sobol indices of {words.name(metric, currency)[:1].lower() + words.name(metric, currency)[1:]}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        ax = axes[0, 0]
        y = np.arange(n)
        ends: list[float] = [0.0]
        texts = {p: [] for p in data["parameter"]}
        bars: list[tuple[float, np.ndarray, np.ndarray, np.ndarray, str]] = []
        for offset, column, color in ((0.18, "S1", OKABE_ITO["blue"]), (-0.18, "ST", OKABE_ITO["orange"])):
            values = data[column].to_numpy(dtype=float)
            conf = data[f"{column}_conf"].to_numpy(dtype=float)
            conf = np.where(np.isfinite(conf), conf, 0.0)
            bars.append((offset, values, conf, y + offset, color))
            ends += list(values - conf) + list(values + conf)
            for p, v, c in zip(data["parameter"], values, conf):
                texts[p].append(f"{column} {v:.2f} ± {c:.2f}" if np.isfinite(v) else f"{column} –")
        finite = [e for e in ends if np.isfinite(e)]
        # Indices lie in 0–1; whiskers far beyond (a small sample) are cut at the edge of the
        # axis, marked with an arrow, and their values given in the row labels.
        lo, hi = max(min(finite), -_SOBOL_SLACK), min(max(finite + [0.05]), 1.0 + _SOBOL_SLACK)
        pad = 0.03 * (hi - lo)
        left, right = lo - pad if lo < 0 else -pad, hi + pad
        for offset, values, conf, at, color in bars:
            ax.barh(at, values, xerr=conf, height=0.34, color=color, ecolor="#333333", capsize=3)
            for v, c, yy in zip(values, conf, at):
                if np.isfinite(v) and v + c > right:
                    ax.plot([right], [yy], marker=">", color="#333333", markersize=7, clip_on=False, zorder=5)
                if np.isfinite(v) and v - c < left:
                    ax.plot([left], [yy], marker="<", color="#333333", markersize=7, clip_on=False, zorder=5)
        ax.set_xlim(left, right)
        ax.set_ylim(-0.6, n - 0.4)
        ax.set_yticks(y, [f"{words.param(p)}\n{' · '.join(texts[p])}" for p in data["parameter"]])
        ax.grid(axis="y", visible=False)
        ax.axvline(0, color="black", linewidth=0.9)
        handles: list[Any] = [Patch(color=OKABE_ITO["blue"], label="First order S1"),
                              Patch(color=OKABE_ITO["orange"], label="Total ST"),
                              Line2D([], [], color="#333333", marker="|", linestyle="none", markersize=10,
                                     label="95% confidence\ninterval")]
        if right >= 1.0:
            ax.axvline(1.0, color=_GREY, linewidth=1, linestyle=":")
            handles.append(Line2D([], [], color=_GREY, linewidth=1, linestyle=":", label="1: all of the variance"))
        ax.set_xlabel("Share of the variance of the metric")
        if warning_lines:
            ax.set_title("\n".join(warning_lines), loc="left", fontsize=11.5, color=_WARNING,
                         fontweight="bold")
        side_legend(ax, handles)
    return fig


def capacity_figure(
    table: pd.DataFrame,
    targets: Sequence[Any],
    site: str,
    answer: int | None,
    *,
    scenario_name: str = "",
    footer: str = "",
    currency: str = "",
    display: ScenarioDisplay | None = None,
) -> Figure:
    """The capacity curve searched: each target's metric against the slot count (mean and 95%
    CI), the target as a dashed line, the answer marked; plus the site's utilisation.

    One panel per metric and no empty ones; the answer is in the legend only when there is
    one; ticks are at the slot counts run."""
    words = _Words(display)
    metrics_shown = list(dict.fromkeys([t.metric for t in targets] + [f"utilization_{site}"]))
    metrics_shown = [m for m in metrics_shown if (table["metric"] == m).any()]
    nrows, ncols = _panel_grid(len(metrics_shown), 2)
    found = f"answer: {answer} slot{'s' if answer != 1 else ''}" if answer is not None else "no answer in the range searched"
    with house_style():
        fig, axes = new_figure(nrows, ncols, figsize=(4.6 * ncols + 3.5 if ncols > 1 else 9, 1.4 + 3.8 * nrows),
                               title=f"Capacity of {words.display.site(site)} — {found}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        color = OKABE_ITO["blue"]
        slots = table["slots"].to_numpy(dtype=float) if "slots" in table else np.array([])
        for k, metric in enumerate(metrics_shown):
            ax = axes[k // ncols, k % ncols]
            factor, label = words.scale(metric, currency)
            rows = _metric_rows(table, metric).sort_values("slots")
            xs = rows["slots"].to_numpy(dtype=float)
            low, mean, high = (rows[c].to_numpy(dtype=float) * factor for c in ("ci_low", "mean", "ci_high"))
            draw_band(ax, xs, low, mean, high, color=color, marker="o", markersize=5)
            title = words.name(metric, currency)
            shown = [low, mean, high]
            for t in targets:
                if t.metric == metric:
                    ax.axhline(t.value * factor, color=OKABE_ITO["vermillion"], linestyle="--", linewidth=1.5)
                    op = {"<=": "≤", ">=": "≥"}.get(t.op, t.op)
                    unit = metric_label(metric, currency)[1]
                    suffix = ("%" if is_fraction(unit) else {"count": "", "": ""}.get(unit, f" {unit}"))
                    title += f"\ntarget {op} {_fmt_value(t.value * factor)}{suffix}"
                    shown.append(np.array([t.value * factor]))
            if answer is not None:
                ax.axvline(answer, color=OKABE_ITO["bluish_green"], linewidth=2, alpha=0.8)
            ax.set_title(title)
            ax.set_ylabel(label)
            ax.set_xlabel(words.param(f"sites.{site}.slots"))
            _integer_ticks(ax.xaxis, slots)
            _fit_y(ax, shown, percent=factor == 100.0)
            _thousands(ax.yaxis, np.concatenate(shown))
        handles: list[Any] = [
            Line2D([], [], color=color, marker="o", markersize=5, label="Mean"),
            Patch(color=color, alpha=0.2, linewidth=0, label="95% confidence\ninterval"),
            Line2D([], [], color=OKABE_ITO["vermillion"], linestyle="--", label="Target"),
        ]
        if answer is not None:
            handles.append(Line2D([], [], color=OKABE_ITO["bluish_green"], linewidth=2,
                                  label=f"Answer: {answer} slot{'s' if answer != 1 else ''}"))
        _legend_in_free_cell(axes, len(metrics_shown), handles)
    return fig
