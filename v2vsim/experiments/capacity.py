"""Capacity search: the smallest number of a site's slots that meets every target.

A target (``queue_wait_mean<=7``) is met with 95% confidence when the far bound of the metric's
confidence interval is within it; counts are tried in a linear scan or by doubling and bisection.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .. import metrics
from ..scenario import Scenario
from ..scenario.errors import did_you_mean
from ..scenario.overrides import ScenarioSource
from .checkpoints import run_stored
from .parallel import Progress, executor_for, make_points
from .precision import Precision

__all__ = ["CapacityResult", "Target", "capacity_search", "known_metrics", "most_counts_searched",
           "parse_target", "search_slots"]


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
        raise ValueError(f"--target {text}: no such metric '{metric}'{did_you_mean(metric, known)}")
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


def search_slots(min_slots: int, max_slots: int, search: str, beyond: int,
                 evaluate: Callable[[int], bool]) -> int | None:
    """The search of :func:`capacity_search`: the answer, asking ``evaluate(slots)`` whether a
    count meets every target (the caller remembers each count's answer; a count may be asked
    again)."""
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
    return answer


def most_counts_searched(min_slots: int, max_slots: int, search: str, beyond: int) -> int:
    """The most slot counts :func:`capacity_search` can run, whatever the targets' answers.

    ``linear``: every count of the range. ``bisect``: if the first count to meet the targets in
    the doubling min, 2 min, 4 min, ... is its ``j``-th, the ``j`` doubling counts, at most
    ``ceil(log2(gap))`` bisection counts inside the gap below it, then ``beyond`` more; the
    largest such total over ``j`` (and never more than the range holds).
    """
    size = max(max_slots - min_slots + 1, 0)
    if search == "linear" or size == 0:
        return size
    if search != "bisect":
        raise ValueError(f"unknown search {search!r} (linear or bisect)")
    doubling = [min_slots]
    while doubling[-1] < max_slots:
        doubling.append(min(max_slots, doubling[-1] * 2))
    most = len(doubling)  # no count meets the targets
    for j, high in enumerate(doubling):
        gap = high - (doubling[j - 1] if j else min_slots - 1)
        bisection = math.ceil(math.log2(gap)) if gap > 1 else 0
        most = max(most, j + 1 + bisection + beyond)
    return min(most, size)


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
    engine: str = "auto",
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
                [point] = make_points(source, [{path: slots}], fixed, seed=seed, replications=replications,
                                      engine=engine)
                point.index = slots
                done = run_stored([point], None, executor=executor, workers=workers,
                                  precision=precision, progress=progress)
                evaluated[slots] = done[slots][0]
                order.append(slots)
                summary = metrics.summarise(evaluated[slots]).set_index("metric")
                meets[slots] = {str(t): t.met(summary.loc[t.metric, "ci_low"], summary.loc[t.metric, "ci_high"])
                                if t.metric in summary.index else False for t in targets}
            return all(meets[slots].values())

        answer = search_slots(min_slots, max_slots, search, beyond, evaluate)
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
