"""Experiments over many variants of one scenario: comparisons, sweeps, sensitivity, capacity, precision.

Layers, one way: a *variant* is the scenario file with ``--set PATH=VALUE`` overrides applied to
its YAML tree and validated like the file itself (:class:`ScenarioSource`, in
:mod:`v2vsim.scenario.overrides`); a *point* is one variant to simulate (:mod:`.parallel`);
:func:`run_points` runs many points' replications in one pool of workers (or on a Dask cluster),
optionally adding replications until a precision is reached (:class:`Precision`, in
:mod:`.precision`), and hands each finished point to a callback (which saves it, so long runs can
be resumed: :class:`PointStore`, in :mod:`.checkpoints`). Sweeps (:mod:`.designs`,
:mod:`.tables`), sensitivity analyses (:mod:`.sensitivity`) and capacity searches
(:mod:`.capacity`) are designs of points plus an analysis of their per-replication metrics.
Comparisons of whole scenarios are in :mod:`.compare`.

Every point is run with the same base seed and replication numbers, so points differ only by
their parameters (common random numbers), and results never depend on the number of workers.
"""

from ..scenario.errors import did_you_mean as _did_you_mean  # noqa: F401  (the cli's name for it)
from ..scenario.overrides import (
    ScenarioSource,
    load_with_overrides,
    parse_assignment,
    parse_sets,
    parse_value,
    split_values,
)
from .capacity import CapacityResult, Target, capacity_search, known_metrics, parse_target
from .checkpoints import PointStore, StoreError, point_identity, run_stored
from .designs import grid_points, lhs_points, parse_param, parse_range
from .parallel import (
    Point,
    Progress,
    executor_for,
    make_points,
    replications_for_precision,
    run_points,
    simulate_to_precision,
)
from .precision import PRECISION_METRICS, Precision, PrecisionStatus, precision_status
from .sensitivity import SensitivityResult, sensitivity_analysis
from .tables import display_value, replications_long, sweep_table

__all__ = [
    "PRECISION_METRICS",
    "CapacityResult",
    "Point",
    "PointStore",
    "Precision",
    "PrecisionStatus",
    "Progress",
    "ScenarioSource",
    "SensitivityResult",
    "StoreError",
    "Target",
    "capacity_search",
    "display_value",
    "executor_for",
    "grid_points",
    "known_metrics",
    "lhs_points",
    "load_with_overrides",
    "make_points",
    "parse_assignment",
    "parse_param",
    "parse_range",
    "parse_sets",
    "parse_target",
    "parse_value",
    "point_identity",
    "precision_status",
    "replications_for_precision",
    "replications_long",
    "run_points",
    "run_stored",
    "sensitivity_analysis",
    "simulate_to_precision",
    "split_values",
    "sweep_table",
]
