"""The waitlist for site slots: how many wait at each site month by month, and what becomes of
the patients listed (a slot, or death before one) by months since they joined a list."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ...metrics import SiteDays
from .display import ScenarioDisplay, day_axis, thousands
from .sites import _nan_mean_band, by_site, month_starts, month_steps, monthly_site_use
from .style import (
    _empty_message,
    _fmt_percent,
    band_label,
    draw_band,
    house_style,
    new_figure,
    percent_limit,
    scenario_colors,
    side_legend,
)

__all__ = ["MONTH_DAYS", "after_listing", "has_waitlist", "waitlist_figure"]

#: Days in a month of the "months since listing" axis (a 365.25-day year over 12).
MONTH_DAYS = 365.25 / 12

#: Colours of the two curves after listing: kept apart from the outcome colours (a slot is not
#: an infusion, and a death while listed is a subset of the deaths the outcome figures show).
_SLOT_COLOUR = "#1F3A68"  # dark navy
_DIED_COLOUR = "#9E2A2B"  # brick red


def has_waitlist(patients: pd.DataFrame) -> bool:
    """Whether a waitlist forms: some listed patient (``listed_day`` known) waited for a slot
    (``time_to_slot_days > 0``) or never got one (no ``slot_day``: died, left or still waiting
    while listed). A scenario without sites, or whose slots are always free on request, has
    none; ``run_figures`` draws :func:`waitlist_figure` only when this holds."""
    if "listed_day" not in patients or "slot_day" not in patients or not len(patients):
        return False
    listed = patients["listed_day"].notna()
    waited = patients["slot_day"] - patients["listed_day"] > 0
    return bool((listed & (waited | patients["slot_day"].isna())).any())


def _time_on_list(patients: pd.DataFrame) -> np.ndarray:
    """Days from listing to the first slot, else to the outcome (NaN: still waiting)."""
    listed = patients["listed_day"].to_numpy(dtype=float)
    slot = patients["slot_day"].to_numpy(dtype=float)
    end = np.where(np.isnan(slot), patients["outcome_day"].to_numpy(dtype=float), slot)
    return end - listed


def after_listing(patients: pd.DataFrame, months: np.ndarray | None = None,
                  max_months: int = 24) -> pd.DataFrame:
    """Per replication, the cumulative share of its listed patients who got a slot and who
    died while listed (died before any slot), by months since listing.

    A patient counts as slotted at month ``m`` when ``slot_day - listed_day <= m`` months
    (:data:`MONTH_DAYS` days each), as died while listed when it has no ``slot_day``, its
    outcome is ``died`` and ``outcome_day - listed_day <= m`` months. Patients still waiting at
    the end of the run, or who left the list otherwise (became ineligible, ...), are neither but
    stay in the denominator (every listed patient of the replication). A replication without
    listed patients has no rows. ``months`` defaults to 0 to the month holding the 95th
    percentile of the time on the list (to the slot, else to the outcome), at least 3 and at most
    ``max_months``.

    Returns a long frame ``replication, month, slotted, died`` (shares 0–1), replication after
    replication.
    """
    listed = patients.loc[patients["listed_day"].notna()]
    if months is None:
        waited = _time_on_list(listed)
        waited = waited[np.isfinite(waited)]
        top = float(np.percentile(waited, 95)) / MONTH_DAYS if waited.size else 0.0
        months = np.arange(0, int(min(max(math.ceil(top), 3), max_months)) + 1)
    months = np.asarray(months, dtype=float)
    bounds = months * MONTH_DAYS
    to_slot = (listed["slot_day"] - listed["listed_day"]).to_numpy(dtype=float)
    died = listed["slot_day"].isna().to_numpy() & (listed["outcome"] == "died").to_numpy()
    to_death = np.where(died, (listed["outcome_day"] - listed["listed_day"]).to_numpy(dtype=float),
                        np.nan)
    reps, rep, counts = np.unique(listed["replication"].to_numpy(), return_inverse=True,
                                  return_counts=True)
    rep = rep.reshape(-1)
    shares = {}
    for name, elapsed in (("slotted", to_slot), ("died", to_death)):
        # NaN compares False: a patient without the event is never counted.
        hit = elapsed[None, :] <= bounds[:, None]  # months x patients
        by_rep = np.stack([np.bincount(rep, weights=row, minlength=reps.size) for row in hit])
        shares[name] = (by_rep / counts[None, :]).T.reshape(-1) if reps.size else np.array([])
    return pd.DataFrame({"replication": np.repeat(reps, months.size),
                         "month": np.tile(months, reps.size),
                         "slotted": shares["slotted"], "died": shares["died"]})


def _wide(shares: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Months and a ``months x replications`` array of one share."""
    table = shares.pivot(index="month", columns="replication", values=column).sort_index()
    return table.index.to_numpy(dtype=float), table.to_numpy(dtype=float)


def waitlist_figure(
    patients: pd.DataFrame,
    site_days: pd.DataFrame | SiteDays,
    scenario_name: str,
    *,
    footer: str = "",
    display: ScenarioDisplay | None = None,
    level: float = 0.95,
) -> Figure:
    """The waitlist for site slots, in two panels.

    Left: per capacity-limited site, the number of patients waiting for a slot by month, the
    mean across replications of each replication's mean over the month's days, with the
    ``level`` t-interval of that mean as a band (:func:`.sites.monthly_site_use`), on calendar
    dates from the scenario's start date when ``display`` knows it. Right: the cumulative share
    of listed patients who got a slot and who died while listed (before any slot), by months
    since listing (:func:`after_listing`): mean across replications with the ``level``
    t-interval of that mean as a band; patients still waiting or who left the list otherwise
    are neither. Shares at 3 and 6 months are written on the curves. ``run_figures`` draws it
    only when :func:`has_waitlist` holds.
    """
    display = display or ScenarioDisplay()
    sites, n_reps, rows_of, (first_day, last_day) = by_site(site_days)
    with house_style():
        fig, axes = new_figure(1, 2, figsize=(14, 6.2),
                               title=f"Waitlist for site slots — {scenario_name}", footer=footer)
        ax_queue, ax_after = axes[0]
        _queue_panel(ax_queue, sites, rows_of, first_day, last_day, display, level, n_reps)
        _after_panel(ax_after, patients, level)
    return fig


def _queue_panel(ax: Any, sites: list[str], rows_of: Any, first_day: float, last_day: float,
                 display: ScenarioDisplay, level: float, n_reps: int) -> None:
    ax.set_title("Patients waiting for a slot, by month:\nmean across replications")
    ax.set_ylabel("Patients waiting (mean over the month)")
    if not sites:
        _empty_message(ax, "No site data")
        return
    edges = month_starts(first_day, last_day, display.start_date)
    top = 0.0
    handles: list[Any] = []
    for site, colour in zip(sites, scenario_colors(len(sites))):
        rows = rows_of(site).dropna(subset=["in_use", "queue", "slots"])
        if not len(rows):
            continue
        month = monthly_site_use(rows, edges, level)
        draw_band(ax, edges, month_steps(month["queue_low"]), month_steps(month["queue_mean"]),
                  month_steps(month["queue_high"]), color=colour, steps=True)
        handles.append(Line2D([], [], color=colour, label=display.site_short(site)))
        if np.isfinite(month["queue_high"]).any():
            top = max(top, float(np.nanmax(month["queue_high"])))
    if display.warmup_days > 0:
        ax.axvline(display.warmup_days, color="0.35", linestyle=":", linewidth=1.4)
        handles.append(Line2D([], [], color="0.35", linestyle=":", linewidth=1.4,
                              label=f"End of the warm-up (day {display.warmup_days:,.0f})"))
    if n_reps > 1:
        handles.append(Patch(color="#999999", alpha=0.35, linewidth=0,
                             label=f"Band: {level:.0%} CI of the mean"))
    ax.set_ylim(0, max(top, 1.0) * 1.1)
    if top >= 3:  # whole patients: whole-number ticks, no ".0"
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    thousands(ax.yaxis, 0 if top >= 3 else 1)
    ax.set_xlim(max(first_day, float(edges[0])), min(last_day, float(edges[-1])))
    day_axis(ax, display.start_date)
    # Below the axes, one row where it fits: a band's spike in a month of few replications
    # never runs under it.
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.24),
              ncols=min(len(handles), 3), borderaxespad=0.0)


def _after_panel(ax: Any, patients: pd.DataFrame, level: float) -> None:
    ax.set_title("After listing: got a slot, or died while listed\n(share of the patients listed)")
    ax.set_xlabel("Months since listing (first request for a slot)")
    ax.set_ylabel("Share of listed patients (%)")
    shares = after_listing(patients) if "listed_day" in patients else pd.DataFrame()
    if not len(shares):
        _empty_message(ax, "No listed patients")
        return
    top = 0.0
    n_reps = int(shares["replication"].nunique())
    handles: list[Any] = []
    for column, colour, name in (("slotted", _SLOT_COLOUR, "Got a slot"),
                                 ("died", _DIED_COLOUR, "Died while listed\n(before any slot)")):
        months, wide = _wide(shares, column)
        mean, low, high = _nan_mean_band(100.0 * wide, level)
        low, high = np.clip(low, 0.0, 100.0), np.clip(high, 0.0, 100.0)
        draw_band(ax, months, low, mean, high, color=colour, marker="o", markersize=4)
        handles.append(Line2D([], [], color=colour, marker="o", markersize=4,
                              label=f"{name}: {_fmt_percent(mean[-1])} by month {months[-1]:.0f}"))
        top = max(top, float(np.nanmax(high)))
        for at in (3.0, 6.0):
            if at in months:
                k = int(np.flatnonzero(months == at)[0])
                edge = at == months[-1]  # at the right edge: kept inside the axes
                # Above the curve for the slots; below it for deaths, unless it runs near 0.
                below = column != "slotted" and mean[k] > 8.0
                ax.annotate(_fmt_percent(mean[k]), (at, mean[k]), textcoords="offset points",
                            xytext=(-4 if edge else -8, -16 if below else 8),
                            ha="right" if edge else "center", fontsize=11, color=colour,
                            fontweight="bold")
    if n_reps > 1:
        handles.append(Patch(color="#999999", alpha=0.35, linewidth=0, label=band_label(level)))
    handles.append(Line2D([], [], linestyle="none",
                          label="Still waiting at the end of the\nrun, or left the list otherwise:"
                                "\nneither (in the denominator)"))
    ax.set_xlim(0, months[-1])
    ax.set_xticks(months if months[-1] <= 12 else months[::3])
    ax.set_ylim(0, percent_limit(top))
    side_legend(ax, handles, title="Mean across replications\n(shares at 3 and 6 months\non "
                                   "the curves)")
