"""Replications: run them (in worker processes if asked) and assemble the result frames.

Results depend only on the scenario, the base seed and the replication numbers, never on
the number of workers or the order in which replications finish.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .. import metrics
from ..scenario import OUTCOMES
from .collect import ReplicationOutput
from .engines import check_engine, engine_for, run_replications
from ..scenario import Scenario

__all__ = ["Results", "simulate", "default_jobs", "plan_ranges", "run_ranges", "assemble"]

#: Patients traced step by step (for the journey chart) in the first replication.
TRACE_PATIENTS = 40

PATIENT_COLUMNS = (
    "replication", "patient", "cohort", "pathway", "referral_day", "apheresis_day",
    "manufacture_start_day", "release_day", "infusion_day", "outcome", "outcome_step",
    "vein_to_vein_days", "referral_to_infusion_days", "queue_wait_days",
    "manufacturing_attempts", "cost",
)
#: Columns beyond the contract's list (documented in the README).
EXTRA_PATIENT_COLUMNS = ("outcome_day", "responded", "icu", "rerouted", "bridging_day",
                         "bridging_toxicity", "death_day", "life_years")
EVENT_COLUMNS = ("replication", "patient", "cohort", "step", "kind", "attempt", "ready_day",
                 "start_day", "end_day", "status")


@dataclass
class Results:
    """Everything a run produced; frames are built once, at the end."""

    scenario: Scenario
    seed: int
    n_replications: int
    patients: pd.DataFrame
    replications: pd.DataFrame
    site_days: pd.DataFrame
    events: pd.DataFrame
    wall_seconds: float = 0.0
    events_processed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """``metric, mean, ci_low, ci_high, n`` across replications (t-interval)."""
        return metrics.summarise(self.replications, level)


@dataclass
class _Compact:
    """What a worker sends back for one replication (small and picklable)."""

    replication: int
    patients: pd.DataFrame
    run: dict[str, float]
    site_days: pd.DataFrame
    events: list[tuple[Any, ...]]
    events_processed: int
    engine: str


def _one(out: ReplicationOutput) -> _Compact:
    replication = out.replication
    patients = pd.DataFrame(out.columns)
    patients.insert(0, "replication", replication)
    run = {"replication": replication, "end_day": out.end_day, "fixed_cost": out.fixed_cost}
    frames = []
    for site, busy in out.site_busy_slot_days.items():
        run[f"busy_{site}"] = busy
        run[f"slots_{site}"] = out.site_slots[site]
        profile = metrics.daily_site_profile(out.site_timeline[site], out.site_slots[site], out.end_day)
        if site in out.site_daily_slots:  # a slot schedule: the capacity of each day
            profile["slots"] = out.site_daily_slots[site]
        profile.insert(0, "site", site)
        profile.insert(0, "replication", replication)
        frames.append(profile)
    site_days = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["replication", "site", "day", "slots", "in_use", "queue"])
    cohort = out.columns["cohort"]
    # Trace rows patient by patient (each patient's own rows in the order they happened), so
    # that every engine gives the same table.
    ordered = sorted(out.events, key=lambda ev: ev[0])
    events = [(replication, ev[0], cohort[ev[0]], *ev[1:]) for ev in ordered]
    return _Compact(replication, patients, run, site_days, events, out.events_processed, out.engine)


@dataclass
class _Batch:
    """Replications ``start..stop-1`` of one task: one reply per range, not per replication."""

    start: int
    stop: int
    patients: pd.DataFrame
    runs: list[dict[str, float]]
    site_days: pd.DataFrame | None
    events: list[tuple[Any, ...]]
    events_processed: int
    engines: dict[str, int] = field(default_factory=dict)  # engine -> replications it ran


def _run_range(scenario: Scenario, seed: int, start: int, stop: int, detail: bool = True,
               engine: str = "auto") -> _Batch:
    """Run replications ``start..stop-1``; ``detail=False`` drops site days and the trace
    (a sweep needs only the per-replication metrics, and a smaller reply travels faster)."""
    trace = {0: TRACE_PATIENTS} if detail else {}
    parts = [_one(out) for out in run_replications(scenario, seed, range(start, stop), engine=engine, trace=trace)]
    engines: dict[str, int] = {}
    for part in parts:
        engines[part.engine] = engines.get(part.engine, 0) + 1
    return _Batch(
        start, stop,
        patients=pd.concat([p.patients for p in parts], ignore_index=True),
        runs=[p.run for p in parts],
        site_days=pd.concat([p.site_days for p in parts], ignore_index=True) if detail else None,
        events=[e for p in parts for e in p.events],
        events_processed=sum(p.events_processed for p in parts),
        engines=engines,
    )


def plan_ranges(start: int, stop: int, workers: int, single: int = 1) -> list[tuple[int, int]]:
    """Replications ``start..stop-1`` split into tasks for ``workers`` workers.

    About eight tasks per worker, so that the workers finish together (the last task is the
    idle time of the others), of at most 10 replications (progress, memory); ``single``
    replications per task for a single worker (1: progress after each; the vectorised engine
    computes a task's replications together, so it asks for more).
    """
    size = single if workers <= 1 else max(1, min(10, math.ceil((stop - start) / (8 * workers))))
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def run_ranges(
    scenario: Scenario,
    seed: int,
    ranges: Sequence[tuple[int, int]],
    *,
    executor: Executor | None = None,
    detail: bool = True,
    progress: Callable[[int], None] | None = None,
    engine: str = "auto",
) -> list[_Batch]:
    """Run each range of replications, in ``executor`` (any concurrent.futures Executor:
    a process pool or a Dask cluster's) or here; ``progress(k)`` after each range of k."""
    if executor is None:
        batches = []
        for start, stop in ranges:
            batches.append(_run_range(scenario, seed, start, stop, detail, engine))
            if progress:
                progress(stop - start)
        return batches
    futures = [executor.submit(_run_range, scenario, seed, a, b, detail, engine) for a, b in ranges]
    try:
        for future in as_completed(futures):
            batch = future.result()
            if progress:
                progress(batch.stop - batch.start)
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return [future.result() for future in futures]


#: Referrals a single worker's task holds at most (progress is reported after each task).
TASK_REFERRALS = 20_000


def single_task(scenario: Scenario, engine: str) -> int:
    """Replications per task on a single worker: up to 10, so that replications are set up
    together (the plan compiled once, the streams' seeds computed together: about 20% of a
    small replication's time), but no more than :data:`TASK_REFERRALS` referrals in a task
    (the progress bar moves after each task); the vectorised engine takes up to 100,000."""
    cap = 100_000 if engine_for(scenario, engine) == "vectorised" else TASK_REFERRALS
    return max(1, min(10, int(cap // max(1.0, scenario.expected_referrals()))))


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def simulate(
    scenario: Scenario,
    replications: int | None = None,
    seed: int | None = None,
    jobs: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
    engine: str = "auto",
) -> Results:
    """Run ``replications`` replications of ``scenario`` (defaults from the scenario).

    ``jobs`` worker processes share the replications (``None``: all cores); the results are
    identical for any ``jobs``. ``progress(done, total)`` is called as replications finish.
    ``executor`` (e.g. a Dask cluster's, see :mod:`v2vsim.distributed`) runs them instead of
    a local pool; ``jobs`` is then its number of workers.

    ``engine`` chooses how replications are computed (see :mod:`v2vsim.engine.engines`):
    ``"simpy"`` (the reference model), ``"vectorised"`` or ``"compiled"`` (refused for a
    scenario outside their scope) or ``"auto"`` (a fast engine wherever it is exact, otherwise
    SimPy). Every engine gives identical results; ``results.extra["engines"]`` counts the
    replications each ran.
    """
    n = scenario.replications if replications is None else int(replications)
    engine = check_engine(engine, scenario, n)
    if n < 1:
        raise ValueError("replications must be at least 1")
    base_seed = scenario.seed if seed is None else int(seed)
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    started = time.perf_counter()
    done = 0

    def advance(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(done, n)

    if executor is not None:
        batches = run_ranges(scenario, base_seed, plan_ranges(0, n, jobs), executor=executor,
                             progress=advance, engine=engine)
    elif jobs == 1 or n == 1:
        batches = run_ranges(scenario, base_seed, plan_ranges(0, n, 1, single_task(scenario, engine)),
                             progress=advance, engine=engine)
    else:
        # Ranges of replications per task: one pickled scenario and one reply per range.
        with ProcessPoolExecutor(max_workers=min(jobs, n)) as pool:
            batches = run_ranges(scenario, base_seed, plan_ranges(0, n, jobs), executor=pool,
                                 progress=advance, engine=engine)
    return assemble(scenario, base_seed, batches, time.perf_counter() - started)


def assemble(scenario: Scenario, seed: int, batches: Sequence[_Batch], wall_seconds: float = 0.0) -> Results:
    """The result frames of replications ``0..n-1`` from batches covering them (any order)."""
    ordered = sorted(batches, key=lambda b: b.start)
    n = ordered[-1].stop if ordered else 0
    if n < 1 or [b.start for b in ordered] != [0] + [b.stop for b in ordered[:-1]]:
        raise ValueError("batches must cover replications 0..n-1 exactly once")
    base_seed = seed
    patients = pd.concat([p.patients for p in ordered], ignore_index=True)
    patients = patients[list(PATIENT_COLUMNS) + list(EXTRA_PATIENT_COLUMNS)]
    for column in ("cohort", "pathway", "outcome_step"):
        patients[column] = patients[column].astype(str)
    patients["outcome"] = pd.Categorical(patients["outcome"], categories=list(OUTCOMES))
    runs = pd.DataFrame([r for p in ordered for r in p.runs])
    table = metrics.replication_table(patients, runs)
    days = [p.site_days for p in ordered if p.site_days is not None]
    site_days = pd.concat(days, ignore_index=True) if days else pd.DataFrame(
        columns=["replication", "site", "day", "slots", "in_use", "queue"])
    events = pd.DataFrame([e for p in ordered for e in p.events], columns=list(EVENT_COLUMNS))
    engines: dict[str, int] = {}
    for batch in ordered:
        for name, k in batch.engines.items():
            engines[name] = engines.get(name, 0) + k
    return Results(
        scenario=scenario,
        seed=base_seed,
        n_replications=n,
        patients=patients,
        replications=table,
        site_days=site_days,
        events=events,
        wall_seconds=wall_seconds,
        events_processed=int(sum(p.events_processed for p in ordered)),
        extra={"engines": engines},
    )

