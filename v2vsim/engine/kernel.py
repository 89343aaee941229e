"""The compiled engine's loop: SimPy's events for one replication, in SimPy's order, over arrays.

One function, :func:`_kernel`, pops events from the queue (:mod:`.kernel_pools`) and runs the
patient whose event it is through the journey of :meth:`.journey.Journey.patient`, written as
a state machine (where a patient waits is kept in its row of the state arrays) until its next
wait; the journey's pieces (leaving, a failure and its retry, a cut) are the functions before
it, as in :mod:`.journey`. It is one piece: Numba compiles it with the functions it calls.
"""

from __future__ import annotations

import math

import numpy as np

from .collect import DIED, INELIGIBLE, INFUSED, PRODUCT_EXPIRED
from .kernel_pools import (
    _C_EID, _C_HEAP, _C_LEFT, _C_LOG, _C_REF_K, _C_REF_WAITED, _C_REQ, _C_TRACE, _CUT, _DISPATCH, _DONE,
    _FAILED, _GRANTED, _INIT, _NORMAL, _PC_SLOT, _PC_START_CUT, _PC_START_OK, _PC_STEP_CUT, _PC_STEP_END,
    _REF, _REQ, _RING, _S_FREE, _S_HEAP, _S_QUEUED, _SF_BUSY, _SF_SINCE, _TIMEOUT, _UNRESOLVED, _URGENT,
    _C_START, _C_CHARGE, _CAL, _CAL_INIT, _S_CAL, _S_CH_END, _S_HELD, _S_NEXT,
    _calendar_change, _cancel, _expected_wait, _grant_head, _grow, _head, _pop, _release, _request, _schedule,
)
#: Numba's disk cache of the compiled loop is keyed on this file alone, though the loop inlines
#: the functions of kernel_pools: a change there must come with a change here. This is the
#: sha256 of kernel_pools.py the cache was built against (tests/test_engine_compiled.py holds
#: it to the file, so that editing kernel_pools.py alone fails the tests, not a cached run).
KERNEL_POOLS_SHA256 = "945b5d3a54501b7f5811c39d841e2d281712213895e97aadacd0049089bcdf1e"

#: How Numba compiles the functions the loop calls (all but :data:`ALLOCATING`, which make
#: arrays or take them back from Python): without reference counting (``_nrt``: otherwise
#: each call counts a reference to every array it is passed, atomic operations that took a
#: third of the loop's time) and inlined into their callers (``forceinline``: no call passes
#: a dozen arrays' descriptors; the loop a third faster again). Kept here, in the file the
#: disk cache is keyed on, so that changing them rebuilds the cache.
HELPER_OPTIONS = {"_nrt": False, "forceinline": True}
ALLOCATING = ("_kernel", "_events", "_grow")

try:
    from numba import objmode
except ImportError:  # pragma: no cover - the plain-Python loop without Numba
    class objmode:  # type: ignore[no-redef]
        """Stands in for numba.objmode: the block simply runs."""

        def __init__(self, **types: str) -> None:
            pass

        def __enter__(self) -> None:
            pass

        def __exit__(self, *exc: object) -> None:
            pass

#: The bridging of the replication the loop runs (set by .compiled): ``(patient, now, referral,
#: deadline, clock, expiry, cost) -> [deadline, clock, cut, cost, toxic, unfit_from,
#: unfit_until]``, the replication's own start_bridging, for a cohort the loop does not bridge
#: itself (its clocks have no closed-form cumulative hazard).
CURRENT_BRIDGE: list = [None]


def bridge_callback(*args):  # type: ignore[no-untyped-def]
    """What the loop calls to bridge a patient: :data:`CURRENT_BRIDGE`'s function. The loop
    names this module-level function, never the replication's own: Numba's disk cache of the
    loop keeps what its object-mode block refers to, and a function is kept by its name, where
    a replication's closure would be kept whole (and fail to load once its classes change)."""
    return CURRENT_BRIDGE[0](*args)

# Patient floats (columns of PF) and integers (columns of PI).
_F_DEADLINE, _F_EXPIRY, _F_CUT, _F_WAIT, _F_SINCE, _F_COST, _F_READY, _F_BEGIN, _F_REF, _F_UNFIT_FROM, _F_UNFIT_UNTIL = range(11)
_I_CLOCK, _I_STEP, _I_PC, _I_MRUNS, _I_NEED_N, _I_NEED_POS, _I_HELD_N, _I_PATH, _I_TOXIC, _I_BRIDGED = range(10)

# --------------------------------------------------------------------------- the journey
# Step table columns: integers (TI) and floats (TF).
_T_SITE, _T_ACQ_N, _T_HAS_DAYS, _T_RETRY, _T_MAX, _T_OUTCOME, _T_APH, _T_MAN, _T_REL, _T_FIXED, _T_CLOSED, _T_PATIENT = range(12)
_TF_FAIL, _TF_COST, _TF_FIXED = range(3)


# Bridging computed in the loop (columns of c_bf, by cohort; of b_pf, by patient): a cohort whose
# clocks have a closed-form cumulative hazard (.clocks.hazard_form) is bridged here, the others
# by the replication's own start_bridging (bridge_callback).
_B_NATIVE, _B_RATIO, _B_COST, _B_TOX_P, _B_D_CODE, _B_D_SCALE, _B_D_SHAPE, _B_I_CODE, _B_I_SCALE, _B_I_SHAPE = range(10)
_BP_U_DEATH, _BP_U_INEL, _BP_DURATION, _BP_TOX_U, _BP_DELAY = range(5)


def _cumhaz(code, scale, shape, t):  # type: ignore[no-untyped-def]
    """.clocks._cumhaz for the closed forms (1 exponential, 2 Weibull)."""
    x = max(t, 0.0) / scale
    if code == 1:
        return x
    return x ** shape


def _cumhaz_inv(code, scale, shape, e):  # type: ignore[no-untyped-def]
    if code == 1:
        return e * scale
    return scale * e ** (1.0 / shape)


def _bridged_clock(code, scale, shape, u, t0, s, d, ratio):  # type: ignore[no-untyped-def]
    """.clocks.bridged_clock, the same operations in the same order."""
    if not t0 > s or t0 == math.inf or ratio == 1.0:
        return t0
    budget = -math.log1p(-u)
    h_start = _cumhaz(code, scale, shape, s)
    left = budget - h_start
    if not left > 0:
        return t0
    h_end = _cumhaz(code, scale, shape, s + d)
    spent = ratio * (h_end - h_start) if ratio > 0 else 0.0
    if ratio > 0 and spent >= left:
        t = _cumhaz_inv(code, scale, shape, h_start + left / ratio)
        return min(max(t, s), s + d)
    t = _cumhaz_inv(code, scale, shape, h_end + (left - spent))
    return max(t, s + d) if math.isfinite(t) else s + d


def _start_bridging(PF, PI, rec_f, death_delay, inel_delay, c_bf, b_pf, c, i, now):  # type: ignore[no-untyped-def]
    """Replication.start_bridging for a cohort of closed-form clocks: the new clocks, the
    course's cost and any toxicity (rec_f columns 9 and 10: the day bridging started, toxic)."""
    s = now - PF[i, _F_REF]
    d = b_pf[i, _BP_DURATION]
    ratio = c_bf[c, _B_RATIO]
    death = _bridged_clock(int(c_bf[c, _B_D_CODE]), c_bf[c, _B_D_SCALE], c_bf[c, _B_D_SHAPE], b_pf[i, _BP_U_DEATH],
                           death_delay[i], s, d, ratio)
    inel = _bridged_clock(int(c_bf[c, _B_I_CODE]), c_bf[c, _B_I_SCALE], c_bf[c, _B_I_SHAPE], b_pf[i, _BP_U_INEL],
                          inel_delay[i], s, d, ratio)
    death_delay[i] = death
    inel_delay[i] = inel
    rec_f[i, 9] = now
    PF[i, _F_COST] += c_bf[c, _B_COST]
    toxic = b_pf[i, _BP_TOX_U] < c_bf[c, _B_TOX_P]
    rec_f[i, 10] = 1.0 if toxic else 0.0
    if toxic:
        PI[i, _I_TOXIC] = 1
        PF[i, _F_UNFIT_FROM] = now + d
        PF[i, _F_UNFIT_UNTIL] = PF[i, _F_UNFIT_FROM] + b_pf[i, _BP_DELAY]
    death_day, inel_day = PF[i, _F_REF] + death, PF[i, _F_REF] + inel
    if death_day <= inel_day:
        PF[i, _F_DEADLINE], PI[i, _I_CLOCK] = death_day, DIED
    else:
        PF[i, _F_DEADLINE], PI[i, _I_CLOCK] = inel_day, INELIGIBLE
    PF[i, _F_CUT] = min(PF[i, _F_DEADLINE], PF[i, _F_EXPIRY])


def _trace(tr, ctr, limit, i, j, attempt, ready, begin, end, status):  # type: ignore[no-untyped-def]
    if i < limit:
        k = ctr[_C_TRACE]
        tr[k, 0], tr[k, 1], tr[k, 2], tr[k, 3], tr[k, 4], tr[k, 5], tr[k, 6] = i, j, attempt, ready, begin, end, status
        ctr[_C_TRACE] = k + 1


def _hold(PI, held, order, TI, T_acq, i, p, j, s):  # type: ignore[no-untyped-def]
    """Journey.hold: the slots of site ``s`` just taken, against the steps they serve (in the
    order taken, which is the order they are given back when the patient leaves)."""
    for q in range(TI[p, j, _T_ACQ_N]):
        k = T_acq[p, j, q]
        if not held[i, k] and TI[p, k, _T_SITE] == s:
            held[i, k] = True
            order[i, PI[i, _I_HELD_N]] = k
            PI[i, _I_HELD_N] += 1


def _unhold(PI, held, order, i, j):  # type: ignore[no-untyped-def]
    """Forget step j's slot in patient i's slots held (keeping the order they were taken)."""
    held[i, j] = False
    m = PI[i, _I_HELD_N]
    k = 0
    while order[i, k] != j:
        k += 1
    while k + 1 < m:
        order[i, k] = order[i, k + 1]
        k += 1
    PI[i, _I_HELD_N] = m - 1


def _leave(PF, PI, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr, TI, i, outcome, j, now, record):  # type: ignore[no-untyped-def]
    """Leave the pathway: every slot held is freed at once, in the order taken; -1."""
    p = PI[i, _I_PATH]
    for k in range(PI[i, _I_HELD_N]):
        step = order[i, k]
        held[i, step] = False
        _release(ps, psf, ht, hi, lg, ctr, TI[p, step, _T_SITE], 1, now, record)
    PI[i, _I_HELD_N] = 0
    PI[i, _I_STEP] = -1
    rec_i[i, 0], rec_i[i, 1], rec_i[i, 2] = outcome, j, PI[i, _I_MRUNS]
    rec_f[i, 4], rec_f[i, 5], rec_f[i, 6] = now, PF[i, _F_WAIT], PF[i, _F_COST]
    ctr[_C_LEFT] += 1
    return -1


def _after_failure(PF, PI, runs, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr, TI, PW,
                   i, j, outcome, now, record):  # type: ignore[no-untyped-def]
    p = PI[i, _I_PATH]
    r = TI[p, j, _T_RETRY]
    if r >= 0 and runs[i, r] < TI[p, j, _T_MAX]:
        if r <= PW[p, 1]:
            PF[i, _F_EXPIRY] = math.inf
            PF[i, _F_CUT] = PF[i, _F_DEADLINE]
        return r
    return _leave(PF, PI, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr, TI, i, outcome, j, now, record)


def _interrupted(PF, PI, runs, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr, tr, limit, TI, PW,
                 i, j, now, in_step, record):  # type: ignore[no-untyped-def]
    """The cut came during a wait (``in_step`` False) or a step: the next step index."""
    p = PI[i, _I_PATH]
    ready = PF[i, _F_READY]
    PF[i, _F_SINCE] = math.nan
    if not in_step:
        PF[i, _F_WAIT] += now - ready
        begin, attempt = now, runs[i, j] + 1
    else:
        begin, attempt = PF[i, _F_BEGIN], runs[i, j]
    if PF[i, _F_DEADLINE] <= PF[i, _F_EXPIRY]:
        clock = PI[i, _I_CLOCK]
        _trace(tr, ctr, limit, i, j, attempt, ready, begin, now, clock)
        return _leave(PF, PI, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr, TI, i, clock, j, now, record)
    _trace(tr, ctr, limit, i, j, attempt, ready, begin, now, _EXPIRED)
    if held[i, j]:
        _unhold(PI, held, order, i, j)
        _release(ps, psf, ht, hi, lg, ctr, TI[p, j, _T_SITE], 1, now, record)
    last = PW[p, 0] - 1
    if TI[p, last, _T_RETRY] > PW[p, 1]:
        return _leave(PF, PI, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr, TI, i, _EXPIRED, last, now, record)
    return _after_failure(PF, PI, runs, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr, TI, PW,
                          i, last, _EXPIRED, now, record)


_EXPIRED = PRODUCT_EXPIRED

# Journey states (where the loop below goes next, within one event).
_ST_TOP, _ST_ACQ, _ST_START, _ST_BEGIN, _ST_END, _ST_WAIT = range(6)


def _start_time(T_days, T_cl_start, T_cl_end, T_cl_n, TI, p, j, start_weekday, now, toxic, unfit_from,
                unfit_until):  # type: ignore[no-untyped-def]
    """Journey.start_time: the first instant from ``now`` on an allowed weekday, outside the
    site's closures and, for a step that needs the patient, outside its unfit window."""
    if not (toxic and TI[p, j, _T_PATIENT]):
        unfit_from, unfit_until = 0.0, -math.inf
    t = now
    while t < math.inf:
        before = t
        if TI[p, j, _T_HAS_DAYS] and not T_days[p, j, (start_weekday + int(t)) % 7]:
            day = math.floor(t)
            weekday = (start_weekday + int(day)) % 7
            t = math.inf
            for ahead in range(1, 8):
                if T_days[p, j, (weekday + ahead) % 7]:
                    t = day + ahead
                    break
            continue
        if TI[p, j, _T_CLOSED]:
            k = -1
            for q in range(T_cl_n[p, j]):  # bisect_right(starts, t) - 1
                if T_cl_start[p, j, q] <= t:
                    k = q
                else:
                    break
            if k >= 0 and t < T_cl_end[p, j, k]:
                t = T_cl_end[p, j, k]
        if unfit_from <= t < unfit_until:
            t = unfit_until
        if t == before:
            break
    return t



def _longest_queue(ps):  # type: ignore[no-untyped-def]
    longest = 0
    for s in range(ps.shape[0]):
        if ps[s, _S_HEAP] > longest:
            longest = ps[s, _S_HEAP]
    return longest


def _events(arrivals, cohort, death_delay, inel_delay, c_prio, c_path, c_rule, c_rule_f, c_bridge, c_bf, b_pf, TI, TF, T_acq,
            T_days, T_cl_start, T_cl_end, T_cl_n, PW, PWF, D, F, ch_day, ch_first, act_kind, act_value, start_weekday,
            stop, limit, record, charging, PF, PI, runs, held, order, need_site, need_units, rec_f, rec_i, ht, hi, ps,
            psf, st, pht, phi, rq, lg, tr, cg, ctr, taken, headroom):  # type: ignore[no-untyped-def]
    """The events from the queue's head until the stop (0), or until the arrays may not have
    room for what the next event adds (1: the caller makes more and calls again). No array is
    reassigned here: a reassigned array costs Numba a reference count per use in the loop."""
    n = arrivals.shape[0]
    n_sites = ps.shape[0]
    inf = math.inf
    nan = math.nan
    while ctr[_C_HEAP] > 0:
        # Room for what one event can add.
        if (ctr[_C_HEAP] + headroom > ht.shape[0] or ctr[_C_REQ] + headroom > rq.shape[0]
                or (n_sites and _longest_queue(ps) + headroom > pht.shape[1])
                or (record and ctr[_C_LOG] + 4 * headroom > lg.shape[0]) or ctr[_C_TRACE] + headroom > tr.shape[0]
                or ctr[_C_START] + headroom > st.shape[0] or (charging and ctr[_C_CHARGE] + headroom > cg.shape[0])):
            return 1
        now = ht[0]
        if now >= stop:  # the stop is an urgent event at `stop`, scheduled before all but the first
            break
        kind, a = hi[0, 2], hi[0, 3]
        ctr[_C_HEAP] = _pop(ht, hi, ctr[_C_HEAP])
        if kind == _CAL_INIT:
            if ps[a, _S_NEXT] < ps[a, _S_CH_END]:
                _schedule(ht, hi, ctr, now, ch_day[ps[a, _S_NEXT]] - now, _URGENT, _CAL, a)
            else:
                ctr[_C_LEFT] += 1  # a calendar process with nothing to do ends at once
            continue
        if kind == _CAL:
            _calendar_change(ps, psf, st, pht, phi, rq, ht, hi, lg, ctr, ch_day, ch_first, act_kind, act_value,
                             a, now, record)
            continue
        if kind == _REF:
            k = ctr[_C_REF_K]
            waited = ctr[_C_REF_WAITED] == 1
            ctr[_C_REF_WAITED] = 0
            while k < n:
                day = arrivals[k]
                if not waited and day > now:
                    _schedule(ht, hi, ctr, now, day - now, _NORMAL, _REF, 0)
                    ctr[_C_REF_WAITED] = 1
                    break
                waited = False
                _schedule(ht, hi, ctr, now, 0.0, _URGENT, _INIT, k)
                k += 1
            ctr[_C_REF_K] = k
            if k == n and ctr[_C_REF_WAITED] == 0:
                ctr[_C_LEFT] += 1  # the referral process ends (an event SimPy schedules)
                ctr[_C_REF_K] = n + 1
            continue
        if kind == _DISPATCH:
            head = _head(ps, pht, phi, rq, a)
            if head >= 0 and rq[head, 2] <= ps[a, _S_FREE]:
                _grant_head(ps, psf, st, pht, phi, rq, ht, hi, lg, ctr, a, now, record)
            continue
        if kind == _RING:
            if rq[a, 3] == 0:  # still waiting: the clock cuts the wait
                rq[a, 3] = _CUT
                _schedule(ht, hi, ctr, now, 0.0, _NORMAL, _REQ, a)
            continue
        # A patient starts or resumes.
        value = 0
        if kind == _INIT:
            i = a
            c = cohort[i]
            p = c_path[c]
            if c_rule[c, 0]:  # a routing rule: the fallback when the booking site is congested
                s = c_rule[c, 3]
                if c_rule[c, 4]:
                    busy_now = float(ps[s, _S_QUEUED])
                else:
                    busy_now = _expected_wait(ps, psf, pht, phi, rq, s, now, c_rule_f[c, 0])
                p = c_rule[c, 2] if busy_now > c_rule_f[c, 1] else c_rule[c, 1]
            taken[i] = p
            death, inel = now + death_delay[i], now + inel_delay[i]
            if death <= inel:
                PF[i, _F_DEADLINE], PI[i, _I_CLOCK] = death, DIED
            else:
                PF[i, _F_DEADLINE], PI[i, _I_CLOCK] = inel, INELIGIBLE
            PF[i, _F_EXPIRY] = inf
            PF[i, _F_CUT] = PF[i, _F_DEADLINE]
            PF[i, _F_SINCE] = nan
            PF[i, _F_REF] = now
            PI[i, _I_PATH] = p
            state = _ST_TOP
        elif kind == _REQ:
            i = rq[a, 0]
            value = rq[a, 3]
            state = _ST_WAIT
        else:
            i = a
            state = _ST_WAIT
        p = PI[i, _I_PATH]
        prio = c_prio[cohort[i]]
        n_steps = PW[p, 0]
        if state == _ST_WAIT:  # where the patient waited
            pc = PI[i, _I_PC]
            j = PI[i, _I_STEP]
            if pc == _PC_SLOT:
                PF[i, _F_SINCE] = nan
                pos = PI[i, _I_NEED_POS]
                s, units = need_site[i, pos], need_units[i, pos]
                if value != _GRANTED:
                    _cancel(ps, lg, ctr, s, now, record)
                    PI[i, _I_STEP] = _interrupted(PF, PI, runs, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr,
                                                  tr, limit, TI, PW, i, j, now, False, record)
                    state = _ST_TOP
                elif now >= PF[i, _F_DEADLINE]:  # granted as the clock rings: the slots go back
                    _release(ps, psf, ht, hi, lg, ctr, s, units, now, record)
                    PI[i, _I_STEP] = _interrupted(PF, PI, runs, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr,
                                                  tr, limit, TI, PW, i, j, now, False, record)
                    state = _ST_TOP
                else:
                    _hold(PI, held, order, TI, T_acq, i, p, j, s)
                    PI[i, _I_NEED_POS] = pos + 1
                    state = _ST_ACQ
            elif pc == _PC_START_OK:
                PF[i, _F_SINCE] = nan
                state = _ST_BEGIN
            elif pc == _PC_START_CUT:
                PI[i, _I_STEP] = _interrupted(PF, PI, runs, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr,
                                              tr, limit, TI, PW, i, j, now, False, record)
                state = _ST_TOP
            elif pc == _PC_STEP_CUT:
                PI[i, _I_STEP] = _interrupted(PF, PI, runs, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr,
                                              tr, limit, TI, PW, i, j, now, True, record)
                state = _ST_TOP
            else:
                state = _ST_END
        while True:  # the journey until its next wait (or its end)
            j = PI[i, _I_STEP]
            if state == _ST_TOP:
                if j < 0:
                    break
                if j == n_steps:
                    rec_f[i, 3] = now
                    _leave(PF, PI, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr, TI, i, INFUSED, n_steps - 1,
                           now, record)
                    break
                if j == c_bridge[cohort[i], p] and not PI[i, _I_BRIDGED]:  # bridging starts (first visit)
                    PI[i, _I_BRIDGED] = 1
                    if c_bf[cohort[i], _B_NATIVE] > 0:
                        _start_bridging(PF, PI, rec_f, death_delay, inel_delay, c_bf, b_pf, cohort[i], i, now)
                    else:
                        with objmode(out="float64[:]"):
                            out = bridge_callback(i, now, PF[i, _F_REF], PF[i, _F_DEADLINE], PI[i, _I_CLOCK],
                                                  PF[i, _F_EXPIRY], PF[i, _F_COST])
                        PF[i, _F_DEADLINE], PI[i, _I_CLOCK], PF[i, _F_CUT] = out[0], int(out[1]), out[2]
                        PF[i, _F_COST] = out[3]
                        if out[4] > 0:
                            PI[i, _I_TOXIC] = 1
                            PF[i, _F_UNFIT_FROM], PF[i, _F_UNFIT_UNTIL] = out[5], out[6]
                PF[i, _F_READY] = now
                n_acq = TI[p, j, _T_ACQ_N]
                need = n_acq > 1 or (n_acq == 1 and not held[i, T_acq[p, j, 0]])
                if need:  # the (site, units) to request, in the global site order
                    m = 0
                    for q in range(n_acq):
                        k = T_acq[p, j, q]
                        if held[i, k]:
                            continue
                        s = TI[p, k, _T_SITE]
                        if m > 0 and need_site[i, m - 1] == s:
                            need_units[i, m - 1] += 1
                        else:
                            need_site[i, m], need_units[i, m] = s, 1
                            m += 1
                    PI[i, _I_NEED_N], PI[i, _I_NEED_POS] = m, 0
                    state = _ST_ACQ
                else:
                    state = _ST_START
                continue
            if state == _ST_ACQ:
                pos = PI[i, _I_NEED_POS]
                if pos == PI[i, _I_NEED_N]:
                    if pos > 0 and rec_f[i, 8] != rec_f[i, 8]:
                        rec_f[i, 8] = now
                    state = _ST_START
                    continue
                s, units = need_site[i, pos], need_units[i, pos]
                if pos == 0 and rec_f[i, 7] != rec_f[i, 7]:  # the first request (joins a list)
                    rec_f[i, 7] = now
                r = _request(ps, psf, st, pht, phi, rq, ht, hi, lg, ctr, s, prio, units, i, now, record)
                if r < 0:
                    _hold(PI, held, order, TI, T_acq, i, p, j, s)
                    PI[i, _I_NEED_POS] = pos + 1
                    continue
                PF[i, _F_SINCE] = PF[i, _F_READY]
                if PF[i, _F_CUT] < inf:
                    _schedule(ht, hi, ctr, now, PF[i, _F_CUT] - now, _NORMAL, _RING, r)
                PI[i, _I_PC] = _PC_SLOT
                break
            if state == _ST_START:
                toxic = PI[i, _I_TOXIC]
                if toxic or TI[p, j, _T_HAS_DAYS] or TI[p, j, _T_CLOSED]:
                    if toxic or TI[p, j, _T_CLOSED]:
                        start = _start_time(T_days, T_cl_start, T_cl_end, T_cl_n, TI, p, j, start_weekday, now,
                                            toxic, PF[i, _F_UNFIT_FROM], PF[i, _F_UNFIT_UNTIL])
                    elif T_days[p, j, (start_weekday + int(now)) % 7]:
                        start = now
                    else:
                        day = math.floor(now)
                        weekday = (start_weekday + int(day)) % 7
                        start = inf
                        for ahead in range(1, 8):
                            if T_days[p, j, (weekday + ahead) % 7]:
                                start = day + ahead
                                break
                    if start > now:
                        PF[i, _F_SINCE] = PF[i, _F_READY]
                        if start >= PF[i, _F_DEADLINE] or start > PF[i, _F_EXPIRY]:
                            _schedule(ht, hi, ctr, now, PF[i, _F_CUT] - now, _NORMAL, _TIMEOUT, i)
                            PI[i, _I_PC] = _PC_START_CUT
                        else:
                            _schedule(ht, hi, ctr, now, start - now, _NORMAL, _TIMEOUT, i)
                            PI[i, _I_PC] = _PC_START_OK
                        break
                state = _ST_BEGIN
                continue
            if state == _ST_BEGIN:
                begin = now
                PF[i, _F_BEGIN] = begin
                if begin != PF[i, _F_READY]:
                    PF[i, _F_WAIT] += begin - PF[i, _F_READY]
                runs[i, j] += 1
                attempt = runs[i, j]
                PF[i, _F_COST] += TF[p, j, _TF_COST]
                if charging and TF[p, j, _TF_COST] != 0.0:
                    k = ctr[_C_CHARGE]
                    cg[k, 0], cg[k, 1], cg[k, 2] = i, j, begin
                    ctr[_C_CHARGE] = k + 1
                if TI[p, j, _T_APH]:
                    if rec_f[i, 0] != rec_f[i, 0]:
                        rec_f[i, 0] = begin
                elif TI[p, j, _T_MAN]:
                    PI[i, _I_MRUNS] += 1
                    if PI[i, _I_MRUNS] == 1:
                        rec_f[i, 1] = begin
                if TI[p, j, _T_FIXED]:
                    duration = TF[p, j, _TF_FIXED]
                else:
                    duration = D[p, j, attempt - 1, i]
                end = begin + duration
                cut = PF[i, _F_CUT]
                if end >= cut and (end >= PF[i, _F_DEADLINE] or end > PF[i, _F_EXPIRY]):
                    if cut > begin:
                        _schedule(ht, hi, ctr, now, cut - begin, _NORMAL, _TIMEOUT, i)
                        PI[i, _I_PC] = _PC_STEP_CUT
                        break
                    PI[i, _I_STEP] = _interrupted(PF, PI, runs, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr,
                                                  tr, limit, TI, PW, i, j, now, True, record)
                    state = _ST_TOP
                    continue
                if end > begin:
                    _schedule(ht, hi, ctr, now, end - begin, _NORMAL, _TIMEOUT, i)
                    PI[i, _I_PC] = _PC_STEP_END
                    break
                state = _ST_END
                continue
            # _ST_END: the step ends; its slot is freed; done, or failed.
            site = TI[p, j, _T_SITE]
            if site >= 0 and held[i, j]:
                _unhold(PI, held, order, i, j)
                _release(ps, psf, ht, hi, lg, ctr, site, 1, now, record)
            attempt = runs[i, j]
            failed = False
            if TF[p, j, _TF_FAIL] > 0.0:
                failed = F[p, j, attempt - 1, i] < TF[p, j, _TF_FAIL]
            _trace(tr, ctr, limit, i, j, attempt, PF[i, _F_READY], PF[i, _F_BEGIN], now, _FAILED if failed else _DONE)
            if failed:
                PI[i, _I_STEP] = _after_failure(PF, PI, runs, held, order, rec_f, rec_i, ps, psf, ht, hi, lg, ctr,
                                                TI, PW, i, j, TI[p, j, _T_OUTCOME], now, record)
                state = _ST_TOP
                continue
            if TI[p, j, _T_REL]:
                rec_f[i, 2] = now
            if j == PW[p, 1] and PWF[p] == PWF[p]:  # the shelf-life clock starts
                PF[i, _F_EXPIRY] = now + PWF[p]
                PF[i, _F_CUT] = min(PF[i, _F_DEADLINE], PF[i, _F_EXPIRY])
            PI[i, _I_STEP] = j + 1
            state = _ST_TOP
    return 0


def _kernel(arrivals, cohort, death_delay, inel_delay, c_prio, c_path, c_rule, c_rule_f, c_bridge, c_bf, b_pf, TI, TF, T_acq,
            T_days, T_cl_start, T_cl_end, T_cl_n, PW, PWF, D, F, site_i, site_f, ch_day, ch_first, act_kind,
            act_value, start_weekday, stop, limit, record, charging):  # type: ignore[no-untyped-def]
    """One replication's run (see the module text). Returns the recorder's arrays, the sites'
    slot-days and logs, the trace and the number of events SimPy would have scheduled."""
    n = arrivals.shape[0]
    n_sites = site_i.shape[0]
    width = TI.shape[1]
    nan = math.nan
    PF = np.zeros((n, 11))
    PI = np.zeros((n, 10), dtype=np.int64)
    runs = np.zeros((n, width), dtype=np.int64)
    held = np.zeros((n, width), dtype=np.bool_)
    order = np.zeros((n, width), dtype=np.int64)
    need_site = np.zeros((n, width), dtype=np.int64)
    need_units = np.zeros((n, width), dtype=np.int64)
    rec_f = np.full((n, 11), nan)  # ..., 7 listed day, 8 slot day, 9 bridging day, 10 toxic (bridged here)
    rec_f[:, 5] = 0.0
    rec_f[:, 6] = 0.0
    rec_i = np.zeros((n, 3), dtype=np.int64)
    rec_i[:, 0] = _UNRESOLVED
    rec_i[:, 1] = -1
    cap = 64 + 4 * n
    ht = np.zeros(cap)
    hi = np.zeros((cap, 4), dtype=np.int64)
    ps = site_i.copy()
    psf = site_f.copy()
    st = np.zeros((16 + 4 * n, 2))
    pcap = 16 + n
    pht = np.zeros((n_sites, pcap))
    phi = np.zeros((n_sites, pcap, 4), dtype=np.int64)
    rq = np.zeros((16 + n, 4), dtype=np.int64)
    lg = np.zeros((64 + 4 * n if record else 1, 4))
    tr = np.zeros((16 + 8 * min(n, limit) * width, 7))
    ctr = np.zeros(10, dtype=np.int64)
    cg = np.zeros((16 + (2 * n * width if charging else 0), 3))
    taken = np.zeros(n, dtype=np.int64)
    headroom = 8 * width * (n_sites + 2) + 16
    # The sites' calendar processes, then the referral process, start at day 0 (urgent events,
    # as SimPy's Initialize).
    for s in range(n_sites):
        if ps[s, _S_CAL]:
            _schedule(ht, hi, ctr, 0.0, 0.0, _URGENT, _CAL_INIT, s)
    _schedule(ht, hi, ctr, 0.0, 0.0, _URGENT, _REF, 0)
    while True:  # the events, until the stop; in turns when the arrays need more room
        if _events(arrivals, cohort, death_delay, inel_delay, c_prio, c_path, c_rule, c_rule_f, c_bridge, c_bf,
                b_pf, TI, TF, T_acq, T_days, T_cl_start, T_cl_end, T_cl_n, PW, PWF, D, F, ch_day, ch_first,
                act_kind, act_value, start_weekday, stop, limit, record, charging, PF, PI, runs, held, order,
                need_site, need_units, rec_f, rec_i, ht, hi, ps, psf, st, pht, phi, rq, lg, tr, cg, ctr, taken,
                headroom) == 0:
            break
        if ctr[_C_HEAP] + headroom > ht.shape[0]:
            ht, hi = _grow(ht), _grow(hi)
        if ctr[_C_REQ] + headroom > rq.shape[0]:
            rq = _grow(rq)
        if n_sites and _longest_queue(ps) + headroom > pht.shape[1]:
            bigger = 2 * pht.shape[1] + headroom
            new_t = np.zeros((n_sites, bigger))
            new_i = np.zeros((n_sites, bigger, 4), dtype=np.int64)
            new_t[:, :pht.shape[1]] = pht
            new_i[:, :pht.shape[1]] = phi
            pht, phi = new_t, new_i
        if record and ctr[_C_LOG] + 4 * headroom > lg.shape[0]:
            lg = _grow(lg)
        if ctr[_C_TRACE] + headroom > tr.shape[0]:
            tr = _grow(tr)
        if ctr[_C_START] + headroom > st.shape[0]:
            st = _grow(st)
        if charging and ctr[_C_CHARGE] + headroom > cg.shape[0]:
            cg = _grow(cg)
    # The stop: patients still in the pathway keep their wait so far (up to the stop).
    for i in range(n):
        if rec_i[i, 0] == _UNRESOLVED:
            since = PF[i, _F_SINCE]
            rec_f[i, 5] = PF[i, _F_WAIT] + (stop - since if since == since else 0.0)
            rec_f[i, 6] = PF[i, _F_COST]
            rec_i[i, 2] = PI[i, _I_MRUNS]
    busy = np.empty(n_sites)
    for s in range(n_sites):
        busy[s] = psf[s, _SF_BUSY] + ps[s, _S_HELD] * (stop - psf[s, _SF_SINCE])
    # SimPy also schedules each ended process and the stop.
    return (rec_f, rec_i, busy, lg[:ctr[_C_LOG]], tr[:ctr[_C_TRACE]], ctr[_C_EID] + ctr[_C_LEFT] + 1, taken,
            st[:ctr[_C_START]], cg[:ctr[_C_CHARGE]])
