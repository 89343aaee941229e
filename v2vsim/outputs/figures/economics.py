"""Health-economic figures: the budget impact (the payer's cost per calendar year, by category).

The figure reads a budget table as :func:`v2vsim.experiments.economics.budget_summary` and
``budget_impact`` write it (``budget.csv``): ``[scenario,] year, category, mean, ci_low,
ci_high, n``, with a ``total`` category per year.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter

from ...scenario.economics import COST_CATEGORIES
from .style import OKABE_ITO, _empty_message, house_style, new_figure, side_legend

__all__ = ["CATEGORY_COLORS", "CATEGORY_LABELS", "budget_figure"]

#: One colour per cost category (Okabe–Ito; the fixed costs of sites in grey).
CATEGORY_COLORS: Final = {
    "manufacture": OKABE_ITO["blue"],
    "logistics": OKABE_ITO["orange"],
    "hospital": OKABE_ITO["vermillion"],
    "bridging": OKABE_ITO["reddish_purple"],
    "follow_up": OKABE_ITO["bluish_green"],
    "fixed": "#8C8C8C",
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
