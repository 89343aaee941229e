"""A patient's journey through a pathway, as a SimPy process.

:meth:`Journey.patient` is the whole story; each line is a named piece:

1. *acquire* the slots the step needs (its own, and those booked from it with
   ``reserve_from``): :meth:`~Journey.take_slots`, then :meth:`~Journey.wait_for_slot` for
   each site that has none free;
2. *wait for a start day* (weekdays, closures, a bridging toxicity): :meth:`~Journey.wait_until`;
3. *do the step*: count the run, charge its cost, one timeout; at its end free its slot, draw
   its failure, and note a product (:meth:`~Journey.product_made`: the release day, the
   shelf-life clock);
4. *fail and retry*: :meth:`~Journey.after_failure` (``on_failure``: back to an earlier step
   while it has run fewer than ``max_attempts`` times);
5. *leave*: :meth:`~Journey.leave` (any outcome) frees every slot held, at once.

Every wait is cut short by the patient's *cut*: the earlier of its disease-clock deadline
(death or ineligibility, whichever rings first) and, once a product is released, the product's
expiry. Ties are broken by one rule: **a disease clock that rings at the same instant as any
other event wins** — the patient leaves at that instant, before the other event takes effect
(a slot granted then is handed back unused, a step ending then does not complete). An
expiry at the very instant a step ends does not stop it (a product infused exactly at the end
of its shelf life is in time); an expiry before the end is a failure of the infusion step
(outcome ``product_expired``, retried by the infusion step's ``on_failure``).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

import simpy

from .collect import INFUSED, OUTCOME_CODE, PRODUCT_EXPIRED, Recorder
from .pools import GRANTED, SlotPool

__all__ = ["Journey", "Patient", "EngineStep"]

_INF = math.inf


class EngineStep:
    """A compiled step with this replication's draws (read by patient index)."""

    __slots__ = ("index", "name", "kind", "site", "acquire", "start_days", "closed", "any_day",
                 "failure_probability", "retry_index", "max_attempts", "cost", "failure_outcome",
                 "patient_step", "starts_shelf_clock", "shelf_life", "is_apheresis", "records",
                 "makes_product",
                 "is_manufacture", "is_release", "fixed_duration",
                 "first_durations", "first_failures", "durations", "failures",
                 "exception_probability", "exception_response", "first_exceptions", "exceptions")

    def __init__(self, compiled: Any, durations: Any, failures: Any, exceptions: Any = None) -> None:
        for name in ("index", "name", "kind", "site", "acquire", "start_days", "failure_probability",
                     "retry_index", "max_attempts", "cost", "patient_step", "starts_shelf_clock",
                     "shelf_life", "fixed_duration", "exception_probability", "exception_response"):
            setattr(self, name, getattr(compiled, name))
        self.closed = compiled.closed
        self.any_day = compiled.any_day
        self.failure_outcome = OUTCOME_CODE[compiled.failure_outcome]
        self.is_apheresis = compiled.kind == "apheresis"
        self.is_manufacture = compiled.kind == "manufacture"
        self.records = self.is_apheresis or self.is_manufacture  # its start is recorded
        self.is_release = compiled.kind == "release"
        self.makes_product = self.is_release or self.starts_shelf_clock  # its end is recorded
        self.durations = durations  # attempt number -> Draws (a callable growing the list)
        self.failures = failures
        self.exceptions = exceptions  # attempt -> uniforms of out_of_spec_infusion (a release step)
        self.first_durations: Any = None
        self.first_failures: Any = None
        self.first_exceptions: Any = None


class Patient:
    """A patient's running state while in the pathway."""

    __slots__ = ("index", "cohort", "priority", "steps", "bridge_at", "referral", "deadline",
                 "clock_outcome", "expiry", "cut", "wait", "waiting_since", "cost", "runs",
                 "manufacturing_runs", "held", "toxic", "unfit_from", "unfit_until", "shelf_clock",
                 "traced", "listed_from", "rerefer_after", "leaving", "start_at")

    def __init__(self, index: int, cohort: int, priority: int, steps: list[EngineStep],
                 bridge_at: int, shelf_clock: int, referral: float, traced: bool,
                 deadline: float, clock_outcome: int) -> None:
        self.index = index
        self.traced = traced  # its steps are recorded in the trace
        self.cohort = cohort
        self.priority = priority
        self.steps = steps
        self.bridge_at = bridge_at  # the step at which bridging starts, or -1
        self.shelf_clock = shelf_clock  # the step whose end starts the shelf-life clock, or -1
        self.referral = referral
        self.deadline = deadline  # the earlier disease clock, in days from day 0
        self.clock_outcome = clock_outcome  # what that clock means (died or ineligible)
        self.expiry = _INF  # the product's expiry, once released
        self.cut = deadline  # min(deadline, expiry): every wait ends by then
        self.wait = 0.0  # days waiting for slots and start days
        self.waiting_since = math.nan  # start of the wait under way (for a run that stops)
        self.cost = 0.0
        self.runs = [0] * len(steps)  # times each step has begun
        self.manufacturing_runs = 0
        self.held: dict[int, int] = {}  # step index whose slot is held -> site index
        self.toxic = False  # a bridging toxicity: patient steps may not begin in the window
        self.unfit_from = self.unfit_until = 0.0
        self.listed_from = referral  # its referral day for a queue by referral (before day 0: backlog)
        self.rerefer_after = _INF  # days of one wait for a slot before re-referral (inf: none)
        self.leaving = False  # its wait for a slot ended by re-referral
        self.start_at = 0  # the step it starts at (a backlog patient: the step that takes its slot)

    def set_clocks(self, death: float, ineligible: float, died: int, became_ineligible: int) -> None:
        """Deadline from the clocks (days from day 0); the earlier wins, death on a tie."""
        if death <= ineligible:
            self.deadline, self.clock_outcome = death, died
        else:
            self.deadline, self.clock_outcome = ineligible, became_ineligible
        self.cut = min(self.deadline, self.expiry)


class Journey:
    """The patient process and its pieces. The state it reads is set up by the replication."""

    # Slots, not an instance dict: the journey looks up its own methods and state at every step.
    __slots__ = ("env", "pools", "rec", "start_weekday", "live", "queue_rules")

    env: simpy.Environment
    pools: list[SlotPool]
    rec: Recorder
    start_weekday: int

    # ------------------------------------------------------------------ the story

    def patient(self, i: int) -> Iterator[simpy.Event]:
        env = self.env
        timeout = env.timeout
        pools = self.pools
        rules = self.queue_rules
        apheresis_day = self.rec.apheresis_day
        listed_day = self.rec.listed_day
        slot_day = self.rec.slot_day
        listed = slotted = False  # its first request for a slot made, and granted
        charges = self.rec.charges
        p = self.admit(i)
        steps = p.steps
        held = p.held
        n_steps = len(steps)
        now = env.now  # the clock moves only at a yield; refreshed after each
        j = p.start_at
        while 0 <= j < n_steps:
            step = steps[j]
            if j == p.bridge_at:
                self.start_bridging(p, now)
            ready = now
            # 1. Acquire the slots this step needs (usually one, or none: already held).
            acquire = step.acquire
            if acquire and (len(acquire) > 1 or acquire[0] not in held):
                in_time = True
                single = len(acquire) == 1  # the usual case: one slot, this step's or booked from here
                needed = ((steps[acquire[0]].site, 1),) if single else self.slots_needed(p, step)
                if needed and not listed:  # the first request: the patient joins a list
                    listed = True
                    listed_day[i] = now
                for site, units in needed:
                    request = pools[site].request(p.priority if rules is None else self.queue_key(p, rules[site], now),
                                                  units, now)
                    if request is not None:
                        in_time = yield from self.wait_for_slot(p, site, units, request, ready)
                        now = env.now
                        if not in_time:
                            break
                    if single:
                        held[acquire[0]] = site
                    else:
                        self.hold(p, step, site)
                if not in_time:
                    if p.leaving:  # re-referred: another pathway from its first step
                        j = self.re_refer(p, step, ready, now)
                        steps, held, n_steps = p.steps, p.held, len(p.steps)
                    else:
                        j = self.interrupted(p, step, ready, now)
                    continue
                if needed and not slotted:  # the slots of its first request, all held
                    slotted = True
                    slot_day[i] = now
            # 2. Wait for a day the step may start (usually: today).
            if p.toxic or not step.any_day:
                days = step.start_days
                if p.toxic or step.closed is not None:
                    start = self.start_time(p, step, now)
                elif days[(self.start_weekday + int(now)) % 7]:  # type: ignore[index]
                    start = now  # the usual case: a weekday rule, and today is allowed
                else:
                    start = self._next_weekday(now, days)  # type: ignore[arg-type]
                if start > now:
                    in_time = yield from self.wait_until(p, start, ready)
                    now = env.now
                    if not in_time:
                        j = self.interrupted(p, step, ready, now)
                        continue
            # 3. Do the step.
            begin = now
            if begin != ready:
                p.wait += begin - ready
            runs = p.runs[j] = p.runs[j] + 1
            p.cost += step.cost
            if charges is not None and step.cost:
                charges.extend((i, j, begin))
            if step.records:  # the first apheresis and manufacture days, manufacturing runs
                if step.is_apheresis:
                    if apheresis_day[i] != apheresis_day[i]:  # NaN: the first apheresis
                        apheresis_day[i] = begin
                else:
                    p.manufacturing_runs += 1
                    if p.manufacturing_runs == 1:
                        self.rec.manufacture_start_day[i] = begin
            duration = step.fixed_duration
            if duration is None:
                duration = step.first_durations[i] if runs == 1 else step.durations(runs)[i]
            end = begin + duration
            if end >= p.cut and (end >= p.deadline or end > p.expiry):
                if p.cut > begin:
                    yield timeout(p.cut - begin)
                    now = env.now
                j = self.interrupted(p, step, ready, now, begin)
                continue
            if end > begin:
                yield timeout(end - begin)
                now = env.now
            # 4. The step ends: its slot is freed; done, or failed and retried (or not).
            if step.site >= 0 and j in held:
                del held[j]
                pools[step.site].release(1, now)
            failed = excepted = False
            if step.failure_probability > 0.0:  # this attempt's failure draw
                u = step.first_failures[i] if runs == 1 else step.failures(runs)[i]
                if u < step.failure_probability:
                    excepted = step.exception_probability > 0.0 and self.exception(p, step, runs)
                    failed = not excepted
            if p.traced:
                self.trace(p, step, runs, ready, begin, now, "failed" if failed else "exception" if excepted else "done")
            if failed:
                j = self.after_failure(p, step, step.failure_outcome, now)
                continue
            if step.makes_product:
                self.product_made(p, step, now)
            j += 1
        if j == n_steps:
            self.infused(p, now)

    # ------------------------------------------------------------------ 1. slots

    def slots_needed(self, p: Patient, step: EngineStep) -> list[tuple[int, int]]:
        """``(site, units)`` to request now, in the global site order (slots still held for a
        later step are not asked again; all the units of one site in one request)."""
        held = p.held
        steps = p.steps
        needed: list[tuple[int, int]] = []
        for k in step.acquire:
            if k in held:
                continue
            site = steps[k].site
            if needed and needed[-1][0] == site:
                needed[-1] = (site, needed[-1][1] + 1)
            else:
                needed.append((site, 1))
        return needed

    def hold(self, p: Patient, step: EngineStep, site: int) -> None:
        """Record the slots of ``site`` just taken against the steps they serve."""
        held = p.held
        steps = p.steps
        for k in step.acquire:
            if k not in held and steps[k].site == site:
                held[k] = site

    def wait_for_slot(self, p: Patient, site: int, units: int, request: simpy.Event,
                      ready: float) -> Iterator[simpy.Event]:
        """Wait for ``units`` slots of ``site`` or the patient's cut; True if taken in time."""
        env = self.env
        p.waiting_since = ready
        if p.cut < _INF:
            ring = env.timeout(p.cut - env.now)
            ring.callbacks.append(lambda _, r=request: None if r.triggered else r.succeed(_CUT))
        if p.rerefer_after < _INF and ready + p.rerefer_after < p.cut:  # a tie goes to the clock
            leave = env.timeout(max(ready + p.rerefer_after - env.now, 0.0))
            leave.callbacks.append(lambda _, r=request: None if r.triggered else r.succeed(_LEAVE))
        value = yield request
        p.waiting_since = math.nan
        if value is not GRANTED:
            self.pools[site].cancel(env.now)
            p.leaving = value is _LEAVE
            return False
        if env.now >= p.deadline:  # granted as the clock rings: the clock wins, the slots go back
            self.pools[site].release(units, env.now)
            return False
        return True

    # ------------------------------------------------------------------ 2. start days

    def start_time(self, p: Patient, step: EngineStep, now: float) -> float:
        """The first instant from ``now`` on an allowed weekday, outside the site's closures and,
        for a step that needs the patient, outside the patient's unfit window (inf: never)."""
        days = step.start_days
        closed = step.closed
        unfit_from, unfit_until = (p.unfit_from, p.unfit_until) if p.toxic and step.patient_step else (0.0, -_INF)
        t = now
        while t < _INF:
            before = t
            if days is not None and not days[(self.start_weekday + int(t)) % 7]:
                t = self._next_weekday(t, days)
                continue
            if closed is not None:
                k = bisect_right(closed[0], t) - 1
                if k >= 0 and t < closed[1][k]:
                    t = closed[1][k]
            if unfit_from <= t < unfit_until:
                t = unfit_until
            if t == before:
                break
        return t

    def _next_weekday(self, now: float, days: tuple[bool, ...]) -> float:
        day = math.floor(now)
        weekday = (self.start_weekday + day) % 7
        for ahead in range(1, 8):
            if days[(weekday + ahead) % 7]:
                return float(day + ahead)
        return _INF  # refused at load: a step with no allowed weekday

    def wait_until(self, p: Patient, start: float, ready: float) -> Iterator[simpy.Event]:
        """Wait until ``start`` or the patient's cut (a tie goes to the cut); True if in time.
        No cut and no start (inf): the patient waits to the end of the run (unresolved)."""
        env = self.env
        p.waiting_since = ready
        if start >= p.deadline or start > p.expiry:
            yield env.timeout(p.cut - env.now)
            return False
        yield env.timeout(start - env.now)
        p.waiting_since = math.nan
        return True

    # ------------------------------------------------------------------ 3. the step

    def product_made(self, p: Patient, step: EngineStep, now: float) -> None:
        """A release step ended (its day is recorded), or the step whose end starts the shelf-life
        clock: the product expires ``shelf_life`` days from now."""
        if step.is_release:
            self.rec.release_day[p.index] = now
        if step.index == p.shelf_clock:
            shelf_life = p.steps[-1].shelf_life
            if shelf_life is not None:
                p.expiry = now + shelf_life
                p.cut = min(p.deadline, p.expiry)

    # ------------------------------------------------------------------ 4. failures

    def exception(self, p: Patient, step: EngineStep, runs: int) -> bool:
        """A release step failed: its product is infused anyway with the step's
        ``out_of_spec_infusion`` probability (its own draw; True, status ``"exception"``: the
        patient goes on as if released and is marked), or the failure stands (False)."""
        i = p.index
        u = step.first_exceptions[i] if runs == 1 else step.exceptions(runs)[i]
        if not u < step.exception_probability:
            return False
        marked = self.rec.out_of_spec_step
        if marked[i] < 0:  # the first release of this product passed under an exception
            marked[i] = step.index
        return True

    def after_failure(self, p: Patient, step: EngineStep, outcome: int, now: float) -> int:
        """Back to the step's ``retry_from`` while that step has run fewer than ``max_attempts``
        times in all; otherwise the patient leaves with ``outcome``. The next step index."""
        r = step.retry_index
        if r >= 0 and p.runs[r] < step.max_attempts:
            if r <= p.shelf_clock:  # a new product is made: the old one's clock no longer runs
                p.expiry = _INF
                p.cut = p.deadline
            if r <= self.rec.out_of_spec_step[p.index]:  # the release will be passed again
                self.rec.out_of_spec_step[p.index] = -1
            return r
        return self.leave(p, outcome, step, now)

    def re_refer(self, p: Patient, step: EngineStep, ready: float, now: float) -> int:
        """The patient has waited ``rerefer_after`` days for a slot: it leaves the list (slots
        held are given back) and starts its cohort's re-referral pathway from the first step,
        with its clocks and costs so far. The next step index (0)."""
        p.leaving = False
        p.rerefer_after = _INF  # once only
        p.wait += now - ready
        self.trace(p, step, p.runs[step.index] + 1, ready, now, now, "re_referred")
        if p.held:
            for site in p.held.values():
                self.pools[site].release(1, now)
            p.held.clear()
        self.switch_pathway(p)
        return 0

    def interrupted(self, p: Patient, step: EngineStep, ready: float, now: float,
                    begin: float | None = None) -> int:
        """The cut came during a wait (``begin`` None) or a step: the clock (leave) or the
        product's expiry (a failure of the infusion step). The next step index (-1: left)."""
        p.waiting_since = math.nan
        if begin is None:
            p.wait += now - ready
            begin, attempt = now, p.runs[step.index] + 1
        else:
            attempt = p.runs[step.index]
        if p.deadline <= p.expiry:  # the cut is the clock (a tie goes to the clock)
            self.trace(p, step, attempt, ready, begin, now, _STATUS[p.clock_outcome])
            return self.leave(p, p.clock_outcome, step, now)
        self.trace(p, step, attempt, ready, begin, now, "product_expired")
        if step.index in p.held:  # the step under way gives its slot back
            del p.held[step.index]
            self.pools[step.site].release(1, now)
        infusion = p.steps[-1]
        if infusion.retry_index > p.shelf_clock:  # a retry from there would keep the expired product
            return self.leave(p, PRODUCT_EXPIRED, infusion, now)
        return self.after_failure(p, infusion, PRODUCT_EXPIRED, now)

    # ------------------------------------------------------------------ 5. leaving

    def leave(self, p: Patient, outcome: int, step: EngineStep, now: float) -> int:
        """Leave the pathway: every slot held is freed at once; the outcome is recorded."""
        if p.held:
            pools = self.pools
            for site in p.held.values():
                pools[site].release(1, now)
            p.held.clear()
        del self.live[p.index]
        self.rec.left(p.index, outcome, step.index, now, p.wait, p.cost, p.manufacturing_runs)
        return -1

    def infused(self, p: Patient, now: float) -> None:
        self.rec.infusion_day[p.index] = now
        self.leave(p, INFUSED, p.steps[-1], now)

    def trace(self, p: Patient, step: EngineStep, attempt: int, ready: float, begin: float,
              end: float, status: str) -> None:
        if p.traced:
            self.rec.events.append((p.index, step.name, step.kind, attempt, ready, begin, end, status))

    # Provided by the replication:
    live: dict[int, Patient]  # patients in the pathway, by index

    def admit(self, i: int) -> Patient: ...  # pragma: no cover

    def start_bridging(self, p: Patient, now: float) -> None: ...  # pragma: no cover

    def queue_key(self, p: Patient, rule: Any, now: float) -> tuple[int, float]: ...  # pragma: no cover

    def switch_pathway(self, p: Patient) -> None: ...  # pragma: no cover


_CUT = "cut"
_LEAVE = "leave"
_STATUS = {code: name for name, code in OUTCOME_CODE.items()}
