"""Replications: run them (in worker processes if asked) and assemble the result frames.

Results depend only on the scenario, the base seed and the replication numbers, never on
the number of workers or the order in which replications finish.

Workers send back plain arrays, column by column (string columns as small integer codes into
their labels), never frames: the patients table is built once, in the parent, from one
concatenation per column, and the site-day profile stays arrays (:class:`~v2vsim.metrics.SiteDays`)
until someone asks for ``Results.site_days``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics
from .._workers import WorkerPool
from ..metrics import Runs, SiteBlock, SiteDays
from ..metrics.sites import slot_days_before
from ..scenario import DAYS_PER_YEAR, OUTCOMES
from .collect import Coded, PatientColumns, ReplicationOutput, daily_site_use, small_codes
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
                         "bridging_toxicity", "infused_out_of_specification", "death_day", "life_years",
                         "listed_day", "slot_day", "time_to_slot_days", "re_referred", "backlog_waited_days")
#: Columns of a scenario with economics (see :mod:`.health`).
ECONOMIC_PATIENT_COLUMNS = ("age", "male", "cured", "crs", "cost_after_pathway", "cost_discounted",
                            "life_years_discounted", "qalys", "qalys_discounted")
BUDGET_COLUMNS = ("replication", "year", "category", "cost")
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
    #: The site-day profile as arrays; ``site_days`` is its long table.
    site_profile: SiteDays
    events: pd.DataFrame
    #: With economics: the payer's costs by replication, calendar year of the horizon and
    #: category (undiscounted; see :mod:`.health`); no rows without economics.
    budget: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(BUDGET_COLUMNS)))
    wall_seconds: float = 0.0
    events_processed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    _site_days: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def site_days(self) -> pd.DataFrame:
        """Per replication, site and day: ``slots`` (capacity), mean slots ``in_use`` and mean
        ``queue``. Built from :attr:`site_profile` when first read (many replications make it
        the largest table of a run, and the figures and warnings do without it)."""
        if self._site_days is None:
            self._site_days = self.site_profile.frame()
        return self._site_days

    @site_days.setter
    def site_days(self, frame: pd.DataFrame) -> None:
        self._site_days = frame

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """``metric, mean, ci_low, ci_high, n`` across replications (t-interval)."""
        return metrics.summarise(self.replications, level)

    def save(self, directory: str | os.PathLike[str], figures: bool = True, csv: bool = False,
             force: bool = False, *, scenario_file: str | os.PathLike[str] | None = None) -> Path:
        """Write the results directory ``v2vsim run`` writes (tables, figures, manifest with
        hashes; ``v2vsim verify`` checks it), atomically, and return its path.

        ``csv`` adds ``patients.csv``; ``scenario_file``, the file the scenario was loaded from,
        is copied as ``scenario_source.yaml`` (reports show its source comments) and hashed in
        the manifest. A directory that v2vsim did not write is replaced only with ``force``
        (else :class:`v2vsim.outputs.results_dir.OutputError`).
        """
        # Imported here: the outputs read result frames and never import the engine.
        from ..outputs.run_dir import write_run_dir

        target = Path(directory)
        call = (f"v2vsim.simulate(<{self.scenario.name}>, replications={self.n_replications}, "
                f"seed={self.seed}).save({str(target)!r})")
        return write_run_dir(self, target, command=[call], csv=csv, figures=figures, force=force,
                             scenario_file=None if scenario_file is None else Path(scenario_file))


#: A patient column as a worker sends it: numbers, or strings as codes.
Column = np.ndarray | Coded


def _held(columns: PatientColumns | dict[str, np.ndarray], name: str) -> Column:
    """A patient column as the engine holds it; strings (an object array) become codes."""
    value = columns.coded(name) if isinstance(columns, PatientColumns) else columns[name]
    if isinstance(value, np.ndarray) and value.dtype == object:
        labels, codes = np.unique(value, return_inverse=True)
        return Coded(small_codes(codes.reshape(-1), len(labels)), tuple(labels.tolist()))
    return value


def _size(value: Column) -> int:
    return len(value.codes) if isinstance(value, Coded) else len(value)


def _concat(values: Sequence[Column]) -> Column:
    """One column from the parts of several replications (codes merged onto one label list)."""
    if len(values) == 1:
        return values[0]
    if not isinstance(values[0], Coded):
        return np.concatenate(values)  # type: ignore[arg-type]
    labels = tuple(dict.fromkeys(label for v in values for label in v.labels))  # type: ignore[union-attr]
    if all(v.labels == labels for v in values):  # type: ignore[union-attr]
        return Coded(np.concatenate([v.codes for v in values]), labels)  # type: ignore[union-attr]
    position = {label: i for i, label in enumerate(labels)}
    return Coded(np.concatenate([
        small_codes(np.array([position[x] for x in v.labels], np.int64), len(labels))[v.codes]  # type: ignore[union-attr]
        for v in values]), labels)


@dataclass
class _Compact:
    """What a worker keeps of one replication: plain arrays and numbers."""

    replication: int
    patients: dict[str, Column]
    run: dict[str, float]
    sites: list[SiteBlock]
    events: list[tuple[Any, ...]]
    events_processed: int
    engine: str
    budget: np.ndarray | None = None


def _from_warmup(run: dict[str, float], out: ReplicationOutput, scenario: Scenario) -> None:
    """With a warm-up, the sites' slot-days and capacity from ``warmup_days`` to the end, and
    the fixed costs of the counted referral window ``[warmup_days, horizon_days)``."""
    w = scenario.warmup_days
    run["start_day"] = w
    for site in out.site_busy_slot_days:
        run[f"busy_{site}"] -= slot_days_before(out.site_timeline[site], w)
        daily = out.site_daily_slots.get(site)
        if daily is not None:  # a slot schedule: the mean capacity from the warm-up on
            k = int(w)
            before = float(daily[:k].sum()) + (float(daily[k]) * (w - k) if k < daily.size else 0.0)
            run[f"slots_{site}"] = (out.site_slots[site] * out.end_day - before) / (out.end_day - w)
    run["fixed_cost"] = out.fixed_cost * scenario.counted_days() / scenario.horizon_days
    if out.budget is not None and scenario.economics is not None:
        from .health import discounted_years

        disc, y = scenario.economics.discount, DAYS_PER_YEAR
        fixed = sum(s.fixed_cost_per_year for s in scenario.sites.values())
        run["fixed_cost_discounted"] = fixed * y / 365.0 * float(discounted_years(
            w / y, scenario.horizon_days / y, disc.costs, disc.method))


def _one(out: ReplicationOutput, detail: bool = True, scenario: Scenario | None = None) -> _Compact:
    replication = out.replication
    patients = {name: _held(out.columns, name) for name in out.columns}
    run = {"replication": replication, "end_day": out.end_day, "fixed_cost": out.fixed_cost}
    if out.budget is not None:
        run["fixed_cost_discounted"] = out.fixed_cost_discounted
    sites = []
    for site, busy in out.site_busy_slot_days.items():
        run[f"busy_{site}"] = busy
        run[f"slots_{site}"] = out.site_slots[site]
    if scenario is not None and scenario.warmup_days > 0:
        _from_warmup(run, out, scenario)
    for site in out.site_busy_slot_days:
        if detail:
            in_use, queue = daily_site_use(out.site_timeline[site], out.end_day)
            # A slot schedule gives the capacity of each day.
            slots = out.site_daily_slots.get(site, float(out.site_slots[site]))
            sites.append((replication, site, slots, Runs.encode(in_use), Runs.encode(queue)))
    cohort = patients["cohort"]
    cohort_of = ((lambda i: cohort.labels[cohort.codes[i]]) if isinstance(cohort, Coded)
                 else (lambda i: cohort[i]))
    # Trace rows patient by patient (each patient's own rows in the order they happened), so
    # that every engine gives the same table.
    ordered = sorted(out.events, key=lambda ev: ev[0])
    events = [(replication, ev[0], cohort_of(ev[0]), *ev[1:]) for ev in ordered]
    return _Compact(replication, patients, run, sites, events, out.events_processed, out.engine, out.budget)


@dataclass
class _Batch:
    """Replications ``start..stop-1`` of one task: one reply per range, not per replication;
    every column of its patients in one array."""

    start: int
    stop: int
    patients: dict[str, Column]
    counts: np.ndarray  # patients of each replication
    runs: list[dict[str, float]]
    site_days: list[SiteBlock] | None  # one block per replication and site
    events: list[tuple[Any, ...]]
    events_processed: int
    engines: dict[str, int] = field(default_factory=dict)  # engine -> replications it ran
    budget: list[np.ndarray] | None = None  # with economics: one (category x year) array each


def _run_range(scenario: Scenario, seed: int, start: int, stop: int, detail: bool = True,
               engine: str = "auto") -> _Batch:
    """Run replications ``start..stop-1``; ``detail=False`` drops site days and the trace
    (a sweep needs only the per-replication metrics, and a smaller reply travels faster)."""
    trace = {0: TRACE_PATIENTS} if detail else {}
    parts = [_one(out, detail, scenario) for out in run_replications(scenario, seed, range(start, stop),
                                                             engine=engine, trace=trace)]
    engines: dict[str, int] = {}
    for part in parts:
        engines[part.engine] = engines.get(part.engine, 0) + 1
    names = list(parts[0].patients) if parts else []
    return _Batch(
        start, stop,
        patients={name: _concat([p.patients[name] for p in parts]) for name in names},
        counts=np.array([_size(p.patients[names[0]]) if names else 0 for p in parts], np.int64),
        runs=[p.run for p in parts],
        site_days=[b for p in parts for b in p.sites] if detail else None,
        events=[e for p in parts for e in p.events],
        events_processed=sum(p.events_processed for p in parts),
        engines=engines,
        budget=[p.budget for p in parts] if parts and parts[0].budget is not None else None,  # type: ignore[misc]
    )


def plan_ranges(start: int, stop: int, workers: int, single: int = 1) -> list[tuple[int, int]]:
    """Replications ``start..stop-1`` split into tasks for ``workers`` workers.

    About eight tasks per worker, of at most 10 replications (progress, memory), shrinking
    towards the end (each about a third of what is left per worker), so that the workers
    finish together: the last tasks, the others' idle time, are of one or two replications.
    ``single`` replications per task for a single worker (1: progress after each; the
    vectorised engine computes a task's replications together, so it asks for more).
    """
    if workers <= 1:
        return [(a, min(a + single, stop)) for a in range(start, stop, single)]
    size = max(1, min(10, math.ceil((stop - start) / (8 * workers))))
    ranges = []
    a = start
    while a < stop:
        k = max(1, min(size, math.ceil((stop - a) / (3 * workers))))
        ranges.append((a, min(a + k, stop)))
        a += k
    return ranges


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


def single_task(scenario: Scenario, engine: str, most: int = 10) -> int:
    """Replications per task on a single worker: up to ``most`` (10), so that replications are
    set up together (the plan compiled once, the streams' seeds computed together: about 20%
    of a small replication's time), but no more than :data:`TASK_REFERRALS` referrals in a task
    (the progress bar moves after each task); the vectorised engine takes up to 100,000."""
    cap = 100_000 if engine_for(scenario, engine) == "vectorised" else TASK_REFERRALS
    return max(1, min(most, int(cap // max(1.0, scenario.expected_referrals()))))


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
        with WorkerPool(max_workers=min(jobs, n)) as pool:
            batches = run_ranges(scenario, base_seed, plan_ranges(0, n, jobs), executor=pool,
                                 progress=advance, engine=engine)
    return assemble(scenario, base_seed, batches, time.perf_counter() - started)


def _patient_frame(batches: Sequence[_Batch]) -> pd.DataFrame:
    """The patients table: every column concatenated once and put into the frame as it is."""
    counts = np.concatenate([b.counts for b in batches])
    columns: dict[str, Any] = {"replication": np.repeat(np.arange(len(counts), dtype=np.int64), counts)}
    economic = tuple(c for c in ECONOMIC_PATIENT_COLUMNS if batches and c in batches[0].patients)
    for name in PATIENT_COLUMNS[1:] + EXTRA_PATIENT_COLUMNS + economic:
        value = _concat([b.patients[name] for b in batches])
        if name == "outcome":
            if not isinstance(value, Coded):
                codes, uniques = pd.factorize(np.asarray(value, dtype=object))
                value = Coded(codes, tuple(uniques))
            position = {o: i for i, o in enumerate(OUTCOMES)}
            codes = value.codes if value.labels == tuple(OUTCOMES) else np.array(
                [position.get(x, -1) for x in value.labels], np.int8)[value.codes]
            columns[name] = pd.Categorical.from_codes(small_codes(codes, len(OUTCOMES)),
                                                      categories=list(OUTCOMES))
        elif name in ("cohort", "pathway", "outcome_step"):
            columns[name] = (pd.array(list(value.labels), dtype="str").take(value.codes)
                             if isinstance(value, Coded) else pd.Series(value).astype(str).array)
        else:
            columns[name] = value.decode() if isinstance(value, Coded) else value
    return pd.DataFrame(columns, copy=False)


def budget_frame(scenario: Scenario, arrays: Sequence[np.ndarray]) -> pd.DataFrame:
    """The long budget table from each replication's (category x year) array."""
    if not arrays or scenario.economics is None:
        return pd.DataFrame({"replication": pd.Series(dtype=np.int64), "year": pd.Series(dtype=np.int64),
                             "category": pd.Series(dtype=str), "cost": pd.Series(dtype=float)})
    from ..scenario.economics import COST_CATEGORIES
    from .health import calendar_years

    years, _ = calendar_years(scenario)
    n_cat, n_year = len(COST_CATEGORIES), years.size
    stacked = np.stack(arrays)  # replication, category, year
    return pd.DataFrame({
        "replication": np.repeat(np.arange(len(arrays), dtype=np.int64), n_cat * n_year),
        "year": np.tile(years.astype(np.int64), len(arrays) * n_cat),
        "category": np.tile(np.repeat(np.array(COST_CATEGORIES, dtype=object), n_year), len(arrays)),
        "cost": stacked.reshape(-1),
    })


def assemble(scenario: Scenario, seed: int, batches: Sequence[_Batch], wall_seconds: float = 0.0) -> Results:
    """The result frames of replications ``0..n-1`` from batches covering them (any order)."""
    ordered = sorted(batches, key=lambda b: b.start)
    n = ordered[-1].stop if ordered else 0
    if n < 1 or [b.start for b in ordered] != [0] + [b.stop for b in ordered[:-1]]:
        raise ValueError("batches must cover replications 0..n-1 exactly once")
    base_seed = seed
    patients = metrics.mark_warmup(_patient_frame(ordered), scenario.warmup_days)
    runs = pd.DataFrame([r for p in ordered for r in p.runs])
    table = metrics.replication_table(patients, runs)
    site_profile = SiteDays.from_blocks([b for p in ordered for b in p.site_days or ()])
    events = pd.DataFrame([e for p in ordered for e in p.events], columns=list(EVENT_COLUMNS))
    engines: dict[str, int] = {}
    for batch in ordered:
        for name, k in batch.engines.items():
            engines[name] = engines.get(name, 0) + k
    return Results(
        budget=budget_frame(scenario, [a for b in ordered for a in (b.budget or ())]),
        scenario=scenario,
        seed=base_seed,
        n_replications=n,
        patients=patients,
        replications=table,
        site_profile=site_profile,
        events=events,
        wall_seconds=wall_seconds,
        events_processed=int(sum(p.events_processed for p in ordered)),
        extra={"engines": engines},
    )
