"""Choosing a warm-up by Welch's method: the mean wait for a slot by month of referral, averaged
over replications and smoothed by Welch's moving average, with the month from which it settles.

Welch's method (Law, *Simulation Modeling and Analysis*, 5th ed., section 9.5.1): average the
output of each period over the replications (``Y_1 .. Y_m``), then smooth with a centred moving
average of half-window ``w``,

    Ȳ_i(w) = (Y_{i-w} + ... + Y_{i+w}) / (2w + 1)          for i = w+1 .. m-w,
    Ȳ_i(w) = (Y_1 + ... + Y_{2i-1}) / (2i - 1)              for i = 1 .. w,

and take as warm-up the period after which the smoothed curve is flat. Here a period is a month
of :data:`MONTH_DAYS` days of referrals from ``start_date``, the output is the mean
``queue_wait_days`` of the patients referred in it, and "flat" is a rule
(:func:`suggest_warmup`): the first month from which the moving average stays within a band
around its mean over the second half of the horizon, the band being ±5% of that mean, or twice
the moving average's noise (the standard deviation of the second half's monthly means from
their successive differences, over the square root of the window's 2w + 1 months: a trend does
not widen it), or ±0.5 days, whichever is widest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .style import OKABE_ITO, _empty_message, house_style, new_figure, side_legend

__all__ = ["MONTH_DAYS", "WarmupSuggestion", "monthly_waits", "suggest_warmup",
           "welch_moving_average", "warmup_figure"]

#: Days in a month of referrals (a twelfth of 365 days).
MONTH_DAYS = 365.0 / 12
#: Welch's half-window, in months: a centred average of 2w + 1 = 13 months.
WINDOW = 6
#: The band around the settled level: ±5% of it, at least twice the moving average's noise, and
#: at least ±0.5 days.
TOLERANCE, NOISE_SDS, MIN_BAND_DAYS = 0.05, 2.0, 0.5


def fitted_window(months: int, window: int = WINDOW) -> int:
    """The half-window used for ``months`` months of referrals: ``window``, but at most a
    quarter of the months (Welch's rule w <= m / 4), so that a short horizon still has a second
    half of the moving average to settle in."""
    return max(0, min(window, (months - 1) // 4))


def welch_moving_average(y: np.ndarray | list[float], w: int) -> np.ndarray:
    """Welch's moving average ``Ȳ_1(w) .. Ȳ_{m-w}(w)`` of ``y`` (length ``m``; NaNs skipped
    within a window); empty when ``m <= w``."""
    y = np.asarray(y, dtype=float)
    if w < 0:
        raise ValueError("the window w must be at least 0")
    out = np.full(max(y.size - w, 0), math.nan)
    for i in range(out.size):  # 0-based: Ȳ_{i+1}
        half = min(i, w)
        part = y[i - half:i + half + 1]
        if np.isfinite(part).any():
            out[i] = float(np.nanmean(part))
    return out


def monthly_waits(patients: pd.DataFrame, horizon_days: float) -> np.ndarray:
    """``Y_1 .. Y_m``: for each month of referrals wholly within the horizon, the mean over
    replications of each replication's mean ``queue_wait_days`` of the patients referred in
    that month (NaN: no patient referred in it in any replication)."""
    m = int(math.floor(horizon_days / MONTH_DAYS + 1e-9))
    month = np.floor(patients["referral_day"].to_numpy(dtype=float) / MONTH_DAYS).astype(np.int64)
    keep = month < m
    frame = pd.DataFrame({"replication": patients["replication"].to_numpy()[keep], "month": month[keep],
                          "wait": patients["queue_wait_days"].to_numpy(dtype=float)[keep]})
    per_rep = frame.groupby(["month", "replication"], sort=True)["wait"].mean()
    return per_rep.groupby(level="month").mean().reindex(range(m)).to_numpy(dtype=float)


@dataclass(frozen=True)
class WarmupSuggestion:
    """What :func:`suggest_warmup` found (``months``/``days`` ``None``: it never settles)."""

    window: int
    tolerance: float
    level_days: float
    band_days: float
    months: int | None
    days: float | None

    def text(self) -> str:
        if self.months is None:
            return (f"warm-up: the {2 * self.window + 1}-month moving average of the wait for a slot "
                    f"does not settle within ±{self.band_days:.1f} days of its second-half mean "
                    f"({self.level_days:.1f} days): no warm-up suggested (the wait may keep "
                    "growing, or the horizon is too short)")
        return (f"warm-up: Welch's method suggests {self.days:,.0f} days ({self.months} months): from "
                f"then on the {2 * self.window + 1}-month moving average of the wait for a slot stays "
                f"within ±{self.band_days:.1f} days of its second-half mean ({self.level_days:.1f} days)")

    def record(self) -> dict[str, Any]:
        """For the manifest."""
        return asdict(self)


def suggest_warmup(y: np.ndarray | list[float], window: int = WINDOW,
                   tolerance: float = TOLERANCE) -> WarmupSuggestion:
    """The first month (0-based, so a warm-up of that many months) from which every value of
    Welch's moving average of the monthly means ``y`` (``m`` months) lies within ``±band`` of
    ``level``: ``window`` is first cut to :func:`fitted_window`; ``level`` is the mean of the
    moving average over the second half (from month ``m // 2``), ``band`` the widest of ``tolerance × level``, twice the moving average's noise
    (``sd(diff(y[m//2:])) / sqrt(2) / sqrt(2w + 1)``) and 0.5 days. ``months`` is ``None`` when
    the last value of the moving average is outside the band."""
    y = np.asarray(y, dtype=float)
    window = fitted_window(y.size, window)
    moving = welch_moving_average(y, window)
    second = moving[y.size // 2:]
    second = second[np.isfinite(second)]
    level = float(second.mean()) if second.size else math.nan
    steps = np.diff(y[y.size // 2:])
    steps = steps[np.isfinite(steps)]
    noise = (NOISE_SDS * float(steps.std(ddof=1)) / math.sqrt(2 * (2 * window + 1))
             if steps.size > 1 else 0.0)
    band = max(tolerance * abs(level), noise, MIN_BAND_DAYS) if math.isfinite(level) else math.nan
    months: int | None = None
    if math.isfinite(level):
        outside = np.flatnonzero(~(np.abs(moving - level) <= band))
        first = 0 if not outside.size else int(outside[-1]) + 1
        months = first if first < moving.size else None
    return WarmupSuggestion(window, tolerance, level, band, months,
                            None if months is None else months * MONTH_DAYS)


def warmup_figure(patients: pd.DataFrame, scenario_name: str, horizon_days: float, *,
                  warmup_days: float = 0.0, window: int = WINDOW,
                  footer: str = "") -> tuple[Figure, WarmupSuggestion]:
    """The mean wait for a slot by month of referral across replications, Welch's moving
    average (half-window ``window`` months), the band of :func:`suggest_warmup` and its
    suggestion, and the scenario's ``warmup_days`` if set. ``patients`` is every patient
    (warm-up included). Returns the figure and the suggestion."""
    y = monthly_waits(patients, horizon_days)
    m = y.size
    window = fitted_window(m, window)
    moving = welch_moving_average(y, window)
    found = suggest_warmup(y, window)
    n_reps = int(patients["replication"].nunique()) if len(patients) else 0
    with house_style():
        fig, axes = new_figure(1, 1, figsize=(11, 5.2), footer=footer,
                               title=f"Choosing a warm-up (Welch's method) — {scenario_name}")
        ax = axes[0, 0]
        ax.set_xlabel("Month of referral (months of 30.4 days from start_date)")
        ax.set_ylabel("Mean wait for a slot (days)")
        if not moving.size or not np.isfinite(moving).any():
            _empty_message(ax, "Too few months of referrals")
            return fig, found
        months = np.arange(1, m + 1)
        raw, smooth, mark = "0.55", OKABE_ITO["blue"], OKABE_ITO["vermillion"]
        ax.plot(months, y, color=raw, marker="o", markersize=3, linewidth=0.8)
        ax.plot(months[:moving.size], moving, color=smooth, linewidth=2.4)
        handles: list[Any] = [
            Line2D([], [], color=raw, marker="o", markersize=3, linewidth=0.8,
                   label=f"Month's mean wait,\nmean of {n_reps} replications"),
            Line2D([], [], color=smooth, linewidth=2.4,
                   label=f"Welch's moving average\n(w = {window}: {2 * window + 1}-month window)"),
        ]
        if math.isfinite(found.level_days):
            ax.axhspan(found.level_days - found.band_days, found.level_days + found.band_days,
                       color=smooth, alpha=0.12, linewidth=0)
            handles.append(Patch(color=smooth, alpha=0.12, linewidth=0,
                                 label=f"Second-half mean ± {found.band_days:.1f} d\n"
                                       f"(the widest of ±{100 * found.tolerance:.0f}%,\n"
                                       f"±{NOISE_SDS:g} SD of its noise, ±{MIN_BAND_DAYS} d)"))
        top = float(np.nanmax(np.concatenate([y[np.isfinite(y)], moving[np.isfinite(moving)]])))
        if found.months is not None:
            at = found.months + 0.5  # the boundary between month k and k + 1
            ax.axvline(at, color=mark, linestyle="--", linewidth=1.6)
            handles.append(Line2D([], [], color=mark, linestyle="--", linewidth=1.6,
                                  label=f"Suggested warm-up:\n{found.months} months "
                                        f"({found.days:,.0f} days)"))
        else:
            ax.text(0.99, 0.04, "The moving average does not settle:\nno warm-up suggested",
                    transform=ax.transAxes, ha="right", va="bottom", color=mark)
        if warmup_days > 0:
            ax.axvline(warmup_days / MONTH_DAYS + 0.5, color="0.2", linestyle=":", linewidth=1.6)
            handles.append(Line2D([], [], color="0.2", linestyle=":", linewidth=1.6,
                                  label=f"The scenario's warm-up:\n{warmup_days:,.0f} days"))
        ax.set_xlim(0.5, m + 0.5)
        ax.set_ylim(0, max(top, 1.0) * 1.12)
        side_legend(ax, handles, title="Wait for a slot by\nmonth of referral")
    return fig, found
