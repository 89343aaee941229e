"""Figures of a probabilistic sensitivity analysis (``v2vsim psa``): the tables in, Figures out.

The cost-effectiveness plane (each parameter set's incremental QALYs and cost per referred
patient against the comparator, their mean, lines of the thresholds), the acceptability curve
with its frontier, the EVPI by willingness to pay, and the EVPPI of each parameter. The tables
are the ones ``v2vsim psa`` writes (``psa_sets.csv``, ``ceac.csv``, ``evpi.csv``,
``evppi.csv``); the house style is :mod:`.style`'s.
"""

from __future__ import annotations

import textwrap

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, PercentFormatter

from .style import OKABE_ITO, house_style, new_figure, scenario_colors, side_legend

__all__ = ["ce_plane_figure", "ceac_figure", "evpi_figure", "evppi_figure", "money", "parameter_label"]

_GREY = "#555555"


def money(x: float, _pos: object = None) -> str:
    """A money amount for ticks and labels: ``1.25M``, ``350k``, ``-40k``, ``0``."""
    if not math.isfinite(x):
        return ""
    a = abs(x)
    if a >= 1e9:
        text = f"{a / 1e9:.3g}bn"
    elif a >= 1e6:
        text = f"{a / 1e6:.3g}M"
    elif a >= 1e3:
        text = f"{a / 1e3:.3g}k"
    else:
        text = f"{a:.3g}"
    return ("\N{MINUS SIGN}" if x < 0 else "") + text


_MONEY = FuncFormatter(money)


def ce_plane_figure(sets: pd.DataFrame, names: Sequence[str], *, currency: str, wtp: Sequence[float] = (),
                    cost: str = "cost_discounted_per_referred", qalys: str = "qalys_discounted_per_referred",
                    title: str = "", footer: str = "") -> Figure:
    """Incremental cost against incremental QALYs per referred patient of every option against
    the first, one point per parameter set, the mean as a large marker, the thresholds as lines
    through the origin (below a line: cost-effective at that threshold)."""
    wide_c = sets.pivot(index="set", columns="scenario_index", values=cost).sort_index()
    wide_q = sets.pivot(index="set", columns="scenario_index", values=qalys).sort_index()
    colors = scenario_colors(len(names))
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(12.5, 7.5),
                               title=title or f"Cost-effectiveness plane: against {names[0]}", footer=footer)
        ax = axes[0, 0]
        handles = []
        xs, ys = [0.0], [0.0]
        for j in range(1, len(names)):
            dq = (wide_q[j] - wide_q[0]).to_numpy(dtype=float)
            dc = (wide_c[j] - wide_c[0]).to_numpy(dtype=float)
            xs += list(dq)
            ys += list(dc)
            ax.scatter(dq, dc, s=14, alpha=0.5, color=colors[j], linewidths=0, rasterized=True)
            ax.scatter([dq.mean()], [dc.mean()], s=140, color=colors[j], edgecolor="black", linewidth=1.5, zorder=5)
            handles.append(Line2D([], [], color=colors[j], marker="o", linestyle="none", markersize=6,
                                  label=_wrap(f"{names[j]} − {names[0]} (one point per parameter set)")))
        handles.append(Line2D([], [], color="#777777", marker="o", markeredgecolor="black", linestyle="none",
                              markersize=11, label="Mean of the sets"))
        x_lo, x_hi = min(xs), max(xs)
        pad = 0.08 * (x_hi - x_lo or 1.0)
        x_lo, x_hi = x_lo - pad, x_hi + pad
        y_lo, y_hi = min(ys), max(ys)
        ypad = 0.08 * (y_hi - y_lo or 1.0)
        y_lo, y_hi = y_lo - ypad, y_hi + ypad
        styles = ["--", ":", "-."]
        for i, w in enumerate(sorted(wtp)[:3]):
            grid = np.array([x_lo, x_hi])
            ax.plot(grid, w * grid, color=_GREY, linestyle=styles[i % 3], linewidth=1.4)
            handles.append(Line2D([], [], color=_GREY, linestyle=styles[i % 3], linewidth=1.4,
                                  label=f"{money(w)} {currency} per QALY"))
        ax.axhline(0, color="black", linewidth=0.9)
        ax.axvline(0, color="black", linewidth=0.9)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.yaxis.set_major_formatter(_MONEY)
        ax.set_xlabel("Incremental QALYs per referred patient (discounted)")
        ax.set_ylabel(f"Incremental cost per referred patient ({currency}, discounted)")
        ax.set_title(textwrap.fill(f"Right of the origin: more QALYs than {names[0]}; below a threshold's "
                                   "line: cost-effective at it", 90), loc="left", fontsize=11.5, color=_GREY)
        side_legend(ax, handles)
    return fig


def ceac_figure(ceac: pd.DataFrame, names: Sequence[str], *, currency: str, title: str = "",
                footer: str = "") -> Figure:
    """The probability that each option is cost-effective (highest NMB) by willingness to pay;
    the frontier (the option with the highest expected NMB) drawn over it in black."""
    colors = scenario_colors(len(names))
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(12.5, 6.5), title=title or "Cost-effectiveness acceptability curve",
                               footer=footer)
        ax = axes[0, 0]
        handles = []
        for j, name in enumerate(names):
            rows = ceac[ceac["scenario"] == name].sort_values("wtp")
            w = rows["wtp"].to_numpy(dtype=float)
            p = rows["probability_cost_effective"].to_numpy(dtype=float)
            ax.plot(w, p, color=colors[j], linewidth=2.2, zorder=3)
            handles.append(Line2D([], [], color=colors[j], linewidth=2.2, label=_wrap(name)))
            on = rows["on_frontier"].to_numpy(dtype=bool)
            ax.plot(w, np.where(on, p, np.nan), color="black", linewidth=6, alpha=0.28, solid_capstyle="butt", zorder=2)
        handles.append(Line2D([], [], color="black", linewidth=6, alpha=0.28,
                              label="Frontier: highest\nexpected net benefit"))
        ax.set_ylim(-0.02, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.xaxis.set_major_formatter(_MONEY)
        ax.set_xlabel(f"Willingness to pay ({currency} per QALY)")
        ax.set_ylabel("Probability cost-effective\n(share of parameter sets)")
        side_legend(ax, handles)
    return fig


def evpi_figure(evpi: pd.DataFrame, *, currency: str, title: str = "", footer: str = "") -> Figure:
    """The EVPI by willingness to pay: per year of referrals (left axis) and per patient (right)."""
    per_year = float(evpi["referrals_per_year"].iloc[0]) if len(evpi) else 1.0
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(12.5, 6.5), title=title or "Expected value of perfect information",
                               footer=footer)
        ax = axes[0, 0]
        ax.plot(evpi["wtp"], evpi["evpi_per_year"], color=OKABE_ITO["blue"], linewidth=2.4)
        ax.set_ylim(bottom=0)
        if len(evpi) and not (evpi["evpi_per_year"].to_numpy(dtype=float) > 0).any():
            ax.set_ylim(0, 1)
            ax.set_yticks([0])  # fractions of one unit of money would mean nothing here
            ax.text(0.5, 0.5, "EVPI is 0 at every threshold: the same option has the highest net\n"
                    "benefit in every parameter set, so no information would change the decision",
                    ha="center", va="center", transform=ax.transAxes, color=_GREY)
        ax.xaxis.set_major_formatter(_MONEY)
        ax.yaxis.set_major_formatter(_MONEY)
        ax.set_xlabel(f"Willingness to pay ({currency} per QALY)")
        ax.set_ylabel(f"EVPI per year ({currency}, {per_year:,.3g} referrals a year)")
        if per_year > 0 and (evpi["evpi_per_year"].to_numpy(dtype=float) > 0).any():
            right = ax.secondary_yaxis("right", functions=(lambda v: v / per_year, lambda v: v * per_year))
            right.yaxis.set_major_formatter(_MONEY)
            right.set_ylabel(f"EVPI per referred patient ({currency})")
            ax.spines["right"].set_visible(True)
    return fig


def evppi_figure(evppi: pd.DataFrame, *, currency: str, wtp: Sequence[float], evpi: pd.DataFrame | None = None,
                 title: str = "", footer: str = "") -> Figure:
    """EVPPI per year of each parameter at up to three thresholds, largest first; the EVPI of
    each threshold in its legend entry."""
    chosen = [float(w) for w in list(wtp)[:3]]
    data = evppi[evppi["wtp"].isin(chosen)]
    params = list(dict.fromkeys(evppi["parameter"]))
    if chosen:
        first = data[data["wtp"] == chosen[0]].set_index("parameter")["evppi_per_year"]
        params.sort(key=lambda p: float(first.get(p, 0.0)))
    n = len(params)
    colors = [OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["bluish_green"]]
    zero = not len(data) or not float(data["evppi_per_year"].max()) > 0
    # Nothing to compare: rows of empty bars would only stretch the figure.
    row_inches = 0.32 if zero else 0.3 + 0.22 * max(1, len(chosen))
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(12.5, 2.2 + row_inches * max(n, 2)),
                               title=title or "Which inputs drive the decision: EVPPI per year", footer=footer)
        ax = axes[0, 0]
        height = 0.8 / max(1, len(chosen))
        handles = []
        for i, w in enumerate(chosen):
            rows = data[data["wtp"] == w].set_index("parameter")
            values = [float(rows["evppi_per_year"].get(p, 0.0)) for p in params]
            y = np.arange(n) + (i - (len(chosen) - 1) / 2) * height
            ax.barh(y, values, height=height * 0.92, color=colors[i % 3])
            label = f"{money(w)} {currency} per QALY"
            if evpi is not None:
                total = evpi.loc[np.isclose(evpi["wtp"], w), "evpi_per_year"]
                if len(total):
                    label += f"\n(EVPI {money(float(total.iloc[0]))} {currency} a year)"
            handles.append(Line2D([], [], color=colors[i % 3], linewidth=8, label=label))
        if zero:
            ax.set_xlim(0, 1)
            ax.set_xticks([])
            ax.text(0.5, 0.5, "EVPPI is 0 for every parameter at these thresholds:\nno single input, "
                    "known exactly, would change the decision", transform=ax.transAxes, ha="center",
                    va="center", color=_GREY, fontsize=12.5)
        ax.set_yticks(np.arange(n), [parameter_label(p) for p in params])
        ax.set_ylim(-0.6, n - 0.4)
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_formatter(_MONEY)
        if len(data) and float(data["evppi_per_year"].max()) > 0:
            ax.set_xlim(left=0)
        ax.set_xlabel(f"EVPPI per year ({currency}): value of knowing the parameter exactly")
        side_legend(ax, handles, title="Willingness to pay")
    return fig


def _wrap(label: str, width: int = 36) -> str:
    """A legend label over lines of at most ``width`` characters (long scenario names)."""
    return textwrap.fill(label, width)


# Abbreviations kept in capitals when a parameter's name is written out in words.
_ACRONYMS = frozenset({"lbcl", "icu", "qaly", "qalys", "crs", "icans", "nmb", "hkd", "usd"})


def parameter_label(name: str) -> str:
    """A PSA parameter's name in words for labels: ``lbcl_death_clock_median`` -> "LBCL death
    clock median"; a dotted scenario path keeps its last three keys."""
    if "." in name:
        keys = name.split(".")
        return name if len(keys) <= 3 else "…" + ".".join(keys[-3:])
    words = [w for w in name.replace("-", "_").split("_") if w]
    if not words:
        return name
    words = [w.upper() if w.lower() in _ACRONYMS else w for w in words]
    first = words[0]
    words[0] = first if first.isupper() else first[:1].upper() + first[1:]
    return " ".join(words)
