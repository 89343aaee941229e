"""Capacity-limited sites over time, month by month: the share of slot time in use and the
waitlist for a slot, per site, across replications."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ...metrics import SiteDays
from .display import ScenarioDisplay, day_axis, thousands
from .style import (
    OKABE_ITO,
    _empty_message,
    _fmt_percent,
    _n_replications,
    draw_band,
    house_style,
    new_figure,
    percent_limit,
    side_legend,
)

__all__ = ["by_site", "month_starts", "month_steps", "monthly_site_use", "site_mean_band",
           "site_timeline_figure"]

# --------------------------------------------------------------------------------------------
# Site utilisation over time
# --------------------------------------------------------------------------------------------


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(values, sort=True)`` for non-negative integers (days, replications),
    counted rather than hashed."""
    if values.size and values.min() >= 0 and values.max() <= 8 * values.size + 1_000_000:
        present = np.bincount(values) > 0
        return (np.cumsum(present) - 1)[values], np.flatnonzero(present).astype(values.dtype)
    codes, uniques = pd.factorize(values, sort=True)
    return codes, np.asarray(uniques)


def _day_by_replication(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``frame.pivot_table(index="day", columns="replication", values=column, aggfunc="mean")``,
    built directly where every (day, replication) has one row at most (a site's rows): the same
    frame, down to its memory layout, without the group-by of millions of rows.

    The rows of a replication are its days in turn, so the cells are filled replication by
    replication (each one's days side by side in memory) and the table is then transposed
    into the pivot's layout: filling a day's row of every replication directly jumps through
    memory by a whole row per value, which grows slower per value as replications grow."""
    day, rep = frame["day"].to_numpy(), frame["replication"].to_numpy()
    values = frame[column].to_numpy(dtype=float)
    keep = ~np.isnan(values)  # as pivot_table: no cell, row or column from missing values
    if day.dtype.kind not in "iu" or rep.dtype.kind not in "iu":
        return frame.pivot_table(index="day", columns="replication", values=column, aggfunc="mean")
    d, days = _codes(day[keep])
    r, reps = _codes(rep[keep])
    cell = r.astype(np.int64) * len(days) + d
    if np.bincount(cell, minlength=1).max(initial=0) > 1:  # several rows to a cell
        return frame.pivot_table(index="day", columns="replication", values=column, aggfunc="mean")
    by_replication = np.full((len(reps), len(days)), np.nan)
    by_replication.reshape(-1)[cell] = values[keep]
    wide = np.ascontiguousarray(by_replication.T)
    return pd.DataFrame(wide, index=pd.Index(days, name="day"),
                        columns=pd.Index(reps, name="replication"), copy=False)


def _capacity_by_day(rows: pd.DataFrame) -> pd.Series:
    """``rows.groupby("day")["slots"].median().sort_index()``: the capacity of each day across
    replications. When every replication has the same capacity on each day (the usual case,
    and always with a fixed capacity), that is the value; else the group-by's median."""
    slots = rows["slots"].to_numpy(dtype=float)
    if len(rows) and not np.isnan(slots).any():
        day = rows["day"].to_numpy()
        if slots.min() == slots.max() and day.dtype.kind in "iu":  # one capacity throughout
            _, days = _codes(day)
            return pd.Series(np.full(len(days), slots[0]), index=pd.Index(days, name="day"),
                             name="slots")
        table = _day_by_replication(rows, "slots")
        wide = table.to_numpy()
        low, high = np.nanmin(wide, axis=1), np.nanmax(wide, axis=1)
        if np.array_equal(low, high):
            return pd.Series(low, index=table.index, name="slots")
    return rows.groupby("day")["slots"].median().sort_index()


def site_mean_band(
    frame: pd.DataFrame, column: str, smooth_days: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Days, 2.5th percentile, mean and 97.5th percentile across replications of a daily
    series (each replication's series smoothed first by a centred ``smooth_days`` rolling mean).

    The mean, not the median: with one or two slots a replication's slots-in-use is mostly a
    whole number, so the median jumps between 0 and 1 and says nothing about utilisation,
    while the mean is the expected number in use (or waiting) on that day.
    """
    wide = _day_by_replication(frame, column).sort_index()
    if smooth_days > 1:
        # Centred so the smoothed curve is not shifted later in time.
        wide = wide.rolling(smooth_days, center=True, min_periods=1).mean()
    values = wide.to_numpy(dtype=float)
    low, high = np.nanpercentile(values, [2.5, 97.5], axis=1)
    return wide.index.to_numpy(dtype=float), low, np.nanmean(values, axis=1), high


def by_site(site_days: pd.DataFrame | SiteDays,
             ) -> tuple[list[str], int, Callable[[str], pd.DataFrame], tuple[float, float]]:
    """The sites in order, the number of replications, each site's rows and the first and last
    day (a day past the last row), from the long table or from its arrays."""
    if isinstance(site_days, SiteDays):
        if not len(site_days):
            return [], 0, site_days.site_frame, (0.0, 0.0)
        return (site_days.site_names(), int(np.unique(site_days.replication).size),
                site_days.site_frame, (0.0, float(site_days.days.max() - 1) + 1.0))
    if not len(site_days):
        return [], 0, lambda site: site_days, (0.0, 0.0)
    names = site_days["site"].astype(str)
    return (list(pd.unique(names)), _n_replications(site_days),
            lambda site: site_days[names == site],
            (float(site_days["day"].min()), float(site_days["day"].max()) + 1.0))


def month_starts(first_day: float, last_day: float, start_date: dt.date | None,
                 ) -> np.ndarray:
    """The day each month begins, from the month holding ``first_day`` to the month holding
    the last day before ``last_day`` (the last entry ends that month): calendar months when ``start_date`` (day 0) is known,
    else months of 30.4375 days from day 0. The first month may begin before ``first_day``."""
    last_row = max(last_day - 1.0, first_day)  # rows are whole days: the last one's start
    if start_date is None:
        length = 365.25 / 12
        first = math.floor(first_day / length)
        last = math.floor(last_row / length) + 1
        return np.arange(first, last + 1) * length
    first = start_date + dt.timedelta(days=math.floor(first_day))
    month = dt.date(first.year, first.month, 1)
    edges: list[float] = []
    while True:
        edges.append(float((month - start_date).days))
        if edges[-1] > last_row:
            break
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    if len(edges) < 2:
        edges.append(edges[0] + 31.0)
    return np.asarray(edges, dtype=float)


def _nan_mean_band(wide: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`.style.mean_band` over the replications present in each row (NaN: a replication
    that has ended, or a month without capacity); a row with one value has no band."""
    from ...metrics import t_quantile

    n = np.isfinite(wide).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(wide, axis=1) / np.maximum(n, 1), np.nan)
        sd = np.sqrt(np.nansum((wide - mean[:, None]) ** 2, axis=1) / np.maximum(n - 1, 1))
    t = np.array([t_quantile(0.5 + level / 2, int(k) - 1) if k > 1 else 0.0 for k in n])
    half = np.where(n > 1, t * sd / np.sqrt(np.maximum(n, 1)), 0.0)
    return mean, mean - half, mean + half


def monthly_site_use(rows: pd.DataFrame, edges: np.ndarray, level: float = 0.95,
                     ) -> dict[str, np.ndarray]:
    """A site's use month by month, from its day rows (``replication, day, slots, in_use,
    queue``) and the months' first days ``edges`` (:func:`month_starts`).

    ``busy_mean``, ``busy_low``, ``busy_high``: the share of slot time in use (0–1), each
    replication's ``sum(in_use) / sum(slots)`` over the month's days, averaged over the
    replications with days in the month, with a ``level`` t-interval of that mean (clipped to
    0–1).
    ``queue_median``, ``queue_p90``: the median and 90th percentile of the daily mean
    waitlist length over all the month's days of all replications.
    ``queue_mean``, ``queue_low``, ``queue_high``: each replication's mean number waiting over
    the month's days, averaged over the replications with days in the month, with a ``level``
    t-interval of that mean (cut at 0). NaN where a month has no data (or, for the share, no
    capacity).
    """
    rows = rows.dropna(subset=["in_use", "queue", "slots"])
    n_months = len(edges) - 1
    day = rows["day"].to_numpy(dtype=float)
    month = np.clip(np.searchsorted(edges, day, side="right") - 1, 0, n_months - 1)
    reps, rep = np.unique(rows["replication"].to_numpy(), return_inverse=True)
    rep = rep.reshape(-1)
    cell = month * max(len(reps), 1) + rep
    size = n_months * max(len(reps), 1)
    used = np.bincount(cell, weights=rows["in_use"].to_numpy(dtype=float), minlength=size)
    slots = np.bincount(cell, weights=rows["slots"].to_numpy(dtype=float), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(slots > 0, used / slots, np.nan).reshape(n_months, max(len(reps), 1))
    mean, low, high = _nan_mean_band(share, level)
    # A share lies in 0-1; the t-interval of a few replications left at the end can overshoot.
    low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    queue = rows["queue"].to_numpy(dtype=float)
    days_in = np.bincount(cell, minlength=size)
    waiting = np.bincount(cell, weights=queue, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_rep = np.where(days_in > 0, waiting / days_in,
                           np.nan).reshape(n_months, max(len(reps), 1))
    queue_mean, queue_low, queue_high = _nan_mean_band(per_rep, level)
    order = np.argsort(month, kind="stable")
    bounds = np.searchsorted(month[order], np.arange(n_months + 1))
    median = np.full(n_months, np.nan)
    p90 = np.full(n_months, np.nan)
    for k in range(n_months):
        values = queue[order[bounds[k]:bounds[k + 1]]]
        if values.size:
            median[k], p90[k] = np.percentile(values, [50, 90])
    return {"busy_mean": mean, "busy_low": low, "busy_high": high,
            "queue_median": median, "queue_p90": p90, "queue_mean": queue_mean,
            "queue_low": np.maximum(queue_low, 0.0), "queue_high": queue_high}


def _slots_text(capacity: pd.Series) -> str:
    if not len(capacity):
        return ""
    low, high = float(capacity.min()), float(capacity.max())
    if low == high:
        return f"{low:,.0f} slot{'s' if low != 1 else ''}"
    return f"{low:,.0f}–{high:,.0f} slots"


def month_steps(values: np.ndarray) -> np.ndarray:
    """Monthly values with the last repeated, to draw as post-steps ending at the last edge."""
    return np.append(values, values[-1:]) if len(values) else values


def site_timeline_figure(
    site_days: pd.DataFrame | SiteDays,
    scenario_name: str,
    *,
    smooth_days: int = 7,
    footer: str = "",
    display: ScenarioDisplay | None = None,
    level: float = 0.95,
) -> Figure:
    """Per capacity-limited site, month by month: the share of slot time in use and the
    waitlist for a slot (:func:`monthly_site_use`).

    Left: the share of slot time in use, mean across replications with its ``level`` CI (a
    1-slot site's slots-in-use is 0 or 1 at any moment, so a band across replications of the
    daily value spans 0–1 and says nothing; the monthly share does). Right: the median and 90th
    percentile of the number of patients waiting on a day of the month, over all replications.
    Sites and time are named with ``display`` (labels, calendar months and dates from the
    scenario's start date; without it site keys and 30.4-day months of simulation days).
    ``site_days`` is ``Results.site_days`` or the arrays it is built from (``site_profile``);
    ``smooth_days`` is accepted for compatibility and unused (months replace the smoothing).
    """
    del smooth_days
    display = display or ScenarioDisplay()
    sites, n_reps, rows_of, (first_day, last_day) = by_site(site_days)
    n_rows = max(len(sites), 1)
    with house_style():
        fig, axes = new_figure(
            n_rows, 2, figsize=(13, 1.6 + 2.9 * n_rows), sharex=True,
            title=f"Capacity-limited sites, month by month — {scenario_name}", footer=footer,
        )
        if not sites:
            for ax in axes[0]:
                _empty_message(ax, "No site data")
            return fig
        edges = month_starts(first_day, last_day, display.start_date)
        colour_use, colour_queue = OKABE_ITO["blue"], OKABE_ITO["vermillion"]
        warmup = display.warmup_days
        for row, site in enumerate(sites):
            ax_use, ax_queue = axes[row]
            rows = rows_of(site)
            frame = (rows.dropna(subset=["in_use", "queue"])
                     if rows[["in_use", "queue"]].isna().to_numpy().any() else rows)
            name = display.site(site)
            capacity = _capacity_by_day(rows)
            # With a warm-up, the notes are of the days from its end (the utilisation metric's).
            after = frame.loc[frame["day"] >= warmup] if warmup > 0 else frame
            total_slots = float(after["slots"].sum()) if len(after) else 0.0
            use_note = queue_note = ""
            if total_slots > 0:
                use_note = (f"; {_fmt_percent(100.0 * float(after['in_use'].sum()) / total_slots)}"
                            + (" after the warm-up" if warmup > 0 else " over the run"))
                queue_note = f"; mean {float(after['queue'].mean()):,.2f} waiting"
            slots = _slots_text(capacity)
            ax_use.set_title(f"{name}\nslot time in use{f' ({slots})' if slots else ''}{use_note}")
            ax_queue.set_title(f"{name}\npatients waiting for a slot{queue_note}")
            ax_use.set_ylabel("Slot time in use (%)")
            ax_queue.set_ylabel("Patients waiting")
            top_queue = top_use = 0.0
            if len(frame):
                month = monthly_site_use(frame, edges, level)
                draw_band(ax_use, edges, month_steps(100.0 * month["busy_low"]),
                          month_steps(100.0 * month["busy_mean"]),
                          month_steps(100.0 * month["busy_high"]), color=colour_use, steps=True)
                ax_queue.fill_between(edges, month_steps(month["queue_median"]),
                                      month_steps(month["queue_p90"]), step="post",
                                      color=colour_queue, alpha=0.2, linewidth=0)
                ax_queue.plot(edges, month_steps(month["queue_p90"]), color=colour_queue,
                              linestyle="--", linewidth=1.4, drawstyle="steps-post")
                ax_queue.plot(edges, month_steps(month["queue_median"]), color=colour_queue,
                              drawstyle="steps-post")
                if np.isfinite(month["busy_high"]).any():
                    top_use = 100.0 * float(np.nanmax(month["busy_high"]))
                if np.isfinite(month["queue_p90"]).any():
                    top_queue = float(np.nanmax(month["queue_p90"]))
            if warmup > 0:
                for ax in (ax_use, ax_queue):
                    ax.axvline(warmup, color="0.35", linestyle=":", linewidth=1.4)
            ax_use.set_ylim(0, percent_limit(top_use))
            ax_queue.set_ylim(0, max(top_queue, 1.0) * 1.1)
            if top_queue >= 3:  # whole patients: whole-number ticks (not 2.5 written as "2")
                ax_queue.yaxis.set_major_locator(MaxNLocator(integer=True))
            thousands(ax_queue.yaxis, 0 if top_queue >= 3 else 1)
        for ax in axes[-1]:
            day_axis(ax, display.start_date)
        handles: list[Any] = [
            Line2D([], [], color=colour_use, label="Slot time in use:\nmean across "
                   "replications"),
        ]
        if n_reps > 1:
            handles.append(Patch(color=colour_use, alpha=0.2, linewidth=0,
                                 label=f"{level:.0%} CI of the mean"))
        handles += [
            Line2D([], [], color=colour_queue, label="Patients waiting:\nmedian day"),
            Line2D([], [], color=colour_queue, linestyle="--", linewidth=1.4,
                   label="90th percentile day\n(90% of days have\nno more waiting)"),
        ]
        if warmup > 0:
            handles.append(Line2D([], [], color="0.35", linestyle=":", linewidth=1.4,
                                  label=f"End of the warm-up\n(day {warmup:,.0f}; the notes\nare of the days after)"))
        side_legend(axes[0, -1], handles, title="Each month, over\nall replications")
        axes[0, 0].set_xlim(max(first_day, float(edges[0])), min(last_day, float(edges[-1])))
    return fig
