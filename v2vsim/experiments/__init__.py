"""Experiments over scenarios: comparisons, overrides, sweeps, sensitivity, capacity, precision."""

from .core import *  # noqa: F401,F403
from .core import __all__ as _core_all
from .core import (Progress, StoreError, _did_you_mean, display_value, known_metrics, make_points,
                   parse_range, replications_long, run_stored)

__all__ = [*_core_all, "Progress", "StoreError", "display_value", "known_metrics", "make_points",
           "parse_range", "replications_long", "run_stored"]
