"""Site calendars: capacity schedules, closures and allocations of starts, as dated changes.

A site with a slot schedule, closures or an allocation (``starts_per_month``/``_week``/``_day``)
is a :class:`~.pools.CalendarPool`; :func:`calendar_process` applies its changes at midnight of
the relevant days, before anything else happens at that instant (urgent events), and then serves
the waiters the change lets in. A daily allocation is given on the site's ``starts_on`` days
only (its sessions): on its other days no use starts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator

import numpy as np
import simpy
from simpy.core import URGENT

from ..scenario import WEEKDAYS, Site
from .pools import CalendarPool

__all__ = ["Urgent", "calendar_changes", "calendar_process", "capacity_profile", "daily_starts"]


class Urgent(simpy.events.Event):
    """A timeout processed before the ordinary events of its instant (calendar changes)."""

    def __init__(self, env: simpy.Environment, delay: float) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, URGENT, delay)


# Calendar actions, applied at midnight of their day.
_MONTH, _WEEK, _CAPACITY, _CLOSE, _OPEN, _DAY = range(6)


def daily_starts(site: Site, start_weekday: int) -> tuple[float, float]:
    """A daily allocation: the uses that may start on day 0, and the mean a day over a week
    (``starts_per_day`` on each of the site's ``starts_on`` days, 0 on its other days; the
    routing estimate's rate). Both unlimited without ``starts_per_day``."""
    if site.starts_per_day is None:
        return math.inf, math.inf
    week = [_day_allowance(site, w) for w in range(7)]
    return week[start_weekday % 7], sum(week) / 7.0


def _day_allowance(site: Site, weekday: int) -> float:
    if site.starts_on is not None and WEEKDAYS[weekday] not in site.starts_on:
        return 0.0
    return float(site.starts_per_day or 0)


def calendar_changes(site: Site, start_date: dt.date, start_weekday: int,
                      stop: float) -> tuple[int, bool, float, list[tuple[float, list[tuple[int, float]]]]]:
    """Initial capacity, closed state and reopening day, and the later changes grouped by day."""
    by_day: dict[float, list[tuple[int, float]]] = {}
    capacity = 0
    for day, slots in site.slot_changes(start_date):
        if day <= 0:
            capacity = slots
        elif day < stop:
            by_day.setdefault(day, []).append((_CAPACITY, slots))
    closed, reopen = False, 0.0
    for a, b in site.closed_days(start_date):
        if b <= 0:
            continue
        if a <= 0:
            closed, reopen = True, b
        elif a < stop:
            by_day.setdefault(a, []).append((_CLOSE, b))
        if b < stop:
            by_day.setdefault(b, []).append((_OPEN, 0.0))
    if site.starts_per_month is not None:
        year, month = start_date.year, start_date.month
        while True:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            try:
                day = float((dt.date(year, month, 1) - start_date).days)
            except (ValueError, OverflowError):  # past year 9999
                break
            if day >= stop:
                break
            by_day.setdefault(day, []).append((_MONTH, 0.0))
    if site.starts_per_week is not None:
        day = float((7 - start_weekday) % 7 or 7)  # the first Monday after day 0
        while day < stop:
            by_day.setdefault(day, []).append((_WEEK, 0.0))
            day += 7.0
    if site.starts_per_day is not None:
        # Each session day's allocation at its midnight, and 0 at the midnight after it (a day
        # that follows a day without a session is left at 0).
        allowance = [_day_allowance(site, w) for w in range(7)]
        d = 1
        while d < stop:
            today, before = allowance[(start_weekday + d) % 7], allowance[(start_weekday + d - 1) % 7]
            if today > 0 or before > 0:
                by_day.setdefault(float(d), []).append((_DAY, today))
            d += 1
    return capacity, closed, reopen, sorted(by_day.items())


def capacity_profile(site: Site, start_date: dt.date, end_day: float) -> tuple[float, np.ndarray]:
    """Mean capacity over ``[0, end_day]`` and the mean capacity of each one-day bin."""
    changes = site.slot_changes(start_date)
    times = np.array([max(d, 0.0) for d, _ in changes])
    values = np.array([float(v) for _, v in changes])
    n_days = max(1, int(math.ceil(end_day)))
    edges = np.arange(n_days + 1, dtype=float)

    def integral(x: np.ndarray) -> np.ndarray:
        k = np.searchsorted(times, x, side="right") - 1
        at = np.concatenate(([0.0], np.cumsum(values[:-1] * np.diff(times))))
        kk = np.maximum(k, 0)
        return np.where(k >= 0, at[kk] + values[kk] * (x - times[kk]), 0.0)

    daily = np.diff(integral(edges))
    mean = float(integral(np.array([end_day]))[0] / end_day) if end_day > 0 else float(values[0])
    return mean, daily


def calendar_process(env: simpy.Environment, pool: CalendarPool,
             changes: list[tuple[float, list[tuple[int, float]]]]) -> Iterator[simpy.Event]:
    """Apply a site's calendar changes at their instants and hand out freed-up slots."""
    for day, actions in changes:
        yield Urgent(env, day - env.now)
        for kind, value in actions:
            if kind == _MONTH:
                pool.month_left = pool.per_month
            elif kind == _WEEK:
                pool.week_left = pool.per_week
            elif kind == _DAY:
                pool.day_left = value
            elif kind == _CAPACITY:
                pool.capacity = int(value)
            elif kind == _CLOSE:
                pool.closed_now, pool.reopen = True, value
            else:
                pool.closed_now = False
        pool.refresh()
        pool.serve(env.now)
