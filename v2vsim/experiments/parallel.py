"""Running points: many variants' replications shared over one pool of workers or a Dask cluster.

A *point* is one variant of a scenario to simulate. :func:`run_points` splits every point's
replications into ranges and keeps every worker busy with them, optionally adding batches of
replications until a precision is reached (:mod:`.precision`), and hands each finished point to
a callback (which may save it: :mod:`.checkpoints`). Replication *r* of a point draws the same
numbers whichever worker runs it, so results never depend on the number of workers.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any

from .._workers import WorkerPool
from ..engine.engines import EngineError, check_engine
from ..engine.runner import Results, _run_range, assemble, default_jobs, plan_ranges, single_task
from ..scenario import Problem, Scenario, ScenarioError
from ..scenario.overrides import ScenarioSource
from .precision import Precision, precision_status

__all__ = [
    "Point",
    "Progress",
    "executor_for",
    "make_points",
    "replications_for_precision",
    "run_points",
    "simulate_to_precision",
]


@dataclass
class Point:
    """One variant to simulate: its number, parameter values and validated scenario."""

    index: int
    values: dict[str, Any]
    scenario: Scenario
    seed: int
    replications: int
    engine: str = "auto"  # see v2vsim.engine.engines


def make_points(source: ScenarioSource, design: Sequence[Mapping[str, Any]],
                fixed: Sequence[tuple[str, Any]] = (), *, seed: int | None = None,
                replications: int | None = None, engine: str = "auto") -> list[Point]:
    """Validated points (every problem of every point reported before anything runs; a
    forced ``engine`` that cannot run a point is one of them)."""
    points: list[Point] = []
    problems: list[Problem] = []
    for index, values in enumerate(design):
        try:
            sc = source.variant(list(fixed) + list(values.items()))
        except ScenarioError as exc:
            problems += exc.problems
            continue
        try:
            # auto counts the whole experiment's replications (a fast engine's set-up is per process)
            per_point = sc.replications if replications is None else int(replications)
            chosen = check_engine(engine, sc, per_point * len(design))
        except EngineError as exc:
            problems.append(Problem(source.file, None, "--engine", str(exc)))
            continue
        points.append(Point(index, dict(values), sc, sc.seed if seed is None else int(seed),
                            sc.replications if replications is None else int(replications), chosen))
    if problems:
        raise ScenarioError(list(dict.fromkeys(problems)))
    return points


class Progress:
    """Progress hooks (no-ops); the CLI subclasses it with rich bars."""

    def add_replications(self, k: int) -> None: ...

    def advance(self, k: int) -> None: ...

    def point_done(self) -> None: ...


@contextlib.contextmanager
def executor_for(jobs: int | None = None, cluster: str | None = None) -> Iterator[tuple[Executor | None, int]]:
    """``(executor, workers)``: a Dask cluster's executor, a process pool, or ``(None, 1)``
    to run in this process. The pool's workers ignore Ctrl-C, die with this process, and are
    killed when the block is left on an exception (:class:`v2vsim._workers.WorkerPool`)."""
    if cluster:
        from ..engine.distributed import cluster_executor

        with cluster_executor(cluster) as (executor, workers):
            yield executor, workers
        return
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    if jobs == 1:
        yield None, 1
        return
    with WorkerPool(max_workers=jobs) as pool:
        yield pool, jobs


#: Points per worker from which a task runs a whole point (see :func:`run_points`).
WHOLE_POINTS_PER_WORKER = 4


@dataclass
class _PointState:
    point: Point
    target: int
    received: int = 0
    batches: list[Any] = field(default_factory=list)


def run_points(
    points: Sequence[Point],
    on_done: Callable[[Point, Results], None],
    *,
    executor: Executor | None = None,
    workers: int = 1,
    precision: Precision | None = None,
    detail: bool = False,
    progress: Progress | None = None,
) -> None:
    """Simulate every point; ``on_done(point, results)`` as each point finishes.

    Ranges of replications of all points share the workers (at most two tasks per worker in
    flight, earlier points first), so a sweep keeps every worker busy. With ``precision``,
    each point gets batches of replications until it is met. ``detail=False`` keeps only
    what the per-replication metrics need.
    """
    progress = progress or Progress()
    queue: deque[tuple[int, int, int]] = deque()
    states: dict[int, _PointState] = {}
    # Enough points keep every worker busy on their own: a task then runs a whole point (up
    # to the referrals a task holds), set up once. Split into small tasks, each point's set-up
    # is paid again per task: a PSA point of 50 small replications took twice as long in 4s.
    whole = len(points) >= WHOLE_POINTS_PER_WORKER * max(1, workers)

    def ranges(point: Point, start: int, stop: int) -> list[tuple[int, int]]:
        if whole:
            return plan_ranges(start, stop, 1, single_task(point.scenario, point.engine, most=stop - start))
        return plan_ranges(start, stop, workers, single_task(point.scenario, point.engine))

    for point in points:
        target = point.replications if precision is None else min(
            precision.min_replications, precision.max_replications)
        states[point.index] = _PointState(point, target)
        queue.extend((point.index, a, b) for a, b in ranges(point, 0, target))
        progress.add_replications(target)

    def receive(index: int, batch: Any) -> None:
        state = states[index]
        state.batches.append(batch)
        state.received += batch.stop - batch.start
        progress.advance(batch.stop - batch.start)
        if state.received < state.target:
            return
        results = assemble(state.point.scenario, state.point.seed, state.batches)
        if precision is not None:
            status = precision_status(results.replications, precision)
            if not status.done:
                more = min(state.target + precision.batch, precision.max_replications)
                # Ahead of other points: finish this one first (memory, checkpoints).
                queue.extendleft(reversed([(index, a, b) for a, b in ranges(state.point, state.target, more)]))
                progress.add_replications(more - state.target)
                state.target = more
                return
            results.extra["precision"] = {**precision.as_dict(), **status.as_dict()}
        del states[index]
        on_done(state.point, results)
        progress.point_done()

    if executor is None:
        while queue:
            index, a, b = queue.popleft()
            point = states[index].point
            receive(index, _run_range(point.scenario, point.seed, a, b, detail, point.engine))
        return
    inflight: dict[Future[Any], int] = {}
    limit = 2 * max(1, workers)
    try:
        while queue or inflight:
            while queue and len(inflight) < limit:
                index, a, b = queue.popleft()
                point = states[index].point
                inflight[executor.submit(_run_range, point.scenario, point.seed, a, b, detail,
                                         point.engine)] = index
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for future in finished:
                index = inflight.pop(future)
                receive(index, future.result())
    except BaseException:
        for future in inflight:
            future.cancel()
        raise


def simulate_to_precision(
    scenario: Scenario,
    precision: Precision,
    seed: int | None = None,
    *,
    jobs: int | None = 1,
    cluster: str | None = None,
    progress: Progress | None = None,
    engine: str = "auto",
) -> Results:
    """Replications in batches until ``precision`` is met; the same results as
    :func:`v2vsim.simulate` with that many replications (``results.extra["precision"]``
    says how many it took and the half-widths reached)."""
    base_seed = scenario.seed if seed is None else int(seed)
    found: list[Results] = []
    point = Point(0, {}, scenario, base_seed, precision.min_replications,
                  check_engine(engine, scenario, precision.max_replications))
    with executor_for(jobs, cluster) as (executor, workers):
        run_points([point], lambda _p, res: found.append(res), executor=executor, workers=workers,
                   precision=precision, detail=True, progress=progress)
    return found[0]


def replications_for_precision(
    scenarios: Sequence[Scenario],
    precision: Precision,
    seed: int | None = None,
    *,
    jobs: int | None = 1,
    cluster: str | None = None,
    progress: Progress | None = None,
    engine: str = "auto",
) -> int:
    """One replication count meeting ``precision`` for every scenario (the largest of their
    counts), for paired comparisons, which need the same replications in every scenario."""
    counts: dict[int, int] = {}
    points = [Point(i, {}, sc, sc.seed if seed is None else int(seed), precision.min_replications,
                    check_engine(engine, sc, precision.max_replications)) for i, sc in enumerate(scenarios)]
    with executor_for(jobs, cluster) as (executor, workers):
        run_points(points, lambda p, res: counts.__setitem__(p.index, res.n_replications),
                   executor=executor, workers=workers, precision=precision, progress=progress)
    return max(counts.values())
