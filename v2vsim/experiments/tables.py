"""Tables of many points: per-point summaries and per-replication metrics, with parameter columns.

Parameter values are shown as they are when scalars and as JSON text when mappings or lists
(:func:`display_value`); a parameter column is numeric when every value in it is a number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .. import metrics
from .parallel import Point

__all__ = ["display_value", "replications_long", "sweep_table"]


def display_value(value: Any) -> Any:
    """A parameter value for tables: scalars as they are, mappings and lists as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, separators=(", ", ": "))


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
