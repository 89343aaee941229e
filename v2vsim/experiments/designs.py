"""Designs of points: every combination of values (grid), or a Latin hypercube over ranges.

A design is a list of ``{PATH: value}`` mappings, one per point, with the same paths as the
``--set`` overrides that make each point's scenario (:mod:`v2vsim.scenario.overrides`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..scenario import Problem, ScenarioError
from ..scenario.overrides import parse_value

__all__ = ["grid_points", "is_integer_range", "lhs_points", "parse_param", "parse_range"]


def grid_points(parameters: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the values (the first parameter varies slowest)."""
    names = [name for name, _ in parameters]
    return [dict(zip(names, combo)) for combo in itertools.product(*(vals for _, vals in parameters))]


def is_integer_range(low: Any, high: Any) -> bool:
    """Whether both bounds are integers (so the values drawn between them are too)."""
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
    columns = [_scale(unit[:, j], lo, hi, is_integer_range(lo, hi)) for j, (_, lo, hi) in enumerate(ranges)]
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
