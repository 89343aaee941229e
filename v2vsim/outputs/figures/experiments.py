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
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...metrics import metric_label
from .style import OKABE_ITO, draw_band, house_style, new_figure, scenario_colors, side_legend

__all__ = [
    "capacity_figure",
    "morris_figure",
    "sobol_figure",
    "sweep_curves_figure",
    "sweep_heatmap_figure",
    "sweep_scatter_figure",
    "tornado_figure",
]

_GREY = "#555555"


def _scale(metric: str, currency: str = "") -> tuple[float, str]:
    """Factor to display a metric and its axis label (fractions as percentages)."""
    label, unit = metric_label(metric, currency)
    if unit == "%":
        return 100.0, label if "%" in label else f"{label} (%)"
    if unit in ("days",):
        return 1.0, f"{label} (days)"
    if unit == "count":
        return 1.0, f"{label} (per replication)"
    return 1.0, f"{label} ({unit})" if unit else label


def _name(metric: str, currency: str = "") -> str:
    """The metric's name for titles ("Infused (% of referred)")."""
    return metric_label(metric, currency)[0]


def _short(path: str) -> str:
    """A parameter path for axis labels: the last three keys are enough to recognise it."""
    keys = path.split(".")
    return path if len(keys) <= 3 else "…" + ".".join(keys[-3:])


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
) -> Figure:
    """Each metric against parameter ``x`` with its 95% CI band; one line per combination
    of the ``group`` parameters (capacity curves: devices vs attrition, vs queue wait)."""
    metrics = [m for m in metrics if (table["metric"] == m).any()]
    ncols = 2 if len(metrics) > 1 else 1
    nrows = max(1, math.ceil(len(metrics) / ncols))
    with house_style():
        fig, axes = new_figure(nrows, ncols, figsize=(13 if ncols == 2 else 9, 1.2 + 3.6 * nrows),
                               title=f"Sweep of {_short(x)} — {scenario_name}" if scenario_name
                               else f"Sweep of {_short(x)}", footer=footer)
        keys: list[tuple[Any, ...]] = [()]
        if group:
            keys = list(table[list(group)].drop_duplicates().itertuples(index=False, name=None))
        colors = scenario_colors(len(keys))
        styles = ["-", "--", ":", "-."]
        numeric = _is_numeric(table[x])
        categories = list(pd.unique(table[x])) if not numeric else []
        for k, metric in enumerate(metrics):
            ax = axes[k // ncols, k % ncols]
            factor, label = _scale(metric, currency)
            ax.set_title(_name(metric, currency))
            ax.set_ylabel(label)
            ax.set_xlabel(_short(x))
            rows = _metric_rows(table, metric)
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
                draw_band(ax, xs, low, mean, high, color=colors[j],
                          linestyle=styles[(j // 8) % len(styles)], marker="o", markersize=4)
            if not numeric:
                ax.set_xticks(range(len(categories)), [str(c) for c in categories])
            elif pd.api.types.is_integer_dtype(table[x]):
                ax.xaxis.get_major_locator().set_params(integer=True)
        for k in range(len(metrics), nrows * ncols):
            axes[k // ncols, k % ncols].set_visible(False)
        handles: list[Any] = []
        if group:
            for j, key in enumerate(keys):
                text = ", ".join(f"{_short(n)} = {v}" for n, v in zip(group, key))
                handles.append(Line2D([], [], color=colors[j], linestyle=styles[(j // 8) % len(styles)],
                                      marker="o", markersize=4, label=text))
        else:
            handles.append(Line2D([], [], color=colors[0], marker="o", markersize=4, label="Mean"))
        handles.append(Patch(color="#999999", alpha=0.35, linewidth=0, label="95% confidence\ninterval"))
        side_legend(axes[0, ncols - 1], handles)
    return fig


def sweep_heatmap_figure(
    table: pd.DataFrame, x: str, y: str, metric: str, *,
    scenario_name: str = "", footer: str = "", currency: str = "",
) -> Figure:
    """Mean of ``metric`` over a grid of two parameters, each cell labelled with its value."""
    rows = _metric_rows(table, metric)
    factor, label = _scale(metric, currency)
    grid = rows.pivot_table(index=y, columns=x, values="mean", aggfunc="first", sort=True) * factor
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(11, 6.5),
                               title=f"{_name(metric, currency)} by {_short(x)} and {_short(y)}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        ax = axes[0, 0]
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(grid.shape[1]), [str(v) for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [str(v) for v in grid.index])
        ax.set_xlabel(_short(x))
        ax.set_ylabel(_short(y))
        ax.grid(False)
        finite = values[np.isfinite(values)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                text = "–" if not np.isfinite(v) else (f"{v:.1f}" if abs(v) < 1000 else f"{v:,.0f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=11,
                        color="black" if np.isfinite(v) and v > middle else "white")
        fig.colorbar(image, ax=ax, label=label)
    return fig


def sweep_scatter_figure(
    table: pd.DataFrame, parameters: Sequence[str], metric: str, *,
    scenario_name: str = "", footer: str = "", currency: str = "",
) -> Figure:
    """A Latin-hypercube sweep: the metric (mean and 95% CI per point) against each parameter."""
    rows = _metric_rows(table, metric)
    factor, label = _scale(metric, currency)
    n = max(1, len(parameters))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    with house_style():
        fig, axes = new_figure(nrows, ncols, figsize=(4.4 * ncols + 1, 1.2 + 3.6 * nrows), sharey=True,
                               title=f"{_name(metric, currency)} across the sampled points"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        for k, name in enumerate(parameters):
            ax = axes[k // ncols, k % ncols]
            xs = rows[name]
            mean = rows["mean"].to_numpy(dtype=float) * factor
            err = np.vstack([mean - rows["ci_low"].to_numpy(dtype=float) * factor,
                             rows["ci_high"].to_numpy(dtype=float) * factor - mean])
            ax.errorbar(xs, mean, yerr=np.where(np.isfinite(err), err, 0.0), fmt="o",
                        color=OKABE_ITO["blue"], ecolor="#9A9A9A", elinewidth=1, markersize=4)
            ax.set_xlabel(_short(name))
            if k % ncols == 0:
                ax.set_ylabel(label)
        for k in range(n, nrows * ncols):
            axes[k // ncols, k % ncols].set_visible(False)
    return fig


def tornado_figure(
    indices: pd.DataFrame, metric: str, *, scenario_name: str = "", footer: str = "", currency: str = "",
) -> Figure:
    """One-at-a-time sensitivity: the metric with each parameter at its low and its high value,
    the others at base; bars sorted by swing, the base value as a vertical line."""
    factor, label = _scale(metric, currency)
    data = indices.sort_values("swing", ascending=True, kind="stable")
    n = len(data)
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(13, 1.8 + 0.75 * max(n, 2)),
                               title=f"One-at-a-time sensitivity of {_name(metric, currency)[:1].lower() + _name(metric, currency)[1:]}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        ax = axes[0, 0]
        base = float(data["base_mean"].iloc[0]) * factor if n else math.nan
        y = np.arange(n)
        low_color, high_color = OKABE_ITO["sky_blue"], OKABE_ITO["vermillion"]
        for i, row in enumerate(data.itertuples(index=False)):
            for value, lo, hi, color in ((row.low_mean, row.low_ci_low, row.low_ci_high, low_color),
                                         (row.high_mean, row.high_ci_low, row.high_ci_high, high_color)):
                v = value * factor
                ax.barh(i, v - base, left=base, height=0.6, color=color, edgecolor="white")
                if np.isfinite(lo) and np.isfinite(hi):
                    ax.errorbar(v, i, xerr=[[v - lo * factor], [hi * factor - v]], fmt="none",
                                ecolor="#333333", elinewidth=1, capsize=3)
        ax.axvline(base, color="black", linewidth=1.5)
        labels = [f"{_short(r.parameter)}\n{_fmt(r.low)} – {_fmt(r.high)} (base {_fmt(r.base_value)})"
                  for r in data.itertuples(index=False)]
        ax.set_yticks(y, labels)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(label)
        ax.set_title(f"Base: {base:.3g}", loc="right", fontsize=11.5, color=_GREY)
        side_legend(ax, [Patch(color=low_color, label="Parameter at low"),
                         Patch(color=high_color, label="Parameter at high"),
                         Line2D([], [], color="black", linewidth=1.5, label="Base scenario"),
                         Line2D([], [], color="#333333", marker="|", linestyle="none", markersize=10,
                                label="95% confidence\ninterval")])
    return fig


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def morris_figure(
    indices: pd.DataFrame, metric: str, *, scenario_name: str = "", footer: str = "", currency: str = "",
) -> Figure:
    """Morris screening: mu* (mean absolute elementary effect, with its 95% bootstrap CI) per
    parameter, and mu* against sigma (spread: interactions and non-linearity)."""
    factor, label = _scale(metric, currency)
    data = indices.sort_values("mu_star", ascending=True, kind="stable")
    colors = scenario_colors(len(data))
    with house_style():
        fig, axes = new_figure(1, 2, figsize=(13, 1.8 + max(3.6, 0.6 * len(data))),
                               title=f"Morris screening of {_name(metric, currency)[:1].lower() + _name(metric, currency)[1:]}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        bars, scatter = axes[0, 0], axes[0, 1]
        y = np.arange(len(data))
        bars.barh(y, data["mu_star"] * factor, xerr=data["mu_star_conf"] * factor, height=0.6,
                  color=[colors[i] for i in range(len(data))], ecolor="#333333", capsize=3)
        bars.set_yticks(y, [_short(p) for p in data["parameter"]])
        bars.grid(axis="y", visible=False)
        bars.set_xlabel(f"μ* ({label})")
        bars.set_title("Importance: μ* with 95% CI")
        for i, row in enumerate(data.itertuples(index=False)):
            scatter.errorbar(row.mu_star * factor, row.sigma * factor, xerr=row.mu_star_conf * factor,
                             fmt="o", color=colors[i], ecolor=colors[i], markersize=8, capsize=3)
        top = float(max(np.nanmax(data["mu_star"] + data["mu_star_conf"]), np.nanmax(data["sigma"]), 1e-12)) * factor
        scatter.plot([0, top], [0, top], color="#9A9A9A", linestyle="--", linewidth=1)
        scatter.set_xlim(0, top * 1.08)
        scatter.set_ylim(0, top * 1.08)
        scatter.set_xlabel("μ* (mean |elementary effect|)")
        scatter.set_ylabel("σ (spread of effects)")
        scatter.set_title("Above the line: interactions or non-linearity")
        side_legend(scatter, [Line2D([], [], color=colors[i], marker="o", linestyle="none",
                                     label=_short(p)) for i, p in enumerate(data["parameter"])])
    return fig


def sobol_figure(
    indices: pd.DataFrame, metric: str, *, scenario_name: str = "", footer: str = "", currency: str = "",
) -> Figure:
    """Sobol indices per parameter: first-order S1 and total ST, with 95% bootstrap CIs."""
    _, label = _scale(metric, currency)
    data = indices.sort_values("ST", ascending=True, kind="stable")
    n = len(data)
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(13, 1.8 + max(3.0, 0.8 * n)),
                               title=f"Sobol indices of {_name(metric, currency)[:1].lower() + _name(metric, currency)[1:]}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        ax = axes[0, 0]
        y = np.arange(n)
        ax.barh(y + 0.18, data["S1"], xerr=data["S1_conf"], height=0.34, color=OKABE_ITO["blue"],
                ecolor="#333333", capsize=3, label="First order S1")
        ax.barh(y - 0.18, data["ST"], xerr=data["ST_conf"], height=0.34, color=OKABE_ITO["orange"],
                ecolor="#333333", capsize=3, label="Total ST")
        ax.set_yticks(y, [_short(p) for p in data["parameter"]])
        ax.grid(axis="y", visible=False)
        ax.axvline(0, color="black", linewidth=0.9)
        ax.set_xlabel("Share of the variance of the metric")
        side_legend(ax, [Patch(color=OKABE_ITO["blue"], label="First order S1"),
                         Patch(color=OKABE_ITO["orange"], label="Total ST"),
                         Line2D([], [], color="#333333", marker="|", linestyle="none", markersize=10,
                                label="95% confidence\ninterval")])
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
) -> Figure:
    """The capacity curve searched: each target's metric against the slot count (mean and 95%
    CI), the target as a dashed line, the answer marked; plus the site's utilisation."""
    metrics_shown = list(dict.fromkeys([t.metric for t in targets] + [f"utilization_{site}"]))
    metrics_shown = [m for m in metrics_shown if (table["metric"] == m).any()]
    ncols = 2 if len(metrics_shown) > 1 else 1
    nrows = math.ceil(len(metrics_shown) / ncols)
    found = f"answer: {answer} slot{'s' if answer != 1 else ''}" if answer is not None else "no answer in the range searched"
    with house_style():
        fig, axes = new_figure(nrows, ncols, figsize=(13 if ncols == 2 else 9, 1.4 + 3.8 * nrows),
                               title=f"Capacity of {site} — {found}"
                               + (f" — {scenario_name}" if scenario_name else ""), footer=footer)
        color = OKABE_ITO["blue"]
        for k, metric in enumerate(metrics_shown):
            ax = axes[k // ncols, k % ncols]
            factor, label = _scale(metric, currency)
            rows = _metric_rows(table, metric).sort_values("slots")
            xs = rows["slots"].to_numpy(dtype=float)
            draw_band(ax, xs, rows["ci_low"].to_numpy(dtype=float) * factor,
                      rows["mean"].to_numpy(dtype=float) * factor,
                      rows["ci_high"].to_numpy(dtype=float) * factor, color=color, marker="o", markersize=5)
            for t in targets:
                if t.metric == metric:
                    ax.axhline(t.value * factor, color=OKABE_ITO["vermillion"], linestyle="--", linewidth=1.5)
                    ax.annotate(f"target {t.op} {t.value * factor:g}", xy=(1.0, t.value * factor),
                                xycoords=("axes fraction", "data"), xytext=(-4, 4), textcoords="offset points",
                                ha="right", va="bottom", color=OKABE_ITO["vermillion"], fontsize=11)
            if answer is not None:
                ax.axvline(answer, color=OKABE_ITO["bluish_green"], linewidth=2, alpha=0.8)
            ax.set_title(_name(metric, currency))
            ax.set_ylabel(label)
            ax.set_xlabel(f"Slots at {site}")
            ax.xaxis.get_major_locator().set_params(integer=True)
        for k in range(len(metrics_shown), nrows * ncols):
            axes[k // ncols, k % ncols].set_visible(False)
        side_legend(axes[0, ncols - 1], [
            Line2D([], [], color=color, marker="o", markersize=5, label="Mean"),
            Patch(color=color, alpha=0.2, linewidth=0, label="95% confidence\ninterval"),
            Line2D([], [], color=OKABE_ITO["vermillion"], linestyle="--", label="Target"),
            Line2D([], [], color=OKABE_ITO["bluish_green"], linewidth=2, label="Answer"),
        ])
    return fig
