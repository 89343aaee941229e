"""What a scenario's ``uncertain:`` list may not say, beyond what its schema sees: a path that is
not a value of the scenario, one path or name twice, a distribution that can draw a value the
parameter does not allow. Read by ``validate`` and by ``psa`` before anything runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import Problem, ScenarioError
from .overrides import ScenarioSource
from .uncertain import Uncertain
from .yaml_io import line_of

__all__ = ["uncertain_problems"]


def uncertain_problems(source: ScenarioSource, fixed: Sequence[tuple[str, Any]] = ()) -> list[Problem]:
    """What is wrong with the file's ``uncertain:`` list that its schema cannot see: a path that
    is not a value of the scenario, two items for one path or one name, and a distribution that
    can draw a value the parameter does not allow (each end of its range is tried on a variant
    of the file, with the scenario's own message for the value)."""
    tree = source.tree()
    problems: list[Problem] = []
    seen_paths: dict[str, int] = {}
    seen_names: dict[str, int] = {}

    def add(i: int, key: str, message: str) -> None:
        path = ["uncertain", i] + ([key] if key else [])
        problems.append(Problem(source.file, line_of(tree, path), f"uncertain[{i}]" + (f".{key}" if key else ""),
                                message))

    for i, item in enumerate(source.base.uncertain):
        if item.path in seen_paths:
            add(i, "path", f"'{item.path}' is already uncertain[{seen_paths[item.path]}]")
            continue
        seen_paths[item.path] = i
        if item.key in seen_names:
            add(i, "name", f"the name '{item.key}' is already used by uncertain[{seen_names[item.key]}]")
            continue
        seen_names[item.key] = i
        if item.path.split(".")[0] == "uncertain":
            add(i, "path", "an uncertain input cannot be part of the uncertain list itself")
            continue
        probes: list[tuple[str, Any]] = []
        if item.is_fixed:
            probes.append(("the value", item.distribution.fixed))
        else:
            lo, hi = item.support()
            dist = item.distribution.name
            mean = item.distribution.mean()
            probes.append(("its mean", mean if lo <= mean <= hi else (lo + hi) / 2 if math.isfinite(lo + hi)
                           else item.values(np.array([0.5]))[0]))
            low_open = item.bounds is None or item.bounds[0] <= item.distribution.support()[0]
            high_open = item.bounds is None or item.bounds[1] >= item.distribution.support()[1]
            probes.append(("low", _probe_value(lo, low=True, open_end=low_open and dist != "uniform")))
            probes.append(("high", _probe_value(hi, low=False, open_end=high_open and dist != "uniform")))
        for what, value in probes:
            try:
                source.variant(list(fixed) + [(item.path, value)])
            except ScenarioError as exc:
                message = "; ".join(dict.fromkeys(p.message for p in exc.problems))
                if what in ("its mean", "the value"):
                    unknown = any(p.message.startswith(("no such", "unknown key")) or "single value" in p.message
                                  for p in exc.problems)
                    add(i, "path" if unknown else "distribution",
                        f"path '{item.path}': {message}" if unknown
                        else f"{item.distribution.describe()}: with {what} ({_fmt(value)}) the scenario is "
                             f"invalid: {message}")
                else:
                    add(i, "distribution", _range_message(item, what, value, message))
                break
    return problems


def _probe_value(x: float, *, low: bool, open_end: bool) -> float:
    if math.isinf(x):
        return -1e12 if low else 1e12
    if open_end:  # the draws come arbitrarily close to the end, never onto it
        step = max(abs(x), 1.0) * 1e-9
        return x + step if low else x - step
    return x


def _range_message(item: Uncertain, what: str, value: float, message: str) -> str:
    dist = item.distribution
    lo, hi = item.support()
    reach = (f"values down to {_fmt(lo)}" if what == "low" else f"values up to {_fmt(hi)}")
    if (what == "low" and math.isinf(lo)) or (what == "high" and math.isinf(hi)):
        reach = "negative values without limit" if what == "low" else "values without an upper limit"
    hint = {"gamma": "a beta for a probability, or bounds: [low, high]",
            "lognormal": "a beta for a probability, or bounds: [low, high]",
            "normal": "a gamma or lognormal for a positive value, a beta for a probability, or bounds",
            }.get(dist.name, "bounds: [low, high] within the allowed range")
    return (f"{dist.describe()} can draw {reach}, but {item.path} does not allow {_fmt(value)} "
            f"({message}); use {hint}")


def _fmt(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, float) else repr(x)
