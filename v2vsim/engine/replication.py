"""One replication of a scenario: referrals, patients' draws, sites, and the SimPy run.

:class:`Replication` sets up what the journey (:mod:`.journey`) reads — the compiled
pathways with this replication's draws, one pool per site (:mod:`.pools`), the disease clocks —
runs the environment to the end of the drain and builds its results (:mod:`.results`, from the
recorder's facts, :mod:`.collect`). Randomness is read from named streams by patient index
(:mod:`.rng`), so the same patient gets the same draws for the same purpose in any scenario
(common random numbers). :func:`set_up` makes several replications of a scenario at once,
sharing what is the same in each and drawing through each distribution once (:mod:`.setup`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from heapq import heappop
from typing import Any

import numpy as np
import simpy
from simpy.core import URGENT

from ..scenario import PathwayRule, Scenario
from ..scenario.compile import compile_scenario
from .calendar import calendar_changes, calendar_process, daily_starts
from .clocks import Bridge, arrival_days, arrival_days_together, bridged_clock
from .collect import DIED, INELIGIBLE, UNRESOLVED, Recorder, ReplicationOutput
from .journey import EngineStep, Journey, Patient
from .waitlist import Waitlists
from .pools import CalendarPool, PriorityResourcePool, SlotPool
from .rng import Draws, Streams, UniformStream, Uniforms, floats, replication_states
from .results import Results
from .setup import Attempts, Given, Shared, copy_step, draw_together, gc_paused, stream_purposes

__all__ = ["Replication", "arrival_days", "run_replication", "set_up", "stream_purposes"]


def run_until(env: simpy.Environment, stop: float) -> None:
    """``env.run(until=stop)`` with SimPy's step loop inlined: the same events in the same order
    (the stop is an urgent event at ``stop``, as SimPy schedules it), less overhead per event.
    A replication never resumes a stopped run, so the stop's remaining callbacks are not kept."""
    if stop <= env.now:
        raise ValueError(f"until ({stop}) must be greater than the current simulation time")
    until = simpy.Event(env)
    until._ok = True
    until._value = None
    env.schedule(until, URGENT, stop - env.now)
    queue = env._queue  # type: ignore[attr-defined]
    pop = heappop
    while True:
        try:
            env._now, _, _, event = pop(queue)  # type: ignore[attr-defined]
        except IndexError:
            raise RuntimeError("no scheduled events left but the stop was not reached") from None
        if event is until:
            return
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:  # type: ignore[union-attr]
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            # A process failed: raise a copy of its exception, as SimPy does.
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc


class Replication(Results, Waitlists, Journey):
    """State of one replication (the journey's methods read it)."""

    __slots__ = ("scenario", "replication", "streams", "arrivals", "n", "site_names", "site_log",
                 "calendars", "cohort_of", "cohort_list", "u_death", "u_inel", "death", "ineligible",
                 "u_response", "u_icu", "cohort_priority", "cohort_response", "cohort_icu",
                 "cohort_bridge", "pathway_list", "pathways", "step_names", "cohort_plan",
                 "cohort_rule", "pathway_taken", "prior", "backlog_cohort", "cohort_rerefer", "re_referred",
                 "estimate_noise", "shared")

    def __init__(self, scenario: Scenario, seed: int, replication: int, trace_patients: int = 0,
                 record_timeline: bool = True, reference: bool = False, compiled: Any = None,
                 states: dict[str, np.ndarray] | None = None, shared: Shared | None = None,
                 given: Given | None = None) -> None:
        """``compiled`` (:func:`compile_scenario` of the scenario), ``states`` (the streams'
        seed words, :func:`.rng.stream_states`), ``shared`` (what every replication of the
        scenario shares) and ``given`` (this replication's draws, computed with the others')
        may be given when several replications of one scenario are set up together; they
        change nothing but the time it takes."""
        self.scenario = scenario
        self.replication = replication
        if given is not None:
            self.streams = streams = given.streams
            self.arrivals = given.arrivals
        else:
            self.streams = streams = Streams(seed, replication, states)
            self.arrivals = arrival_days(scenario, streams)
        self.env = simpy.Environment()
        self.prior = self._backlog()  # days already waited by the backlog's patients (first)
        n = self.n = int(self.arrivals.size)
        self.start_weekday = scenario.start_date.weekday()
        self.rec = Recorder(n, trace_patients, charges=scenario.economics is not None)
        self.live: dict[int, Patient] = {}
        if shared is None:
            shared = Shared(scenario, compile_scenario(scenario) if compiled is None else compiled)
        self.shared = shared
        self._build_pools(record_timeline, reference, shared)
        self._draw_patients(shared, given)
        self._build_pathways(shared, given)

    # ------------------------------------------------------------------ set-up

    def _build_pools(self, record_timeline: bool, reference: bool, shared: Shared) -> None:
        sc = self.scenario
        env = self.env
        self.site_names = list(sc.sites)
        self.site_log = [array("d") if record_timeline else None for _ in self.site_names]
        self.pools: list[Any] = []
        self.calendars: list[tuple[CalendarPool, list[Any]]] = []
        # A site's queue order other than first come first served (None: by request).
        rules = [None if s.queue is None or s.queue.is_default else (s.queue.order, s.queue.estimate_error)
                 for s in sc.sites.values()]
        self.queue_rules = rules if any(rules) else None  # None: every site first come first served
        stop = sc.horizon_days + sc.drain_days
        for (name, s), log in zip(sc.sites.items(), self.site_log):
            if not s.has_calendar:
                kind = PriorityResourcePool if reference else SlotPool
                self.pools.append(kind(env, s.slots, log))  # type: ignore[arg-type]
                continue
            if reference:
                raise ValueError("the reference pool has no calendar")
            found = shared.calendars.get(name)
            if found is None:
                found = shared.calendars[name] = calendar_changes(s, sc.start_date, self.start_weekday, stop)
            capacity, closed, reopen, changes = found
            pool = CalendarPool(env, capacity, log,
                                math.inf if s.starts_per_month is None else s.starts_per_month,
                                math.inf if s.starts_per_week is None else s.starts_per_week)
            pool.closed_now, pool.reopen = closed, reopen
            pool.day_left, pool.day_rate = daily_starts(s, self.start_weekday)
            pool.refresh()
            self.pools.append(pool)
            self.calendars.append((pool, changes))

    def _draw_patients(self, shared: Shared, given: Given | None = None) -> None:
        """Cohorts, disease clocks and after-infusion draws, vectorised, by patient index."""
        sc = self.scenario
        streams = self.streams
        n = self.n
        if given is not None and given.cohort_of is not None:
            self.cohort_of = given.cohort_of
            self.u_death, self.u_inel = given.u_death, given.u_inel  # type: ignore[assignment]
            death, inel = given.death, given.inel
        else:
            u_cohort = streams("cohort").extend_to(n)[:n]
            self.cohort_of = np.minimum(np.searchsorted(shared.shares, u_cohort, side="right"), len(sc.cohorts) - 1)
            if self.backlog_cohort is not None:
                given_cohort = self.backlog_cohort >= 0
                self.cohort_of[:given_cohort.size][given_cohort] = self.backlog_cohort[given_cohort]
            self.u_death = streams("clock:death").extend_to(n)[:n]
            self.u_inel = streams("clock:ineligible").extend_to(n)[:n]
            death = np.full(n, math.inf)
            inel = np.full(n, math.inf)
            for c, cohort in enumerate(sc.cohorts):
                mask = self.cohort_of == c
                if mask.any():
                    death[mask] = cohort.time_to_death.ppf(self.u_death[mask])
                    inel[mask] = cohort.time_to_ineligible.ppf(self.u_inel[mask])
            if self.prior is not None:
                self._condition_backlog(death, inel)
        self.cohort_list: list[int] = self.cohort_of.tolist()
        self.death = floats(death)  # days from referral; bridging may change a patient's values
        self.ineligible = floats(inel)
        self.u_response = floats(streams("after:response").extend_to(n)[:n])
        self.u_icu = floats(streams("after:icu").extend_to(n)[:n])
        self.cohort_priority = shared.cohort_priority
        self.cohort_response = shared.cohort_response
        self.cohort_icu = shared.cohort_icu
        self.cohort_bridge: list[Bridge | None] = []
        for cohort in sc.cohorts:
            b = cohort.bridging
            if b is None:
                self.cohort_bridge.append(None)
                continue
            tox = b.toxicity_probability > 0
            self.cohort_bridge.append(Bridge(
                death=cohort.time_to_death, ineligible=cohort.time_to_ineligible,
                ratio=b.hazard_ratio, cost=b.cost, toxicity_probability=b.toxicity_probability,
                durations=None if b.until_infusion else Draws(streams("bridging:duration"), b.duration, 0),
                toxicity=Uniforms(streams("bridging:toxicity"), 0) if tox else None,
                delays=Draws(streams("bridging:toxicity_delay"), b.toxicity_delay, 0) if tox else None,
                cost_per_day=b.cost_per_day,
            ))

    def _engine_steps(self, pathway: str, templates: list[tuple[Any, Any]],
                      first: dict[tuple[str, int], Draws]) -> list[EngineStep]:
        streams = self.streams
        n = self.n
        new, copy = EngineStep.__new__, copy_step
        steps = []
        for j, (c, template) in enumerate(templates):
            step = copy(new, EngineStep, template)
            step.durations = durations = Attempts(streams, c.name, "duration", c.duration, n, first.get((pathway, j)))
            step.failures = failures = Attempts(streams, c.name, "failure", None, n)
            step.exceptions = exceptions = Attempts(streams, c.name, "exception", None, n)
            if step.fixed_duration is None:
                step.first_durations = durations(1).head(n)
            if step.failure_probability > 0.0:
                step.first_failures = failures(1).head(n)
                if step.exception_probability > 0.0:
                    step.first_exceptions = exceptions(1).head(n)
            steps.append(step)
        return steps

    def draw_retries(self, attempts: int) -> None:
        """This replication's drawn steps' durations and failures' uniforms of attempts 2 to
        ``attempts``, as each step's own draws make them on first use (the compiled engine's
        reference, :func:`.compiled._draws`; the engine itself makes a task's replications'
        together, :func:`.compiled._draws_together`)."""
        with gc_paused():  # many objects that live on, no cycles (as in set_up)
            self._draw_retries([(self.streams, self.n, self.pathways)], attempts)

    def _draw_retries(self, members: list[tuple[Streams, int, dict[str, list[EngineStep]]]], attempts: int) -> None:
        for name, steps in self.shared.steps.items():
            for j, (c, _) in enumerate(steps):
                if c.failure_probability > 0.0:  # the failures' uniforms too, while the collector waits
                    live = [(streams, n) for streams, n, _ in members if n]
                    for a in range(2, attempts + 1):
                        UniformStream.fill_sized([streams(f"step:{c.name}:{a}:failure") for streams, _ in live],
                                                 [n for _, n in live])
                    for _, n, pathways in members:
                        if n:
                            pathways[name][j].failures(attempts).head(n)
                if c.fixed_duration is not None:
                    continue
                for a in range(2, attempts + 1):
                    todo = [(streams, n, pathways[name][j].durations) for streams, n, pathways in members
                            if n and len(pathways[name][j].durations._by_attempt) == a - 1]
                    if not todo:
                        continue
                    purpose = f"step:{c.name}:{a}:duration"
                    found = [streams(purpose) for streams, _, _ in todo]
                    UniformStream.fill_sized(found, [n for _, n, _ in todo])
                    buffers = [stream.extend_to(n) for stream, (_, n, _) in zip(found, todo)]
                    values = c.duration.ppf(np.concatenate(buffers))
                    at = 0
                    for stream, buffer, (_, _, by_attempt) in zip(found, buffers, todo):
                        by_attempt._by_attempt.append(Draws.given(stream, c.duration, floats(values[at:at + buffer.size])))
                        at += buffer.size

    def _build_pathways(self, shared: Shared, given: Given | None = None) -> None:
        sc = self.scenario
        compiled = shared.compiled
        self.pathway_list = list(sc.pathways)
        pathway_id = {name: k for k, name in enumerate(self.pathway_list)}
        first = given.first if given is not None else {}
        self.pathways = {name: self._engine_steps(name, shared.steps[name], first) for name in self.pathway_list}
        self.step_names = shared.step_names

        def plan(cohort: Any, name: str) -> tuple[list[EngineStep], int, int, int]:
            """(steps, bridging step or -1, shelf-clock step or -1, pathway number)."""
            steps = self.pathways[name]
            bridge = -1
            if cohort.bridging is not None:
                bridge = compiled[name].names[cohort.bridging.start_step]
            return steps, bridge, compiled[name].shelf_clock_index, pathway_id[name]

        # A cohort's plan, or None for a routing rule (decided at referral by route()).
        # A cohort's re-referral: (days of one wait for a slot, the plan it then takes).
        self.cohort_rerefer = [None if c.re_referral is None else (c.re_referral.after_days, plan(c, c.re_referral.pathway))
                               for c in sc.cohorts]
        self.cohort_plan: list[tuple[list[EngineStep], int, int, int] | None] = []
        self.cohort_rule: list[tuple[Any, ...] | None] = []
        first_pathway = []
        for cohort in sc.cohorts:
            rule = cohort.pathway
            if isinstance(rule, PathwayRule):
                primary, fallback = plan(cohort, rule.primary), plan(cohort, rule.fallback)
                steps = primary[0]
                booking = next(s for s in steps if s.acquire)
                target = steps[booking.acquire[0]]
                hold = sum(s.duration.mean() for s in sc.pathways[rule.primary].steps[booking.index:target.index + 1])
                when = rule.when
                by_count = when.waiting_more_than is not None
                threshold = float(when.waiting_more_than if by_count else when.expected_wait_more_than_days)  # type: ignore[arg-type]
                self.cohort_plan.append(None)
                self.cohort_rule.append((primary, fallback, self.pools[target.site], hold, by_count, threshold))
                first_pathway.append(primary[3])
            else:
                self.cohort_plan.append(plan(cohort, rule))
                self.cohort_rule.append(None)
                first_pathway.append(pathway_id[rule])
        n = self.n
        self.pathway_taken = np.asarray(first_pathway, dtype=np.int16)[self.cohort_of] if n else np.zeros(0, np.int16)
        self._set_up_waitlists()

    # ------------------------------------------------------------------ the journey's hooks

    def admit(self, i: int) -> Patient:
        """Patient i at referral: its pathway (a routing rule decides now) and its clocks."""
        now = self.env.now
        cohort = self.cohort_list[i]
        plan = self.cohort_plan[cohort]
        if plan is None:
            plan = self.route(cohort, now)
            self.pathway_taken[i] = plan[3]
        steps, bridge_at, shelf_clock, _ = plan
        death, ineligible = now + self.death[i], now + self.ineligible[i]
        p = Patient(i, cohort, self.cohort_priority[cohort], steps, bridge_at, shelf_clock, now,
                    i < self.rec.trace_patients,
                    *((death, DIED) if death <= ineligible else (ineligible, INELIGIBLE)))
        rerefer = self.cohort_rerefer[cohort]
        if rerefer is not None:
            p.rerefer_after = rerefer[0]
        if self.prior is not None and i < self.prior.size:
            self.join_backlog(p, now)
        self.live[i] = p
        return p

    def route(self, cohort: int, now: float) -> tuple[list[EngineStep], int, int, int]:
        """The primary plan, or the fallback when the primary's booking site is congested."""
        primary, fallback, pool, hold, by_count, threshold = self.cohort_rule[cohort]  # type: ignore[misc]
        busy = pool.queued if by_count else pool.expected_wait(now, hold)
        return fallback if busy > threshold else primary

    def start_bridging(self, p: Patient, now: float) -> None:
        """New clocks from bridging (exact, see :mod:`.clocks`), its cost and any toxicity."""
        p.bridge_at = -1  # the first visit only
        b = self.cohort_bridge[p.cohort]
        assert b is not None
        i = p.index
        s = now - p.referral
        d = math.inf if b.durations is None else b.durations[i]  # until_infusion: no end
        w = self.prior[i] if self.prior is not None and i < self.prior.size else 0.0
        if w > 0:  # a backlog patient: its clocks run from its referral w days before day 0
            death = bridged_clock(b.death, float(self.u_death[i]), w + self.death[i], w + s, d, b.ratio) - w
            inel = bridged_clock(b.ineligible, float(self.u_inel[i]), w + self.ineligible[i], w + s, d, b.ratio) - w
        else:
            death = bridged_clock(b.death, float(self.u_death[i]), self.death[i], s, d, b.ratio)
            inel = bridged_clock(b.ineligible, float(self.u_inel[i]), self.ineligible[i], s, d, b.ratio)
        self.death[i] = death
        self.ineligible[i] = inel
        self.rec.bridging_day[i] = now
        p.cost += b.cost
        toxic = False
        if b.toxicity is not None:
            toxic = b.toxicity[i] < b.toxicity_probability
            if toxic:
                p.toxic = True
                p.unfit_from = now + d
                p.unfit_until = p.unfit_from + b.delays[i]  # type: ignore[index]
        self.rec.bridging_toxicity[i] = 1.0 if toxic else 0.0
        p.set_clocks(p.referral + death, p.referral + inel, DIED, INELIGIBLE)

    # ------------------------------------------------------------------ the run

    def referrals(self) -> Iterator[simpy.Event]:
        env = self.env
        timeout = env.timeout
        process = env.process
        patient = self.patient
        for i, day in enumerate(floats(self.arrivals)):
            if day > env.now:
                yield timeout(day - env.now)
            process(patient(i))

    def run(self) -> ReplicationOutput:
        sc = self.scenario
        env = self.env
        for pool, changes in self.calendars:
            env.process(calendar_process(env, pool, changes))
        env.process(self.referrals())
        stop = sc.horizon_days + sc.drain_days
        run_until(env, stop)
        rec = self.rec
        # Unresolved patients: how far they got, their wait so far (up to the stop), costs.
        for i, p in self.live.items():
            waiting = stop - p.waiting_since if p.waiting_since == p.waiting_since else 0.0
            rec.unresolved(i, p.wait + waiting, p.cost, p.manufacturing_runs)
        assert self.live or not (rec.outcome == UNRESOLVED).any()
        busy = {name: pool.busy_slot_days(stop) for name, pool in zip(self.site_names, self.pools)}
        timeline = {name: np.asarray(log if log is not None else array("d")).reshape(-1, 3)
                    for name, log in zip(self.site_names, self.site_log)}
        starts = {self.site_names[self.pools.index(pool)]: np.asarray(pool.starts) for pool, _ in self.calendars}
        return self.output(busy, timeline, next(env._eid), starts)  # simpy numbers every scheduled event


def set_up(scenario: Scenario, seed: int, replications: list[int], trace: dict[int, int],
           record_timeline: bool = True, kind: type[Replication] = Replication) -> list[Replication]:
    """Several replications of one scenario set up together: the plan compiled once and the
    streams' seeds computed together (the same draws as one by one). The cyclic garbage
    collector is paused meanwhile: the set-up makes many objects that all live on (a
    collection would only walk them), and no cycles to collect."""
    with gc_paused():
        return _set_up(scenario, seed, replications, trace, record_timeline, kind)


def _set_up(scenario: Scenario, seed: int, replications: list[int], trace: dict[int, int],
            record_timeline: bool, kind: type[Replication]) -> list[Replication]:
    compiled = compile_scenario(scenario)
    shared = Shared(scenario, compiled)
    by_rep: dict[int, dict[str, np.ndarray]] = {}
    if len(replications) >= 4:  # below that, numpy's own seeding is as quick
        by_rep = replication_states(seed, replications, stream_purposes(scenario))
    if len(replications) < 2:
        return [kind(scenario, seed, r, trace.get(r, 0), record_timeline, compiled=compiled, states=by_rep.get(r),
                     shared=shared) for r in replications]
    streams = [Streams(seed, r, by_rep.get(r)) for r in replications]
    given = [Given(s, days) for s, days in zip(streams, arrival_days_together(scenario, streams))]
    draw_together(scenario, shared, given)
    reps = [kind(scenario, seed, r, trace.get(r, 0), record_timeline, compiled=compiled, shared=shared, given=g)
            for r, g in zip(replications, given)]
    return reps


def run_replication(scenario: Scenario, seed: int, replication: int, *, trace_patients: int = 0,
                    record_timeline: bool = True, reference: bool = False) -> ReplicationOutput:
    """Simulate one replication of ``scenario``.

    ``reference=True`` runs the same journey on :class:`simpy.PriorityResource` slots (see
    :class:`.pools.PriorityResourcePool`; sites without a calendar only), for tests.
    """
    return Replication(scenario, seed, replication, trace_patients, record_timeline, reference).run()
