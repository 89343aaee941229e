"""Probabilistic sensitivity analysis: parameter sets drawn from the scenarios' ``uncertain:``
inputs, each run with common random numbers, and the decision analysis of their results.

**Parameter sets.** Each uncertain parameter has its own random stream, keyed by the PSA seed and the parameter's name (its ``name``, else its path):
``SeedSequence(seed, spawn_key=(crc32("v2vsim.psa"), crc32(name), 0))``. Set *k* takes element
*k* of the stream's uniforms and maps it through the parameter's inverse CDF. So every compared
scenario that declares a parameter of the same name gets the same value in set *k* (the same
quantile, if the scenarios give it different distributions), the sets do not depend on
``--jobs`` or on the other parameters, and set *k* keeps its values when more sets are asked for
(the first *N* sets of a larger PSA are the *N* sets of the smaller one).

**Runs.** Set *k* of scenario *s* is the scenario file with every uncertain path set to its
value (the same overrides as ``--set``), validated like the file, and run with the *same* seed
and replications as every other set and scenario: replication *r* sees the same patients
everywhere, so differences between sets and between scenarios are differences of parameters,
not of patients. A scenario whose values do not vary (no uncertain input, or only ``fixed``
ones) is run once and its result stands for every set (the same seed makes the runs identical).
Per set and scenario the outcome is the mean over replications of the discounted cost, QALYs
and life-years per referred patient (and the undiscounted ones).

**Decision analysis** (against the first scenario, the comparator). Net monetary benefit
``NMB = wtp * QALYs - cost`` per set, option and willingness to pay; the acceptability curve
(per ``wtp``, the share of sets in which each option has the highest NMB) and its frontier (the
option with the highest *expected* NMB); the per-patient expected value of perfect information
``EVPI = E[max_j NMB_j] - max_j E[NMB_j]`` and the population EVPI per year, the per-patient
EVPI times the referrals a year of the first scenario's arrivals (its expected referrals over
the horizon, per 365 days: ``rate_per_year`` for Poisson arrivals), undiscounted, for one year's
patients.

**Which inputs drive the decision: EVPPI by regression** (Strong, Oakley & Brennan, Med Decis
Making 2014;34:311, the single-parameter nonparametric regression method). For parameter *p*,
the expected incremental costs and QALYs of each option given *p* are estimated by regressing
the sets' incremental cost and incremental QALYs on a smooth function of *p*; then
``EVPPI_p = E_p[max_j g_j(p)] - max_j E[g_j(p)]`` with ``g_j = wtp * g_QALY,j - g_cost,j``
(0 for the comparator). The smooth function is a *penalised cubic regression spline* (a cubic
polynomial plus truncated cubic terms at up to 10 knots at quantiles of *p*; a ridge penalty on
the truncated terms, its weight chosen by generalised cross-validation), which is what a GAM's
``s(p)`` does in the papers' R code, written here in a few lines of NumPy so the package needs
no GAM library. Why this and not a ranked (tornado-like) analysis: EVPPI is in money, on the
same scale as EVPI, and says how much resolving a parameter would be worth to the decision, not
only how much it moves an outcome; why a spline and not a polynomial: a cubic cannot follow a
threshold or a plateau, which the decision often has, and GCV keeps the spline as straight as
the data allow. Costs and QALYs are fitted separately (a fit per outcome, not per ``wtp``): the
conditional expectation is linear in them, so one pair of fits serves every threshold.
The regression also averages out the replications' Monte Carlo noise within a set, which the
EVPI's ``E[max]`` does not: with few replications per set the EVPI is biased upwards by that
noise (common random numbers keep it small for the incremental values), the EVPPI is not.
"""

from __future__ import annotations

import copy
import json
import math
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..engine.engines import EngineError, check_engine
from ..engine.runner import Results
from ..scenario import Problem, Scenario, ScenarioError
from ..scenario.loading import scenario_from_dict
from ..scenario.overrides import ScenarioSource, _resolve
from ..scenario.uncertain import Uncertain
from ..scenario.uncertain_checks import uncertain_problems
from ..scenario.yaml_io import read_yaml, to_plain
from .checkpoints import PointStore
from .decision import ceac_table, evpi_table, evppi_table, smooth_fit, summary_table
from .parallel import Point, Progress, run_points

__all__ = [
    "OUTCOMES",
    "PsaParameter",
    "PsaResult",
    "ceac_table",
    "evpi_table",
    "evppi_table",
    "parameter_uniforms",
    "psa_parameters",
    "referrals_per_year",
    "run_psa",
    "smooth_fit",
    "uncertain_problems",
]

#: Per set and scenario: the outcome (a column of ``Results.replications``) -> its mean's name.
OUTCOMES = {
    "cost": "cost_discounted_per_referred",
    "qalys": "qalys_discounted_per_referred",
    "life_years": "life_years_discounted_per_referred",
}
#: Recorded too (means over replications), where the scenario has them.
EXTRA_OUTCOMES = ("cost_per_referred", "qalys_per_referred", "life_years_per_referred",
                  "infused_fraction", "died", "vein_to_vein_median", "queue_wait_mean")
_PSA_TAG = zlib.crc32(b"v2vsim.psa")
_CONSTANT = 1_000_000  # store index of a scenario whose values do not vary: _CONSTANT + scenario


# --------------------------------------------------------------------------- parameters and their draws


def parameter_uniforms(seed: int, key: str, n_sets: int) -> np.ndarray:
    """Uniforms in (0, 1) of parameter ``key``'s own stream; set *k* takes element *k*."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(_PSA_TAG, zlib.crc32(key.encode("utf-8")), 0))
    u = np.random.Generator(np.random.PCG64(ss)).random(int(n_sets))
    return np.where(u == 0.0, np.nextafter(0.0, 1.0), u)  # random() is in [0, 1): keep ppf finite


@dataclass
class PsaParameter:
    """One uncertain parameter of the PSA: its name and how each scenario declares it."""

    key: str
    items: dict[int, Uncertain]  # scenario index -> its declaration

    @property
    def first(self) -> Uncertain:
        return self.items[min(self.items)]

    @property
    def varies(self) -> bool:
        return any(not item.is_fixed for item in self.items.values())


def psa_parameters(sources: Sequence[ScenarioSource]) -> list[PsaParameter]:
    """The parameters of every scenario, by name, in the order they are first declared."""
    found: dict[str, PsaParameter] = {}
    for s, source in enumerate(sources):
        for item in source.base.uncertain:
            found.setdefault(item.key, PsaParameter(item.key, {})).items[s] = item
    return list(found.values())


def _draws(parameters: Sequence[PsaParameter], seed: int, n_sets: int) -> dict[tuple[str, int], list[Any]]:
    """``(key, scenario) -> values of sets 0..n-1``."""
    out: dict[tuple[str, int], list[Any]] = {}
    for p in parameters:
        u = parameter_uniforms(seed, p.key, n_sets)
        for s, item in p.items.items():
            out[(p.key, s)] = item.values(u)
    return out


# --------------------------------------------------------------------------- checks of the declarations


# --------------------------------------------------------------------------- variants, fast


class _Variants:
    """Variants of one file built from its plain data (no YAML parse per set: a thousandth of
    the time); a variant that fails is rebuilt by :meth:`ScenarioSource.variant` for its
    message with the ``--set``-style location."""

    def __init__(self, source: ScenarioSource) -> None:
        self.source = source
        self.plain = to_plain(read_yaml(source.text, source.file))

    def variant(self, overrides: Sequence[tuple[str, Any]]) -> Scenario:
        if not overrides:
            return self.source.base
        tree = copy.deepcopy(self.plain)
        try:
            for dotted, value in overrides:
                parent, key, _ = _resolve(tree, dotted, create=True)
                parent[key] = copy.deepcopy(value)
            return scenario_from_dict(tree, self.source.file)
        except ScenarioError:
            return self.source.variant(overrides)  # raises with the full message


# --------------------------------------------------------------------------- running the sets


@dataclass
class PsaResult:
    """A PSA's parameter sets, outcomes and decision analysis."""

    scenarios: list[Scenario]
    names: list[str]  # a short label per scenario (its name)
    parameters: list[PsaParameter]
    n_sets: int
    seed: int
    replications: int
    sets: pd.DataFrame  # set, scenario, parameter values, outcome means (long: a row per set and scenario)
    wtp: np.ndarray
    economic: bool  # whether costs and QALYs are there (every scenario has an economics section)
    ceac: pd.DataFrame | None = None
    evpi: pd.DataFrame | None = None
    evppi: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None
    runs: int = 0  # points simulated by this call (not read back from a store)
    extra: dict[str, Any] = field(default_factory=dict)

    def matrix(self, column: str) -> np.ndarray:
        """``(sets, scenarios)`` array of one column of :attr:`sets`."""
        wide = self.sets.pivot(index="set", columns="scenario_index", values=column)
        return wide.sort_index().to_numpy(dtype=float)

    def parameter_values(self, key: str) -> np.ndarray:
        """The values of parameter ``key`` by set (as the first scenario declaring it has them)."""
        s = min(next(p for p in self.parameters if p.key == key).items)
        rows = self.sets[self.sets["scenario_index"] == s].sort_values("set")
        return rows[key].to_numpy(dtype=float)


def _means(table: pd.DataFrame) -> dict[str, float]:
    """Each numeric column's mean over the replications where it is known (NaN: nowhere)."""
    numeric = table.drop(columns=["replication"], errors="ignore").select_dtypes("number")
    # Column by column of one array (each column contiguous, as the column itself would be).
    columns = np.asfortranarray(numeric.to_numpy(dtype=float)).T
    with np.errstate(all="ignore"):
        return {c: float(np.nanmean(values)) if not np.isnan(values).all() else math.nan
                for c, values in zip(numeric.columns, columns)}


def run_psa(
    sources: Sequence[ScenarioSource],
    n_sets: int,
    *,
    replications: int,
    seed: int,
    wtp: Sequence[float] = (),
    fixed: Sequence[tuple[str, Any]] = (),
    store: PointStore | None = None,
    resume: bool = False,
    executor: Executor | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    engine: str = "auto",
    on_points: Callable[[int, int], None] | None = None,
) -> PsaResult:
    """Draw ``n_sets`` parameter sets, run each on every scenario with common random numbers and
    analyse them (see the module text). ``on_points(to_run, finished)`` is told the work before
    it starts. Raises :class:`ScenarioError` for bad declarations or a set that is not a valid
    scenario (every problem at once)."""
    progress = progress or Progress()
    problems = [p for source in sources for p in uncertain_problems(source, fixed)]
    if problems:
        raise ScenarioError(problems)
    parameters = psa_parameters(sources)
    draws = _draws(parameters, seed, n_sets)
    variants = [_Variants(source) for source in sources]
    varying = [any(p.items.get(s) is not None and not p.items[s].is_fixed for p in parameters)
               for s in range(len(sources))]
    # What each point is: (store index, scenario, set or None for a constant scenario)
    plan: list[tuple[int, int, int | None]] = []
    for s in range(len(sources)):
        if not varying[s]:
            plan.append((_CONSTANT + s, s, None))
    plan += [(k * len(sources) + s, s, k) for k in range(n_sets) for s in range(len(sources)) if varying[s]]
    total_reps = replications * len(plan)
    identities = {index: {"values": {"scenario": s, "set": k}, "seed": seed, "replications": replications}
                  for index, s, k in plan}
    finished = store.open(resume, identities) if store is not None else set()
    points: list[Point] = []
    bad: list[Problem] = []
    engines: dict[int, str] = {}
    for index, s, k in plan:
        if index in finished:
            continue
        overrides = list(fixed) + [(p.items[s].path, draws[(p.key, s)][0 if k is None else k])
                                   for p in parameters if s in p.items]
        try:
            sc = variants[s].variant(overrides)
            chosen = check_engine(engine, sc, total_reps)
        except ScenarioError as exc:
            where = f"set {k}" if k is not None else "the scenario"
            bad += [Problem(p.file, p.line, p.path, f"{p.message} (parameter {where})") for p in exc.problems]
            if len(bad) > 20:
                break
            continue
        except EngineError as exc:
            bad.append(Problem(sources[s].file, None, "--engine", str(exc)))
            break
        engines[s] = chosen
        points.append(Point(index, {"scenario": s, "set": k}, sc, seed, replications, chosen))
    if bad:
        raise ScenarioError(list(dict.fromkeys(bad)))
    if on_points is not None:
        on_points(len(points), len(plan) - len(points))
    for _ in range(len(plan) - len(points)):
        progress.point_done()
    collected: dict[int, dict[str, float]] = {}

    def done(point: Point, results: Results) -> None:
        row = _means(results.replications)
        row["replications"] = float(results.n_replications)
        if store is not None:
            store.save(point.index, pd.DataFrame([row]), {"point": point.index, **point.values,
                                                           "seed": point.seed, "engine": point.engine},
                       identities[point.index], point.engine)
        collected[point.index] = row

    run_points(points, done, executor=executor, workers=workers, progress=progress)
    if store is not None:  # the points a resumed run found finished (a saved float reads back exactly)
        for index, _, _ in plan:
            if index not in collected:
                collected[index] = store.load(index)[0].iloc[0].to_dict()
    rows = []
    for k in range(n_sets):
        for s, source in enumerate(sources):
            index = k * len(sources) + s if varying[s] else _CONSTANT + s
            rows.append({"set": k, "scenario": source.base.name, "scenario_index": s,
                         **{p.key: (draws[(p.key, s)][k] if s in p.items else math.nan) for p in parameters},
                         **collected[index]})
    sets = pd.DataFrame(rows)
    result = PsaResult(scenarios=[src.base for src in sources], names=[src.base.name for src in sources],
                       parameters=parameters, n_sets=n_sets, seed=seed, replications=replications, sets=sets,
                       wtp=np.asarray(sorted(set(float(w) for w in wtp)), dtype=float),
                       economic=OUTCOMES["cost"] in sets and OUTCOMES["qalys"] in sets and bool(sets[OUTCOMES["cost"]].notna().all()),
                       runs=len(points), extra={"engines": {sources[s].base.name: e for s, e in engines.items()}})
    if result.economic:
        analyse(result)
    return result


# --------------------------------------------------------------------------- decision analysis


def analyse(result: PsaResult) -> None:
    """Fill ``result``'s incremental summary, CEAC, EVPI and EVPPI (two or more scenarios)."""
    cost = result.matrix(OUTCOMES["cost"])
    qalys = result.matrix(OUTCOMES["qalys"])
    wtp = result.wtp
    names = result.names
    per_year = referrals_per_year(result.scenarios[0])
    result.summary = summary_table(cost, qalys, names, result.matrix(OUTCOMES["life_years"])
                                   if OUTCOMES["life_years"] in result.sets else None)
    if len(names) < 2 or not len(wtp):
        return
    result.ceac = ceac_table(cost, qalys, wtp, names)
    result.evpi = evpi_table(cost, qalys, wtp, per_year)
    if result.parameters:
        values = {p.key: result.parameter_values(p.key) for p in result.parameters if p.varies}
        result.evppi = evppi_table(cost, qalys, wtp, values, per_year, result.evpi)


def referrals_per_year(scenario: Scenario) -> float:
    """Expected referrals a year of the scenario's arrivals (for the population EVPI)."""
    return scenario.expected_referrals() * 365.0 / scenario.horizon_days


def fingerprint(sources: Sequence[ScenarioSource], *, replications: int, seed: int,
                fixed: Sequence[tuple[str, Any]], version: str) -> dict[str, Any]:
    """What determines a set's results (the number of sets does not: a larger PSA may resume a
    smaller one, whose sets are its first sets)."""
    return {"kind": "psa", "scenario_sha256": [s.sha256() for s in sources],
            "uncertain": [[u.model_dump(mode="json") for u in s.base.uncertain] for s in sources],
            "replications": replications, "seed": seed, "v2vsim": version,
            "fixed": [[p, json.dumps(v, default=str, sort_keys=True)] for p, v in fixed]}
