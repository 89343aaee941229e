"""Capacity-limited sites over time: slots in use against capacity and the queue of patients
waiting for a slot, per site, across replications."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...metrics import SiteDays
from .style import (
    OKABE_ITO,
    _empty_message,
    _n_replications,
    draw_band,
    house_style,
    new_figure,
    side_legend,
)

__all__ = ["site_mean_band", "site_timeline_figure"]

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


def _by_site(site_days: pd.DataFrame | SiteDays,
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


def site_timeline_figure(
    site_days: pd.DataFrame | SiteDays,
    scenario_name: str,
    *,
    smooth_days: int = 7,
    footer: str = "",
) -> Figure:
    """Per site, slots in use against capacity and the queue of waiting patients over time.

    Curves are the mean across replications (the expected slots in use and queue length) of
    a ``smooth_days``-day centred rolling mean (1 = no smoothing), with the 2.5th–97.5th
    percentile band across replications (:func:`site_mean_band`); capacity is not smoothed.
    Panel titles give the mean utilisation and queue length over the days shown.
    ``site_days`` is ``Results.site_days`` or the arrays it is built from (``site_profile``).
    """
    sites, n_reps, rows_of, (first_day, last_day) = _by_site(site_days)
    n_rows = max(len(sites), 1)
    with house_style():
        fig, axes = new_figure(
            n_rows, 2, figsize=(13, 1.4 + 2.7 * n_rows), sharex=True,
            title=f"Manufacturing site use over time — {scenario_name}", footer=footer,
        )
        if not sites:
            for ax in axes[0]:
                _empty_message(ax, "No site data")
            return fig
        smooth_note = f"\n({smooth_days}-day rolling mean)" if smooth_days > 1 else ""
        spread = "Middle 95% of\nreplications" if n_reps > 1 else None
        colour_use, colour_queue = OKABE_ITO["blue"], OKABE_ITO["vermillion"]
        for row, site in enumerate(sites):
            ax_use, ax_queue = axes[row]
            rows = rows_of(site)
            frame = (rows.dropna(subset=["in_use", "queue"])
                     if rows[["in_use", "queue"]].isna().to_numpy().any() else rows)
            capacity = _capacity_by_day(rows)
            # Means over the days shown and the replications: the expected utilisation and
            # queue length (second title line, so long site names do not collide).
            total_slots = float(frame["slots"].sum()) if len(frame) else 0.0
            use_note = queue_note = ""
            if total_slots > 0:
                use_note = f"\nmean utilisation {100.0 * float(frame['in_use'].sum()) / total_slots:.0f}%"
                queue_note = f"\nmean {float(frame['queue'].mean()):.2f} waiting"
            ax_use.set_title(f"{site}: manufacturing slots in use{use_note}")
            ax_queue.set_title(f"{site}: patients waiting for a slot{queue_note}")
            ax_use.set_ylabel("Slots")
            ax_queue.set_ylabel("Patients")
            top_use = float(capacity.max()) if len(capacity) else 0.0
            top_queue = 0.0
            if len(frame):
                x, low, mid, high = site_mean_band(frame, "in_use", smooth_days)
                draw_band(ax_use, x, low, mid, high, color=colour_use)
                top_use = max(top_use, float(np.nanmax(high)))
                x, low, mid, high = site_mean_band(frame, "queue", smooth_days)
                draw_band(ax_queue, x, low, mid, high, color=colour_queue)
                top_queue = float(np.nanmax(high))
            if len(capacity):
                ax_use.plot(capacity.index.to_numpy(dtype=float), capacity.to_numpy(dtype=float),
                            color="black", linestyle="--", linewidth=1.5,
                            drawstyle="steps-post")
            ax_use.set_ylim(0, max(top_use, 1.0) * 1.12)
            ax_queue.set_ylim(0, max(top_queue, 1.0) * 1.12)
        for ax in axes[-1]:
            ax.set_xlabel("Simulation day")
        # One legend for the figure, in neutral colours: the encodings repeat on every panel
        # (blue = slots, vermillion = queue) and a legend inside a panel would hide data.
        handles: list[Any] = [
            Line2D([], [], color="#333333", label=f"Mean across\nreplications{smooth_note}"),
        ]
        if spread:
            handles.append(Patch(color="#999999", alpha=0.35, linewidth=0, label=spread))
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1.5,
                              label="Capacity (slots)"))
        side_legend(axes[0, -1], handles)
        axes[0, 0].set_xlim(first_day, last_day)
    return fig
