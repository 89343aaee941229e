"""The compiled engine: the SimPy engine's events, in SimPy's order, in one loop over arrays.

Where patients compete for slots the journey is inherently sequential, so this engine replays
the SimPy engine's run event by event: the same events (a patient's start, its timeouts, the
ring of its disease clock while it waits for a slot, a slot handed over, a release being
processed) scheduled in the same order and popped from a heap by SimPy's own key ``(time,
priority, order of scheduling)``, with the journey (:mod:`.journey`) and the slot pool's rule
(:class:`.pools.SlotPool`) written out as a state machine over plain arrays. The same draws are
read (the replication's set-up is :class:`.replication.Replication`'s), and every time is
computed by the same expression (``now + (target - now)``), so the results are the same to the
last bit. The loop is compiled with Numba where it is installed (``pip install -e ".[fast]"``),
and runs as plain Python otherwise (exact, but slower than SimPy: a reference for the tests).

Events that have no effect when processed are not scheduled at all (a patient process's end,
and the stop): the order of the others is unchanged, since only their relative order counts.

Every feature of the model is covered: routing rules are decided at referral from the booking
site's queue, as :meth:`.replication.Replication.route` does; site calendars (slot schedules,
closures, allocations of starts) are processes whose changes are urgent events, as
:func:`.calendar.calendar_process`. Bridging therapy's new clocks are computed in the loop
where both of a cohort's clocks have a closed-form cumulative hazard (exponential, Weibull,
never: :func:`.clocks.hazard_form`), by the same scalar operations as
:func:`.clocks.bridged_clock`; for other clocks the loop calls the replication's own
:meth:`~.replication.Replication.start_bridging`, so the same code computes them. The loop is imported, and
Numba with it, only when the engine runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..scenario import Scenario
from .collect import ReplicationOutput
from .clocks import HAZARD_OTHER, hazard_form
from .exception import exception_problems
from .journey import _STATUS, Patient
from .replication import Replication, set_up
from .rng import UniformStream
from .results import outputs_together
from .waitlist import waitlist_problems

__all__ = ["compiled_problems", "numba_available", "run_compiled"]

def compiled_problems(scenario: Scenario) -> list[str]:
    """Why the compiled engine cannot run ``scenario`` (empty: it can). Out-of-specification
    infusions and the waitlist policies (a backlog, a queue order, re-referral) are run by the
    SimPy engine only."""
    return exception_problems(scenario) + waitlist_problems(scenario)


def numba_available() -> bool:
    """Whether Numba is installed (the optional extra ``v2vsim[fast]``)."""
    from importlib.util import find_spec

    return find_spec("numba") is not None


def _attempts_bound(rep: Replication) -> int:
    """Most runs any step can have: one pass plus every retry the rules allow."""
    most = 1
    for steps in rep.pathways.values():
        by_target: dict[int, int] = {}
        for step in steps:
            if step.retry_index >= 0:
                by_target[step.retry_index] = max(by_target.get(step.retry_index, 1), step.max_attempts)
        most = max(most, 1 + sum(m - 1 for m in by_target.values()))
    return most


def _static_tables(rep: Replication) -> tuple[Any, ...]:
    """The kernel's inputs that are the same in every replication of a scenario: the cohorts'
    priorities, pathways, routing rules and bridging steps, the pathways' step tables and the
    sites' calendar changes."""
    paths = [rep.pathways[name] for name in rep.pathway_list]
    n_paths, width = len(paths), max(len(steps) for steps in paths)
    closures = max([len(step.closed[0]) for steps in paths for step in steps if step.closed is not None] or [0])
    TI = np.zeros((n_paths, width, 12), dtype=np.int64)
    TF = np.zeros((n_paths, width, 3))
    T_acq = np.zeros((n_paths, width, width), dtype=np.int64)
    T_days = np.zeros((n_paths, width, 7), dtype=np.bool_)
    T_cl_start = np.zeros((n_paths, width, max(1, closures)))
    T_cl_end = np.zeros((n_paths, width, max(1, closures)))
    T_cl_n = np.zeros((n_paths, width), dtype=np.int64)
    PW = np.zeros((n_paths, 2), dtype=np.int64)
    PWF = np.full(n_paths, math.nan)
    for p, steps in enumerate(paths):
        clock = next((s.index for s in steps if s.starts_shelf_clock), -1)
        PW[p] = len(steps), clock
        if steps[-1].shelf_life is not None:
            PWF[p] = steps[-1].shelf_life
        for j, step in enumerate(steps):
            TI[p, j] = (step.site, len(step.acquire), step.start_days is not None, step.retry_index,
                        step.max_attempts, step.failure_outcome, step.is_apheresis, step.is_manufacture,
                        step.is_release, step.fixed_duration is not None, step.closed is not None,
                        step.patient_step)
            TF[p, j] = (step.failure_probability, step.cost,
                        step.fixed_duration if step.fixed_duration is not None else 0.0)
            T_acq[p, j, :len(step.acquire)] = step.acquire
            if step.start_days is not None:
                T_days[p, j] = step.start_days
            if step.closed is not None:
                k = len(step.closed[0])
                T_cl_start[p, j, :k], T_cl_end[p, j, :k], T_cl_n[p, j] = step.closed[0], step.closed[1], k
    c_prio = np.asarray(rep.cohort_priority, dtype=np.int64)
    n_cohorts = len(rep.cohort_plan)
    c_path = np.zeros(n_cohorts, dtype=np.int64)
    c_rule = np.zeros((n_cohorts, 5), dtype=np.int64)  # rule?, primary, fallback, site, by count?
    c_rule_f = np.zeros((n_cohorts, 2))  # hold days, threshold
    c_bridge = np.full((n_cohorts, n_paths), -1, dtype=np.int64)  # the step where bridging starts
    for c, (plan, rule) in enumerate(zip(rep.cohort_plan, rep.cohort_rule)):
        if rule is None:
            c_path[c] = plan[3]  # type: ignore[index]
            c_bridge[c, plan[3]] = plan[1]  # type: ignore[index]
            continue
        primary, fallback, pool, hold, by_count, threshold = rule
        c_path[c] = primary[3]
        c_rule[c] = (1, primary[3], fallback[3], rep.pools.index(pool), by_count)
        c_rule_f[c] = (hold, threshold)
        c_bridge[c, primary[3]], c_bridge[c, fallback[3]] = primary[1], fallback[1]
    return (c_prio, c_path, c_rule, c_rule_f, c_bridge, _bridging_table(rep), TI, TF, T_acq, T_days, T_cl_start,
            T_cl_end, T_cl_n, PW, PWF, _calendar_changes(rep))


def _bridging_table(rep: Replication) -> np.ndarray:
    """Each cohort's bridging as the loop computes it (kernel ``_B_*`` columns): a cohort whose
    two clocks have closed-form cumulative hazards is bridged in the loop, the others (flag 0)
    by the replication's own start_bridging."""
    from .kernel import _B_COST, _B_D_CODE, _B_I_CODE, _B_NATIVE, _B_RATIO, _B_TOX_P

    table = np.zeros((len(rep.cohort_bridge), 10))
    for c, b in enumerate(rep.cohort_bridge):
        if b is None:
            continue
        death, inel = hazard_form(b.death), hazard_form(b.ineligible)
        if HAZARD_OTHER in (death[0], inel[0]):
            continue
        table[c, _B_NATIVE], table[c, _B_RATIO], table[c, _B_COST], table[c, _B_TOX_P] = \
            1.0, b.ratio, b.cost, b.toxicity_probability
        table[c, _B_D_CODE:_B_D_CODE + 3] = death
        table[c, _B_I_CODE:_B_I_CODE + 3] = inel
    return table


def _bridging_draws(rep: Replication, table: np.ndarray) -> np.ndarray:
    """The draws the loop's bridging reads, by patient (kernel ``_BP_*`` columns)."""
    from .kernel import _B_NATIVE, _BP_DELAY, _BP_DURATION, _BP_TOX_U, _BP_U_DEATH, _BP_U_INEL

    n = rep.n
    out = np.zeros((n, 5))
    native = [c for c in range(table.shape[0]) if table[c, _B_NATIVE] > 0]
    if not native or not n:
        return out
    out[:, _BP_U_DEATH] = rep.u_death
    out[:, _BP_U_INEL] = rep.u_inel
    out[:, _BP_TOX_U] = 1.0
    for c in native:
        b = rep.cohort_bridge[c]
        assert b is not None
        mine = rep.cohort_of == c
        out[mine, _BP_DURATION] = math.inf if b.durations is None else np.frombuffer(b.durations.head(n))[:n][mine]
        if b.toxicity is not None and b.delays is not None:
            out[mine, _BP_TOX_U] = np.frombuffer(b.toxicity.head(n))[:n][mine]
            out[mine, _BP_DELAY] = np.frombuffer(b.delays.head(n))[:n][mine]
    return out


def _first_uniforms(reps: list[Replication], purpose: str) -> list[np.ndarray]:
    """Each replication's uniforms of the stream ``purpose`` for its patients, the streams of
    all of them generated together (:meth:`.rng.UniformStream.fill_sized`)."""
    sizes = [rep.n for rep in reps]
    streams = [rep.streams(purpose) for rep in reps]
    UniformStream.fill_sized(streams, sizes)
    return [stream.extend_to(n)[:n] for stream, n in zip(streams, sizes)]


def _bridging_draws_together(reps: list[Replication], table: np.ndarray) -> list[np.ndarray]:
    """:func:`_bridging_draws` of replications set up together, made at once: each bridging
    stream of every replication generated together and each cohort's distribution applied to
    all of them side by side (element by element: the same values)."""
    from .kernel import _B_NATIVE, _BP_DELAY, _BP_DURATION, _BP_TOX_U, _BP_U_DEATH, _BP_U_INEL

    sizes = [rep.n for rep in reps]
    out = [np.zeros((n, 5)) for n in sizes]
    native = [c for c in range(table.shape[0]) if table[c, _B_NATIVE] > 0]
    if not native or not sum(sizes):
        return out
    made: dict[str, np.ndarray] = {}

    def uniforms(purpose: str) -> np.ndarray:  # every replication's, one after another
        if purpose not in made:
            made[purpose] = np.concatenate(_first_uniforms(reps, purpose))
        return made[purpose]

    cohort_of = np.concatenate([rep.cohort_of for rep in reps])
    columns = np.zeros((cohort_of.size, 5))
    columns[:, _BP_U_DEATH] = np.concatenate([rep.u_death for rep in reps])
    columns[:, _BP_U_INEL] = np.concatenate([rep.u_inel for rep in reps])
    columns[:, _BP_TOX_U] = 1.0
    for c in native:
        course = reps[0].scenario.cohorts[c].bridging
        b = reps[0].cohort_bridge[c]
        assert course is not None and b is not None
        mine = cohort_of == c
        columns[mine, _BP_DURATION] = (math.inf if b.durations is None
                                       else course.duration.ppf(uniforms("bridging:duration"))[mine])
        if b.toxicity is not None and b.delays is not None:
            columns[mine, _BP_TOX_U] = uniforms("bridging:toxicity")[mine]
            columns[mine, _BP_DELAY] = course.toxicity_delay.ppf(uniforms("bridging:toxicity_delay"))[mine]
    at = 0
    for rows, n in zip(out, sizes):
        rows[:] = columns[at:at + n]
        at += n
    return out


def _sites(rep: Replication) -> tuple[np.ndarray, np.ndarray]:
    """Each site's state at day 0 (integers, floats); where its calendar's changes are in
    :func:`_calendar_changes`' arrays."""
    from .kernel_pools import (_S_CAL, _S_CAP, _S_CH_END, _S_CLOSED, _S_FREE, _S_NEXT,
                               _S_SLOTS, _SF_DAY_LEFT, _SF_DAY_RATE, _SF_MONTH_LEFT, _SF_PER_MONTH,
                               _SF_PER_WEEK, _SF_REOPEN, _SF_WEEK_LEFT)

    n_sites = len(rep.pools)
    site_i = np.zeros((n_sites, 11), dtype=np.int64)
    site_f = np.zeros((n_sites, 9))
    calendars = {id(pool): len(changes) for pool, changes in rep.calendars}
    at = 0
    for s, pool in enumerate(rep.pools):
        site_i[s, _S_FREE], site_i[s, _S_SLOTS] = pool.free, pool.slots
        site_i[s, _S_NEXT] = at
        if id(pool) in calendars:
            site_i[s, _S_CAL], site_i[s, _S_CAP], site_i[s, _S_CLOSED] = 1, pool.capacity, pool.closed_now
            site_f[s, _SF_REOPEN] = pool.reopen
            site_f[s, _SF_PER_MONTH], site_f[s, _SF_MONTH_LEFT] = pool.per_month, pool.month_left
            site_f[s, _SF_PER_WEEK], site_f[s, _SF_WEEK_LEFT] = pool.per_week, pool.week_left
            site_f[s, _SF_DAY_LEFT], site_f[s, _SF_DAY_RATE] = pool.day_left, pool.day_rate
            at += calendars[id(pool)]
        site_i[s, _S_CH_END] = at
    return site_i, site_f


def _calendar_changes(rep: Replication) -> tuple[np.ndarray, ...]:
    """The sites' calendar changes, flat (by site in order, then in time order): each change's
    day, where its actions start, and the actions' kinds and values. The same in every
    replication of a scenario (the calendars are computed once, :class:`.setup.Shared`)."""
    calendars = {id(pool): changes for pool, changes in rep.calendars}
    ch_day: list[float] = []
    ch_first: list[int] = [0]
    act_kind: list[int] = []
    act_value: list[float] = []
    for pool in rep.pools:
        for day, actions in calendars.get(id(pool), ()):
            ch_day.append(day)
            for kind, value in actions:
                act_kind.append(kind)
                act_value.append(value)
            ch_first.append(len(act_kind))
    return (np.asarray(ch_day + [0.0]), np.asarray(ch_first, dtype=np.int64),
            np.asarray(act_kind + [0], dtype=np.int64), np.asarray(act_value + [0.0]))


def _draws(rep: Replication, attempts: int) -> tuple[np.ndarray, np.ndarray]:
    """Every step's durations and failure uniforms, by pathway, step, attempt and patient."""
    n = rep.n
    paths = [rep.pathways[name] for name in rep.pathway_list]
    width = max(len(steps) for steps in paths)
    D = np.zeros((len(paths), width, attempts, n))
    F = np.ones((len(paths), width, attempts, n))
    if n:
        rep.draw_retries(attempts)  # the retries' durations of all replications set up together
        for p, steps in enumerate(paths):
            for j, step in enumerate(steps):
                if step.fixed_duration is None:
                    D[p, j, 0] = np.frombuffer(step.first_durations, dtype=float, count=n)
                    for a in range(2, attempts + 1):
                        D[p, j, a - 1] = np.frombuffer(step.durations(a).head(n), dtype=float, count=n)
                if step.failure_probability > 0.0:
                    F[p, j, 0] = np.frombuffer(step.first_failures, dtype=float, count=n)
                    for a in range(2, attempts + 1):
                        F[p, j, a - 1] = np.frombuffer(step.failures(a).head(n), dtype=float, count=n)
    return D, F


def _draws_together(reps: list[Replication], attempts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`_draws` of replications of one scenario set up together, made at once: each later
    attempt's stream of every replication generated together and its distribution applied to
    all of them side by side (element by element: the same values as :func:`_draws`, which
    reads them through the replication's own steps)."""
    rep0 = reps[0]
    names = rep0.pathway_list
    width = max(len(rep0.pathways[name]) for name in names)
    sizes = [rep.n for rep in reps]
    out = [(np.zeros((len(names), width, attempts, n)), np.ones((len(names), width, attempts, n))) for n in sizes]
    later: dict[str, list[np.ndarray]] = {}  # a later attempt's uniforms, by purpose: one stream per step name

    def uniforms(purpose: str) -> list[np.ndarray]:
        if purpose not in later:
            later[purpose] = _first_uniforms(reps, purpose)
        return later[purpose]

    for p, name in enumerate(names):
        for j, (step, _) in enumerate(rep0.shared.steps[name]):  # the compiled steps
            drawn, failing = step.fixed_duration is None, step.failure_probability > 0.0
            for (D, F), rep, n in zip(out, reps, sizes):
                if not n:
                    continue
                mine = rep.pathways[name][j]
                if drawn:
                    D[p, j, 0] = np.frombuffer(mine.first_durations, dtype=float, count=n)
                if failing:
                    F[p, j, 0] = np.frombuffer(mine.first_failures, dtype=float, count=n)
            for a in range(2, attempts + 1):
                if drawn:
                    parts = uniforms(f"step:{step.name}:{a}:duration")
                    values = step.duration.ppf(np.concatenate(parts))
                    at = 0
                    for (D, _), n in zip(out, sizes):
                        D[p, j, a - 1] = values[at:at + n]
                        at += n
                if failing:
                    for (_, F), u in zip(out, uniforms(f"step:{step.name}:{a}:failure")):
                        F[p, j, a - 1] = u
    return out


def _bridge_for(rep: Replication) -> Any:
    """The loop's bridging callback for one replication: its own start_bridging, on a patient
    rebuilt from the loop's state, and the new state back."""
    paths = [rep.pathways[name] for name in rep.pathway_list]

    def bridge(i: int, now: float, referral: float, deadline: float, clock: int, expiry: float,
               cost: float) -> np.ndarray:
        c = int(rep.cohort_of[i])
        p_id = int(rep.pathway_taken[i])
        p = Patient(i, c, rep.cohort_priority[c], paths[p_id], -1, -1, referral, False, deadline, int(clock))
        p.expiry, p.cost = expiry, cost
        p.cut = min(deadline, expiry)
        rep.start_bridging(p, now)
        return np.array([p.deadline, p.clock_outcome, p.cut, p.cost, 1.0 if p.toxic else 0.0,
                         p.unfit_from, p.unfit_until])

    return bridge


_COMPILED: dict[str, Any] = {}


def _kernel_function(compiled: bool) -> Any:
    """The loop, compiled with Numba (once per process; cached on disk) or as plain Python."""
    from . import kernel, kernel_pools, rng

    if "plain" not in _COMPILED:
        _COMPILED["plain"] = kernel._kernel
    if not compiled:
        return _COMPILED["plain"]
    if "kernel" not in _COMPILED:
        import numba

        jit = numba.njit(cache=True)
        plain = numba.njit(cache=True, **kernel.HELPER_OPTIONS)
        # Every function of the loop's two modules, compiled, under its name in both modules
        # (the loop calls them by those names).
        done: dict[str, Any] = {}
        for module in (kernel_pools, kernel):
            for name, value in list(vars(module).items()):
                if name.startswith("_") and callable(value) and getattr(value, "__module__", "") == module.__name__ \
                        and not isinstance(value, type):
                    done[name] = jit(value) if name in kernel.ALLOCATING else plain(value)
        for module in (kernel_pools, kernel):
            for name in done:
                if name in vars(module):
                    setattr(module, name, done[name])
        _COMPILED["kernel"] = done["_kernel"]
        # The streams' first blocks made by the compiled PCG64 (the same doubles as numpy's).
        rng.use_compiled_fill(jit(rng._pcg64_fill))
    return _COMPILED["kernel"]


def _run_one(rep: Replication, run: Any, static: tuple[Any, ...], attempts: int,
             draws: tuple[np.ndarray, np.ndarray] | None = None, bridging: np.ndarray | None = None) -> tuple[Any, ...]:
    """Run one replication's loop into its recorder (``draws``, ``bridging``: its
    :func:`_draws` and :func:`_bridging_draws`, if made already); what its sites report (for
    :func:`.results.outputs_together`)."""
    from . import kernel
    from .kernel_pools import _DONE, _FAILED

    sc = rep.scenario
    stop = sc.horizon_days + sc.drain_days
    record = rep.site_log[0] is not None if rep.site_log else False
    D, F = _draws(rep, attempts) if draws is None else draws
    c_prio, c_path, c_rule, c_rule_f, c_bridge, c_bf, TI, TF, T_acq, T_days, T_cl_start, T_cl_end, T_cl_n, PW, PWF, \
        changes = static
    b_pf = _bridging_draws(rep, c_bf) if bridging is None else bridging
    # Views of the replication's clocks: the loop writes the clocks that bridging changes.
    death = np.frombuffer(rep.death, dtype=float) if rep.n else np.zeros(0)
    inel = np.frombuffer(rep.ineligible, dtype=float) if rep.n else np.zeros(0)
    kernel.CURRENT_BRIDGE[0] = _bridge_for(rep)
    # Ctrl-C and SIGTERM are held while the compiled loop runs and hands back its arrays (a
    # signal handled in the middle of that surfaces as a SystemError, "returned a result with
    # an exception set"); they are delivered as the loop returns, as on the SimPy engine.
    held = _hold_signals()
    try:
        rec_f, rec_i, busy, log, trace, events, taken, starts, charges = run(
            np.asarray(rep.arrivals, dtype=float), np.asarray(rep.cohort_of, dtype=np.int64),
            death, inel, c_prio, c_path, c_rule, c_rule_f, c_bridge, c_bf, b_pf, TI, TF, T_acq, T_days, T_cl_start, T_cl_end, T_cl_n,
            PW, PWF, D, F, *_sites(rep), *changes, rep.start_weekday, stop, rep.rec.trace_patients, record,
            rep.rec.charges is not None)
    except SystemError as exc:
        signal_exc = _signal_in(exc)
        if signal_exc is not None:
            raise signal_exc from None
        raise
    finally:
        kernel.CURRENT_BRIDGE[0] = None
        _release_signals(held)
    rep.pathway_taken[:] = taken
    rec = rep.rec
    rec.apheresis_day[:] = rec_f[:, 0]
    rec.manufacture_start_day[:] = rec_f[:, 1]
    rec.release_day[:] = rec_f[:, 2]
    rec.listed_day[:] = rec_f[:, 7]
    rec.slot_day[:] = rec_f[:, 8]
    rec.infusion_day[:] = rec_f[:, 3]
    rec.outcome_day[:] = rec_f[:, 4]
    rec.queue_wait[:] = rec_f[:, 5]
    rec.cost[:] = rec_f[:, 6]
    bridged = ~np.isnan(rec_f[:, 9])  # bridged in the loop (the others by start_bridging itself)
    if bridged.any():
        rec.bridging_day[bridged] = rec_f[bridged, 9]
        rec.bridging_toxicity[bridged] = rec_f[bridged, 10]
    rec.outcome[:] = rec_i[:, 0]
    rec.outcome_step[:] = rec_i[:, 1]
    rec.attempts[:] = rec_i[:, 2]
    if rec.charges is not None:
        rec.charges.frombytes(np.ascontiguousarray(charges).tobytes())
    paths = [rep.pathways[name] for name in rep.pathway_list]
    for row in trace:
        i, j = int(row[0]), int(row[1])
        step = paths[int(rep.pathway_taken[i])][j]
        code = int(row[6])
        status = "done" if code == _DONE else "failed" if code == _FAILED else _STATUS[code]
        rec.events.append((i, step.name, step.kind, int(row[2]), float(row[3]), float(row[4]), float(row[5]),
                           status))
    names = list(sc.sites)
    site = log[:, 0].astype(np.int64) if len(log) else np.zeros(0, dtype=np.int64)
    timeline = {name: (np.ascontiguousarray(log[site == s, 1:]) if record else np.zeros((0, 3)))
                for s, name in enumerate(names)}
    started = starts[:, 0].astype(np.int64) if len(starts) else np.zeros(0, dtype=np.int64)
    by_site = {names[rep.pools.index(pool)]: np.ascontiguousarray(starts[started == rep.pools.index(pool), 1])
               for pool, _ in rep.calendars}
    return {name: float(busy[s]) for s, name in enumerate(names)}, timeline, int(events), by_site


def _hold_signals() -> Any:
    """Block SIGINT and SIGTERM in this thread (where the platform can); what was blocked before."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _release_signals(previous: Any) -> None:
    """Restore the signal mask; a signal that came meanwhile is handled now, in Python."""
    import signal

    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _signal_in(exc: BaseException) -> BaseException | None:
    """The KeyboardInterrupt or SystemExit somewhere in an exception's chain, if any."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        if isinstance(found, (KeyboardInterrupt, SystemExit)):
            return found
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return None


def run_compiled(scenario: Scenario, seed: int, replications: list[int], *, trace: dict[int, int] | None = None,
                 record_timeline: bool = True, compiled: bool | None = None) -> list[ReplicationOutput]:
    """Replications of ``scenario`` on the compiled engine. ``compiled=False`` runs the same
    loop as plain Python (the default: Numba if installed)."""
    run = _kernel_function(numba_available() if compiled is None else compiled)
    reps = set_up(scenario, seed, list(replications), trace or {}, record_timeline)
    if not reps:
        return []
    static, attempts = _static_tables(reps[0]), _attempts_bound(reps[0])
    draws = _draws_together(reps, attempts)
    bridging = _bridging_draws_together(reps, static[5])
    sites = [_run_one(rep, run, static, attempts, d, b) for rep, d, b in zip(reps, draws, bridging)]
    return outputs_together(reps, sites, "compiled")
