"""Site slot pools: who gets a slot, and when.

Every pool has the same small interface, used only by the patient's journey:

``request(priority, units, now) -> Event | None``
    Ask for ``units`` slots. ``None``: they are taken now. Otherwise an event that succeeds
    with :data:`GRANTED` when they are handed over; the caller may trigger it itself (with any
    other value) to stop waiting, and then calls ``cancel(now)``.
``cancel(now)``
    A waiter gave up (its disease clock rang) before it was served.
``release(units, now)``
    Give slots back.
``busy_slot_days(until)``, ``in_use``, ``queued``, ``expected_wait(now, hold_days)``
    What results and routing rules read.

The allocation rule is :class:`simpy.PriorityResource`'s, so that the light pools here give
the same patients the same slots at the same times (the differential test in
``tests/test_engine_pools.py`` holds them to it):

1. Requests are served in order of ``(priority, time of request)``: lower priority first,
   first come first served within a priority.
2. A slot handed back is not given away at once: the hand-over happens when the release is
   processed, later in the same instant (SimPy's ``Release`` event). A request made in between
   (for instance the retry of the patient who just released it) competes with the waiters,
   so a higher-priority retry gets the slot back before a lower-priority waiter.
3. Each new request and each processed release serves at most the head of the queue, if its
   slots are free; the head is never overtaken (no back-filling by smaller requests).

Taking a free slot or handing one back with nobody waiting costs no event at all; only a
patient who has to wait gets one (plus one per release that others wait for).
"""

from __future__ import annotations

import math
from array import array
from heapq import heappop, heappush
from typing import Protocol

import simpy

__all__ = ["GRANTED", "Pool", "SlotPool", "CalendarPool", "PriorityResourcePool", "DAYS_PER_MONTH"]

#: The value a request event succeeds with when its slots are handed over.
GRANTED = "granted"

#: Mean days in a calendar month (routing estimate of an allocation's rate).
DAYS_PER_MONTH = 365.25 / 12


class Pool(Protocol):
    """What the journey needs of a site's slots (see the module docstring)."""

    queued: int

    @property
    def in_use(self) -> int: ...

    def request(self, priority: int, units: int, now: float) -> simpy.Event | None: ...

    def cancel(self, now: float) -> None: ...

    def release(self, units: int, now: float) -> None: ...

    def busy_slot_days(self, until: float) -> float: ...

    def expected_wait(self, now: float, hold_days: float) -> float: ...


class SlotPool:
    """A site with a fixed number of slots."""

    __slots__ = ("env", "slots", "free", "queued", "_heap", "_seq", "_log", "_busy", "_since")

    def __init__(self, env: simpy.Environment, slots: int, log: array | None = None) -> None:
        self.env = env
        self.slots = slots
        self.free = slots  # slots a request may take now
        self.queued = 0  # live waiters
        # (priority, sequence, units, event); an entry whose event has triggered is dead (its
        # patient's clock rang) and is dropped when it reaches the head.
        self._heap: list[tuple[int, int, int, simpy.Event]] = []
        self._seq = 0
        self._log = log
        self._busy = 0.0  # slot-days in use up to _since
        self._since = 0.0

    # ------------------------------------------------------------ the interface

    @property
    def in_use(self) -> int:
        return self.slots - self.free

    def request(self, priority: int, units: int, now: float) -> simpy.Event | None:
        if not self._heap and self.free >= units:  # the usual case: nobody waits
            self._busy += (self.slots - self.free) * (now - self._since)
            self._since = now
            self.free -= units
            if self._log is not None:
                self._log.extend((now, self.slots - self.free, self.queued))
            return None
        return self._request_in_turn(priority, units, now)

    def _request_in_turn(self, priority: int, units: int, now: float) -> simpy.Event | None:
        """A request when others wait (or no slot is free): the rules of the module docstring."""
        head = self._head()
        if head is None or priority < head[0]:
            if self.free >= units:
                self._take(units, now)
                return None
        elif self.free >= head[2]:
            self._grant_head(now)  # a new request serves the head first (rule 3)
        event = simpy.Event(self.env)
        heappush(self._heap, (priority, self._seq, units, event))
        self._seq += 1
        self.queued += 1
        self._record(now)
        return event

    def cancel(self, now: float) -> None:
        self.queued -= 1
        self._record(now)

    def release(self, units: int, now: float) -> None:
        self._account(now)
        self._give_back(units)
        for _ in range(units if self.queued else 0):
            # Rule 2: the waiters are served when the release is processed (one per slot, as
            # SimPy processes one Release per slot).
            dispatch = simpy.Event(self.env)
            dispatch.callbacks.append(self._dispatch)
            dispatch.succeed()
        if self._log is not None:
            self._log.extend((now, self.in_use, self.queued))

    def busy_slot_days(self, until: float) -> float:
        return self._busy + self.in_use * (until - self._since)

    def expected_wait(self, now: float, hold_days: float) -> float:
        """Routing estimate: 0 if a slot can be taken now, else (waiting + 1) x hold / slots."""
        if self.free > 0 and self._head() is None:
            return 0.0
        return (self.queued + 1) * hold_days / self.slots

    # ------------------------------------------------------------ internals

    def _head(self) -> tuple[int, int, int, simpy.Event] | None:
        heap = self._heap
        while heap and heap[0][3].triggered:
            heappop(heap)
        return heap[0] if heap else None

    def _account(self, now: float) -> None:
        self._busy += self.in_use * (now - self._since)
        self._since = now

    def _take(self, units: int, now: float) -> None:
        self._busy += (self.slots - self.free) * (now - self._since)
        self._since = now
        self.free -= units
        if self._log is not None:
            self._log.extend((now, self.slots - self.free, self.queued))

    def _give_back(self, units: int) -> None:
        self.free += units

    def _grant_head(self, now: float) -> None:
        _, _, units, event = heappop(self._heap)
        self.queued -= 1
        self._take(units, now)
        event.succeed(GRANTED)

    def _dispatch(self, _: simpy.Event) -> None:
        """A release is processed: serve the head if its slots are free (rule 3)."""
        head = self._head()
        if head is not None and head[2] <= self.free:
            self._grant_head(self.env.now)

    def _record(self, now: float) -> None:
        if self._log is not None:
            self._log.extend((now, self.slots - self.free, self.queued))


class CalendarPool(SlotPool):
    """A site whose capacity, opening or allowed starts depend on the date.

    ``free`` is kept equal to the number of slots a request may take *now*: capacity minus
    slots held, at most what is left of the month's, the week's and the day's allocations, 0
    while closed. A use starts when a slot is taken; a reduction of capacity evicts nobody. The
    calendar process (:mod:`.calendar`) changes the state at midnight of the relevant days,
    before anything else happens at that instant, and then serves every waiter that fits.
    """

    __slots__ = ("held", "capacity", "closed_now", "reopen", "per_month", "per_week",
                 "month_left", "week_left", "day_left", "day_rate", "starts")

    def __init__(self, env: simpy.Environment, capacity: int, log: array | None,
                 per_month: float, per_week: float, day_left: float = math.inf,
                 day_rate: float = math.inf) -> None:
        super().__init__(env, capacity, log)
        self.held = 0
        self.capacity = capacity
        self.closed_now = False
        self.reopen = 0.0
        self.per_month = self.month_left = per_month
        self.per_week = self.week_left = per_week
        self.day_left = day_left  # today's allocation left (the calendar sets each day's)
        self.day_rate = day_rate  # mean daily allocation over a week (routing estimate)
        self.starts: list[float] = []  # when each use started
        self.refresh()

    @property
    def in_use(self) -> int:
        return self.held

    def request(self, priority: int, units: int, now: float) -> simpy.Event | None:
        if not self._heap and self.free >= units:
            self._take(units, now)
            return None
        return self._request_in_turn(priority, units, now)

    def _record(self, now: float) -> None:
        if self._log is not None:
            self._log.extend((now, self.held, self.queued))

    def refresh(self) -> None:
        """Recompute ``free`` after a change of state."""
        if self.closed_now:
            self.free = 0
            return
        free = self.capacity - self.held
        left = min(self.month_left, self.week_left, self.day_left)
        if free > left:
            free = int(left)
        self.free = max(free, 0)

    def serve(self, now: float) -> None:
        """Hand slots to every waiter that fits, in order (after a calendar change)."""
        while True:
            head = self._head()
            if head is None or head[2] > self.free:
                break
            self._grant_head(now)

    def _take(self, units: int, now: float) -> None:
        self._account(now)
        self.held += units
        self.month_left -= units
        self.week_left -= units
        self.day_left -= units
        self.starts.extend([now] * units)
        self.refresh()
        self._record(now)

    def _give_back(self, units: int) -> None:
        self.held -= units
        self.refresh()

    def expected_wait(self, now: float, hold_days: float) -> float:
        """0 if a slot can be taken now, else (waiting + 1) / (uses per day), plus the rest of
        a closure; uses per day = min(capacity / hold, per month / 30.44, per week / 7, the
        mean daily allocation)."""
        if self.free > 0 and self._head() is None:
            return 0.0
        rate = self.capacity / hold_days if hold_days > 0 else math.inf
        rate = min(rate, self.per_month / DAYS_PER_MONTH, self.per_week / 7.0, self.day_rate)
        wait = (self.queued + 1) / rate if rate > 0 else math.inf
        if self.closed_now:
            wait += self.reopen - now
        return wait


class _Proxy(simpy.Event):
    """A waiter's event in the reference pool; triggered by anything but the grant (the cut),
    it withdraws the waiter's SimPy request."""

    def __init__(self, pool: "PriorityResourcePool") -> None:
        super().__init__(pool.env)
        self._pool = pool

    def succeed(self, value: object = None) -> simpy.Event:
        if value is not GRANTED:
            self._pool._withdraw(self)
        return super().succeed(value)


class PriorityResourcePool:
    """The reference: the same interface over :class:`simpy.PriorityResource` (one slot per
    request). Slower; the engine runs on it when asked (``run_replication(reference=True)``)
    so that tests can hold the light pools to SimPy's own allocation."""

    __slots__ = ("env", "resource", "queued", "_granted", "_waiting", "_log", "_busy", "_since")

    def __init__(self, env: simpy.Environment, slots: int, log: array | None = None) -> None:
        self.env = env
        self.resource = simpy.PriorityResource(env, capacity=slots)
        self.queued = 0
        self._granted: list[simpy.resources.resource.PriorityRequest] = []
        self._waiting: dict[simpy.Event, simpy.resources.resource.PriorityRequest] = {}
        self._log = log
        self._busy = 0.0
        self._since = 0.0

    @property
    def in_use(self) -> int:
        return len(self.resource.users)

    def request(self, priority: int, units: int, now: float) -> simpy.Event | None:
        if units != 1:
            raise ValueError("the reference pool takes one slot per request")
        self._account(now)
        req = self.resource.request(priority=priority)
        if req.triggered:  # granted as it was made
            self._granted.append(req)
            self._record(now)
            return None
        proxy = _Proxy(self)
        self._waiting[proxy] = req
        req.callbacks.append(lambda _, proxy=proxy: self._granted_later(proxy))
        self.queued += 1
        self._record(now)
        return proxy

    def _granted_later(self, proxy: simpy.Event) -> None:
        req = self._waiting.pop(proxy, None)
        if req is None:  # the waiter left (and its request was withdrawn)
            return
        self._account(self.env.now)
        self.queued -= 1
        self._granted.append(req)
        proxy.succeed(GRANTED)
        self._record(self.env.now)

    def _withdraw(self, proxy: simpy.Event) -> None:
        """The waiter's cut triggered its event: its SimPy request leaves the queue at once (a
        waiter whose clock has rung no longer competes), or, granted at this very instant and
        not yet seen, goes straight back."""
        req = self._waiting.pop(proxy, None)
        if req is None:
            return
        self.queued -= 1
        if req.triggered:
            self._account(self.env.now)
            self.resource.release(req)
        else:
            req.cancel()

    def cancel(self, now: float) -> None:
        self._record(now)  # the request was withdrawn when the waiter's event was triggered

    def release(self, units: int, now: float) -> None:
        self._account(now)
        for _ in range(units):
            self.resource.release(self._granted.pop(0))
        self._record(now)

    def busy_slot_days(self, until: float) -> float:
        return self._busy + self.in_use * (until - self._since)

    def expected_wait(self, now: float, hold_days: float) -> float:
        if self.in_use < self.resource.capacity and not self.queued:
            return 0.0
        return (self.queued + 1) * hold_days / self.resource.capacity

    def _account(self, now: float) -> None:
        self._busy += self.in_use * (now - self._since)
        self._since = now

    def _record(self, now: float) -> None:
        if self._log is not None:
            self._log.extend((now, self.in_use, self.queued))
