"""Health-economic figures: the budget impact (the payer's cost per calendar year, by category)
and the cost breakdown (cost per referred patient, by category and scenario).

:func:`budget_figure` reads a budget table as :func:`v2vsim.experiments.economics.budget_summary`
and ``budget_impact`` write it (``budget.csv``): ``[scenario,] year, category, mean, ci_low,
ci_high, n``, with a ``total`` category per year. :func:`cost_breakdown_figure` reads each
scenario's ``Results.budget`` (``replication, year, category, cost``) and its number referred per
replication.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter

from ...metrics import t_interval
from ...scenario.economics import COST_CATEGORIES
from .display import thousands
from .paired import _text_color
from .style import (
    KIND_COLORS,
    _empty_message,
    house_style,
    new_figure,
    scenario_colors,
    side_legend,
)

__all__ = ["CATEGORY_COLORS", "CATEGORY_LABELS", "budget_figure", "cost_breakdown",
           "cost_breakdown_figure"]

#: One colour per cost category: the colour of the step kind it mostly covers (manufacture,
#: transport, conditioning), so that a colour means the same in the journey and cost figures,
#: and none is an outcome's colour; the others are further tints of the same family.
CATEGORY_COLORS: Final = {
    "manufacture": KIND_COLORS["manufacture"],
    "logistics": KIND_COLORS["transport"],
    "hospital": KIND_COLORS["conditioning"],
    "bridging": "#AA99DD",
    "follow_up": "#99DDBB",
    "fixed": "#5E6A71",
}

#: Legend names of the cost categories.
CATEGORY_LABELS: Final = {
    "manufacture": "Manufacture and release",
    "logistics": "Logistics (transport, cryopreservation)",
    "hospital": "Hospital (collection, conditioning, infusion, ICU, CRS)",
    "bridging": "Bridging therapy",
    "follow_up": "Follow-up (per year alive)",
    "fixed": "Fixed costs of sites",
}


def _scale(top: float) -> tuple[float, str]:
    """Divisor and unit word for amounts up to ``top``."""
    if top >= 1e6:
        return 1e6, " million"
    if top >= 1e4:
        return 1e3, " thousand"
    return 1.0, ""


def _short(value: float) -> str:
    """Three significant digits at most, never in scientific notation."""
    if not math.isfinite(value):
        return "–"
    magnitude = abs(value)
    digits = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2
    return f"{value:,.{digits}f}"


def budget_figure(budget: pd.DataFrame, currency: str = "", *, footer: str = "",
                  level: float = 0.95, names: Sequence[str] | None = None) -> Figure:
    """Stacked bars of the mean cost charged in each calendar year, by cost category, one
    panel per scenario (same y axis); above each bar the year's total with the ``level``
    interval of the total across replications as an error bar.

    ``budget`` has the columns of ``budget.csv``; without a ``scenario`` column it is one
    scenario's. ``names`` orders the panels (default: order of appearance).
    """
    frame = budget.copy()
    if "scenario" not in frame.columns:
        frame.insert(0, "scenario", "")
    frame["scenario"] = frame["scenario"].fillna("").astype(str)
    names = list(names) if names is not None else list(dict.fromkeys(frame["scenario"]))
    years = sorted({int(y) for y in frame["year"]}) if len(frame) else []
    # Categories that cost nothing in any scenario and year are left out of bars and legend.
    costs = frame.groupby(frame["category"].astype(str), sort=False)["mean"].apply(
        lambda v: bool(np.nan_to_num(v.to_numpy(dtype=float)).any()))
    parts = [c for c in dict.fromkeys(frame["category"].astype(str)) if c != "total" and costs.get(c, False)]
    categories = [c for c in COST_CATEGORIES if c in parts] + [c for c in parts if c not in COST_CATEGORIES]
    totals = frame[frame["category"] == "total"]
    top = float(np.nanmax(totals["ci_high"].to_numpy(dtype=float))) if len(totals) else 0.0
    top = max(top, float(np.nanmax(totals["mean"].to_numpy(dtype=float))) if len(totals) else 0.0)
    divisor, word = _scale(top if math.isfinite(top) else 0.0)
    unit = f"{currency}{word}" if currency else f"cost{word}"
    n_panels = max(len(names), 1)
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    width = 13.5
    with house_style():
        fig, axes = new_figure(
            nrows, ncols, figsize=(width, 1.6 + 4.6 * nrows), footer=footer, sharey=True,
            title=f"Budget impact: the payer's cost charged in each calendar year, by category "
                  f"({currency + ', ' if currency else ''}undiscounted)")
        if not years or not names:
            _empty_message(axes[0, 0], "No costs in the horizon")
            return fig
        x = np.arange(len(years))
        font = 10.5 if len(years) * ncols <= 18 else 9
        for k, name in enumerate(names):
            ax = axes[k // ncols, k % ncols]
            rows = frame[frame["scenario"] == name].set_index(["year", "category"])
            bottom = np.zeros(len(years))
            for category in categories:
                values = np.array([float(rows["mean"].get((y, category), 0.0)) for y in years])
                values = np.nan_to_num(values) / divisor
                ax.bar(x, values, bottom=bottom, width=0.72,
                       color=CATEGORY_COLORS.get(category, "#BBBBBB"), linewidth=0)
                bottom += values
            total = np.array([float(rows["mean"].get((y, "total"), math.nan)) for y in years]) / divisor
            low = np.array([float(rows["ci_low"].get((y, "total"), math.nan)) for y in years]) / divisor
            high = np.array([float(rows["ci_high"].get((y, "total"), math.nan)) for y in years]) / divisor
            has_ci = np.isfinite(low) & np.isfinite(high)
            err = np.vstack([np.where(has_ci, total - low, 0.0), np.where(has_ci, high - total, 0.0)])
            ax.errorbar(x, total, yerr=np.clip(err, 0, None), fmt="none", ecolor="#222222",
                        elinewidth=1.1, capsize=3)
            for xx, value, end in zip(x, total, np.where(has_ci, high, total)):
                if math.isfinite(value):
                    ax.annotate(_short(value), (xx, end), xytext=(0, 3), textcoords="offset points",
                                ha="center", va="bottom", fontsize=font)
            horizon = float(np.nansum(total))
            heading = "\n".join(textwrap.wrap(name, int(width / ncols * 6.5))) if name else ""
            heading += ("\n" if heading else "") + (
                f"Total {years[0]}–{years[-1]}: {_short(horizon)} {unit}" if len(years) > 1
                else f"Total {years[0]}: {_short(horizon)} {unit}")
            ax.set_title(heading, fontsize=12.5)
            ax.set_xticks(x, [str(y) for y in years], fontsize=11 if len(years) <= 8 else 9.5,
                          rotation=0 if len(years) * ncols <= 24 else 45)
            ax.grid(axis="x", visible=False)
            ax.set_xlabel("Calendar year")
            if k % ncols == 0:
                ax.set_ylabel(f"Cost charged in the year\n({unit}; mean, {level:.0%} CI of the total)")
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}" if divisor > 1 and top / divisor >= 10
                                                            else "{x:,.1f}" if divisor > 1 else "{x:,.0f}"))
        for k in range(n_panels, nrows * ncols):
            axes[k // ncols, k % ncols].set_visible(False)
        ceiling = max(float(np.nanmax(np.r_[totals["ci_high"].to_numpy(dtype=float),
                                              totals["mean"].to_numpy(dtype=float)])) / divisor, 1e-9)
        axes[0, 0].set_ylim(0, ceiling * 1.12)
        handles = [Patch(color=CATEGORY_COLORS.get(c, "#BBBBBB")) for c in reversed(categories)]
        labels = ["\n".join(textwrap.wrap(CATEGORY_LABELS.get(c, c.replace("_", " ").capitalize()), 24))
                  for c in reversed(categories)]
        side_legend(axes[0, min(n_panels, ncols) - 1], handles, labels, title="Cost category")
    return fig


def cost_breakdown(budget: pd.DataFrame, referred: pd.Series) -> pd.DataFrame:
    """Cost per referred patient by category, one row per replication: each replication's
    cost charged over the horizon (``Results.budget``, summed over years) divided by the
    patients it referred (``referred``, indexed by replication). Columns are the categories in
    house order (:data:`COST_CATEGORIES`, then others), a replication without a row costs 0."""
    reps = pd.Index(sorted(int(r) for r in referred.index), name="replication")
    if not len(budget):
        return pd.DataFrame(index=reps)
    table = budget.pivot_table(index="replication", columns="category", values="cost",
                               aggfunc="sum", fill_value=0.0, observed=True)
    present = [str(c) for c in table.columns]
    table.columns = present
    order = [c for c in COST_CATEGORIES if c in present] + sorted(set(present) - set(COST_CATEGORIES))
    table = table.reindex(index=reps, columns=order, fill_value=0.0).astype(float)
    counts = referred.reindex(reps).to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return table.div(np.where(counts > 0, counts, np.nan), axis=0)


def cost_breakdown_figure(budgets: Mapping[str, pd.DataFrame],
                          referred: Mapping[str, pd.Series], currency: str = "", *,
                          footer: str = "", level: float = 0.95) -> Figure:
    """The payer's cost per referred patient by cost category (:func:`cost_breakdown`):
    means across replications, undiscounted, charged over the horizon's calendar years.

    One scenario (a run): a bar per category with its ``level`` t-interval. Several (a
    comparison, baseline first): a bar per scenario stacked by category, with the total's
    ``level`` interval as an error bar. Amounts in thousands (or millions) of ``currency``.
    """
    names = list(budgets)
    tables = {n: cost_breakdown(budgets[n], referred[n]) for n in names}
    categories = list(dict.fromkeys(c for t in tables.values() for c in t.columns
                                    if np.nan_to_num(t[c].to_numpy(dtype=float)).any()))
    categories = ([c for c in COST_CATEGORIES if c in categories]
                  + [c for c in categories if c not in COST_CATEGORIES])
    years = sorted({int(y) for b in budgets.values() for y in b["year"]}) if names else []
    totals = {n: t_interval(t.sum(axis=1, min_count=1).to_numpy(dtype=float), level)
              for n, t in tables.items()}
    single = len(names) == 1
    if single and categories:
        rows = [t_interval(tables[names[0]][c].to_numpy(dtype=float), level) for c in categories]
        top = max([r[2] if math.isfinite(r[2]) else r[0] for r in rows], default=0.0)
    else:
        rows = []
        top = max([t[2] if math.isfinite(t[2]) else t[0] for t in totals.values()
                   if math.isfinite(t[0])], default=0.0)
    # Thousands with separators, as the cost-per-patient figure: 2,750 rather than 2.75 million.
    divisor, word = (1e3, " thousand") if math.isfinite(top) and top >= 1e4 else (1.0, "")
    unit = f"{currency}{word}" if currency else f"cost{word}"
    span = (f"{years[0]}–{years[-1]}" if len(years) > 1 else f"{years[0]}") if years else ""
    n_bars = len(categories) if single else len(names)
    with house_style():
        fig, axes = new_figure(
            1, 1, figsize=(13, (2.4 if single else 3.6) + 0.75 * max(n_bars, 2)), footer=footer,
            title="Cost per referred patient by category"
                  + (f" — {names[0]}" if single else ", by scenario")
                  + (f" ({currency}, undiscounted)" if currency else " (undiscounted)"))
        ax = axes[0, 0]
        if not categories:
            _empty_message(ax, "No costs in the horizon")
            return fig
        ax.set_title(f"Charged in the calendar years {span}; mean across replications")
        ax.set_xlabel(f"Cost per referred patient ({unit}; error bars: {level:.0%} CI)")
        y = np.arange(n_bars)
        if single:
            means = np.array([r[0] for r in rows]) / divisor
            err = np.array([[r[0] - r[1], r[2] - r[0]] if math.isfinite(r[1]) else [0.0, 0.0]
                            for r in rows]).T / divisor
            ax.barh(y, np.nan_to_num(means), height=0.62,
                    color=[CATEGORY_COLORS.get(c, "#BBBBBB") for c in categories])
            ax.errorbar(means, y, xerr=np.clip(err, 0, None), fmt="none", ecolor="#222222",
                        elinewidth=1.2, capsize=4)
            for yy, mean, high in zip(y, means, means + err[1]):
                ax.annotate(_short(mean), (high, yy), xytext=(6, 0), textcoords="offset points",
                            va="center", ha="left", fontsize=11.5, annotation_clip=False)
            ax.set_yticks(y, [CATEGORY_LABELS.get(c, c.replace("_", " ").capitalize())
                              for c in categories])
            total = totals[names[0]]
            ax.set_title(f"Charged in the calendar years {span}; mean across replications\n"
                         f"Total {_short(total[0] / divisor)} {unit}"
                         + (f" ({level:.0%} CI {_short(total[1] / divisor)} to "
                            f"{_short(total[2] / divisor)})" if math.isfinite(total[1]) else ""))
            right = float(np.nanmax(means + err[1]))
        else:
            left = np.zeros(len(names))
            for category in categories:
                values = np.array([float(np.nanmean(tables[n][category].to_numpy(dtype=float)))
                                   if category in tables[n] and len(tables[n]) else 0.0
                                   for n in names]) / divisor
                values = np.nan_to_num(values)
                ax.barh(y, values, left=left, height=0.62,
                        color=CATEGORY_COLORS.get(category, "#BBBBBB"), edgecolor="white",
                        linewidth=0.8)
                left += values
            means = np.array([totals[n][0] for n in names]) / divisor
            err = np.array([[t[0] - t[1], t[2] - t[0]] if math.isfinite(t[1]) else [0.0, 0.0]
                            for t in (totals[n] for n in names)]).T / divisor
            ax.errorbar(means, y, xerr=np.clip(err, 0, None), fmt="none", ecolor="#222222",
                        elinewidth=1.2, capsize=4)
            for yy, name, high in zip(y, names, means + err[1]):
                t = totals[name]
                text = f"{_short(t[0] / divisor)}"
                if math.isfinite(t[1]):
                    text += f" ({_short(t[1] / divisor)} to {_short(t[2] / divisor)})"
                ax.annotate(text, (high, yy), xytext=(6, 0), textcoords="offset points",
                            va="center", ha="left", fontsize=11.5, annotation_clip=False)
            ax.set_yticks(y, ["\n".join(textwrap.wrap(n, 30)) for n in names])
            for tick, colour in zip(ax.get_yticklabels(), scenario_colors(len(names))):
                tick.set_color(_text_color(colour))
            right = float(np.nanmax(means + err[1]))
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        ax.set_xlim(0, max(right, 1e-9) * 1.05)
        thousands(ax.xaxis, 0 if right >= 10 else 1)
        if not single:
            handles = [Patch(color=CATEGORY_COLORS.get(c, "#BBBBBB")) for c in categories]
            labels = [CATEGORY_LABELS.get(c, c.replace("_", " ").capitalize())
                      for c in categories]
            # Below the axes: the totals are written in the right margin.
            ax.legend(handles, labels, title="Cost category", loc="upper left",
                      bbox_to_anchor=(0.0, -0.2), ncol=min(len(categories), 2),
                      alignment="left")
    return fig
