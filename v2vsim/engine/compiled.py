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

Scope (:func:`compiled_problems`): no site calendar, no bridging therapy (its new clocks need the
distributions' cumulative hazards, which are not compiled). Routing rules are decided at
referral from the booking site's queue, as :meth:`.replication.Replication.route` does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..scenario import Scenario
from . import kernel, kernel_pools
from .collect import ReplicationOutput
from .journey import _STATUS
from .kernel_pools import _DONE, _FAILED
from .replication import Replication, set_up

__all__ = ["compiled_problems", "numba_available", "run_compiled"]

def compiled_problems(scenario: Scenario) -> list[str]:
    """Why the compiled engine cannot run ``scenario`` (empty: it can)."""
    problems = []
    for cohort in scenario.cohorts:
        if cohort.bridging is not None:
            problems.append(f"cohort '{cohort.name}' has bridging therapy")
    for name, site in scenario.sites.items():
        if site.has_calendar:
            problems.append(f"site '{name}' has a calendar (a slot schedule, closures or an allocation of starts)")
    return problems


def numba_available() -> bool:
    """Whether Numba is installed (the optional extra ``v2vsim[fast]``)."""
    from importlib.util import find_spec

    return find_spec("numba") is not None


# --------------------------------------------------------------------------- set-up and results


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
    """The kernel's inputs that are the same in every replication of a scenario."""
    paths = [rep.pathways[name] for name in rep.pathway_list]
    n_paths, width = len(paths), max(len(steps) for steps in paths)
    TI = np.zeros((n_paths, width, 10), dtype=np.int64)
    TF = np.zeros((n_paths, width, 3))
    T_acq = np.zeros((n_paths, width, width), dtype=np.int64)
    T_days = np.zeros((n_paths, width, 7), dtype=np.bool_)
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
                        step.is_release, step.fixed_duration is not None)
            TF[p, j] = (step.failure_probability, step.cost,
                        step.fixed_duration if step.fixed_duration is not None else 0.0)
            T_acq[p, j, :len(step.acquire)] = step.acquire
            if step.start_days is not None:
                T_days[p, j] = step.start_days
    c_prio = np.asarray(rep.cohort_priority, dtype=np.int64)
    n_cohorts = len(rep.cohort_plan)
    c_path = np.zeros(n_cohorts, dtype=np.int64)
    c_rule = np.zeros((n_cohorts, 5), dtype=np.int64)  # rule?, primary, fallback, site, by count?
    c_rule_f = np.zeros((n_cohorts, 2))  # hold days, threshold
    for c, (plan, rule) in enumerate(zip(rep.cohort_plan, rep.cohort_rule)):
        if rule is None:
            c_path[c] = plan[3]  # type: ignore[index]
            continue
        primary, fallback, pool, hold, by_count, threshold = rule
        c_path[c] = primary[3]
        c_rule[c] = (1, primary[3], fallback[3], rep.pools.index(pool), by_count)
        c_rule_f[c] = (hold, threshold)
    return c_prio, c_path, c_rule, c_rule_f, TI, TF, T_acq, T_days, PW, PWF


def _draws(rep: Replication, attempts: int) -> tuple[np.ndarray, np.ndarray]:
    """Every step's durations and failure uniforms, by pathway, step, attempt and patient."""
    n = rep.n
    paths = [rep.pathways[name] for name in rep.pathway_list]
    width = max(len(steps) for steps in paths)
    D = np.zeros((len(paths), width, attempts, n))
    F = np.ones((len(paths), width, attempts, n))
    if n:
        for p, steps in enumerate(paths):
            for j, step in enumerate(steps):
                for a in range(1, attempts + 1):
                    if step.fixed_duration is None:
                        values = step.first_durations if a == 1 else step.durations(a).head(n)
                        D[p, j, a - 1] = np.asarray(values, dtype=float)[:n]
                    if step.failure_probability > 0.0:
                        values = step.first_failures if a == 1 else step.failures(a).head(n)
                        F[p, j, a - 1] = np.asarray(values, dtype=float)[:n]
    return D, F


_COMPILED: dict[str, Any] = {}


def _kernel_function(compiled: bool) -> Any:
    """The loop, compiled with Numba (once per process; cached on disk) or as plain Python."""
    if not compiled:
        return kernel._kernel
    if "kernel" not in _COMPILED:
        import numba

        jit = numba.njit(cache=True)
        # Every function of the loop's two modules, compiled, under its name in both modules
        # (the loop calls them by those names).
        done: dict[str, Any] = {}
        for module in (kernel_pools, kernel):
            for name, value in list(vars(module).items()):
                if name.startswith("_") and callable(value) and getattr(value, "__module__", "") == module.__name__:
                    done[name] = jit(value)
        for module in (kernel_pools, kernel):
            for name in done:
                if name in vars(module):
                    setattr(module, name, done[name])
        _COMPILED["kernel"] = done["_kernel"]
    return _COMPILED["kernel"]


def _run_one(rep: Replication, kernel: Any, static: tuple[Any, ...], attempts: int) -> ReplicationOutput:
    sc = rep.scenario
    stop = sc.horizon_days + sc.drain_days
    record = rep.site_log[0] is not None if rep.site_log else False
    D, F = _draws(rep, attempts)
    slots = np.asarray([int(s.slots) for s in sc.sites.values()], dtype=np.int64)  # type: ignore[arg-type]
    rec_f, rec_i, busy, log, trace, events, taken = kernel(
        np.asarray(rep.arrivals, dtype=float), np.asarray(rep.cohort_of, dtype=np.int64),
        np.asarray(rep.death, dtype=float), np.asarray(rep.ineligible, dtype=float), *static, D, F, slots,
        rep.start_weekday, stop, rep.rec.trace_patients, record)
    rep.pathway_taken[:] = taken
    rec = rep.rec
    rec.apheresis_day[:] = rec_f[:, 0]
    rec.manufacture_start_day[:] = rec_f[:, 1]
    rec.release_day[:] = rec_f[:, 2]
    rec.infusion_day[:] = rec_f[:, 3]
    rec.outcome_day[:] = rec_f[:, 4]
    rec.queue_wait[:] = rec_f[:, 5]
    rec.cost[:] = rec_f[:, 6]
    rec.outcome[:] = rec_i[:, 0]
    rec.outcome_step[:] = rec_i[:, 1]
    rec.attempts[:] = rec_i[:, 2]
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
    return rep.output({name: float(busy[s]) for s, name in enumerate(names)}, timeline, int(events), {},
                      engine="compiled")


def run_compiled(scenario: Scenario, seed: int, replications: list[int], *, trace: dict[int, int] | None = None,
                 record_timeline: bool = True, compiled: bool | None = None) -> list[ReplicationOutput]:
    """Replications of ``scenario`` on the compiled engine (in scope: :func:`compiled_problems`).
    ``compiled=False`` runs the same loop as plain Python (the default: Numba if installed)."""
    kernel = _kernel_function(numba_available() if compiled is None else compiled)
    reps = set_up(scenario, seed, list(replications), trace or {}, record_timeline)
    if not reps:
        return []
    static, attempts = _static_tables(reps[0]), _attempts_bound(reps[0])
    return [_run_one(rep, kernel, static, attempts) for rep in reps]
