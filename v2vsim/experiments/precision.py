"""Replications to a precision: when a point has enough replications (Hoad, Robinson & Davies 2010).

The rule only: :class:`Precision` says what is asked, :func:`precision_status` whether the
replications so far meet it. Running batches of replications until it is met is done by
:func:`~.parallel.run_points` (and :func:`~.parallel.simulate_to_precision` for one scenario).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PRECISION_METRICS", "Precision", "PrecisionStatus", "precision_status"]


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
    from scipy.special import stdtrit  # what scipy.stats.t.ppf computes, without importing scipy.stats

    t = stdtrit(np.maximum(k - 1, 1), 0.975)
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
