"""The SimPy model of one replication: referrals, disease clocks, steps, sites.

A patient is a SimPy process that walks its pathway's steps in order. Before a step it
acquires the site slots the step (or a later step with ``reserve_from``) needs, waits for an
allowed start day, then spends the step's duration. Its disease clocks are fixed at referral
as one deadline (the earlier of death and ineligibility); every wait is cut short by it, so a
patient who dies in a queue or during a step leaves at the exact time and frees every slot.

Randomness is read from named streams by patient index (see :mod:`v2vsim.rng`), so the same
patient gets the same draws for the same purpose in any scenario.

Policies (all optional; a scenario without them runs the plain code paths):

* A site with a slot schedule, closures or an allocation (``starts_per_month``/``_week``) is a
  :class:`_CalendarPool`: a *use* starts when a patient takes a slot, and a calendar process
  changes capacity, opens and closes the site and renews allocations at midnight of the
  relevant days, before anything else happens at that instant (urgent events).
* A cohort's routing rule picks its pathway at referral from the primary's booking site.
* Bridging therapy changes the disease clocks once, when it starts: each clock is a
  cumulative-hazard budget ``E = -log(1 - u)`` (the same uniform as the plain clock) consumed at
  ``hazard_ratio`` times the hazard while bridging lasts, which gives the new deadline exactly.
* Survival after infusion gives every patient a day of death and life-years in a follow-up
  window (computed at the end of the replication, vectorised).
"""

from __future__ import annotations

import datetime as dt
import math
from array import array
from bisect import bisect_right
from heapq import heappop, heappush
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import simpy
from simpy.core import URGENT

from ..scenario.distributions import DistributionSpec
from .rng import Streams
from ..scenario import DAYS_PER_YEAR, OUTCOME_BY_KIND, OUTCOMES, WEEKDAYS, PathwayRule, Scenario, Site

__all__ = ["OUTCOMES", "ReplicationOutput", "run_replication", "arrival_days"]

_CODE = {name: i for i, name in enumerate(OUTCOMES)}
_INFUSED, _DIED, _INELIGIBLE, _UNRESOLVED = (_CODE[k] for k in ("infused", "died", "ineligible", "unresolved"))


def _floats(values: np.ndarray) -> array:
    """A compact array of Python-indexable floats (8 bytes each, unlike a list's 32)."""
    out = array("d")
    out.frombytes(np.ascontiguousarray(values, dtype=float).tobytes())
    return out


class _Draws:
    """Values of one distribution read by patient index from one uniform stream."""

    __slots__ = ("_stream", "_dist", "_values")

    def __init__(self, stream: Any, dist: DistributionSpec, size_hint: int) -> None:
        self._stream = stream
        self._dist = dist
        self._values = array("d")
        if size_hint:
            self._grow(size_hint)

    def _grow(self, size: int) -> None:
        self._values = _floats(self._dist.ppf(self._stream.extend_to(size)))

    def __getitem__(self, index: int) -> float:
        try:
            return self._values[index]
        except IndexError:
            self._grow(index + 1)
            return self._values[index]

    def head(self, size: int) -> array:
        """The values of (at least) patients ``0 .. size-1``."""
        if len(self._values) < size:
            self._grow(size)
        return self._values


class _Uniforms:
    """Plain uniforms by patient index (failure and response draws)."""

    __slots__ = ("_stream", "_values")

    def __init__(self, stream: Any, size_hint: int) -> None:
        self._stream = stream
        self._values = _floats(stream.extend_to(size_hint)) if size_hint else array("d")

    def __getitem__(self, index: int) -> float:
        try:
            return self._values[index]
        except IndexError:
            self._values = _floats(self._stream.extend_to(index + 1))
            return self._values[index]

    def head(self, size: int) -> array:
        """The values of (at least) patients ``0 .. size-1``."""
        if len(self._values) < size:
            self._values = _floats(self._stream.extend_to(size))
        return self._values


class _SlotPool:
    """A site's slots: at most ``slots`` held at once, waiters served by (priority, arrival).

    Lighter than ``simpy.PriorityResource``: taking a free slot or handing a slot back costs
    no event at all; only a patient who has to wait gets an event, which is triggered either
    by the slot being handed over or by the patient's disease clock (see ``_Sim.patient``).
    Waiters whose event has already triggered (they died) are skipped when popped.
    """

    __slots__ = ("slots", "free", "queued", "_heap", "_seq", "log")

    def __init__(self, slots: int, log: array | None) -> None:
        self.slots = slots
        self.free = slots
        self.queued = 0
        self._heap: list[tuple[int, int, simpy.Event]] = []
        self._seq = 0
        self.log = log

    def enqueue(self, priority: int, event: simpy.Event, now: float) -> None:
        heappush(self._heap, (priority, self._seq, event))
        self._seq += 1
        self.queued += 1
        if self.log is not None:
            self.log.extend((now, self.slots - self.free, self.queued))

    def left_queue(self, now: float) -> None:
        """A waiter gave up (its clock rang); its heap entry is skipped later."""
        self.queued -= 1
        if self.log is not None:
            self.log.extend((now, self.slots - self.free, self.queued))

    def take(self, now: float) -> None:
        self.free -= 1
        if self.log is not None:
            self.log.extend((now, self.slots - self.free, self.queued))

    def release(self, now: float) -> None:
        heap = self._heap
        while heap:
            event = heappop(heap)[2]
            if not event.triggered:
                # Hand the slot straight to the next waiter: it stays in use.
                self.queued -= 1
                event.succeed(_GRANTED)
                if self.log is not None:
                    self.log.extend((now, self.slots - self.free, self.queued))
                return
        self.free += 1
        if self.log is not None:
            self.log.extend((now, self.slots - self.free, self.queued))

    def in_use(self) -> int:
        return self.slots - self.free

    def expected_wait(self, now: float, hold_days: float) -> float:
        """Routing estimate: 0 if a slot can be taken now, else (waiting + 1) x hold / slots."""
        if self.free > 0:
            return 0.0
        return (self.queued + 1) * hold_days / self.slots


#: Mean days in a calendar month (routing estimate of an allocation's rate).
DAYS_PER_MONTH = 365.25 / 12


class _CalendarPool(_SlotPool):
    """A site whose capacity, opening or allowed starts depend on the date.

    ``free`` is kept equal to the number of slots a patient may take *now* (capacity minus
    slots held, at most what is left of the month's and the week's allocations, 0 while
    closed), so the patient process treats both pools alike. A use starts when a slot is
    taken; a reduction of capacity evicts nobody. ``_Sim.calendar`` changes the state at
    midnight of the relevant days and hands freed-up slots to waiters.
    """

    __slots__ = ("held", "capacity", "closed_now", "reopen", "per_month", "per_week",
                 "month_left", "week_left", "starts")

    def __init__(self, capacity: int, log: array | None, per_month: float, per_week: float) -> None:
        super().__init__(capacity, log)
        self.held = 0
        self.capacity = capacity
        self.closed_now = False
        self.reopen = 0.0
        self.per_month = self.month_left = per_month
        self.per_week = self.week_left = per_week
        self.starts: list[float] = []  # when each use started
        self.refresh()

    def refresh(self) -> None:
        if self.closed_now:
            self.free = 0
            return
        free = self.capacity - self.held
        left = self.month_left if self.month_left < self.week_left else self.week_left
        if free > left:
            free = int(left)
        self.free = free if free > 0 else 0

    def _log(self, now: float) -> None:
        if self.log is not None:
            self.log.extend((now, self.held, self.queued))

    def _use(self, now: float) -> None:
        self.held += 1
        self.month_left -= 1
        self.week_left -= 1
        self.starts.append(now)
        self.refresh()

    def enqueue(self, priority: int, event: simpy.Event, now: float) -> None:
        heappush(self._heap, (priority, self._seq, event))
        self._seq += 1
        self.queued += 1
        self._log(now)

    def left_queue(self, now: float) -> None:
        self.queued -= 1
        self._log(now)

    def take(self, now: float) -> None:
        self._use(now)
        self._log(now)

    def release(self, now: float) -> None:
        self.held -= 1
        self.refresh()
        if not self.pump(now):
            self._log(now)

    def pump(self, now: float) -> int:
        """Grant free slots to waiters in (priority, arrival) order; returns how many."""
        heap = self._heap
        granted = 0
        while self.free > 0 and heap:
            event = heappop(heap)[2]
            if event.triggered:
                continue
            self.queued -= 1
            self._use(now)
            event.succeed(_GRANTED)
            self._log(now)
            granted += 1
        return granted

    def in_use(self) -> int:
        return self.held

    def expected_wait(self, now: float, hold_days: float) -> float:
        """0 if a slot can be taken now, else (waiting + 1) / (uses per day), plus the rest of
        a closure; uses per day = min(capacity / hold, per month / 30.44, per week / 7)."""
        if self.free > 0:
            return 0.0
        rate = self.capacity / hold_days if hold_days > 0 else math.inf
        rate = min(rate, self.per_month / DAYS_PER_MONTH, self.per_week / 7.0)
        wait = (self.queued + 1) / rate if rate > 0 else math.inf
        if self.closed_now:
            wait += self.reopen - now
        return wait


class _Urgent(simpy.events.Event):
    """A timeout processed before the ordinary events of its instant (calendar changes)."""

    def __init__(self, env: simpy.Environment, delay: float) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, URGENT, delay)


# Calendar actions, applied at midnight of their day.
_MONTH, _WEEK, _CAPACITY, _CLOSE, _OPEN = range(5)


def _calendar_changes(site: Site, start_date: dt.date, start_weekday: int,
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
    return capacity, closed, reopen, sorted(by_day.items())


def _capacity_profile(site: Site, start_date: dt.date, end_day: float) -> tuple[float, np.ndarray]:
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


def _bridged_clock(dist: DistributionSpec, u: float, t0: float, s: float, d: float, ratio: float) -> float:
    """A clock's time (from referral) when its hazard is multiplied by ``ratio`` on ``[s, s + d]``.

    The clock is the time its cumulative hazard H reaches the budget E = -log(1 - u) (so without
    bridging it is ``t0 = ppf(u)``). By time s the budget H(s) is spent; bridging spends
    ``ratio * (H(t) - H(s))`` more; afterwards the hazard is the plain one again.
    """
    if not t0 > s or t0 == math.inf or ratio == 1.0:
        return t0  # already rung, never rings, or unchanged
    budget = -math.log1p(-u)
    h_start = float(dist.cumhaz(s))
    left = budget - h_start
    if not left > 0:
        return t0
    h_end = float(dist.cumhaz(s + d))
    spent = ratio * (h_end - h_start) if ratio > 0 else 0.0
    if ratio > 0 and spent >= left:
        t = float(dist.cumhaz_inv(h_start + left / ratio))
        return min(max(t, s), s + d)
    t = float(dist.cumhaz_inv(h_end + (left - spent)))
    # Past the end of the support (or an overflowing H): the clock rings as bridging stops.
    return max(t, s + d) if math.isfinite(t) else s + d


@dataclass
class _Bridge:
    """A cohort's bridging therapy, compiled."""

    death: DistributionSpec
    ineligible: DistributionSpec
    ratio: float
    cost: float
    toxicity_probability: float
    durations: "_Draws"
    toxicity: "_Uniforms | None"
    delays: "_Draws | None"


_GRANTED = "granted"
_CLOCK = "clock"


@dataclass
class _Step:
    index: int
    name: str
    kind: str
    duration: DistributionSpec
    fixed_duration: float | None
    site: int  # index into sites, -1 for none
    acquire: list["_Step"]  # site steps whose slot is requested before this step starts
    start_days: tuple[bool, ...] | None  # allowed weekdays (Mon..Sun), None = any day
    failure_probability: float
    retry_index: int  # -1: a failure ends the pathway
    max_attempts: int
    cost: float
    shelf_life: float | None
    failure_outcome: int
    is_apheresis: bool
    is_manufacture: bool
    is_release: bool
    closed: tuple[list[float], list[float]] | None = None  # the site's closures: starts, ends
    any_day: bool = True  # no weekday rule and no closures: the step may start at once
    patient_step: bool = False  # a toxicity keeps the patient from starting it
    durations: list[_Draws] = field(default_factory=list)  # per attempt (visit) number
    failures: list[_Uniforms] = field(default_factory=list)
    # First-attempt values for every patient as plain lists: the hot path indexes them directly.
    first_durations: Any = field(default_factory=list)  # array('d') once compiled
    first_failures: Any = field(default_factory=list)


def _weekday_mask(*lists: list[str] | None) -> tuple[bool, ...] | None:
    given = [set(x) for x in lists if x is not None]
    if not given:
        return None
    allowed = set(WEEKDAYS).intersection(*given)
    return tuple(day in allowed for day in WEEKDAYS)


def arrival_days(scenario: Scenario, streams: Streams) -> np.ndarray:
    """Referral days in ``[0, horizon)`` for one replication."""
    horizon = scenario.horizon_days
    arr = scenario.arrivals
    if arr.schedule is not None:
        days = np.sort(np.asarray(arr.schedule, dtype=float))
        return days[days < horizon]
    if arr.rate_per_year is not None:
        mean = 365.0 / arr.rate_per_year

        def gaps(u: np.ndarray) -> np.ndarray:
            return -mean * np.log1p(-u)

        expected = horizon / mean
    else:
        dist = arr.interarrival
        assert dist is not None
        gaps = dist.ppf
        expected = horizon / max(dist.mean(), 1e-12)
    stream = streams("arrivals")
    size = int(expected + 6 * math.sqrt(expected) + 16)
    while True:
        days = np.cumsum(gaps(stream.extend_to(size)[:size]))
        if days[-1] >= horizon or not np.isfinite(days[-1]):
            return days[days < horizon]
        size *= 2


@dataclass
class ReplicationOutput:
    """Raw result of one replication (plain arrays; metrics are computed elsewhere)."""

    replication: int
    columns: dict[str, np.ndarray]
    end_day: float
    site_busy_slot_days: dict[str, float]
    site_slots: dict[str, int]
    site_timeline: dict[str, np.ndarray]  # site -> array of (time, in_use, queue) rows
    events: list[tuple[Any, ...]]
    fixed_cost: float
    events_processed: int
    #: Sites with a slot schedule: the mean capacity of each one-day bin (``site_slots`` holds
    #: the mean over the run, so that utilisation is busy slot-days / capacity slot-days).
    site_daily_slots: dict[str, np.ndarray] = field(default_factory=dict)
    #: Sites with a calendar: the day each use started (a slot was taken).
    site_starts: dict[str, np.ndarray] = field(default_factory=dict)


#: Kinds of step that need the patient (a toxicity delays them).
_PATIENT_KINDS = frozenset(("screen", "apheresis", "conditioning", "infusion"))


class _Sim:
    """State of one replication. Kept in one object so the patient process reads locals."""

    def __init__(self, scenario: Scenario, seed: int, replication: int, trace_patients: int,
                 record_timeline: bool) -> None:
        self.scenario = scenario
        self.replication = replication
        self.streams = streams = Streams(seed, replication)
        self.env = simpy.Environment()
        self.arrivals = arrival_days(scenario, streams)
        n = self.n = int(self.arrivals.size)
        self.start_weekday = scenario.start_date.weekday()
        self.trace_patients = trace_patients
        self.record_timeline = record_timeline

        self.site_names = list(scenario.sites)
        self.site_log = [array("d") for _ in self.site_names]
        self.pools: list[_SlotPool] = []
        self.calendars: list[tuple[_CalendarPool, list[tuple[float, list[tuple[int, float]]]]]] = []
        stop = scenario.horizon_days + scenario.drain_days
        for s, log in zip(scenario.sites.values(), self.site_log):
            log_ = log if record_timeline else None
            if not s.has_calendar:
                self.pools.append(_SlotPool(s.slots, log_))  # type: ignore[arg-type]
                continue
            capacity, closed, reopen, changes = _calendar_changes(
                s, scenario.start_date, self.start_weekday, stop)
            inf = math.inf
            pool = _CalendarPool(capacity, log_,
                                 inf if s.starts_per_month is None else s.starts_per_month,
                                 inf if s.starts_per_week is None else s.starts_per_week)
            pool.closed_now, pool.reopen = closed, reopen
            pool.refresh()
            self.pools.append(pool)
            self.calendars.append((pool, changes))
        self.site_busy = [0.0] * len(self.site_names)
        site_index = {name: k for k, name in enumerate(self.site_names)}

        # Patient attributes drawn up front, vectorised, by patient index.
        shares = np.cumsum(scenario.cohort_shares())
        u_cohort = streams("cohort").extend_to(n)[:n]
        self.cohort_of = np.minimum(np.searchsorted(shares, u_cohort, side="right"),
                                    len(scenario.cohorts) - 1)
        self.cohort_list: list[int] = self.cohort_of.tolist()
        u_death = streams("clock:death").extend_to(n)[:n]
        u_inel = streams("clock:ineligible").extend_to(n)[:n]
        death = np.full(n, math.inf)
        inel = np.full(n, math.inf)
        for c, cohort in enumerate(scenario.cohorts):
            mask = self.cohort_of == c
            if mask.any():
                death[mask] = cohort.time_to_death.ppf(u_death[mask])
                inel[mask] = cohort.time_to_ineligible.ppf(u_inel[mask])
        self.death = _floats(death)  # from referral; bridging may change a patient's values
        self.ineligible = _floats(inel)
        self.u_death = u_death
        self.u_inel = u_inel
        self.u_response = _floats(streams("after:response").extend_to(n)[:n])
        self.u_icu = _floats(streams("after:icu").extend_to(n)[:n])

        self.pathways = {name: self._compile(p.steps, site_index) for name, p in scenario.pathways.items()}
        for steps in self.pathways.values():
            for step in steps:
                if step.fixed_duration is None:
                    step.first_durations = self._durations(step, 1).head(n)
                if step.failure_probability > 0.0:
                    step.first_failures = self._failures(step, 1).head(n)
        self.pathway_list = list(scenario.pathways)
        pathway_id = {name: k for k, name in enumerate(self.pathway_list)}

        def plan(cohort: Any, name: str) -> tuple[list[_Step], int, int]:
            """(steps, index of the step where bridging starts or -1, pathway number)."""
            steps = self.pathways[name]
            bridge = -1
            if cohort.bridging is not None:
                bridge = next(s.index for s in steps if s.name == cohort.bridging.start_step)
            return steps, bridge, pathway_id[name]

        # A cohort's plan, or None for a routing rule (decided at referral by _route).
        self.cohort_plan: list[tuple[list[_Step], int, int] | None] = []
        self.cohort_rule: list[tuple[Any, ...] | None] = []
        first_pathway = []
        for cohort in scenario.cohorts:
            rule = cohort.pathway
            if isinstance(rule, PathwayRule):
                primary, fallback = plan(cohort, rule.primary), plan(cohort, rule.fallback)
                steps = primary[0]
                booking = next(s for s in steps if s.acquire)
                target = booking.acquire[0]
                hold = sum(s.duration.mean() for s in steps[booking.index:target.index + 1])
                when = rule.when
                by_count = when.waiting_more_than is not None
                threshold = float(when.waiting_more_than if by_count else when.expected_wait_more_than_days)  # type: ignore[arg-type]
                self.cohort_plan.append(None)
                self.cohort_rule.append((primary, fallback, self.pools[target.site], hold, by_count, threshold))
                first_pathway.append(primary[2])
            else:
                self.cohort_plan.append(plan(cohort, rule))
                self.cohort_rule.append(None)
                first_pathway.append(pathway_id[rule])
        self.pathway_taken = np.asarray(first_pathway, dtype=np.int16)[self.cohort_of] if n else np.zeros(0, np.int16)
        self.cohort_bridge: list[_Bridge | None] = []
        for cohort in scenario.cohorts:
            b = cohort.bridging
            if b is None:
                self.cohort_bridge.append(None)
                continue
            tox = b.toxicity_probability > 0
            self.cohort_bridge.append(_Bridge(
                death=cohort.time_to_death, ineligible=cohort.time_to_ineligible,
                ratio=b.hazard_ratio, cost=b.cost, toxicity_probability=b.toxicity_probability,
                durations=_Draws(streams("bridging:duration"), b.duration, 0),
                toxicity=_Uniforms(streams("bridging:toxicity"), 0) if tox else None,
                delays=_Draws(streams("bridging:toxicity_delay"), b.toxicity_delay, 0)  # type: ignore[arg-type]
                if tox else None,
            ))
        self.cohort_priority = [c.priority for c in scenario.cohorts]
        self.cohort_response = [c.after_infusion.response_probability for c in scenario.cohorts]
        self.cohort_icu = [c.after_infusion.icu_probability for c in scenario.cohorts]
        self.step_names = {name: [s.name for s in steps] for name, steps in self.pathways.items()}

        nan = math.nan
        self.apheresis_day = np.full(n, nan)
        self.manufacture_start_day = np.full(n, nan)
        self.release_day = np.full(n, nan)
        self.infusion_day = np.full(n, nan)
        self.outcome_day = np.full(n, nan)
        self.outcome = np.full(n, _UNRESOLVED, dtype=np.int8)
        self.outcome_step = np.full(n, -1, dtype=np.int16)
        self.queue_wait = np.zeros(n)
        # Start of the wait a patient is in now (NaN when not waiting): an unresolved patient's
        # wait so far is counted up to the stop.
        self.live: dict[int, list[Any]] = {}  # patients in the pathway -> running totals
        self.attempts = np.zeros(n, dtype=np.int16)
        self.cost = np.zeros(n)
        self.responded = np.full(n, nan)
        self.icu = np.full(n, nan)
        self.bridging_day = np.full(n, nan)
        self.bridging_toxicity = np.full(n, nan)
        self.events: list[tuple[Any, ...]] = []

    # -------------------------------------------------------------- compile

    def _compile(self, steps: list[Any], site_index: dict[str, int]) -> list[_Step]:
        names = {s.name: j for j, s in enumerate(steps)}
        compiled: list[_Step] = []
        for j, s in enumerate(steps):
            site = site_index[s.site] if s.site is not None else -1
            site_cfg = self.scenario.sites[s.site] if s.site is not None else None
            fixed = s.duration.value if s.duration.dist == "fixed" else None
            compiled.append(_Step(
                index=j, name=s.name, kind=s.kind, duration=s.duration, fixed_duration=fixed,
                site=site, acquire=[],
                start_days=_weekday_mask(s.starts_on, site_cfg.starts_on if site_cfg else None),
                failure_probability=s.failure_probability,
                retry_index=names[s.on_failure.retry_from] if s.on_failure else -1,
                max_attempts=s.on_failure.max_attempts if s.on_failure else 1,
                cost=s.cost + (site_cfg.cost_per_use if site_cfg else 0.0),
                shelf_life=s.shelf_life,
                failure_outcome=_CODE["product_expired" if s.shelf_life is not None
                                      else OUTCOME_BY_KIND.get(s.kind, "step_failed")],
                is_apheresis=s.kind == "apheresis", is_manufacture=s.kind == "manufacture",
                is_release=s.kind == "release",
                closed=self._closed(site_cfg), patient_step=s.kind in _PATIENT_KINDS,
            ))
            compiled[-1].any_day = compiled[-1].start_days is None and compiled[-1].closed is None
        for j, s in enumerate(steps):
            if s.site is None:
                continue
            first = names[s.reserve_from] if s.reserve_from else j
            for k in range(first, j + 1):
                compiled[k].acquire.append(compiled[j])
        return compiled

    def _closed(self, site: Site | None) -> tuple[list[float], list[float]] | None:
        if site is None or not site.closures:
            return None
        intervals = site.closed_days(self.scenario.start_date)
        return [a for a, _ in intervals], [b for _, b in intervals]

    def _durations(self, step: _Step, attempt: int) -> _Draws:
        while len(step.durations) < attempt:
            a = len(step.durations) + 1
            step.durations.append(_Draws(self.streams(f"step:{step.name}:{a}:duration"),
                                         step.duration, self.n if a == 1 else 0))
        return step.durations[attempt - 1]

    def _failures(self, step: _Step, attempt: int) -> _Uniforms:
        while len(step.failures) < attempt:
            a = len(step.failures) + 1
            step.failures.append(_Uniforms(self.streams(f"step:{step.name}:{a}:failure"),
                                           self.n if a == 1 else 0))
        return step.failures[attempt - 1]

    # -------------------------------------------------------------- processes

    def _next_start(self, now: float, days: tuple[bool, ...]) -> float:
        day = math.floor(now)
        weekday = (self.start_weekday + day) % 7
        if days[weekday]:
            return now
        for ahead in range(1, 8):
            if days[(weekday + ahead) % 7]:
                return float(day + ahead)
        return math.inf  # no allowed weekday at all: waits forever (reported unresolved)

    def _earliest_start(self, step: _Step, now: float, unfit_from: float, unfit_until: float) -> float:
        """The first instant from ``now`` on an allowed weekday, outside the site's closures and,
        for a patient step, outside the patient's unfit window; 0.0 if that is ``now``."""
        days = step.start_days
        closed = step.closed
        if not step.patient_step:
            unfit_until = -math.inf
        t = now
        while t < math.inf:
            before = t
            if days is not None and not days[(self.start_weekday + int(t)) % 7]:
                t = self._next_start(t, days)
                continue
            if closed is not None:
                k = bisect_right(closed[0], t) - 1
                if k >= 0 and t < closed[1][k]:
                    t = closed[1][k]
            if unfit_from <= t < unfit_until:
                t = unfit_until
            if t == before:
                break
        return t if t > now else 0.0

    def _route(self, cohort: int, now: float) -> tuple[list[_Step], int, int]:
        """The primary plan, or the fallback when the primary's booking site is congested."""
        primary, fallback, pool, hold, by_count, threshold = self.cohort_rule[cohort]  # type: ignore[misc]
        busy = pool.queued if by_count else pool.expected_wait(now, hold)
        return fallback if busy > threshold else primary

    def _bridge(self, i: int, cohort: int, referral: float, now: float) -> tuple[float, float, bool, float, float]:
        """Start patient i's bridging: new clocks; (t_death, t_inel, toxic, unfit from, until)."""
        b = self.cohort_bridge[cohort]
        assert b is not None
        s = now - referral
        d = b.durations[i]
        death = _bridged_clock(b.death, float(self.u_death[i]), self.death[i], s, d, b.ratio)
        inel = _bridged_clock(b.ineligible, float(self.u_inel[i]), self.ineligible[i], s, d, b.ratio)
        self.death[i] = death
        self.ineligible[i] = inel
        self.bridging_day[i] = now
        toxic = False
        unfit_from = unfit_until = 0.0
        if b.toxicity is not None:
            toxic = b.toxicity[i] < b.toxicity_probability
            self.bridging_toxicity[i] = 1.0 if toxic else 0.0
            if toxic:
                unfit_from = now + d
                unfit_until = unfit_from + b.delays[i]  # type: ignore[index]
        else:
            self.bridging_toxicity[i] = 0.0
        return referral + death, referral + inel, toxic, unfit_from, unfit_until

    def calendar(self, pool: _CalendarPool,
                 changes: list[tuple[float, list[tuple[int, float]]]]) -> Iterator[simpy.Event]:
        """Apply a site's calendar changes at their instants and hand out freed-up slots."""
        env = self.env
        for day, actions in changes:
            yield _Urgent(env, day - env.now)
            for kind, value in actions:
                if kind == _MONTH:
                    pool.month_left = pool.per_month
                elif kind == _WEEK:
                    pool.week_left = pool.per_week
                elif kind == _CAPACITY:
                    pool.capacity = int(value)
                elif kind == _CLOSE:
                    pool.closed_now, pool.reopen = True, value
                else:
                    pool.closed_now = False
            pool.refresh()
            pool.pump(env.now)

    def referrals(self) -> Iterator[simpy.Event]:
        env = self.env
        timeout = env.timeout
        process = env.process
        patient = self.patient
        for i, day in enumerate(_floats(self.arrivals)):
            if day > env.now:
                yield timeout(day - env.now)
            process(patient(i))

    def patient(self, i: int) -> Iterator[simpy.Event]:
        env = self.env
        timeout = env.timeout
        referral = env.now
        cohort = self.cohort_list[i]
        plan = self.cohort_plan[cohort]
        if plan is None:
            plan = self._route(cohort, referral)
            self.pathway_taken[i] = plan[2]
        steps, bridge_at, _ = plan
        priority = self.cohort_priority[cohort]
        t_death = referral + self.death[i]
        t_inel = referral + self.ineligible[i]
        if t_death <= t_inel:
            deadline, clock_outcome = t_death, _DIED
        else:
            deadline, clock_outcome = t_inel, _INELIGIBLE
        mortal = deadline < math.inf
        trace = self.events if i < self.trace_patients else None
        pools = self.pools
        busy = self.site_busy  # slot-days: minus the time a slot is taken, plus when given back
        held: dict[int, _SlotPool] = {}  # step index -> pool whose slot is held for it
        # Running totals, readable by run() if the patient is still here when the run stops:
        # [queue wait, cost, manufacturing attempts, waiting since (NaN when not waiting)].
        acc = [0.0, 0.0, 0, math.nan]
        self.live[i] = acc
        visits = [0] * len(steps)
        first_apheresis = first_manufacture = True
        release_end = math.nan
        toxic = False  # a bridging toxicity: patient steps may not start in [unfit_from, unfit_until)
        unfit_from = unfit_until = 0.0
        outcome = -1
        j = 0
        n_steps = len(steps)
        step = steps[0]
        start_weekday = self.start_weekday
        # `now` mirrors env.now; it is refreshed after every yield (the clock moves only there).
        now = referral
        while j < n_steps:
            step = steps[j]
            ready = now
            if j == bridge_at:
                bridge_at = -1
                t_death, t_inel, toxic, unfit_from, unfit_until = self._bridge(i, cohort, referral, ready)
                if t_death <= t_inel:
                    deadline, clock_outcome = t_death, _DIED
                else:
                    deadline, clock_outcome = t_inel, _INELIGIBLE
                mortal = deadline < math.inf
                acc[1] += self.cohort_bridge[cohort].cost  # type: ignore[union-attr]
            # 1. slots this step (or a later step reserved from here) needs
            for target in step.acquire:
                if target.index in held:
                    continue
                pool = pools[target.site]
                if pool.free > 0:
                    pool.take(now)
                else:
                    request = env.event()
                    pool.enqueue(priority, request, now)
                    acc[3] = ready  # waiting (read by run() if the run stops now)
                    if mortal:
                        ring = timeout(deadline - now)
                        ring.callbacks.append(
                            lambda _, r=request: None if r.triggered else r.succeed(_CLOCK))
                    granted = (yield request) is not _CLOCK
                    now = env.now
                    acc[3] = math.nan
                    if not granted:
                        pool.left_queue(now)
                        outcome = clock_outcome
                        acc[0] += now - ready
                        if trace is not None:
                            trace.append((i, step.name, step.kind, visits[j] + 1, ready,
                                          now, now, OUTCOMES[outcome]))
                        break
                held[target.index] = pool
                busy[target.site] -= now
            if outcome >= 0:
                break
            # 2. an allowed start day (and outside closures and the patient's unfit window)
            start = 0.0  # 0.0: start now
            if step.any_day and not toxic:
                pass
            elif step.closed is None and not toxic:
                days = step.start_days
                if not days[(start_weekday + int(now)) % 7]:
                    start = self._next_start(now, days)
            else:
                start = self._earliest_start(step, now, unfit_from, unfit_until)
            if start:
                acc[3] = ready
                # No clock and no allowed weekday (start = inf): waits forever (unresolved).
                if start >= deadline and mortal:
                    yield timeout(deadline - now)
                    now = env.now
                    outcome = clock_outcome
                    acc[0] += now - ready
                    if trace is not None:
                        trace.append((i, step.name, step.kind, visits[j] + 1, ready,
                                      now, now, OUTCOMES[outcome]))
                    break
                yield timeout(start - now)
                now = env.now
                acc[3] = math.nan
            begin = now
            if begin != ready:
                acc[0] += begin - ready
            # 3. the step itself
            visits[j] += 1
            attempt = visits[j]
            if step.cost:
                acc[1] += step.cost
            if step.is_apheresis:
                if first_apheresis:
                    first_apheresis = False
                    self.apheresis_day[i] = begin
            elif step.is_manufacture:
                acc[2] += 1
                if first_manufacture:
                    first_manufacture = False
                    self.manufacture_start_day[i] = begin
            duration = step.fixed_duration
            if duration is None:
                if attempt == 1:
                    duration = step.first_durations[i]
                else:
                    duration = self._durations(step, attempt)[i]
            end = begin + duration
            failed = False
            if step.shelf_life is not None and release_end == release_end:
                expiry = release_end + step.shelf_life
                if end > expiry:
                    end = max(begin, expiry)
                    failed = True
            if end >= deadline:
                if deadline > begin:
                    yield timeout(deadline - begin)
                    now = env.now
                if trace is not None:
                    trace.append((i, step.name, step.kind, attempt, ready, begin, now,
                                  OUTCOMES[clock_outcome]))
                outcome = clock_outcome
                break
            if end > begin:
                yield timeout(end - begin)
                now = env.now
            if step.site >= 0:
                held.pop(j).release(now)
                busy[step.site] += now
            if not failed and step.failure_probability > 0.0:
                u = step.first_failures[i] if attempt == 1 else self._failures(step, attempt)[i]
                failed = u < step.failure_probability
            if trace is not None:
                status = "failed" if failed else "done"
                if failed and step.shelf_life is not None:
                    status = "product_expired"
                trace.append((i, step.name, step.kind, attempt, ready, begin, now, status))
            if failed:
                if step.retry_index >= 0 and attempt < step.max_attempts:
                    j = step.retry_index
                    continue
                outcome = step.failure_outcome
                break
            if step.is_release:
                release_end = now
                self.release_day[i] = release_end
            j += 1
        else:
            outcome = _INFUSED
            self.infusion_day[i] = now
            self.responded[i] = 1.0 if self.u_response[i] < self.cohort_response[cohort] else 0.0
            self.icu[i] = 1.0 if self.u_icu[i] < self.cohort_icu[cohort] else 0.0

        # Leaving the pathway (any outcome) frees every held slot at once.
        for index, pool in held.items():
            pool.release(env.now)
            busy[steps[index].site] += env.now
        del self.live[i]
        self.outcome[i] = outcome
        self.outcome_step[i] = step.index
        self.outcome_day[i] = env.now
        self.queue_wait[i] = acc[0]
        self.cost[i] = acc[1]
        self.attempts[i] = acc[2]

    # -------------------------------------------------------------- run

    def run(self) -> ReplicationOutput:
        sc = self.scenario
        env = self.env
        for pool, changes in self.calendars:
            env.process(self.calendar(pool, changes))
        env.process(self.referrals())
        stop = sc.horizon_days + sc.drain_days
        env.run(until=stop)
        n = self.n
        unresolved = self.outcome == _UNRESOLVED
        if unresolved.any():
            end_day = stop
            # Unresolved patients: how far they got, their wait so far (up to the stop), costs.
            self.outcome_day[unresolved] = math.nan
            for i, (wait, cost, attempts, waiting_since) in self.live.items():
                self.queue_wait[i] = wait + (stop - waiting_since if waiting_since == waiting_since else 0.0)
                self.cost[i] = cost
                self.attempts[i] = attempts
        else:
            end_day = max(sc.horizon_days, float(np.nanmax(self.outcome_day)) if n else 0.0)
        # Slots still held at the stop count as busy until the stop.
        for k, pool in enumerate(self.pools):
            self.site_busy[k] += stop * pool.in_use()
        cohort_names = [c.name for c in sc.cohorts]
        pathway_list = self.pathway_list
        step_label = np.array([
            self.step_names[pathway_list[p]][s] if s >= 0 else ""
            for p, s in zip(self.pathway_taken.tolist(), self.outcome_step.tolist())
        ], dtype=object) if n else np.array([], dtype=object)
        referral = self.arrivals
        v2v = self.infusion_day - self.apheresis_day
        columns = {
            "patient": np.arange(n),
            "cohort": np.array(cohort_names, dtype=object)[self.cohort_of] if n else np.array([], dtype=object),
            "pathway": np.array(pathway_list, dtype=object)[self.pathway_taken] if n else np.array([], dtype=object),
            "referral_day": referral,
            "apheresis_day": self.apheresis_day,
            "manufacture_start_day": self.manufacture_start_day,
            "release_day": self.release_day,
            "infusion_day": self.infusion_day,
            "outcome": np.array(OUTCOMES, dtype=object)[self.outcome] if n else np.array([], dtype=object),
            "outcome_step": step_label,
            "outcome_day": self.outcome_day,
            "vein_to_vein_days": v2v,
            "referral_to_infusion_days": self.infusion_day - referral,
            "queue_wait_days": self.queue_wait,
            "manufacturing_attempts": self.attempts.astype(np.int64),
            "cost": self.cost,
            "responded": self.responded,
            "icu": self.icu,
        }
        columns.update(self._policy_columns())
        fixed = sum(s.fixed_cost_per_year for s in sc.sites.values()) * sc.horizon_days / 365.0
        site_slots: dict[str, float] = {name: s.slots for name, s in sc.sites.items()}  # type: ignore[misc]
        daily_slots: dict[str, np.ndarray] = {}
        for name, s in sc.sites.items():
            if isinstance(s.slots, list):
                site_slots[name], daily_slots[name] = _capacity_profile(s, sc.start_date, end_day)
        starts = {self.site_names[self.pools.index(pool)]: np.asarray(pool.starts)
                  for pool, _ in self.calendars}
        timeline = {name: np.asarray(self.site_log[k]).reshape(-1, 3)
                    for k, name in enumerate(self.site_names)}
        return ReplicationOutput(
            replication=self.replication,
            columns=columns,
            end_day=end_day,
            site_busy_slot_days=dict(zip(self.site_names, self.site_busy)),
            site_slots=site_slots,  # type: ignore[arg-type]
            site_timeline=timeline,
            events=self.events,
            fixed_cost=fixed,
            events_processed=next(env._eid),  # simpy numbers every scheduled event
            site_daily_slots=daily_slots,
            site_starts=starts,
        )

    def _policy_columns(self) -> dict[str, np.ndarray]:
        """Patient columns of the optional policies (NaN where a policy does not apply)."""
        sc = self.scenario
        n = self.n
        nan = math.nan
        rule_cohorts = [c for c, r in enumerate(self.cohort_rule) if r is not None]
        rerouted = np.full(n, nan)
        for c in rule_cohorts:
            mask = self.cohort_of == c
            rerouted[mask] = (self.pathway_taken[mask] != self.cohort_rule[c][0][2]).astype(float)  # type: ignore[index]
        # Life-years in the follow-up window, from referral: alive until the untreated death
        # clock (as changed by bridging) unless infused; after infusion, the survival draw of
        # a responder or a non-responder (the same uniform for both: common random numbers).
        follow = np.full(n, nan)
        death_day = np.full(n, nan)
        life_years = np.full(n, nan)
        modelled = [c for c, co in enumerate(sc.cohorts) if co.after_infusion.models_survival]
        if modelled and n:
            referral = self.arrivals
            dead = referral + np.asarray(self.death)
            died = self.outcome == _DIED
            dead[died] = self.outcome_day[died]  # the very instant the patient left
            u = self.streams("after:survival").extend_to(n)[:n]
            infused = self.outcome == _INFUSED
            for c in modelled:
                after = sc.cohorts[c].after_infusion
                mask = self.cohort_of == c
                follow[mask] = after.follow_up_days
                m = mask & infused
                if m.any():
                    resp = self.responded[m] == 1.0
                    survival = np.where(resp, after.survival_responder.ppf(u[m]),  # type: ignore[union-attr]
                                        after.survival_non_responder.ppf(u[m]))  # type: ignore[union-attr]
                    dead[m] = self.infusion_day[m] + survival
            has = ~np.isnan(follow)
            alive = np.minimum(dead - referral, follow)
            life_years[has] = alive[has] / DAYS_PER_YEAR
            within = has & (dead - referral <= follow)
            death_day[within] = dead[within]
        return {
            "rerouted": rerouted,
            "bridging_day": self.bridging_day,
            "bridging_toxicity": self.bridging_toxicity,
            "death_day": death_day,
            "life_years": life_years,
        }


def run_replication(scenario: Scenario, seed: int, replication: int, *, trace_patients: int = 0,
                    record_timeline: bool = True) -> ReplicationOutput:
    """Simulate one replication of ``scenario``."""
    return _Sim(scenario, seed, replication, trace_patients, record_timeline).run()
