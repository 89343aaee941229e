"""The SimPy model of one replication: referrals, disease clocks, steps, sites.

A patient is a SimPy process that walks its pathway's steps in order. Before a step it
acquires the site slots the step (or a later step with ``reserve_from``) needs, waits for an
allowed start day, then spends the step's duration. Its disease clocks are fixed at referral
as one deadline (the earlier of death and ineligibility); every wait is cut short by it, so a
patient who dies in a queue or during a step leaves at the exact time and frees every slot.

Randomness is read from named streams by patient index (see :mod:`v2vsim.rng`), so the same
patient gets the same draws for the same purpose in any scenario.
"""

from __future__ import annotations

import math
from array import array
from heapq import heappop, heappush
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import simpy

from .distributions import DistributionSpec
from .rng import Streams
from .scenario import OUTCOME_BY_KIND, WEEKDAYS, Scenario

__all__ = ["OUTCOMES", "ReplicationOutput", "run_replication", "arrival_days"]

#: Every outcome a patient can have, in a fixed order (codes are indexes into this tuple).
OUTCOMES = (
    "infused",
    "died",
    "ineligible",
    "screen_failed",
    "collection_failed",
    "lost_in_transit",
    "manufacturing_failed",
    "out_of_specification",
    "product_expired",
    "step_failed",
    "unresolved",
)
_CODE = {name: i for i, name in enumerate(OUTCOMES)}
_INFUSED, _DIED, _INELIGIBLE, _UNRESOLVED = (_CODE[k] for k in ("infused", "died", "ineligible", "unresolved"))


class _Draws:
    """Values of one distribution read by patient index from one uniform stream."""

    __slots__ = ("_stream", "_dist", "_values")

    def __init__(self, stream: Any, dist: DistributionSpec, size_hint: int) -> None:
        self._stream = stream
        self._dist = dist
        self._values: list[float] = []
        if size_hint:
            self._grow(size_hint)

    def _grow(self, size: int) -> None:
        self._values = self._dist.ppf(self._stream.extend_to(size)).tolist()

    def __getitem__(self, index: int) -> float:
        try:
            return self._values[index]
        except IndexError:
            self._grow(index + 1)
            return self._values[index]

    def head(self, size: int) -> list[float]:
        """The values of patients ``0 .. size-1``."""
        if len(self._values) < size:
            self._grow(size)
        return self._values[:size]


class _Uniforms:
    """Plain uniforms by patient index (failure and response draws)."""

    __slots__ = ("_stream", "_values")

    def __init__(self, stream: Any, size_hint: int) -> None:
        self._stream = stream
        self._values: list[float] = stream.extend_to(size_hint).tolist() if size_hint else []

    def __getitem__(self, index: int) -> float:
        try:
            return self._values[index]
        except IndexError:
            self._values = self._stream.extend_to(index + 1).tolist()
            return self._values[index]

    def head(self, size: int) -> list[float]:
        """The values of patients ``0 .. size-1``."""
        if len(self._values) < size:
            self._values = self._stream.extend_to(size).tolist()
        return self._values[:size]


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
    durations: list[_Draws] = field(default_factory=list)  # per attempt (visit) number
    failures: list[_Uniforms] = field(default_factory=list)
    # First-attempt values for every patient as plain lists: the hot path indexes them directly.
    first_durations: list[float] = field(default_factory=list)
    first_failures: list[float] = field(default_factory=list)


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


class _Sim:
    """State of one replication. Kept in one object so the patient process reads locals."""

    def __init__(self, scenario: Scenario, seed: int, replication: int, trace_patients: int,
                 record_timeline: bool) -> None:
        self.scenario = scenario
        self.replication = replication
        self.streams = streams = Streams(seed, replication)
        self.env = env = simpy.Environment()
        self.arrivals = arrival_days(scenario, streams)
        n = self.n = int(self.arrivals.size)
        self.start_weekday = scenario.start_date.weekday()
        self.trace_patients = trace_patients
        self.record_timeline = record_timeline

        self.site_names = list(scenario.sites)
        self.site_log = [array("d") for _ in self.site_names]
        self.pools = [_SlotPool(s.slots, log if record_timeline else None)
                      for s, log in zip(scenario.sites.values(), self.site_log)]
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
        self.death = death.tolist()
        self.ineligible = inel.tolist()
        self.u_response = streams("after:response").extend_to(n)[:n].tolist()
        self.u_icu = streams("after:icu").extend_to(n)[:n].tolist()

        self.pathways = {name: self._compile(p.steps, site_index) for name, p in scenario.pathways.items()}
        for steps in self.pathways.values():
            for step in steps:
                if step.fixed_duration is None:
                    step.first_durations = self._durations(step, 1).head(n)
                if step.failure_probability > 0.0:
                    step.first_failures = self._failures(step, 1).head(n)
        self.cohort_steps = [self.pathways[c.pathway] for c in scenario.cohorts]
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
                failure_outcome=_CODE[OUTCOME_BY_KIND.get(s.kind, "step_failed")],
                is_apheresis=s.kind == "apheresis", is_manufacture=s.kind == "manufacture",
                is_release=s.kind == "release",
            ))
        for j, s in enumerate(steps):
            if s.site is None:
                continue
            first = names[s.reserve_from] if s.reserve_from else j
            for k in range(first, j + 1):
                compiled[k].acquire.append(compiled[j])
        return compiled

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

    def referrals(self) -> Iterator[simpy.Event]:
        env = self.env
        timeout = env.timeout
        process = env.process
        patient = self.patient
        for i, day in enumerate(self.arrivals.tolist()):
            if day > env.now:
                yield timeout(day - env.now)
            process(patient(i))

    def patient(self, i: int) -> Iterator[simpy.Event]:
        env = self.env
        timeout = env.timeout
        referral = env.now
        cohort = self.cohort_list[i]
        steps = self.cohort_steps[cohort]
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
        outcome = -1
        j = 0
        n_steps = len(steps)
        step = steps[0]
        while j < n_steps:
            step = steps[j]
            ready = env.now
            acc[3] = ready
            # 1. slots this step (or a later step reserved from here) needs
            for target in step.acquire:
                if target.index in held:
                    continue
                pool = pools[target.site]
                if pool.free > 0:
                    pool.take(env.now)
                else:
                    request = env.event()
                    pool.enqueue(priority, request, env.now)
                    if mortal:
                        ring = timeout(deadline - env.now)
                        ring.callbacks.append(
                            lambda _, r=request: None if r.triggered else r.succeed(_CLOCK))
                    if (yield request) is _CLOCK:
                        pool.left_queue(env.now)
                        outcome = clock_outcome
                        acc[0] += env.now - ready
                        if trace is not None:
                            trace.append((i, step.name, step.kind, visits[j] + 1, ready,
                                          env.now, env.now, OUTCOMES[outcome]))
                        break
                held[target.index] = pool
                busy[target.site] -= env.now
            if outcome >= 0:
                break
            # 2. an allowed start day
            days = step.start_days
            if days is not None and not days[(self.start_weekday + int(env.now)) % 7]:
                start = self._next_start(env.now, days)
                # No clock and no allowed weekday (start = inf): waits forever (unresolved).
                if start >= deadline and mortal:
                    yield timeout(deadline - env.now)
                    outcome = clock_outcome
                    acc[0] += env.now - ready
                    if trace is not None:
                        trace.append((i, step.name, step.kind, visits[j] + 1, ready,
                                      env.now, env.now, OUTCOMES[outcome]))
                    break
                yield timeout(start - env.now)
            now = env.now
            acc[0] += now - ready
            acc[3] = math.nan
            # 3. the step itself
            visits[j] += 1
            attempt = visits[j]
            acc[1] += step.cost
            if step.is_apheresis:
                if first_apheresis:
                    first_apheresis = False
                    self.apheresis_day[i] = now
            elif step.is_manufacture:
                acc[2] += 1
                if first_manufacture:
                    first_manufacture = False
                    self.manufacture_start_day[i] = now
            duration = step.fixed_duration
            if duration is None:
                if attempt == 1:
                    duration = step.first_durations[i]
                else:
                    duration = self._durations(step, attempt)[i]
            end = now + duration
            failed = False
            if step.shelf_life is not None and release_end == release_end:
                expiry = release_end + step.shelf_life
                if end > expiry:
                    end = max(now, expiry)
                    failed = True
            if end >= deadline:
                if deadline > now:
                    yield timeout(deadline - now)
                if trace is not None:
                    trace.append((i, step.name, step.kind, attempt, ready, now, env.now,
                                  OUTCOMES[clock_outcome]))
                outcome = clock_outcome
                break
            if end > now:
                yield timeout(end - now)
            if step.site >= 0:
                held.pop(j).release(env.now)
                busy[step.site] += env.now
            if not failed and step.failure_probability > 0.0:
                u = step.first_failures[i] if attempt == 1 else self._failures(step, attempt)[i]
                failed = u < step.failure_probability
            if trace is not None:
                status = "failed" if failed else "done"
                if failed and step.shelf_life is not None:
                    status = "product_expired"
                trace.append((i, step.name, step.kind, attempt, ready, now, env.now, status))
            if failed:
                if step.retry_index >= 0 and attempt < step.max_attempts:
                    j = step.retry_index
                    continue
                outcome = step.failure_outcome
                break
            if step.is_release:
                release_end = env.now
                self.release_day[i] = release_end
            j += 1
        else:
            outcome = _INFUSED
            self.infusion_day[i] = env.now
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
            self.site_busy[k] += stop * (pool.slots - pool.free)
        cohort_names = [c.name for c in sc.cohorts]
        pathway_of = [c.pathway for c in sc.cohorts]
        step_label = np.array([
            self.step_names[pathway_of[c]][s] if s >= 0 else ""
            for c, s in zip(self.cohort_of.tolist(), self.outcome_step.tolist())
        ], dtype=object) if n else np.array([], dtype=object)
        referral = self.arrivals
        v2v = self.infusion_day - self.apheresis_day
        columns = {
            "patient": np.arange(n),
            "cohort": np.array(cohort_names, dtype=object)[self.cohort_of] if n else np.array([], dtype=object),
            "pathway": np.array(pathway_of, dtype=object)[self.cohort_of] if n else np.array([], dtype=object),
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
        fixed = sum(s.fixed_cost_per_year for s in sc.sites.values()) * sc.horizon_days / 365.0
        timeline = {name: np.asarray(self.site_log[k]).reshape(-1, 3)
                    for k, name in enumerate(self.site_names)}
        return ReplicationOutput(
            replication=self.replication,
            columns=columns,
            end_day=end_day,
            site_busy_slot_days=dict(zip(self.site_names, self.site_busy)),
            site_slots={name: s.slots for name, s in sc.sites.items()},
            site_timeline=timeline,
            events=self.events,
            fixed_cost=fixed,
            events_processed=next(env._eid),  # simpy numbers every scheduled event
        )


def run_replication(scenario: Scenario, seed: int, replication: int, *, trace_patients: int = 0,
                    record_timeline: bool = True) -> ReplicationOutput:
    """Simulate one replication of ``scenario``."""
    return _Sim(scenario, seed, replication, trace_patients, record_timeline).run()
