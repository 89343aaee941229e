"""Clocks: the referral days of a replication, disease clocks under bridging therapy (a hazard
ratio for a while, as an exact new deadline), and the simulation clock at each referral as the
SimPy engine reaches it.

Each clock is a cumulative-hazard budget ``E = -log(1 - u)`` (the same uniform as the plain
clock, so common random numbers hold) consumed at ``hazard_ratio`` times the hazard while
bridging lasts; solving for the time the budget is spent gives the new deadline exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..scenario import Scenario
from ..scenario.distributions import DistributionSpec
from .collect import DIED as _DIED
from .rng import Draws, Streams, Uniforms

__all__ = ["Bridge", "arrival_days", "arrival_days_together", "bridged_clock", "hazard_form", "course_lengths",
           "end_of_bridging", "referral_clock"]


#: Families whose cumulative hazard has a closed form that :func:`bridged_clock` evaluates in
#: scalar floating point (C's ``pow``, not NumPy's vectorised one, which may differ in the last
#: bit), as the compiled loop does: ``(code, scale, shape)`` with ``H(t) = (max(t, 0) /
#: scale) ** shape`` (shape 1: exponential); code 3, a clock that never rings.
HAZARD_OTHER, HAZARD_EXPONENTIAL, HAZARD_WEIBULL, HAZARD_NEVER = 0, 1, 2, 3


def hazard_form(dist: DistributionSpec) -> tuple[int, float, float]:
    """The closed form of ``dist``'s cumulative hazard: ``(code, scale, shape)`` (code
    ``HAZARD_OTHER``: none; the distribution's own ``cumhaz`` is used)."""
    family = getattr(dist, "dist", None)
    if family == "exponential":
        return HAZARD_EXPONENTIAL, float(dist.scale), 1.0  # type: ignore[union-attr]
    if family == "weibull":
        return HAZARD_WEIBULL, float(dist.scale), float(dist.shape)  # type: ignore[union-attr]
    if family == "never":
        return HAZARD_NEVER, math.inf, 1.0
    return HAZARD_OTHER, math.nan, math.nan


def _cumhaz(dist: DistributionSpec, form: tuple[int, float, float], t: float) -> float:
    code, scale, shape = form
    if code == HAZARD_EXPONENTIAL:
        return max(t, 0.0) / scale
    if code == HAZARD_WEIBULL:
        try:
            return (max(t, 0.0) / scale) ** shape
        except OverflowError:  # far past the scale with a large shape: S(t) = 0
            return math.inf
    return float(dist.cumhaz(t))


def _cumhaz_inv(dist: DistributionSpec, form: tuple[int, float, float], e: float) -> float:
    code, scale, shape = form
    if code == HAZARD_EXPONENTIAL:
        return e * scale
    if code == HAZARD_WEIBULL:
        try:
            return scale * e ** (1 / shape)
        except OverflowError:
            return math.inf
    return float(dist.cumhaz_inv(e))


def bridged_clock(dist: DistributionSpec, u: float, t0: float, s: float, d: float, ratio: float) -> float:
    """A clock's time (from referral) when its hazard is multiplied by ``ratio`` on ``[s, s + d]``.

    The clock is the time its cumulative hazard H reaches the budget E = -log(1 - u) (so without
    bridging it is ``t0 = ppf(u)``). By time s the budget H(s) is spent; bridging spends
    ``ratio * (H(t) - H(s))`` more; afterwards the hazard is the plain one again. ``d`` may be
    infinite (a course until infusion: the ratio applies from s on). The compiled loop's
    ``_bridged_clock`` is the same computation for the closed forms of :func:`hazard_form`.
    """
    if not t0 > s or t0 == math.inf or ratio == 1.0:
        return t0  # already rung, never rings, or unchanged
    form = hazard_form(dist)
    budget = -math.log1p(-u)
    h_start = _cumhaz(dist, form, s)
    left = budget - h_start
    if not left > 0:
        return t0
    h_end = _cumhaz(dist, form, s + d)
    spent = ratio * (h_end - h_start) if ratio > 0 else 0.0
    if ratio > 0 and spent >= left:
        t = _cumhaz_inv(dist, form, h_start + left / ratio)
        return min(max(t, s), s + d)
    t = _cumhaz_inv(dist, form, h_end + (left - spent))
    # Past the end of the support (or an overflowing H): the clock rings as bridging stops.
    return max(t, s + d) if math.isfinite(t) else s + d


@dataclass
class Bridge:
    """A cohort's bridging therapy, compiled."""

    death: DistributionSpec
    ineligible: DistributionSpec
    ratio: float
    cost: float
    toxicity_probability: float
    durations: "Draws | None"  # None: until_infusion (the course lasts until leaving the pathway)
    toxicity: "Uniforms | None"
    delays: "Draws | None"
    cost_per_day: float = 0.0


def course_lengths(rep: Any) -> np.ndarray:
    """The length of each bridged patient's course in replication ``rep`` (NaN: no bridging;
    inf: until_infusion, the course lasts until the patient leaves the pathway)."""
    n = rep.n
    out = np.full(n, math.nan)
    bridged = ~np.isnan(rep.rec.bridging_day)
    for c, b in enumerate(rep.cohort_bridge):
        m = bridged & (rep.cohort_of == c)
        if b is not None and m.any():
            out[m] = math.inf if b.durations is None else np.frombuffer(b.durations.head(n), dtype=float)[:n][m]
    return out


def end_of_bridging(rep: Any, stop: float) -> np.ndarray:
    """Days each patient was on bridging (NaN: none), from its start to the end of its course or
    the day the patient left the pathway (the run's stop if still in it), whichever is first;
    after the run of replication ``rep`` (any engine): ``cost_per_day`` for those days is added
    to the patients' costs, and a course until infusion ends as the patient leaves, so the death
    clock after leaving (life-years of a patient not infused) has the ratio only until then."""
    rec = rep.rec
    left = np.where(np.isnan(rec.outcome_day), stop, rec.outcome_day)
    days = np.minimum(course_lengths(rep), left - rec.bridging_day)
    for c, b in enumerate(rep.cohort_bridge):
        if b is None:
            continue
        mine = (rep.cohort_of == c) & ~np.isnan(days)
        if b.cost_per_day and mine.any():
            rec.cost[mine] += b.cost_per_day * days[mine]
        if b.durations is not None or b.ratio == 1.0:
            continue
        for i in np.flatnonzero(mine & (rec.outcome != _DIED)).tolist():
            t0 = float(b.death.ppf(rep.u_death[i:i + 1])[0])  # the plain clock, as drawn
            s = float(rec.bridging_day[i] - rep.arrivals[i])
            rep.death[i] = bridged_clock(b.death, float(rep.u_death[i]), t0, s, float(days[i]), b.ratio)
    return days


def referral_clock(arrivals: np.ndarray) -> np.ndarray:
    """The simulation clock at each referral, as the SimPy engine's referral process reaches
    it: ``now + (day - now)`` after each wait (rounding can make that differ from ``day``)."""
    n = arrivals.size
    if n == 0:
        return arrivals.copy()
    prev = np.concatenate(([0.0], arrivals[:-1]))
    clock = np.where(arrivals > prev, prev + (arrivals - prev), prev)
    clock[0] = 0.0 + (arrivals[0] - 0.0) if arrivals[0] > 0.0 else 0.0
    # Where that differs from the day, the clock runs apart from the days until it meets them
    # again: replay those stretches one referral at a time.
    k = 0
    for bad in np.flatnonzero(clock != arrivals).tolist():
        if bad < k:
            continue
        now = clock[bad - 1] if bad > 0 else 0.0
        k = bad
        while k < n:
            day = arrivals[k]
            if day > now:
                now = now + (day - now)
            clock[k] = now
            k += 1
            if now == day:
                break
    return clock


def _arrival_gaps(scenario: Scenario) -> tuple[Any, float]:
    """The gaps between referrals as a function of their uniforms, and the expected number of
    referrals in the horizon (a Poisson rate or an interarrival distribution)."""
    horizon = scenario.horizon_days
    arr = scenario.arrivals
    if arr.rate_per_year is not None:
        mean = 365.0 / arr.rate_per_year

        def gaps(u: np.ndarray) -> np.ndarray:
            with np.errstate(over="ignore", invalid="ignore"):  # a gap past the float range is inf
                return np.nan_to_num(-mean * np.log1p(-u), nan=0.0, posinf=math.inf)  # inf * 0: 0

        return gaps, horizon / mean
    dist = arr.interarrival
    assert dist is not None
    return dist.ppf, horizon / max(dist.mean(), 1e-12)


def _first_size(expected: float) -> int:
    return int(expected + 6 * math.sqrt(expected) + 16)


def arrival_days(scenario: Scenario, streams: Streams) -> np.ndarray:
    """Referral days in ``[0, horizon)`` for one replication."""
    horizon = scenario.horizon_days
    arr = scenario.arrivals
    if arr.schedule is not None:
        days = np.sort(np.asarray(arr.schedule, dtype=float))
        return days[days < horizon]
    gaps, expected = _arrival_gaps(scenario)
    stream = streams("arrivals")
    size = _first_size(expected)
    while True:
        days = np.cumsum(gaps(stream.extend_to(size)[:size]))
        if days[-1] >= horizon or not np.isfinite(days[-1]):
            return days[days < horizon]
        size *= 2


def arrival_days_together(scenario: Scenario, streams: list[Streams]) -> list[np.ndarray]:
    """:func:`arrival_days` of several replications: their first uniforms side by side, the
    gaps and their running sums computed for all at once (element by element, and each row's
    sum in order: the same days); a replication whose first draws fall short goes on alone."""
    arr = scenario.arrivals
    if arr.schedule is not None or len(streams) < 2:
        return [arrival_days(scenario, s) for s in streams]
    horizon = scenario.horizon_days
    gaps, expected = _arrival_gaps(scenario)
    size = _first_size(expected)
    u = np.empty((len(streams), size))
    for row, s in zip(u, streams):
        row[:] = s("arrivals").extend_to(size)[:size]
    days = np.cumsum(gaps(u), axis=1)
    out = []
    for row, s in zip(days, streams):
        if row[-1] >= horizon or not np.isfinite(row[-1]):
            out.append(row[row < horizon])
        else:
            out.append(arrival_days(scenario, s))
    return out
