"""Sensitivity of a metric to parameters: one at a time, Morris or Sobol (SALib).

A design of points (:func:`design_sensitivity`), run like a sweep with common random numbers,
then indices per parameter from the metric's mean at each point (:func:`analyse_sensitivity`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..scenario import Problem, ScenarioError
from ..scenario.overrides import ScenarioSource
from .checkpoints import PointStore, run_stored
from .designs import is_integer_range
from .parallel import Point, Progress, executor_for, make_points
from .tables import sweep_table

__all__ = ["SensitivityResult", "SobolDiagnosis", "analyse_sensitivity", "design_sensitivity",
           "sensitivity_analysis", "sobol_diagnostics"]


@dataclass
class SensitivityResult:
    method: str
    metric: str
    indices: pd.DataFrame     # one row per parameter
    points: pd.DataFrame      # point, <parameters>, mean, ci_low, ci_high, n of the metric


@dataclass(frozen=True)
class SobolDiagnosis:
    """What makes a set of Sobol indices untrustworthy, and the base sample size that would do.

    ``problems`` name the impossible values (an index below 0 or above 1, or S1 above ST,
    by more than their 95% CIs allow): with enough samples they cannot happen, so they say
    the sample is too small. ``widest`` is the widest CI half-width of any index;
    ``recommended_samples`` the base samples N for a half-width of ``target`` (None when
    the run already has it)."""

    base_samples: int
    problems: tuple[str, ...]
    widest: float
    target: float
    recommended_samples: int | None

    @property
    def trustworthy(self) -> bool:
        return not self.problems and self.recommended_samples is None

    def lines(self) -> list[str]:
        """The warning in a few lines of plain text (empty when there is nothing to say)."""
        if self.trustworthy:
            return []
        lines = []
        if self.problems:
            lines.append(f"Sample too small: {'; '.join(self.problems)}.")
        else:
            lines.append(f"Sample too small: 95% CIs up to ±{self.widest:.2f}, wider than ±{self.target:g}.")
        if self.recommended_samples is not None:
            needed = self.base_samples * (max(self.widest, self.target) / self.target) ** 2
            if self.widest > self.target:
                lines.append(
                    f"Use --samples {self.recommended_samples} (now {self.base_samples}) for CIs of "
                    f"±{self.target:g}: CIs shrink as 1/√N, so N × ({self.widest:.2f} / {self.target:g})² "
                    f"= {needed:,.0f}, rounded up to a power of 2.")
            else:
                lines.append(f"Use at least --samples {self.recommended_samples} (now {self.base_samples}).")
        return lines


def sobol_diagnostics(indices: pd.DataFrame, base_samples: int, *, target: float = 0.05) -> SobolDiagnosis:
    """Check Sobol ``indices`` (``parameter, S1, S1_conf, ST, ST_conf``, CIs as half-widths)
    from ``base_samples`` base samples, and recommend a base sample size.

    An index is flagged when its whole 95% CI lies below 0 or above 1, or when S1's CI lies
    wholly above ST's (the total effect includes the first-order one). The recommendation
    uses the widest CI half-width ``w``: CIs shrink as 1/√N, so a half-width of ``target``
    needs about ``N × (w / target)²`` base samples, rounded up to a power of 2 (Saltelli's
    sequence is balanced only at powers of 2).
    """
    problems: list[str] = []
    widths: list[float] = []
    for row in indices.itertuples(index=False):
        name = str(row.parameter)
        s1, c1, st, ct = (float(v) for v in (row.S1, row.S1_conf, row.ST, row.ST_conf))
        widths += [c for c in (c1, ct) if math.isfinite(c)]
        for label, value, conf in (("S1", s1, c1), ("ST", st, ct)):
            if not (math.isfinite(value) and math.isfinite(conf)):
                continue
            if value + conf < 0:
                problems.append(f"{label} of {name} is negative ({value:.2f} ± {conf:.2f})")
            elif value - conf > 1:
                problems.append(f"{label} of {name} is above 1 ({value:.2f} ± {conf:.2f})")
        if all(math.isfinite(v) for v in (s1, c1, st, ct)) and s1 - c1 > st + ct:
            problems.append(f"S1 of {name} exceeds its ST ({s1:.2f} ± {c1:.2f} > {st:.2f} ± {ct:.2f})")
    widest = max(widths, default=0.0)
    recommended = None
    if widest > target or problems:
        needed = base_samples * (max(widest, target) / target) ** 2
        recommended = max(2 ** math.ceil(math.log2(max(needed, 1.0))), 2 * base_samples if problems else 1)
        if recommended <= base_samples:
            recommended = None
    return SobolDiagnosis(int(base_samples), tuple(problems), float(widest), float(target), recommended)


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
            values[name] = int(round(row[j])) if is_integer_range(low, high) else float(row[j])
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
    engine: str = "auto",
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
    points = make_points(source, design, fixed, seed=base_seed, replications=replications, engine=engine)
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
