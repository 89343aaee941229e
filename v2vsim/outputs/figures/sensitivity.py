"""Figures of sensitivity analyses (``v2vsim sensitivity``): the one-at-a-time tornado, Morris
screening and Sobol indices, from the ``indices`` tables the analyses write. Re-exported by
:mod:`.experiments`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .display import ScenarioDisplay
from .experiment_common import (
    _GREY,
    _SOBOL_SLACK,
    _WARNING,
    _Words,
    _fmt,
    _fmt_value,
    _thousands,
)
from .style import OKABE_ITO, house_style, new_figure, scenario_colors, side_legend


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
