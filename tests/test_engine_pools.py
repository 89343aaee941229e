"""The slot pools and their allocation rule, which must be exactly ``simpy.PriorityResource``'s.

1. Contract tests of the pool interface (``request``, ``cancel``, ``release``,
   ``busy_slot_days``, ``in_use``, ``queued``) on :class:`SlotPool`, :class:`CalendarPool` (with
   no calendar limits) and :class:`PriorityResourcePool`, in a tiny ``simpy.Environment`` with
   small hand-written processes. Where a test describes SimPy's own behaviour, the same trace
   also runs on ``simpy.PriorityResource`` itself and must give the same grants in the same
   order, so the test shows that the rule is SimPy's.
2. A differential test: random small scenarios (two cohorts of different priorities, disease
   clocks, one or two sites of 1-3 slots, random durations, ``reserve_from``, failures and
   retries, Poisson or scheduled arrivals with ties) give identical patient tables and busy
   slot-days on the light pools and on ``run_replication(..., reference=True)``; a separate
   test checks that the generated scenarios do queue, ring clocks and retry.
3. The bundled local and overseas scenarios give identical tables on both.
4. Hand-worked same-instant traces across two sites (rules 2 and 3), and ties between a
   patient's cut and a hand-over (the reference withdraws a waiter's SimPy request as soon as
   its cut rings, and hands back a grant made at that very instant).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simpy
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import v2vsim
from v2vsim.engine.pools import GRANTED, CalendarPool, PriorityResourcePool, SlotPool
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import ScenarioError, scenario_from_dict
from v2vsim.scenario.compile import compile_scenario

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- pools under test

#: Every pool with the journey's interface (a CalendarPool without limits is a plain pool).
POOLS: dict[str, Callable[[simpy.Environment, int], Any]] = {
    "SlotPool": lambda env, slots: SlotPool(env, slots),
    "CalendarPool": lambda env, slots: CalendarPool(env, slots, None, math.inf, math.inf),
    "PriorityResourcePool": lambda env, slots: PriorityResourcePool(env, slots),
}
#: The pools that take any number of units at once.
MULTI_UNIT = ["SlotPool", "CalendarPool"]
#: The same traces are also run on simpy.PriorityResource itself.
SIMPY = "simpy.PriorityResource"


def visit(env: simpy.Environment, pool: Any, log: list[tuple[float, str]], name: str,
          arrive: float, priority: int, holds: list[float], patience: float | None = None,
          units: int = 1, state: dict[str, str] | None = None) -> Iterator[simpy.Event]:
    """A patient on a pool, used as the journey uses it: arrive, ask for ``units`` slots, hold
    them ``holds[0]`` days, release; each further hold is a new request made right after the
    release (a retry). Granted, it asks ``taken_back`` and waits again if a better request of
    the instant took the hand-over back. Waiting, it gives up ``patience`` days after it first
    asked (it triggers its own event, then calls ``cancel``). Logs ``(day, name)`` at each grant
    and ``(day, name + " left")`` when it gives up; ``state[name]``: waiting, holding or out."""
    state = {} if state is None else state
    state[name] = "out"
    if arrive:
        yield env.timeout(arrive)
    for hold in holds:
        event = pool.request(priority, units, env.now)
        if event is not None:
            state[name] = "waiting"
            give_up = math.inf if patience is None else env.now + patience
            while True:
                if not event.triggered and give_up < math.inf:
                    env.timeout(give_up - env.now).callbacks.append(
                        lambda _, e=event: None if e.triggered else e.succeed("gave up"))
                value = yield event
                again = taken_back(pool, event) if value is GRANTED else None
                if again is None:
                    break
                event = again  # a better request of this instant took the hand-over back
                if env.now >= give_up:
                    event.succeed("gave up")
                    value = yield event
                    break
            if value is not GRANTED:
                assert value == "gave up"
                pool.cancel(env.now)
                state[name] = "out"
                log.append((env.now, name + " left"))
                return
        state[name] = "holding"
        log.append((env.now, name))
        yield env.timeout(hold)
        pool.release(units, env.now)
        state[name] = "out"


def taken_back(pool: Any, event: simpy.Event) -> simpy.Event | None:
    """The pool's ``taken_back(event)`` where it has one (a pool that hands a release over at
    once, revocably, within the instant): the event to wait on instead, or None."""
    method = getattr(pool, "taken_back", None)
    return None if method is None else method(event)


def settled(pool: Any, event: simpy.Event) -> Any:
    """After ``env.run()``: GRANTED if a waiter on ``event`` ends up with its slots (following
    hand-overs taken back, as the journey does), None if it still waits, or the value it left
    with."""
    while event.triggered:
        if event.value is not GRANTED:
            return event.value
        again = taken_back(pool, event)
        if again is None:
            return GRANTED
        event = again
    return None


def visit_simpy(env: simpy.Environment, res: simpy.PriorityResource, log: list[tuple[float, str]],
                name: str, arrive: float, priority: int, holds: list[float],
                patience: float | None = None) -> Iterator[simpy.Event]:
    """The same patient written the plain SimPy way, on ``simpy.PriorityResource``."""
    if arrive:
        yield env.timeout(arrive)
    for hold in holds:
        req = res.request(priority=priority)
        if patience is None:
            yield req
        else:
            result = yield req | env.timeout(patience)
            if req not in result:
                req.cancel()
                log.append((env.now, name + " left"))
                return
        log.append((env.now, name))
        yield env.timeout(hold)
        res.release(req)


def grants(kind: str, slots: int, patients: list[dict[str, Any]], until: float | None = None) -> list[tuple[float, str]]:
    """Run ``patients`` (keyword arguments of :func:`visit`) on a pool of ``kind``; the log."""
    env = simpy.Environment()
    log: list[tuple[float, str]] = []
    if kind == SIMPY:
        res = simpy.PriorityResource(env, capacity=slots)
        for p in patients:
            env.process(visit_simpy(env, res, log, **p))
    else:
        pool = POOLS[kind](env, slots)
        for p in patients:
            env.process(visit(env, pool, log, **p))
    env.run(until=until)
    if kind != SIMPY:
        assert pool.in_use == 0 and pool.queued == 0
    return log


ALL_KINDS = [*POOLS, SIMPY]


def patient(name: str, arrive: float, priority: int, *holds: float, patience: float | None = None) -> dict[str, Any]:
    return {"name": name, "arrive": arrive, "priority": priority, "holds": list(holds), "patience": patience}


# --------------------------------------------------------------------------- 1. contract

@pytest.mark.parametrize("kind", list(POOLS))
def test_a_free_slot_is_taken_without_an_event(kind: str) -> None:
    env = simpy.Environment()
    pool = POOLS[kind](env, 2)
    assert pool.in_use == 0 and pool.queued == 0
    assert pool.request(1, 1, 0.0) is None
    assert pool.request(0, 1, 0.0) is None
    assert pool.in_use == 2 and pool.queued == 0
    if kind != "PriorityResourcePool":
        # The light pools: taking a free slot, or giving one back with nobody waiting, costs
        # no event at all (the reference schedules SimPy's Request and Release events).
        assert env.peek() == math.inf
        pool.release(1, 0.0)
        assert env.peek() == math.inf and pool.in_use == 1


@pytest.mark.parametrize("kind", list(POOLS))
def test_a_waiting_request_is_granted_when_a_slot_is_handed_over(kind: str) -> None:
    env = simpy.Environment()
    pool = POOLS[kind](env, 1)
    assert pool.request(0, 1, 0.0) is None
    event = pool.request(0, 1, 0.0)
    assert isinstance(event, simpy.Event) and not event.triggered
    assert pool.in_use == 1 and pool.queued == 1
    env.run()
    assert not event.triggered  # nothing is handed over without a release
    pool.release(1, 0.0)
    env.run()
    assert env.now == 0.0
    assert event.value is GRANTED and taken_back(pool, event) is None
    assert pool.in_use == 1 and pool.queued == 0


@pytest.mark.parametrize("kind", list(POOLS))
def test_a_better_request_in_the_instant_of_a_release_gets_the_slot(kind: str) -> None:
    # Rule 2 through the interface alone: the waiter (priority 1) does not have the slot
    # before the release is processed; a priority-0 request made in between takes it, at once,
    # and the waiter is still waiting once the instant is over.
    env = simpy.Environment()
    pool = POOLS[kind](env, 1)
    assert pool.request(0, 1, 0.0) is None
    waiter = pool.request(1, 1, 0.0)
    assert waiter is not None
    pool.release(1, 0.0)
    assert pool.request(0, 1, 0.0) is None
    env.run()
    assert settled(pool, waiter) is None
    assert pool.in_use == 1 and pool.queued == 1
    # ... while a request of the same priority made in between does not overtake the waiter.
    pool.release(1, 0.0)
    late = pool.request(1, 1, 0.0)
    assert late is not None
    env.run()
    assert pool.in_use == 1 and pool.queued == 1
    assert settled(pool, late) is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_waiters_are_served_by_priority_then_time_of_request(kind: str) -> None:
    # One slot, held 0-10. Waiters: a (priority 1, asks at 1), b (0, at 2), c (1, at 3),
    # d (0, at 4), e (0, at 4, after d), each holding 1 day: b, d, e, then a, c.
    trace = [patient("holder", 0, 1, 10), patient("a", 1, 1, 1), patient("b", 2, 0, 1),
             patient("c", 3, 1, 1), patient("d", 4, 0, 1), patient("e", 4, 0, 1)]
    assert grants(kind, 1, trace) == [(0, "holder"), (10, "b"), (11, "d"), (12, "e"), (13, "a"), (14, "c")]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_fifo_within_a_priority_for_requests_made_at_the_same_instant(kind: str) -> None:
    # Two slots, one held 0-5; four patients of one priority ask at 1, in this order: the
    # first takes the free slot, the others follow in the order they asked.
    trace = [patient("holder", 0, 0, 5)] + [patient(f"w{k}", 1, 0, 1) for k in range(4)]
    assert grants(kind, 2, trace) == [(0, "holder"), (1, "w0"), (2, "w1"), (3, "w2"), (4, "w3")]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_higher_priority_retry_made_right_after_a_release_takes_the_slot_back(kind: str) -> None:
    # The child (priority 0) holds 0-10 and asks again at once; the adult (1) waits since 1.
    # The release is handed over only when it is processed, so the child's new request
    # competes and wins: child 0-10 and 10-20, adult 20-.
    trace = [patient("child", 0, 0, 10, 10), patient("adult", 1, 1, 10)]
    assert grants(kind, 1, trace) == [(0, "child"), (10, "child"), (20, "adult")]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_lower_priority_retry_made_right_after_a_release_does_not_overtake_a_waiter(kind: str) -> None:
    trace = [patient("adult", 0, 1, 10, 10), patient("child", 1, 0, 10)]
    assert grants(kind, 1, trace) == [(0, "adult"), (10, "child"), (20, "adult")]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_an_equal_priority_retry_made_right_after_a_release_does_not_overtake_a_waiter(kind: str) -> None:
    # Same priority: the waiter asked earlier (time of request), the retry goes behind it.
    trace = [patient("first", 0, 1, 10, 10), patient("second", 1, 1, 10)]
    assert grants(kind, 1, trace) == [(0, "first"), (10, "second"), (20, "first")]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_new_request_at_the_instant_of_a_release_competes_with_the_waiters(kind: str) -> None:
    # Two slots held to 10; w (priority 1) waits since 1. At 10 one holder releases and a
    # new patient n (priority 0) arrives at that instant, after the release (its timeout was
    # scheduled later): n takes the slot, w waits for the next release (at 12).
    trace = [patient("h1", 0, 1, 10), patient("h2", 0, 1, 12), patient("w", 1, 1, 1),
             patient("n", 10, 0, 5)]
    assert grants(kind, 2, trace) == [(0, "h1"), (0, "h2"), (10, "n"), (12, "w")]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_waiter_that_gives_up_leaves_the_queue(kind: str) -> None:
    # One slot held 0-10; a (priority 0, at 1) gives up at 6; b (1, at 2) gets the slot at 10,
    # c (1, at 3) gives up at 11 without it, d (1, at 4) gets it at 12.
    trace = [patient("holder", 0, 0, 10), patient("a", 1, 0, 5, patience=5),
             patient("b", 2, 1, 2), patient("c", 3, 1, 5, patience=8), patient("d", 4, 1, 1)]
    assert grants(kind, 1, trace) == [(0, "holder"), (6, "a left"), (10, "b"), (11, "c left"), (12, "d")]


@pytest.mark.parametrize("kind", list(POOLS))
def test_cancel_after_the_caller_triggered_its_event_removes_it_from_the_queue(kind: str) -> None:
    env = simpy.Environment()
    pool = POOLS[kind](env, 1)
    assert pool.request(1, 1, 0.0) is None
    first = pool.request(0, 1, 0.0)
    second = pool.request(1, 1, 0.0)
    assert first is not None and second is not None and pool.queued == 2
    first.succeed("clock")  # the head's clock rings while every slot is held
    pool.cancel(0.0)
    assert pool.queued == 1 and pool.in_use == 1
    pool.release(1, 0.0)
    env.run()
    assert first.value == "clock"
    assert settled(pool, second) is GRANTED
    assert pool.queued == 0 and pool.in_use == 1
    # The head gives up at the instant of a release, as the journey does it: it triggers its
    # event if the hand-over has not (then cancels), or else hands the slot straight back.
    third = pool.request(0, 1, 0.0)
    fourth = pool.request(1, 1, 0.0)
    assert third is not None and fourth is not None
    pool.release(1, 0.0)
    if not third.triggered:
        third.succeed("clock")
        pool.cancel(0.0)
    else:
        assert settled(pool, third) is GRANTED
        pool.release(1, 0.0)
    env.run()
    assert settled(pool, fourth) is GRANTED
    assert pool.queued == 0 and pool.in_use == 1
    pool.release(1, 0.0)
    env.run()
    assert pool.in_use == 0 and pool.queued == 0
    assert pool.request(1, 1, 0.0) is None  # the slot is free, nobody is ahead


@pytest.mark.parametrize("kind", list(POOLS))
def test_busy_slot_days_is_the_integral_of_in_use(kind: str) -> None:
    # Two slots. A holds 0-4, B 1-6; C asks at 2 (waits, holds 4-9), D at 3 (waits, holds 6-7).
    # in_use: 1 on [0,1), 2 on [1,7), 1 on [7,9), 0 from 9; queued: 1 on [2,3), 2 on [3,4),
    # 1 on [4,6). The integral F(t) = 1 + 2 (t - 1) on [1,7], 13 + (t - 7) on [7,9], then 15.
    env = simpy.Environment()
    pool = POOLS[kind](env, 2)
    log: list[tuple[float, str]] = []
    for p in (patient("A", 0, 0, 4), patient("B", 1, 0, 5), patient("C", 2, 0, 5), patient("D", 3, 0, 1)):
        env.process(visit(env, pool, log, **p))
    # day: (F(day), in_use, queued), looked at between the instants when something happens
    expected = {0.5: (0.5, 1, 0), 1.5: (2.0, 2, 0), 2.5: (4.0, 2, 1), 3.5: (6.0, 2, 2),
                4.5: (8.0, 2, 1), 5.0: (9.0, 2, 1), 6.5: (12.0, 2, 0), 8.0: (14.0, 1, 0),
                9.5: (15.0, 0, 0)}
    seen: dict[float, tuple[float, int, int]] = {}

    def monitor() -> Iterator[simpy.Event]:
        for t in expected:
            yield env.timeout(t - env.now)
            seen[t] = (pool.busy_slot_days(env.now), pool.in_use, pool.queued)

    env.process(monitor())
    env.run()
    assert log == [(0, "A"), (1, "B"), (4, "C"), (6, "D")]
    assert seen.keys() == expected.keys()
    for t, (busy, in_use, queued) in expected.items():
        assert seen[t][0] == pytest.approx(busy, abs=1e-12), t
        assert seen[t][1:] == (in_use, queued), t
    # Asked for a later day than the last change, the integral runs on at the current in_use.
    assert pool.busy_slot_days(20.0) == pytest.approx(15.0, abs=1e-12)
    env = simpy.Environment()
    pool = POOLS[kind](env, 3)
    assert pool.request(0, 1, 0.0) is None and pool.request(0, 1, 0.0) is None
    assert pool.busy_slot_days(2.5) == pytest.approx(5.0)


@pytest.mark.parametrize("kind", list(POOLS))
def test_in_use_and_queued_follow_the_holders_and_the_waiters(kind: str) -> None:
    # A busy trace with two priorities, retries and waiters giving up (all on whole days).
    # Between instants (the monitor looks at t + 0.5), in_use is the number of patients
    # holding a slot, queued the number waiting, and nobody waits while a slot is free.
    slots = 2
    env = simpy.Environment()
    pool = POOLS[kind](env, slots)
    log: list[tuple[float, str]] = []
    state: dict[str, str] = {}
    trace = [patient(f"p{k}", k % 7, k % 2, 1 + k % 3, *([2] if k % 4 == 0 else []),
                     patience=None if k % 3 else 3 + k % 5) for k in range(14)]
    for p in trace:
        env.process(visit(env, pool, log, state=state, **p))
    samples: list[tuple[float, int, int, int, int]] = []

    def monitor() -> Iterator[simpy.Event]:
        yield env.timeout(0.5)
        while env.now < 60:
            holding = sum(s == "holding" for s in state.values())
            waiting = sum(s == "waiting" for s in state.values())
            samples.append((env.now, pool.in_use, holding, pool.queued, waiting))
            yield env.timeout(1)

    env.process(monitor())
    env.run()
    for now, in_use, holding, queued, waiting in samples:
        assert 0 <= in_use <= slots and queued >= 0, now
        assert (in_use, queued) == (holding, waiting), now
        assert queued == 0 or in_use == slots, now
    assert any(queued > 1 for _, _, _, queued, _ in samples)
    assert any(name.endswith(" left") for _, name in log)
    assert pool.in_use == 0 and pool.queued == 0
    # The same grants and departures, in the same order, on every pool. (Not compared with
    # the plain SimPy process here: it resumes one event later after an immediate grant, so
    # same-instant ties between patients, frequent on whole days, fall the other way.)
    assert log == grants("PriorityResourcePool", slots, trace)


@pytest.mark.parametrize("kind", MULTI_UNIT)
def test_a_multi_unit_request_is_all_or_none(kind: str) -> None:
    env = simpy.Environment()
    pool = POOLS[kind](env, 3)
    assert pool.request(1, 2, 0.0) is None
    event = pool.request(1, 2, 0.0)  # one slot free: it takes none of it
    assert event is not None and pool.in_use == 2 and pool.queued == 1
    env.run()
    assert not event.triggered and pool.in_use == 2
    pool.release(1, 0.0)  # two free now: handed over
    env.run()
    assert settled(pool, event) is GRANTED and pool.in_use == 3 and pool.queued == 0
    pool.release(2, 0.0)
    pool.release(1, 0.0)
    assert pool.in_use == 0
    assert pool.request(0, 3, 0.0) is None and pool.in_use == 3


@pytest.mark.parametrize("kind", MULTI_UNIT)
def test_the_head_of_the_queue_is_never_overtaken_by_a_smaller_request(kind: str) -> None:
    env = simpy.Environment()
    pool = POOLS[kind](env, 3)
    assert pool.request(1, 2, 0.0) is None
    big = pool.request(1, 3, 0.0)  # the head: needs all three
    small = pool.request(1, 1, 0.0)  # same priority, later: a slot is free, but not for it
    lower = pool.request(2, 1, 0.0)  # lower priority: not for it either
    assert big is not None and small is not None and lower is not None
    env.run()
    assert not big.triggered and not small.triggered and not lower.triggered
    assert pool.in_use == 2 and pool.queued == 3
    pool.release(1, 0.0)  # still not enough for the head: nobody is served
    env.run()
    assert not big.triggered and not small.triggered and not lower.triggered
    pool.release(1, 0.0)
    env.run()
    assert settled(pool, big) is GRANTED and not small.triggered and pool.in_use == 3
    for _ in range(3):  # each processed release serves the head (one slot each)
        pool.release(1, 0.0)
    env.run()
    assert settled(pool, small) is GRANTED and settled(pool, lower) is GRANTED
    assert pool.in_use == 2 and pool.queued == 0


@pytest.mark.parametrize("kind", MULTI_UNIT)
def test_a_higher_priority_request_becomes_the_head_and_takes_a_free_slot(kind: str) -> None:
    # As in SimPy, a new request is examined when it is the new head of the queue: it takes
    # the free slot that the (lower-priority) head could not use.
    env = simpy.Environment()
    pool = POOLS[kind](env, 3)
    assert pool.request(1, 2, 0.0) is None
    big = pool.request(1, 3, 0.0)
    assert big is not None
    assert pool.request(0, 1, 0.0) is None
    assert pool.in_use == 3 and pool.queued == 1
    assert pool.request(0, 1, 0.0) is not None  # now full: it waits, ahead of the big one


# --------------------------------------------------------------------------- 2. differential

KINDS = ["screen", "apheresis", "transport", "manufacture", "release", "conditioning", "delay"]


@st.composite
def durations(draw: st.DrawFn, scale: float = 1.0, fixed: bool = False) -> Any:
    """A random duration (days), mean about 0.3-8 x scale; with ``fixed``, a quarter of them
    are whole days, 0 included (steps that end at the same instant as others)."""
    if fixed and draw(st.integers(0, 3)) == 0:
        return draw(st.integers(0, 3))
    mean = draw(st.floats(0.3, 8.0)) * scale
    which = draw(st.sampled_from(["exponential", "uniform", "triangular", "gamma"]))
    if which == "exponential":
        return {"dist": "exponential", "mean": mean}
    if which == "uniform":
        return {"dist": "uniform", "low": mean / 2, "high": mean * 1.5}
    if which == "triangular":
        return {"dist": "triangular", "low": mean / 3, "mode": mean, "high": mean * 5 / 3}
    return {"dist": "gamma", "mean": mean, "sd": mean * draw(st.floats(0.2, 1.5))}


@st.composite
def pathways(draw: st.DrawFn, sites: list[str]) -> dict[str, Any]:
    """2-5 steps and an infusion; steps on sites, booked from earlier steps (reserve_from),
    failures retried from the step itself or an earlier one. Two steps of one site are never
    booked at the same moment (the reference takes one slot per request): a step of a site
    is booked from a step after the last earlier step of that site.

    Whole-day durations only without a shelf life: then a product's expiry, like a disease
    clock, never falls at the very instant of another event (on such ties the reference
    departs from the rule: see the tests under "ties with a cut")."""
    n = draw(st.integers(2, 5))
    shelf = draw(st.integers(0, 9)) < 3
    steps: list[dict[str, Any]] = []
    last_of_site: dict[str, int] = {}
    for j in range(n):
        step: dict[str, Any] = {"name": f"s{j}", "kind": draw(st.sampled_from(KINDS)),
                                "duration": draw(durations(fixed=not shelf))}
        if draw(st.integers(0, 9)) < 7:
            site = draw(st.sampled_from(sites))
            step["site"] = site
            first = last_of_site.get(site, -1) + 1
            if first < j and draw(st.booleans()):
                step["reserve_from"] = f"s{draw(st.integers(first, j - 1))}"
            last_of_site[site] = j
        if draw(st.integers(0, 9)) < 5:
            step["failure_probability"] = draw(st.floats(0.05, 0.6))
            if draw(st.integers(0, 9)) < 8:
                step["on_failure"] = {"retry_from": f"s{draw(st.integers(0, j))}",
                                      "max_attempts": draw(st.integers(1, 3))}
        if draw(st.integers(0, 9)) == 0:
            step["starts_on"] = draw(st.sampled_from([["mon", "wed", "fri"], ["tue", "thu"]]))
        steps.append(step)
    infusion: dict[str, Any] = {"name": "infusion", "kind": "infusion",
                                "duration": draw(durations(scale=0.3, fixed=not shelf))}
    retry_to = n - 1
    clock = [j for j, s in enumerate(steps) if s["kind"] == "release"] or \
        [j for j, s in enumerate(steps) if s["kind"] == "manufacture"]
    if clock and shelf:
        infusion["shelf_life"] = draw(st.floats(0.5, 6.0))
        # An expired product is retried from a step that makes a new one. (Retried from a
        # later step, the expired product is kept: a patient whose product expires while it
        # waits for a slot, or for a start day, at or after that step would retry and expire
        # again at once, without end, at that instant, on either pool.)
        retry_to = clock[-1]
    if draw(st.integers(0, 9)) < 3:
        infusion["failure_probability"] = draw(st.floats(0.05, 0.4))
    if draw(st.integers(0, 9)) < 4:
        infusion["on_failure"] = {"retry_from": f"s{draw(st.integers(0, retry_to))}",
                                  "max_attempts": draw(st.integers(1, 3))}
    steps.append(infusion)
    return {"steps": steps}


@st.composite
def clocks(draw: st.DrawFn) -> dict[str, Any]:
    """A cohort's disease clocks: exponential, short enough to ring during waits and steps."""
    out: dict[str, Any] = {}
    for key in ("time_to_death", "time_to_ineligible"):
        if draw(st.integers(0, 9)) < 7:
            out[key] = {"dist": "exponential", "mean": draw(st.floats(5.0, 80.0))}
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A small random scenario as plain data (most of them valid)."""
    sites = {f"site{k}": {"slots": draw(st.integers(1, 3))} for k in range(draw(st.integers(1, 2)))}
    names = list(sites)
    two = draw(st.booleans())  # one pathway per cohort, or one for both
    paths = {"p": draw(pathways(names))}
    if two:
        paths["q"] = draw(pathways(names))
    horizon = draw(st.integers(20, 120))
    if draw(st.booleans()):
        arrivals: dict[str, Any] = {"rate_per_year": draw(st.integers(5, 40)) * 365.0 / horizon}
    else:  # a schedule on half days, often crowded: referrals at the same instant
        spread = draw(st.integers(1, 2 * horizon))
        arrivals = {"schedule": draw(st.lists(st.integers(0, spread).map(lambda k: k / 2),
                                              min_size=2, max_size=40))}
    priorities = draw(st.sampled_from([(0, 1), (1, 0)]))
    cohorts = [{"name": name, "share": draw(st.floats(0.2, 1.0)), "pathway": path,
                "priority": priority, **draw(clocks())}
               for name, path, priority in (("a", "p", priorities[0]), ("b", "q" if two else "p", priorities[1]))]
    return {"name": "differential", "horizon_days": horizon, "drain_days": 400,
            "arrivals": arrivals, "cohorts": cohorts, "sites": sites, "pathways": paths}


def valid(data: dict[str, Any]) -> Any:
    """The scenario, or None if the loader refuses it (hold-and-wait cycles and the like)."""
    try:
        sc = scenario_from_dict(data)
    except ScenarioError:
        return None
    for plan in compile_scenario(sc).values():  # one slot per site and request (the reference's)
        for step in plan.steps:
            sites = [plan.steps[k].site for k in step.acquire]
            assert len(sites) == len(set(sites)), (plan.name, step.name)
    return sc


def assert_same(out: Any, ref: Any) -> None:
    """Identical patient tables (numbers to 1e-9, NaN equal to NaN) and busy slot-days."""
    assert out.columns.keys() == ref.columns.keys()
    for key, a in out.columns.items():
        b = ref.columns[key]
        assert a.shape == b.shape, key
        if a.dtype == object:
            assert a.tolist() == b.tolist(), key
        else:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=key)
    assert out.site_busy_slot_days.keys() == ref.site_busy_slot_days.keys()
    for site, busy in out.site_busy_slot_days.items():
        assert busy == pytest.approx(ref.site_busy_slot_days[site], rel=1e-9, abs=1e-9), site
    assert out.end_day == pytest.approx(ref.end_day, rel=1e-9, abs=1e-9)


def per_patient(events: list[tuple[Any, ...]]) -> dict[int, list[tuple[Any, ...]]]:
    """Trace rows by patient, in order (patients' rows interleave in processing order)."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    for row in events:
        out.setdefault(row[0], []).append(tuple(round(x, 9) if isinstance(x, float) else x for x in row))
    return out


DIFFERENTIAL = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@DIFFERENTIAL
@given(data=scenarios(), seed=st.integers(0, 2**32))
def test_light_pools_and_simpy_priority_resource_give_the_same_patients(data: dict[str, Any], seed: int) -> None:
    sc = valid(data)
    assume(sc is not None)
    out = run_replication(sc, seed, 0, trace_patients=10**6, record_timeline=False)
    ref = run_replication(sc, seed, 0, trace_patients=10**6, record_timeline=False, reference=True)
    assert_same(out, ref)
    assert per_patient(out.events) == per_patient(ref.events)


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=scenarios(), seed=st.integers(0, 2**32))
def _sample(data: dict[str, Any], seed: int, found: Counter) -> None:
    """One generated scenario, run once: what it exercises, counted in ``found``."""
    found["examples"] += 1
    sc = valid(data)
    if sc is None:
        return
    found["valid"] += 1
    out = run_replication(sc, seed, 0, trace_patients=10**6)
    if any(len(rows) and rows[:, 2].max() > 0 for rows in out.site_timeline.values()):
        found["patients wait for slots"] += 1
    outcomes = set(out.columns["outcome"].tolist())
    if outcomes & {"died", "ineligible"}:
        found["disease clocks ring"] += 1
    statuses = [(row[4], row[5], row[6], row[7]) for row in out.events]
    clock = ("died", "ineligible")
    if any(status in clock and ready < begin == end for ready, begin, end, status in statuses):
        found["a clock cuts a wait"] += 1
    if any(status in clock and begin < end for ready, begin, end, status in statuses):
        found["a clock cuts a step"] += 1
    if any(row[3] > 1 for row in out.events):
        found["steps are retried"] += 1
    if "product_expired" in outcomes:
        found["products expire"] += 1
    days = out.columns["referral_day"]
    if len(days) > len(set(days.tolist())):
        found["referrals at the same instant"] += 1


def test_the_generated_scenarios_exercise_queues_clocks_and_retries() -> None:
    found: Counter = Counter()
    _sample(found=found)
    n = found["examples"]
    assert n == 120
    assert found["valid"] >= 0.85 * n, found
    # Hypothesis draws other examples in some sessions than alone (the shares move by a third):
    # the floors leave room for that and still fail for a generator that lost a feature.
    for what, share in (("patients wait for slots", 0.3), ("disease clocks ring", 0.5),
                        ("a clock cuts a wait", 0.1), ("a clock cuts a step", 0.5),
                        ("steps are retried", 0.2), ("products expire", 0.02),
                        ("referrals at the same instant", 0.15)):
        assert found[what] >= share * n, (what, found)


# --------------------------------------------------------------------------- 3. bundled

@pytest.mark.parametrize("name", ["local.yaml", "overseas.yaml"])
def test_bundled_scenarios_give_the_same_patients_on_simpy_priority_resource(name: str) -> None:
    sc = v2vsim.load_scenario(ROOT / "scenarios" / name)
    waited = 0.0
    for replication in range(3):
        out = run_replication(sc, sc.seed, replication, trace_patients=10**6, record_timeline=False)
        ref = run_replication(sc, sc.seed, replication, trace_patients=10**6, record_timeline=False,
                              reference=True)
        assert len(out.columns["patient"]) > 50
        assert_same(out, ref)
        assert per_patient(out.events) == per_patient(ref.events)
        waited += float(out.columns["queue_wait_days"].sum())
    assert waited > 0


# --------------------------------------------------------------------------- same-instant rules
# Two hand-worked traces of rules 2 and 3 across two sites, where whole-day durations put
# releases and requests in one instant (each also found by the differential test).

def test_a_request_made_before_a_release_is_processed_serves_the_head_not_itself() -> None:
    # bay (3 slots) and chair (2): a screen of 2 days on the chair books the bay from its start
    # for a release step of 0 days; slots are asked for in the file's site order (bay, chair).
    #  0: P0, P1, P2 referred: P0 and P1 take a bay and a chair; P2 a bay, and waits for a chair.
    #  1: P3 asks for a bay: none free, it waits.
    #  2: P0 and P1 end and give back their chairs and bays. P4, referred at 2, asks for a bay
    #     before those releases are processed: its request serves the head, P3, and not itself
    #     (SimPy's _trigger_put stops after the head) although a second bay is free; P4 is
    #     served by the next processed release. So P3, served first, asks for a chair first:
    #     P3 screens 2-4, P4 waits for a chair until 4 and screens 4-6.
    data = {"name": "rule 3", "horizon_days": 10, "arrivals": {"schedule": [0, 0, 0, 1, 2]},
            "cohorts": [{"name": "all", "pathway": "p"}],
            "sites": {"bay": {"slots": 3}, "chair": {"slots": 2}},
            "pathways": {"p": {"steps": [
                {"name": "screen", "kind": "screen", "site": "chair", "duration": 2},
                {"name": "release", "kind": "release", "site": "bay", "reserve_from": "screen"},
                {"name": "infusion", "kind": "infusion"}]}}}
    sc = scenario_from_dict(data)
    out = run_replication(sc, 1, 0)
    p = out.columns
    assert p["outcome"].tolist() == ["infused"] * 5
    assert p["outcome_day"].tolist() == [2.0, 2.0, 4.0, 4.0, 6.0]
    assert p["queue_wait_days"].tolist() == [0.0, 0.0, 2.0, 1.0, 2.0]
    assert_same(out, run_replication(sc, 1, 0, reference=True))


def test_a_hand_over_is_final_once_its_release_is_processed() -> None:
    # plant (2 slots) and clinic (1): collection (10 days) on the clinic books the plant from
    # its start for make (1 day); slots are asked for in site order (plant, clinic). Adults
    # (priority 1) die 5 days after referral, the child (priority 0) does not.
    #  0: adult H takes a plant slot and the clinic, collects 0-10.
    #  1: adult W takes the other plant slot and waits for the clinic.
    #  2: the child waits for a plant slot.
    #  5: H dies and gives back its plant slot, then the clinic. Both releases are processed
    #     before the child, served the plant slot by the first, resumes: the clinic has gone to
    #     W by then, and the child's request (better priority, but later) does not take it
    #     back. W collects from 5 and dies at 6; the child collects 6-16, makes 16-17.
    steps = [{"name": "collect", "kind": "apheresis", "site": "clinic", "duration": 10},
             {"name": "make", "kind": "manufacture", "site": "plant", "reserve_from": "collect",
              "duration": 1},
             {"name": "infusion", "kind": "infusion", "duration": 0}]
    data = {"name": "rule 2", "horizon_days": 10, "arrivals": {"schedule": [0, 1, 2]},
            "cohorts": [{"name": "adult", "pathway": "p", "priority": 1,
                         "time_to_death": {"dist": "fixed", "value": 5}},
                        {"name": "child", "pathway": "p", "priority": 0}],
            "sites": {"plant": {"slots": 2}, "clinic": {"slots": 1}}, "pathways": {"p": {"steps": steps}}}
    sc = scenario_from_dict(data)
    seed = 23  # the cohorts are drawn: adult, adult, child
    out = run_replication(sc, seed, 0)
    p = out.columns
    assert p["cohort"].tolist() == ["adult", "adult", "child"]
    assert p["outcome"].tolist() == ["died", "died", "infused"]
    assert p["apheresis_day"].tolist() == [0.0, 5.0, 6.0]
    assert p["outcome_day"].tolist() == [5.0, 6.0, 17.0]
    assert p["queue_wait_days"].tolist() == [0.0, 4.0, 4.0]
    assert_same(out, run_replication(sc, seed, 0, reference=True))


# --------------------------------------------------------------------------- ties with a cut
# A patient's cut (a disease clock or its product's expiry) ringing at the very instant a slot
# is handed back: the light pools follow the rule (the waiter leaves when its cut rings, and
# a slot granted to it then goes straight back), the reference does not yet. The differential
# test above keeps clear of such ties (cuts at continuous times).

def _two_products_expire_together() -> dict[str, Any]:
    steps = [
        {"name": "make", "kind": "manufacture", "site": "plant", "duration": 0},
        {"name": "ship", "kind": "transport", "site": "plant", "duration": 2},
        {"name": "infusion", "kind": "infusion", "duration": 0, "shelf_life": 1,
         "on_failure": {"retry_from": "make", "max_attempts": 3}},
    ]
    return {"name": "tie", "horizon_days": 10, "arrivals": {"schedule": [0, 1]},
            "cohorts": [{"name": "all", "pathway": "p"}], "sites": {"plant": {"slots": 1}},
            "pathways": {"p": {"steps": steps}}}


def test_a_waiter_whose_product_expires_leaves_before_a_release_at_that_instant() -> None:
    # One plant slot; make (0 days, starts the shelf life of 1 day) and ship (2 days) both
    # on the plant, so every product expires during ship or while waiting for it; an expired
    # product is made again (make at most 3 times). P0 is referred at 0, P1 at 1, one priority.
    #  0: P0 makes (expires 1) and ships.
    #  1: P1 asks for make and waits. P0's product expires: P0 asks for make again, behind P1.
    #     P1 makes (expires 2), asks for ship behind P0's make; P0 makes (expires 2), asks for
    #     ship behind P1's: P1 ships 1-3, P0 waits.
    #  2: both products expire; P0's wait began before P1's ship, so its cut rings first and
    #     it leaves the queue. P1's ship stops and hands the slot back; P1 asks for make: nobody
    #     waits, so it takes the slot, makes (expires 3) and ships 2-4. P0 asks for make.
    #  3: P1's product expires; P0 (waiting since 2) makes (expires 4), then P1 (its third),
    #     P0 ships 3-5, P1 waits for ship.
    #  4: both expire, with no make left: both leave, product_expired.
    p = run_replication(scenario_from_dict(_two_products_expire_together()), 1, 0).columns
    assert p["outcome"].tolist() == ["product_expired"] * 2
    assert p["outcome_day"].tolist() == [4.0, 4.0]
    assert p["queue_wait_days"].tolist() == [2.0, 1.0]  # P0: for ship 1-2, make 2-3; P1: ship 3-4


def test_reference_withdraws_a_waiter_when_its_cut_rings() -> None:
    sc = scenario_from_dict(_two_products_expire_together())
    out, ref = run_replication(sc, 1, 0), run_replication(sc, 1, 0, reference=True)
    assert_same(out, ref)


def _retry_and_a_death_at_that_instant() -> dict[str, Any]:
    steps = [{"name": "make", "kind": "manufacture", "site": "plant", "duration": 10,
              "failure_probability": 1.0, "on_failure": {"retry_from": "make", "max_attempts": 2}},
             {"name": "infusion", "kind": "infusion", "duration": 0}]
    cohorts = [{"name": "h", "pathway": "p"},
               {"name": "w", "pathway": "p", "time_to_death": {"dist": "fixed", "value": 9}}]
    return {"name": "tie", "horizon_days": 10, "arrivals": {"schedule": [0, 1]}, "cohorts": cohorts,
            "sites": {"plant": {"slots": 1}}, "pathways": {"p": {"steps": steps}}}


SEED_H_W = 2  # the patients' cohorts are drawn: with this seed, h then w


def test_a_waiter_served_by_a_retry_as_its_clock_rings_dies_and_hands_the_slot_back() -> None:
    # h's batch (0-10) fails and it asks again at 10; w (referred at 1, one priority) waits and
    # dies at 10. h's request serves the head of the queue, w, at the instant w's clock rings:
    # the clock wins, w dies without starting, the slot goes back and h makes again 10-20.
    p = run_replication(scenario_from_dict(_retry_and_a_death_at_that_instant()), SEED_H_W, 0).columns
    assert p["cohort"].tolist() == ["h", "w"]
    assert p["outcome"].tolist() == ["manufacturing_failed", "died"]
    assert p["outcome_day"].tolist() == [20.0, 10.0]
    assert p["queue_wait_days"].tolist() == [0.0, 9.0] and p["cost"].tolist() == [0.0, 0.0]
    assert p["manufacturing_attempts"].tolist() == [2, 0]


def test_reference_survives_a_grant_made_as_the_waiters_clock_rings() -> None:
    sc = scenario_from_dict(_retry_and_a_death_at_that_instant())
    assert_same(run_replication(sc, SEED_H_W, 0), run_replication(sc, SEED_H_W, 0, reference=True))
