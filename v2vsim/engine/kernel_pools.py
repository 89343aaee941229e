"""SimPy's event queue and a site's slot pool on plain arrays, for the compiled engine's loop.

The event queue is a heap keyed by SimPy's own ``(time, priority, order of scheduling)``; a
site's slots follow :class:`.pools.SlotPool`'s rule (its waiters in a heap keyed by priority
and order of request; a waiter that gave up is dropped when it reaches the head; a release
with waiters schedules one hand-over event per slot). Numba compiles these functions together
with the loop of :mod:`.kernel` (see :mod:`.compiled`); as plain Python they are the same code.
"""

from __future__ import annotations

import numpy as np

from .collect import OUTCOME_CODE

# Event kinds (what happens when the event is processed).
_INIT, _REF, _TIMEOUT, _RING, _REQ, _DISPATCH, _CAL, _CAL_INIT = range(8)
_URGENT, _NORMAL = 0, 1
# Where a waiting patient resumes.
_PC_SLOT, _PC_START_OK, _PC_START_CUT, _PC_STEP_END, _PC_STEP_CUT = range(5)
# What a request event succeeds with.
_GRANTED, _CUT = 1, 2
_UNRESOLVED = OUTCOME_CODE["unresolved"]
_DONE, _FAILED = -1, -2  # trace statuses besides outcome codes


# --------------------------------------------------------------------------- heaps on arrays


def _grow(a: np.ndarray) -> np.ndarray:
    out = np.empty((2 * a.shape[0] + 16,) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def _less(t1: float, p1: int, e1: int, t2: float, p2: int, e2: int) -> bool:
    if t1 != t2:
        return t1 < t2
    if p1 != p2:
        return p1 < p2
    return e1 < e2


def _push(ht: np.ndarray, hi: np.ndarray, size: int, t: float, p: int, e: int, k: int, a: int) -> int:
    """Push onto a heap keyed (t, p, e) with payload (k, a); ``hi`` rows are (p, e, k, a)."""
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if _less(t, p, e, ht[parent], hi[parent, 0], hi[parent, 1]):
            ht[pos] = ht[parent]
            hi[pos, 0], hi[pos, 1], hi[pos, 2], hi[pos, 3] = hi[parent, 0], hi[parent, 1], hi[parent, 2], hi[parent, 3]
            pos = parent
        else:
            break
    ht[pos] = t
    hi[pos, 0], hi[pos, 1], hi[pos, 2], hi[pos, 3] = p, e, k, a
    return size + 1


def _pop(ht: np.ndarray, hi: np.ndarray, size: int) -> int:
    """Remove the top (read it first at index 0); the new size."""
    size -= 1
    if size == 0:
        return 0
    t, p, e, k, a = ht[size], hi[size, 0], hi[size, 1], hi[size, 2], hi[size, 3]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _less(ht[child + 1], hi[child + 1, 0], hi[child + 1, 1], ht[child], hi[child, 0], hi[child, 1]):
            child += 1
        if _less(ht[child], hi[child, 0], hi[child, 1], t, p, e):
            ht[pos] = ht[child]
            hi[pos, 0], hi[pos, 1], hi[pos, 2], hi[pos, 3] = hi[child, 0], hi[child, 1], hi[child, 2], hi[child, 3]
            pos = child
        else:
            break
    ht[pos] = t
    hi[pos, 0], hi[pos, 1], hi[pos, 2], hi[pos, 3] = p, e, k, a
    return size


# --------------------------------------------------------------------------- the state
# Counters (ctr): event order, heap size, requests, log rows, trace rows, next referral,
# whether the referral process resumes after its wait, events SimPy schedules besides, starts.
_C_EID, _C_HEAP, _C_REQ, _C_LOG, _C_TRACE, _C_REF_K, _C_REF_WAITED, _C_LEFT, _C_START, _C_CHARGE = range(10)
# Site integers (ps): free slots, waiters, heap size, requests so far, slots, slots held, has a
# calendar, capacity, closed, next calendar change, end of its changes.
_S_FREE, _S_QUEUED, _S_HEAP, _S_SEQ, _S_SLOTS, _S_HELD, _S_CAL, _S_CAP, _S_CLOSED, _S_NEXT, _S_CH_END = range(11)
# Site floats (psf): slot-days held, since when, reopening day, allocations and what is left
# (of the day's: what is left today, and the mean a day for the routing estimate).
_SF_BUSY, _SF_SINCE, _SF_REOPEN, _SF_PER_MONTH, _SF_MONTH_LEFT, _SF_PER_WEEK, _SF_WEEK_LEFT, \
    _SF_DAY_LEFT, _SF_DAY_RATE = range(9)
# Calendar actions: .calendar's codes.
from .calendar import _CAPACITY as _A_CAPACITY, _CLOSE as _A_CLOSE, _MONTH as _A_MONTH, _WEEK as _A_WEEK  # noqa: E402
from .calendar import _DAY as _A_DAY  # noqa: E402
#: Mean days in a calendar month (as .pools.DAYS_PER_MONTH).
_DAYS_PER_MONTH = 365.25 / 12


def _schedule(ht, hi, ctr, now, delay, prio, kind, a):  # type: ignore[no-untyped-def]
    ctr[_C_HEAP] = _push(ht, hi, ctr[_C_HEAP], now + delay, prio, ctr[_C_EID], kind, a)
    ctr[_C_EID] += 1


def _log(lg, ctr, ps, s, now, record):  # type: ignore[no-untyped-def]
    """A row of the site's change log: (site, time, slots held, waiters)."""
    if record:
        k = ctr[_C_LOG]
        lg[k, 0], lg[k, 1], lg[k, 2], lg[k, 3] = s, now, ps[s, _S_HELD], ps[s, _S_QUEUED]
        ctr[_C_LOG] = k + 1


def _refresh(ps, psf, s):  # type: ignore[no-untyped-def]
    """CalendarPool.refresh: the slots a request may take now."""
    if ps[s, _S_CLOSED]:
        ps[s, _S_FREE] = 0
        return
    free = ps[s, _S_CAP] - ps[s, _S_HELD]
    left = min(psf[s, _SF_MONTH_LEFT], psf[s, _SF_WEEK_LEFT], psf[s, _SF_DAY_LEFT])
    if free > left:
        free = int(left)
    ps[s, _S_FREE] = max(free, 0)


def _take(ps, psf, st, lg, ctr, s, units, now, record):  # type: ignore[no-untyped-def]
    psf[s, _SF_BUSY] += ps[s, _S_HELD] * (now - psf[s, _SF_SINCE])
    psf[s, _SF_SINCE] = now
    ps[s, _S_HELD] += units
    if ps[s, _S_CAL]:
        psf[s, _SF_MONTH_LEFT] -= units
        psf[s, _SF_WEEK_LEFT] -= units
        psf[s, _SF_DAY_LEFT] -= units
        for _ in range(units):  # a use starts when a slot is taken
            k = ctr[_C_START]
            st[k, 0], st[k, 1] = s, now
            ctr[_C_START] = k + 1
        _refresh(ps, psf, s)
    else:
        ps[s, _S_FREE] -= units
    _log(lg, ctr, ps, s, now, record)


def _head(ps, pht, phi, rq, s):  # type: ignore[no-untyped-def]
    """The live request at the head of a site's queue (-1: none); dead ones are dropped."""
    while ps[s, _S_HEAP] > 0 and rq[phi[s, 0, 3], 3] != 0:
        ps[s, _S_HEAP] = _pop(pht[s], phi[s], ps[s, _S_HEAP])
    return phi[s, 0, 3] if ps[s, _S_HEAP] > 0 else -1


def _grant_head(ps, psf, st, pht, phi, rq, ht, hi, lg, ctr, s, now, record):  # type: ignore[no-untyped-def]
    r = phi[s, 0, 3]
    ps[s, _S_HEAP] = _pop(pht[s], phi[s], ps[s, _S_HEAP])
    ps[s, _S_QUEUED] -= 1
    _take(ps, psf, st, lg, ctr, s, rq[r, 2], now, record)
    rq[r, 3] = _GRANTED
    _schedule(ht, hi, ctr, now, 0.0, _NORMAL, _REQ, r)


def _request(ps, psf, st, pht, phi, rq, ht, hi, lg, ctr, s, priority, units, patient, now, record):  # type: ignore[no-untyped-def]
    """SlotPool.request: -1 if the slots are taken now, else the new request's number."""
    if ps[s, _S_HEAP] == 0 and ps[s, _S_FREE] >= units:
        _take(ps, psf, st, lg, ctr, s, units, now, record)
        return -1
    head = _head(ps, pht, phi, rq, s)
    if head < 0 or priority < pht[s, 0]:
        if ps[s, _S_FREE] >= units:
            _take(ps, psf, st, lg, ctr, s, units, now, record)
            return -1
    elif ps[s, _S_FREE] >= rq[head, 2]:
        _grant_head(ps, psf, st, pht, phi, rq, ht, hi, lg, ctr, s, now, record)
    r = ctr[_C_REQ]
    ctr[_C_REQ] = r + 1
    rq[r, 0], rq[r, 1], rq[r, 2], rq[r, 3] = patient, s, units, 0
    ps[s, _S_HEAP] = _push(pht[s], phi[s], ps[s, _S_HEAP], float(priority), 0, ps[s, _S_SEQ], units, r)
    ps[s, _S_SEQ] += 1
    ps[s, _S_QUEUED] += 1
    _log(lg, ctr, ps, s, now, record)
    return r


def _cancel(ps, lg, ctr, s, now, record):  # type: ignore[no-untyped-def]
    ps[s, _S_QUEUED] -= 1
    _log(lg, ctr, ps, s, now, record)


def _release(ps, psf, ht, hi, lg, ctr, s, units, now, record):  # type: ignore[no-untyped-def]
    psf[s, _SF_BUSY] += ps[s, _S_HELD] * (now - psf[s, _SF_SINCE])
    psf[s, _SF_SINCE] = now
    ps[s, _S_HELD] -= units
    if ps[s, _S_CAL]:
        _refresh(ps, psf, s)
    else:
        ps[s, _S_FREE] += units
    if ps[s, _S_QUEUED]:
        for _ in range(units):
            _schedule(ht, hi, ctr, now, 0.0, _NORMAL, _DISPATCH, s)
    _log(lg, ctr, ps, s, now, record)


def _expected_wait(ps, psf, pht, phi, rq, s, now, hold):  # type: ignore[no-untyped-def]
    """SlotPool.expected_wait, or CalendarPool's for a site with a calendar (the routing rule)."""
    if ps[s, _S_FREE] > 0 and _head(ps, pht, phi, rq, s) < 0:
        return 0.0
    if not ps[s, _S_CAL]:
        return (ps[s, _S_QUEUED] + 1) * hold / ps[s, _S_SLOTS]
    rate = ps[s, _S_CAP] / hold if hold > 0 else np.inf
    rate = min(rate, psf[s, _SF_PER_MONTH] / _DAYS_PER_MONTH, psf[s, _SF_PER_WEEK] / 7.0,
               psf[s, _SF_DAY_RATE])
    wait = (ps[s, _S_QUEUED] + 1) / rate if rate > 0 else np.inf
    if ps[s, _S_CLOSED]:
        wait += psf[s, _SF_REOPEN] - now
    return wait


def _calendar_change(ps, psf, st, pht, phi, rq, ht, hi, lg, ctr, ch_day, ch_first, act_kind, act_value,
                     s, now, record):  # type: ignore[no-untyped-def]
    """calendar_process: one change of a site's calendar, at midnight, before anything else of
    that instant; then every waiter that fits is served, and the next change is scheduled."""
    k = ps[s, _S_NEXT]
    for q in range(ch_first[k], ch_first[k + 1]):
        kind, value = act_kind[q], act_value[q]
        if kind == _A_MONTH:
            psf[s, _SF_MONTH_LEFT] = psf[s, _SF_PER_MONTH]
        elif kind == _A_WEEK:
            psf[s, _SF_WEEK_LEFT] = psf[s, _SF_PER_WEEK]
        elif kind == _A_DAY:
            psf[s, _SF_DAY_LEFT] = value
        elif kind == _A_CAPACITY:
            ps[s, _S_CAP] = int(value)
        elif kind == _A_CLOSE:
            ps[s, _S_CLOSED] = 1
            psf[s, _SF_REOPEN] = value
        else:
            ps[s, _S_CLOSED] = 0
    _refresh(ps, psf, s)
    while True:  # CalendarPool.serve
        head = _head(ps, pht, phi, rq, s)
        if head < 0 or rq[head, 2] > ps[s, _S_FREE]:
            break
        _grant_head(ps, psf, st, pht, phi, rq, ht, hi, lg, ctr, s, now, record)
    ps[s, _S_NEXT] = k + 1
    if k + 1 < ps[s, _S_CH_END]:
        _schedule(ht, hi, ctr, now, ch_day[k + 1] - now, _URGENT, _CAL, s)
    else:
        ctr[_C_LEFT] += 1  # the calendar process ends
