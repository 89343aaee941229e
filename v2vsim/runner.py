"""Replications: run them (in worker processes if asked) and assemble the result frames.

Results depend only on the scenario, the base seed and the replication numbers, never on
the number of workers or the order in which replications finish.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import metrics
from .model import OUTCOMES, ReplicationOutput, run_replication
from .scenario import Scenario

__all__ = ["Results", "simulate", "default_jobs"]

#: Patients traced step by step (for the journey chart) in the first replication.
TRACE_PATIENTS = 40

PATIENT_COLUMNS = (
    "replication", "patient", "cohort", "pathway", "referral_day", "apheresis_day",
    "manufacture_start_day", "release_day", "infusion_day", "outcome", "outcome_step",
    "vein_to_vein_days", "referral_to_infusion_days", "queue_wait_days",
    "manufacturing_attempts", "cost",
)
#: Columns beyond the contract's list (documented in the README).
EXTRA_PATIENT_COLUMNS = ("outcome_day", "responded", "icu")
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


def _one(scenario: Scenario, seed: int, replication: int, trace: bool) -> _Compact:
    out: ReplicationOutput = run_replication(
        scenario, seed, replication, trace_patients=TRACE_PATIENTS if trace else 0)
    patients = pd.DataFrame(out.columns)
    patients.insert(0, "replication", replication)
    run = {"replication": replication, "end_day": out.end_day, "fixed_cost": out.fixed_cost}
    frames = []
    for site, busy in out.site_busy_slot_days.items():
        run[f"busy_{site}"] = busy
        run[f"slots_{site}"] = out.site_slots[site]
        profile = metrics.daily_site_profile(out.site_timeline[site], out.site_slots[site], out.end_day)
        profile.insert(0, "site", site)
        profile.insert(0, "replication", replication)
        frames.append(profile)
    site_days = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["replication", "site", "day", "slots", "in_use", "queue"])
    cohort = out.columns["cohort"]
    events = [(replication, ev[0], cohort[ev[0]], *ev[1:]) for ev in out.events]
    return _Compact(replication, patients, run, site_days, events, out.events_processed)


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
) -> Results:
    """Run ``replications`` replications of ``scenario`` (defaults from the scenario).

    ``jobs`` worker processes share the replications (``None``: all cores); the results are
    identical for any ``jobs``. ``progress(done, total)`` is called as replications finish.
    """
    n = scenario.replications if replications is None else int(replications)
    if n < 1:
        raise ValueError("replications must be at least 1")
    base_seed = scenario.seed if seed is None else int(seed)
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    started = time.perf_counter()
    parts: dict[int, _Compact] = {}
    if jobs == 1 or n == 1:
        for rep in range(n):
            parts[rep] = _one(scenario, base_seed, rep, rep == 0)
            if progress:
                progress(len(parts), n)
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, n)) as pool:
            futures = [pool.submit(_one, scenario, base_seed, rep, rep == 0) for rep in range(n)]
            try:
                for future in as_completed(futures):
                    part = future.result()
                    parts[part.replication] = part
                    if progress:
                        progress(len(parts), n)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    ordered = [parts[rep] for rep in range(n)]
    patients = pd.concat([p.patients for p in ordered], ignore_index=True)
    patients = patients[list(PATIENT_COLUMNS) + list(EXTRA_PATIENT_COLUMNS)]
    for column in ("cohort", "pathway", "outcome_step"):
        patients[column] = patients[column].astype(str)
    patients["outcome"] = pd.Categorical(patients["outcome"], categories=list(OUTCOMES))
    runs = pd.DataFrame([p.run for p in ordered])
    table = metrics.replication_table(patients, runs)
    site_days = pd.concat([p.site_days for p in ordered], ignore_index=True)
    events = pd.DataFrame([e for p in ordered for e in p.events], columns=list(EVENT_COLUMNS))
    return Results(
        scenario=scenario,
        seed=base_seed,
        n_replications=n,
        patients=patients,
        replications=table,
        site_days=site_days,
        events=events,
        wall_seconds=time.perf_counter() - started,
        events_processed=int(sum(p.events_processed for p in ordered)),
    )

