"""Experiments over many variants of one scenario: overrides, sweeps, sensitivity, capacity.

Layers, one way: a *variant* is the scenario file with ``--set PATH=VALUE`` overrides applied to
its YAML tree and validated like the file itself (:class:`ScenarioSource`); a *point* is one
variant to simulate; :func:`run_points` runs many points' replications in one pool of workers
(or on a Dask cluster), optionally adding replications until a precision is reached
(:class:`Precision`), and hands each finished point to a callback (which saves it, so long
runs can be resumed: :class:`PointStore`). Sweeps, sensitivity analyses and capacity searches
are designs of points plus an analysis of their per-replication metrics.

Every point is run with the same base seed and replication numbers, so points differ only by
their parameters (common random numbers), and results never depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import itertools
import json
import math
import os
import re
import shutil
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .. import metrics
from ..engine.runner import Results, _run_range, assemble, default_jobs, plan_ranges
from ..scenario import (Problem, Scenario, ScenarioError, load_scenario, read_yaml, scenario_from_dict,
                       to_plain)

__all__ = [
    "PRECISION_METRICS",
    "CapacityResult",
    "Point",
    "PointStore",
    "Precision",
    "ScenarioSource",
    "SensitivityResult",
    "Target",
    "capacity_search",
    "executor_for",
    "grid_points",
    "lhs_points",
    "load_with_overrides",
    "parse_assignment",
    "parse_sets",
    "parse_param",
    "parse_target",
    "parse_value",
    "precision_status",
    "replications_for_precision",
    "run_points",
    "sensitivity_analysis",
    "simulate_to_precision",
    "split_values",
    "sweep_table",
]

# --------------------------------------------------------------------------- overrides

_NAMED_LISTS = {"cohorts": "cohort", "steps": "step"}  # lists whose items are addressed by name
_NAMED_DICTS = {"sites": "site", "pathways": "pathway"}  # mappings whose keys are names
_CORE_TAG = "tag:yaml.org,2002:"


def parse_assignment(text: str) -> tuple[str, str]:
    """``"PATH=VALUE"`` -> ``(PATH, VALUE)`` (split at the first ``=``)."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ScenarioError([Problem(f"--set {text}", None, "", "expected PATH=VALUE, "
                                     "e.g. --set sites.hkib.slots=2")])
    if any(not part for part in path.split(".")):
        raise ScenarioError([Problem(f"--set {path}", None, "", "empty key in the path")])
    return path, raw.strip()


def parse_value(raw: str, where: str) -> Any:
    """A ``--set`` value read as YAML (a scalar or a flow mapping/list), as plain data."""
    tree = read_yaml(raw, f"--set {where}")
    _refuse_tags(tree, where)
    return to_plain(tree)


def _refuse_tags(node: Any, where: str) -> None:
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag is not None and not str(tag).startswith(_CORE_TAG) or type(node).__name__ == "TaggedScalar":
        raise ScenarioError([Problem(f"--set {where}", None, "",
                                     f"YAML tag '{str(tag).replace(_CORE_TAG, '!!')}' is not allowed in a value")])
    if isinstance(node, Mapping):
        for value in node.values():
            _refuse_tags(value, where)
    elif isinstance(node, list):
        for value in node:
            _refuse_tags(value, where)


def split_values(raw: str) -> list[str]:
    """Split ``V1,V2,...`` at top-level commas (not inside ``{}``, ``[]`` or quotes)."""
    parts: list[str] = []
    depth = 0
    quote = ""
    current = ""
    for ch in raw:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    parts.append(current.strip())
    return parts


def _format_path(path: Sequence[Any]) -> str:
    """The key path as ScenarioError shows it (``pathways.local.steps[2].duration``)."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else ("." if text else "") + str(key)
    return text


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known: {', '.join(known)})" if known else ""


def _resolve(tree: Any, dotted: str, *, create: bool) -> tuple[Any, Any, list[Any]]:
    """Walk ``dotted`` in the YAML tree: ``(parent, key, index path)`` of the last key.

    Items of ``cohorts`` and of a pathway's ``steps`` are addressed by name; a missing site,
    pathway, cohort or step is an error (with a suggestion); other missing mapping keys are
    created when ``create`` (validation then says whether they exist in the contract).
    """
    keys = dotted.split(".")
    node = tree
    path: list[Any] = []
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        parent_key = path[-1] if path else None
        where = f"--set {dotted}"
        if isinstance(node, list):
            kind = _NAMED_LISTS.get(str(parent_key), "item")
            names = [str(item.get("name")) for item in node if isinstance(item, Mapping)]
            if key not in names:
                owner = f" in pathway '{path[-2]}'" if kind == "step" and len(path) >= 2 else ""
                hint = ""
                if key.isdigit():
                    hint = f"; {kind}s are addressed by name, not index"
                raise ScenarioError([Problem(where, None, "", f"no such {kind} '{key}'{owner}"
                                             f"{_did_you_mean(key, names)}{hint}")])
            index = names.index(key)
            if last:
                return node, index, path + [index]
            node = node[index]
            path.append(index)
            continue
        if not isinstance(node, Mapping):
            shown = json.dumps(to_plain(node)) if not isinstance(node, str) else repr(node)
            raise ScenarioError([Problem(where, None, "", f"'{'.'.join(keys[:depth])}' is the single value "
                                         f"{shown}, not a mapping: set it whole, e.g. --set "
                                         f"{'.'.join(keys[:depth])}={{dist: ..., ...}}")])
        if key not in node:
            kind = _NAMED_DICTS.get(str(parent_key)) if depth > 0 else None
            if kind is not None or not create:
                known = [str(k) for k in node]
                what = f"{kind} '{key}'" if kind else f"key '{key}'"
                raise ScenarioError([Problem(where, None, "", f"no such {what}{_did_you_mean(key, known)}")])
            if not last:
                node[key] = {}
        if last:
            return node, key, path + [key]
        node = node[key]
        path.append(key)
    raise AssertionError("unreachable")


def _rewrite(problem: Problem, overrides: Sequence[tuple[str, list[Any]]]) -> Problem:
    """A problem inside an overridden value is reported against its ``--set``, not the file."""
    for dotted, index_path in overrides:
        target = _format_path(index_path)
        if problem.path == target or problem.path.startswith((target + ".", target + "[")):
            suffix = problem.path[len(target):]
            message = problem.message
            if message.startswith("unknown key"):
                message = f"no such key '{index_path[-1] if not suffix else suffix.lstrip('.')}'" \
                          + message[len("unknown key"):]
            return Problem(f"--set {dotted}{suffix}", None, "", message)
        if target.startswith((problem.path + ".", problem.path + "[")) and \
                problem.message.startswith("unknown key"):
            name = problem.path.rsplit(".", 1)[-1]
            return Problem(f"--set {dotted}", None, "",
                           f"no such key '{name}'" + problem.message[len("unknown key"):])
    return problem


class ScenarioSource:
    """A scenario file from which variants with overrides are built and validated.

    The file is read once; each :meth:`variant` parses it again (a fresh YAML tree, so variants
    share nothing), applies the overrides and validates the result like the file itself.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = str(path)
        self.base = load_scenario(path)  # every problem of the file itself, as `validate` shows
        self.text = self.path.read_text(encoding="utf-8")

    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def variant(self, overrides: Sequence[tuple[str, Any]] | Mapping[str, Any]) -> Scenario:
        """The scenario with ``(PATH, value)`` overrides applied (values as plain data)."""
        items = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
        if not items:
            return self.base
        tree = read_yaml(self.text, self.file)
        applied: list[tuple[str, list[Any]]] = []
        for dotted, value in items:
            parent, key, index_path = _resolve(tree, dotted, create=True)
            parent[key] = copy.deepcopy(value)
            applied.append((dotted, index_path))
        try:
            return scenario_from_dict(tree, self.file, tree)
        except ScenarioError as exc:
            problems = list(dict.fromkeys(_rewrite(p, applied[::-1]) for p in exc.problems))
            raise ScenarioError(problems) from None

    def value_at(self, dotted: str) -> Any:
        """The value at ``dotted`` in the file (plain data); ScenarioError if it is not set."""
        tree = read_yaml(self.text, self.file)
        parent, key, _ = _resolve(tree, dotted, create=False)
        try:
            return to_plain(parent[key])
        except (KeyError, IndexError):
            raise ScenarioError([Problem(f"--param {dotted}", None, "", "not set in the scenario file")]) from None


def load_with_overrides(path: str | Path, sets: Sequence[str]) -> Scenario:
    """``load_scenario`` with ``--set PATH=VALUE`` overrides (each value read as YAML)."""
    source = ScenarioSource(path)
    return source.variant(parse_sets(sets))


def parse_sets(sets: Sequence[str]) -> list[tuple[str, Any]]:
    """``["PATH=VALUE", ...]`` -> ``[(PATH, value), ...]`` with values read as YAML."""
    out = []
    for text in sets:
        dotted, raw = parse_assignment(text)
        out.append((dotted, parse_value(raw, dotted)))
    return out


def display_value(value: Any) -> Any:
    """A parameter value for tables: scalars as they are, mappings and lists as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, separators=(", ", ": "))


# --------------------------------------------------------------------------- designs


def grid_points(parameters: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the values (the first parameter varies slowest)."""
    names = [name for name, _ in parameters]
    return [dict(zip(names, combo)) for combo in itertools.product(*(vals for _, vals in parameters))]


def _is_integer_range(low: Any, high: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))


def _scale(unit: np.ndarray, low: float, high: float, integer: bool) -> list[Any]:
    """Map values in [0, 1) to [low, high]: integers uniformly over low..high when ``integer``."""
    if integer:
        return [int(min(high, math.floor(low + u * (high - low + 1)))) for u in unit]
    return [float(low + u * (high - low)) for u in unit]


def lhs_points(ranges: Sequence[tuple[str, Any, Any]], samples: int, seed: int) -> list[dict[str, Any]]:
    """A Latin hypercube of ``samples`` points over ``(PATH, LOW, HIGH)`` ranges.

    scipy's :class:`~scipy.stats.qmc.LatinHypercube` with a fixed seed; a range whose bounds
    are both integers gives integers (each of LOW..HIGH equally likely).
    """
    from scipy.stats import qmc

    try:
        sampler = qmc.LatinHypercube(d=len(ranges), rng=np.random.default_rng(seed))
    except TypeError:  # scipy < 1.15 names it `seed`
        sampler = qmc.LatinHypercube(d=len(ranges), seed=np.random.default_rng(seed))
    unit = sampler.random(samples)
    columns = [_scale(unit[:, j], lo, hi, _is_integer_range(lo, hi)) for j, (_, lo, hi) in enumerate(ranges)]
    names = [name for name, _, _ in ranges]
    return [dict(zip(names, row)) for row in zip(*columns)]


def parse_range(dotted: str, raw: str) -> tuple[Any, Any] | None:
    """``LOW:HIGH`` with numbers on both sides -> (low, high); anything else -> None."""
    low_text, sep, high_text = raw.partition(":")
    if not sep:
        return None
    try:
        low, high = (parse_value(t, dotted) for t in (low_text, high_text))
    except ScenarioError:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return None
    if not low < high:
        raise ScenarioError([Problem(f"--set {dotted}", None, "", f"range {raw}: LOW must be less than HIGH")])
    return low, high


def parse_param(dotted: str, low_text: str, high_text: str) -> tuple[str, Any, Any]:
    """``--param PATH LOW HIGH`` -> (PATH, low, high) with numeric bounds, LOW < HIGH."""
    values = []
    for text in (low_text, high_text):
        value = parse_value(text, dotted)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ScenarioError([Problem(f"--param {dotted}", None, "", f"bound {text!r} is not a number")])
        values.append(value)
    if not values[0] < values[1]:
        raise ScenarioError([Problem(f"--param {dotted}", None, "", "LOW must be less than HIGH")])
    return dotted, values[0], values[1]


# --------------------------------------------------------------------------- precision

#: Metrics whose confidence interval ``--precision`` controls.
PRECISION_METRICS = ("infused_fraction", "vein_to_vein_median", "queue_wait_mean")


@dataclass(frozen=True)
class Precision:
    """Replications to a precision (Hoad, Robinson & Davies 2010, with their look-ahead).

    Replications are added ``batch`` at a time from ``min_replications``; after each batch,
    ``n_solution`` is the smallest n >= ``min_replications`` from which the relative 95% CI
    half-width of every metric in ``metrics`` (a metric whose mean is 0 is ignored) stays
    within ``relative`` for every n up to the replications run. The run stops when that has
    held for ``look_ahead`` more replications (scaled by n/100 above 100), or at
    ``max_replications``. Batches are fixed, so the count never depends on the workers.
    """

    relative: float
    min_replications: int = 10
    max_replications: int = 1000
    batch: int = 10
    look_ahead: int = 5
    metrics: tuple[str, ...] = PRECISION_METRICS

    def __post_init__(self) -> None:
        if not 0 < self.relative < 1:
            raise ValueError("precision must be between 0 and 1 (a fraction of the mean)")
        if not 2 <= self.min_replications <= self.max_replications:
            raise ValueError("need 2 <= min_replications <= max_replications")

    def look_ahead_for(self, n: int) -> int:
        return self.look_ahead if n <= 100 else math.ceil(self.look_ahead * n / 100)

    def as_dict(self) -> dict[str, Any]:
        return {"relative": self.relative, "min_replications": self.min_replications,
                "max_replications": self.max_replications, "batch": self.batch,
                "look_ahead": self.look_ahead, "metrics": list(self.metrics)}


def _relative_half_widths(values: np.ndarray) -> np.ndarray:
    """Relative 95% half-width after each of the first 1..n replications (NaN values skipped;
    0 where the running mean is 0, inf while fewer than two values)."""
    finite = np.isfinite(values)
    x = np.where(finite, values, 0.0)
    k = np.cumsum(finite)
    s1 = np.cumsum(x)
    s2 = np.cumsum(x * x)
    out = np.full(values.size, np.inf)
    ok = k >= 2
    mean = np.where(k > 0, s1 / np.maximum(k, 1), np.nan)
    var = np.where(ok, (s2 - k * mean**2) / np.maximum(k - 1, 1), np.nan)
    sd = np.sqrt(np.maximum(var, 0.0))
    t = stats.t.ppf(0.975, np.maximum(k - 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = t * sd / np.sqrt(np.maximum(k, 1)) / np.abs(mean)
    out[ok] = rel[ok]
    out[ok & (mean == 0)] = 0.0
    return out


@dataclass(frozen=True)
class PrecisionStatus:
    done: bool
    reached: bool
    replications: int
    n_solution: int | None
    half_widths: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"reached": self.reached, "replications": self.replications,
                "n_solution": self.n_solution,
                "relative_half_widths": {k: (None if not math.isfinite(v) else v)
                                         for k, v in self.half_widths.items()}}


def precision_status(replications: pd.DataFrame, precision: Precision) -> PrecisionStatus:
    """Whether the replications so far meet ``precision`` (see :class:`Precision`)."""
    n = len(replications)
    worst = np.zeros(n)
    final: dict[str, float] = {}
    for metric in precision.metrics:
        if metric not in replications:
            continue
        values = replications[metric].to_numpy(dtype=float)
        if np.isfinite(values).any() and np.nanmean(values) == 0:
            continue  # a metric that is always 0 (no queue at all) has nothing to estimate
        rel = _relative_half_widths(values)
        worst = np.maximum(worst, rel)
        final[metric] = float(rel[-1]) if n else math.inf
    ok = worst <= precision.relative
    n_solution = None
    m = n
    while m >= 1 and ok[m - 1]:
        m -= 1
    if m < n:  # replications m+1..n all meet the precision
        n_solution = max(m + 1, precision.min_replications)
        if n_solution > n:
            n_solution = None
    reached = n_solution is not None and n - n_solution >= precision.look_ahead_for(n_solution)
    done = reached or n >= precision.max_replications
    return PrecisionStatus(done, reached, n, n_solution, final)


# --------------------------------------------------------------------------- running points


@dataclass
class Point:
    """One variant to simulate: its number, parameter values and validated scenario."""

    index: int
    values: dict[str, Any]
    scenario: Scenario
    seed: int
    replications: int


class Progress:
    """Progress hooks (no-ops); the CLI subclasses it with rich bars."""

    def add_replications(self, k: int) -> None: ...

    def advance(self, k: int) -> None: ...

    def point_done(self) -> None: ...


@contextlib.contextmanager
def executor_for(jobs: int | None = None, cluster: str | None = None) -> Iterator[tuple[Executor | None, int]]:
    """``(executor, workers)``: a Dask cluster's executor, a process pool, or ``(None, 1)``
    to run in this process. The pool's workers ignore Ctrl-C and SIGTERM so that the main
    process stops them cleanly (finishing the tasks they hold)."""
    if cluster:
        from ..engine.distributed import cluster_executor

        with cluster_executor(cluster) as (executor, workers):
            yield executor, workers
        return
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    if jobs == 1:
        yield None, 1
        return
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init)
    try:
        yield pool, jobs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_init() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
    for point in points:
        target = point.replications if precision is None else min(
            precision.min_replications, precision.max_replications)
        states[point.index] = _PointState(point, target)
        queue.extend((point.index, a, b) for a, b in plan_ranges(0, target, workers))
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
                queue.extendleft(reversed([(index, a, b) for a, b in plan_ranges(state.target, more, workers)]))
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
            receive(index, _run_range(point.scenario, point.seed, a, b, detail))
        return
    inflight: dict[Future[Any], int] = {}
    limit = 2 * max(1, workers)
    try:
        while queue or inflight:
            while queue and len(inflight) < limit:
                index, a, b = queue.popleft()
                point = states[index].point
                inflight[executor.submit(_run_range, point.scenario, point.seed, a, b, detail)] = index
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
) -> Results:
    """Replications in batches until ``precision`` is met; the same results as
    :func:`v2vsim.simulate` with that many replications (``results.extra["precision"]``
    says how many it took and the half-widths reached)."""
    base_seed = scenario.seed if seed is None else int(seed)
    found: list[Results] = []
    point = Point(0, {}, scenario, base_seed, precision.min_replications)
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
) -> int:
    """One replication count meeting ``precision`` for every scenario (the largest of their
    counts), for paired comparisons, which need the same replications in every scenario."""
    counts: dict[int, int] = {}
    points = [Point(i, {}, sc, sc.seed if seed is None else int(seed), precision.min_replications)
              for i, sc in enumerate(scenarios)]
    with executor_for(jobs, cluster) as (executor, workers):
        run_points(points, lambda p, res: counts.__setitem__(p.index, res.n_replications),
                   executor=executor, workers=workers, precision=precision, progress=progress)
    return max(counts.values())


# --------------------------------------------------------------------------- checkpoints


class PointStore:
    """Finished points of a long run, saved as they complete, to resume after an interruption.

    ``DIR.partial/state.json`` holds a fingerprint of everything that determines the results;
    ``points/NNNNNN.parquet`` each point's per-replication metrics and ``NNNNNN.json`` how it
    was run. Files are written under a temporary name and renamed, so a point is either
    complete or absent.
    """

    def __init__(self, out_dir: Path, fingerprint: Mapping[str, Any]) -> None:
        self.dir = Path(out_dir).parent / f"{Path(out_dir).name}.partial"
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.key = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()

    def open(self, resume: bool) -> set[int]:
        """Prepare the directory; the indices of points already finished (resume only)."""
        state = self.dir / "state.json"
        if self.dir.exists():
            if not resume:
                raise StoreError(f"{self.dir} holds an interrupted run ({len(self.finished())} points "
                                 "finished): pass --resume to continue it, or delete it to start over")
            try:
                saved = json.loads(state.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise StoreError(f"{state}: unreadable; delete {self.dir} to start over") from None
            if saved.get("key") != self.key:
                changed = sorted(k for k in set(saved.get("fingerprint", {})) | set(self.fingerprint)
                                 if saved.get("fingerprint", {}).get(k) != self.fingerprint.get(k))
                raise StoreError(f"{self.dir} was started with different settings "
                                 f"({', '.join(changed) or 'version'}); run with the same ones, or delete it")
            return self.finished()
        (self.dir / "points").mkdir(parents=True)
        _write_atomic(state, json.dumps({"key": self.key, "fingerprint": self.fingerprint},
                                        indent=2, sort_keys=True) + "\n")
        return set()

    def finished(self) -> set[int]:
        found = set()
        for path in (self.dir / "points").glob("*.json"):
            if path.stem.isdigit() and path.with_suffix(".parquet").is_file():
                found.add(int(path.stem))
        return found

    def save(self, index: int, table: pd.DataFrame, info: Mapping[str, Any]) -> None:
        base = self.dir / "points" / f"{index:06d}"
        tmp = base.with_name(base.name + ".parquet.tmp")
        table.to_parquet(tmp, index=False, engine="pyarrow")
        os.replace(tmp, base.with_suffix(".parquet"))
        _write_atomic(base.with_suffix(".json"), json.dumps(info, default=str, sort_keys=True) + "\n")

    def load(self, index: int) -> tuple[pd.DataFrame, dict[str, Any]]:
        base = self.dir / "points" / f"{index:06d}"
        return (pd.read_parquet(base.with_suffix(".parquet"), engine="pyarrow"),
                json.loads(base.with_suffix(".json").read_text(encoding="utf-8")))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class StoreError(RuntimeError):
    """The saved partial state cannot be used as asked (message says why)."""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run_stored(
    points: Sequence[Point],
    store: PointStore | None,
    *,
    resume: bool = False,
    executor: Executor | None = None,
    workers: int = 1,
    precision: Precision | None = None,
    progress: Progress | None = None,
) -> dict[int, tuple[pd.DataFrame, dict[str, Any]]]:
    """Run the points not yet in ``store`` and return every point's
    ``(per-replication metrics, info)``, read back from the store so that a resumed run and
    an uninterrupted one give the same bytes."""
    progress = progress or Progress()
    done: dict[int, tuple[pd.DataFrame, dict[str, Any]]] = {}
    finished = store.open(resume) if store is not None else set()
    todo = [p for p in points if p.index not in finished]
    for p in points:
        if p.index in finished:
            progress.point_done()

    def save(point: Point, results: Results) -> None:
        info = {"point": point.index, "seed": point.seed, "replications": results.n_replications,
                "precision": results.extra.get("precision")}
        table = results.replications
        if store is not None:
            store.save(point.index, table, info)
        else:
            done[point.index] = (table, info)

    run_points(todo, save, executor=executor, workers=workers, precision=precision, progress=progress)
    if store is not None:
        for p in points:
            done[p.index] = store.load(p.index)
    return {p.index: done[p.index] for p in points}


# --------------------------------------------------------------------------- tables


def sweep_table(points: Sequence[Point], parameters: Sequence[str],
                tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """The tidy sweep table: ``point, <parameters>, metric, mean, ci_low, ci_high, n``."""
    frames = []
    for p in points:
        summary = metrics.summarise(tables[p.index])
        for i, name in enumerate(parameters):
            summary.insert(i, name, display_value(p.values.get(name)))
        summary.insert(0, "point", p.index)
        frames.append(summary)
    table = pd.concat(frames, ignore_index=True)
    return _numeric_parameters(table, parameters)


def _numeric_parameters(table: pd.DataFrame, parameters: Sequence[str]) -> pd.DataFrame:
    """Parameter columns as numbers when every value is a number, else as text."""
    for name in parameters:
        values = table[name]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            table[name] = pd.to_numeric(values)
        else:
            table[name] = values.map(lambda v: "" if v is None else str(v)).astype(object)
    return table


def replications_long(points: Sequence[Point], parameters: Sequence[str],
                      tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Every point's per-replication metrics, with ``point`` and parameter columns first."""
    frames = []
    for p in points:
        frame = tables[p.index].copy()
        for i, name in enumerate(parameters):
            frame.insert(i, name, [display_value(p.values.get(name))] * len(frame))
        frame.insert(0, "point", p.index)
        frames.append(frame)
    return _numeric_parameters(pd.concat(frames, ignore_index=True), parameters)


# --------------------------------------------------------------------------- sensitivity


@dataclass
class SensitivityResult:
    method: str
    metric: str
    indices: pd.DataFrame     # one row per parameter
    points: pd.DataFrame      # point, <parameters>, mean, ci_low, ci_high, n of the metric


def design_sensitivity(
    method: str, params: Sequence[tuple[str, Any, Any]], base_values: Mapping[str, Any], *,
    trajectories: int, levels: int, samples: int, seed: int,
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """The points of a sensitivity design and, for Morris and Sobol, SALib's sample matrix."""
    names = [p for p, _, _ in params]
    if method == "oat":
        pts = [dict(base_values)]
        for name, low, high in params:
            for value in (low, high):
                pts.append({**base_values, name: value})
        return pts, None
    problem = _salib_problem(params)
    if method == "morris":
        from SALib.sample import morris as morris_sample

        matrix = morris_sample.sample(problem, trajectories, num_levels=levels, seed=seed)
    elif method == "sobol":
        from SALib.sample import sobol as sobol_sample

        matrix = sobol_sample.sample(problem, samples, calc_second_order=False, seed=seed)
    else:
        raise ValueError(f"unknown method {method!r}")
    pts = []
    for row in matrix:
        values = {}
        for j, (name, low, high) in enumerate(params):
            values[name] = int(round(row[j])) if _is_integer_range(low, high) else float(row[j])
        pts.append(values)
    assert list(pts[0]) == names
    return pts, matrix


def _salib_problem(params: Sequence[tuple[str, Any, Any]]) -> dict[str, Any]:
    return {"num_vars": len(params), "names": [p for p, _, _ in params],
            "bounds": [[float(lo), float(hi)] for _, lo, hi in params]}


def analyse_sensitivity(
    method: str, metric: str, params: Sequence[tuple[str, Any, Any]], base_values: Mapping[str, Any],
    points: pd.DataFrame, matrix: np.ndarray | None, *, levels: int, seed: int,
) -> pd.DataFrame:
    """Indices per parameter from the metric's mean at each point (``points`` in design order)."""
    y = points["mean"].to_numpy(dtype=float)
    if method == "oat":
        rows = []
        base = points.iloc[0]
        for j, (name, low, high) in enumerate(params):
            lo, hi = points.iloc[1 + 2 * j], points.iloc[2 + 2 * j]
            rows.append({
                "parameter": name, "base_value": base_values[name], "low": low, "high": high,
                "metric": metric, "base_mean": base["mean"],
                "low_mean": lo["mean"], "low_ci_low": lo["ci_low"], "low_ci_high": lo["ci_high"],
                "high_mean": hi["mean"], "high_ci_low": hi["ci_low"], "high_ci_high": hi["ci_high"],
                "swing": abs(hi["mean"] - lo["mean"]),
            })
        return pd.DataFrame(rows).sort_values("swing", ascending=False, kind="stable").reset_index(drop=True)
    if not np.isfinite(y).all():
        bad = points.loc[~np.isfinite(y), "point"].tolist()
        raise ValueError(f"{metric} is undefined at points {bad[:10]} (no value in any replication); "
                         "choose another metric or narrower ranges")
    problem = _salib_problem(params)
    if method == "morris":
        from SALib.analyze import morris as morris_analyze

        si = morris_analyze.analyze(problem, matrix, y, num_resamples=1000, conf_level=0.95,
                                    num_levels=levels, seed=seed)
        return pd.DataFrame({"parameter": problem["names"], "metric": metric,
                             "mu": np.asarray(si["mu"], dtype=float),
                             "mu_star": np.asarray(si["mu_star"], dtype=float),
                             "mu_star_conf": np.asarray(si["mu_star_conf"], dtype=float),
                             "sigma": np.asarray(si["sigma"], dtype=float)})
    from SALib.analyze import sobol as sobol_analyze

    si = sobol_analyze.analyze(problem, y, calc_second_order=False, num_resamples=1000,
                               conf_level=0.95, seed=seed)
    return pd.DataFrame({"parameter": problem["names"], "metric": metric,
                         "S1": np.asarray(si["S1"], dtype=float),
                         "S1_conf": np.asarray(si["S1_conf"], dtype=float),
                         "ST": np.asarray(si["ST"], dtype=float),
                         "ST_conf": np.asarray(si["ST_conf"], dtype=float)})


def sensitivity_analysis(
    source: ScenarioSource,
    params: Sequence[tuple[str, Any, Any]],
    method: str = "oat",
    metric: str = "infused_fraction",
    *,
    fixed: Sequence[tuple[str, Any]] = (),
    replications: int = 50,
    seed: int | None = None,
    trajectories: int = 10,
    levels: int = 4,
    samples: int = 64,
    jobs: int | None = 1,
    cluster: str | None = None,
    progress: Progress | None = None,
    store: PointStore | None = None,
    resume: bool = False,
) -> tuple[SensitivityResult, list[Point], dict[int, pd.DataFrame]]:
    """One-at-a-time, Morris or Sobol sensitivity of ``metric`` to ``params`` (PATH, LOW, HIGH).

    Every point uses the same seed and replications (common random numbers), so the metric is
    a smooth function of the parameters rather than one blurred by independent noise.
    """
    base_seed = source.base.seed if seed is None else int(seed)
    base_values = {}
    if method == "oat":
        for name, low, high in params:
            value = _value_with_fixed(source, fixed, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ScenarioError([Problem(f"--param {name}", None, "",
                                             f"the base value must be a number for OAT (got {value!r})")])
            base_values[name] = value
    design, matrix = design_sensitivity(method, params, base_values, trajectories=trajectories,
                                        levels=levels, samples=samples, seed=base_seed)
    points = make_points(source, design, fixed, seed=base_seed, replications=replications)
    with executor_for(jobs, cluster) as (executor, workers):
        done = run_stored(points, store, resume=resume, executor=executor, workers=workers, progress=progress)
    tables = {i: t for i, (t, _) in done.items()}
    names = [p for p, _, _ in params]
    table = sweep_table(points, names, tables)
    at = table[table["metric"] == metric].reset_index(drop=True)
    if at.empty:
        raise ValueError(f"unknown metric {metric!r}")
    indices = analyse_sensitivity(method, metric, params, base_values, at, matrix, levels=levels, seed=base_seed)
    return SensitivityResult(method, metric, indices, at), points, tables


def _value_with_fixed(source: ScenarioSource, fixed: Sequence[tuple[str, Any]], name: str) -> Any:
    for dotted, value in reversed(list(fixed)):
        if dotted == name:
            return value
    return source.value_at(name)


def make_points(source: ScenarioSource, design: Sequence[Mapping[str, Any]],
                fixed: Sequence[tuple[str, Any]] = (), *, seed: int | None = None,
                replications: int | None = None) -> list[Point]:
    """Validated points (every problem of every point reported before anything runs)."""
    points: list[Point] = []
    problems: list[Problem] = []
    for index, values in enumerate(design):
        try:
            sc = source.variant(list(fixed) + list(values.items()))
        except ScenarioError as exc:
            problems += exc.problems
            continue
        points.append(Point(index, dict(values), sc, sc.seed if seed is None else int(seed),
                            sc.replications if replications is None else int(replications)))
    if problems:
        raise ScenarioError(list(dict.fromkeys(problems)))
    return points


# --------------------------------------------------------------------------- capacity

_TARGET = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Target:
    """``metric <= value`` (or ``>=``, ``<``, ``>``) met with 95% confidence: the CI bound on
    the far side (``ci_high`` for ``<=``, ``ci_low`` for ``>=``) is within the target."""

    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def met(self, ci_low: float, ci_high: float) -> bool:
        bound = ci_high if self.op in ("<=", "<") else ci_low
        if not math.isfinite(bound):
            return False
        return {"<=": bound <= self.value, "<": bound < self.value,
                ">=": bound >= self.value, ">": bound > self.value}[self.op]


def known_metrics(scenario: Scenario) -> list[str]:
    return [m for m in metrics.METRIC_LABELS] + [f"utilization_{s}" for s in scenario.sites]


def parse_target(text: str, known: Sequence[str]) -> Target:
    match = _TARGET.match(text)
    if not match:
        raise ValueError(f"--target {text!r}: expected METRIC<=VALUE or METRIC>=VALUE, "
                         "e.g. --target 'queue_wait_mean<=7'")
    metric, op, raw = match.groups()
    if metric not in known:
        raise ValueError(f"--target {text}: no such metric '{metric}'{_did_you_mean(metric, known)}")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"--target {text}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"--target {text}: the value must be finite")
    return Target(metric, op, value)


@dataclass
class CapacityResult:
    site: str
    targets: list[Target]
    answer: int | None
    search: str
    table: pd.DataFrame       # slots, metric, mean, ci_low, ci_high, n (every metric)
    checks: pd.DataFrame      # slots, order, meets_all, one column per target
    tables: dict[int, pd.DataFrame] = field(default_factory=dict)


def capacity_search(
    source: ScenarioSource,
    site: str,
    targets: Sequence[Target],
    *,
    fixed: Sequence[tuple[str, Any]] = (),
    min_slots: int = 1,
    max_slots: int = 50,
    search: str = "linear",
    beyond: int = 1,
    replications: int | None = None,
    seed: int | None = None,
    precision: Precision | None = None,
    jobs: int | None = 1,
    cluster: str | None = None,
    progress: Progress | None = None,
) -> CapacityResult:
    """The smallest ``sites.SITE.slots`` meeting every target with 95% confidence.

    ``linear`` tries min_slots, min_slots+1, ... and stops at the first count that meets every
    target (no assumption). ``bisect`` doubles the count until every target is met and then
    bisects between the last failing and the first passing count: fewer runs, but it assumes
    that more slots never make a target worse (true in expectation for waits and attrition).
    ``beyond`` more counts after the answer are run to show where the curve goes.
    """
    path = f"sites.{site}.slots"
    source.variant(list(fixed) + [(path, min_slots)])  # unknown site -> "no such site" now
    evaluated: dict[int, pd.DataFrame] = {}
    order: list[int] = []
    meets: dict[int, dict[str, bool]] = {}
    with executor_for(jobs, cluster) as (executor, workers):

        def evaluate(slots: int) -> bool:
            if slots not in evaluated:
                [point] = make_points(source, [{path: slots}], fixed, seed=seed, replications=replications)
                point.index = slots
                done = run_stored([point], None, executor=executor, workers=workers,
                                  precision=precision, progress=progress)
                evaluated[slots] = done[slots][0]
                order.append(slots)
                summary = metrics.summarise(evaluated[slots]).set_index("metric")
                meets[slots] = {str(t): t.met(summary.loc[t.metric, "ci_low"], summary.loc[t.metric, "ci_high"])
                                if t.metric in summary.index else False for t in targets}
            return all(meets[slots].values())

        answer: int | None = None
        if search == "linear":
            for slots in range(min_slots, max_slots + 1):
                if evaluate(slots):
                    answer = slots
                    break
        elif search == "bisect":
            low, high = min_slots - 1, None  # low fails (or is below the range), high passes
            slots = min_slots
            while slots <= max_slots:
                if evaluate(slots):
                    high = slots
                    break
                low = slots
                slots = min(max_slots, slots * 2) if slots < max_slots else max_slots + 1
            if high is not None:
                while high - low > 1:
                    mid = (low + high) // 2
                    if mid < min_slots:
                        break
                    if evaluate(mid):
                        high = mid
                    else:
                        low = mid
                answer = high
        else:
            raise ValueError(f"unknown search {search!r} (linear or bisect)")
        if answer is not None:
            for extra in range(answer + 1, min(answer + beyond, max_slots) + 1):
                evaluate(extra)
    slots_sorted = sorted(evaluated)
    frames = []
    for slots in slots_sorted:
        summary = metrics.summarise(evaluated[slots])
        summary.insert(0, "slots", slots)
        frames.append(summary)
    table = pd.concat(frames, ignore_index=True)
    checks = pd.DataFrame([{"slots": s, "order": order.index(s) + 1,
                            "meets_all": all(meets[s].values()), **meets[s]} for s in slots_sorted])
    return CapacityResult(site, list(targets), answer, search, table, checks, evaluated)
