"""Figures of sweeps, sensitivity analyses and capacity searches: DataFrames in, Figures out
(the sensitivity figures are drawn in :mod:`.sensitivity` and re-exported here).

Same house style as the other figures (:mod:`.style`: :func:`~.style.house_style`,
:func:`~.style.new_figure`, :func:`~.style.draw_band`, :func:`~.style.side_legend` and
:func:`~.style.scenario_colors`): a mean line with its 95% confidence band across
replications, legends to the right, a footer line.
Tables are the tidy ones written by ``v2vsim sweep`` (``point, <parameters>, metric, mean,
ci_low, ci_high, n``), ``sensitivity`` and ``capacity``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...metrics import is_fraction, metric_direction, metric_label
from .display import ScenarioDisplay
from .experiment_common import (
    MIN_RELATIVE_HALF_RANGE,
    _GREY,
    _Words,
    _colormap,
    _fit_y,
    _fmt,
    _fmt_value,
    _integer_ticks,
    _is_integer_valued,
    _is_numeric,
    _legend_in_free_cell,
    _luminance,
    _metric_rows,
    _panel_grid,
    _thousands,
)
from .sensitivity import morris_figure, sobol_figure, tornado_figure
from .style import OKABE_ITO, draw_band, house_style, new_figure, scenario_colors, side_legend

__all__ = [
    "MIN_RELATIVE_HALF_RANGE",
    "capacity_figure",
    "metric_direction",
    "morris_figure",
    "sobol_figure",
    "sweep_curves_figure",
    "sweep_heatmap_figure",
    "sweep_scatter_figure",
    "tornado_figure",
]

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
