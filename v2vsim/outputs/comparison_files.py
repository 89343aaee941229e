"""A comparison's tables on disk: ``comparison.csv``, ``comparison.json`` and, with economics,
``budget.csv``; and a run's ``budget.csv``.

The comparison itself (paired differences on common random numbers, the incremental
cost-effectiveness and the budget impact) is computed in :mod:`v2vsim.experiments`; this module
only writes it, NaN as JSON ``null``. ``comparison.csv`` holds the paired table of every metric
and, when the scenarios have economics sections, the economic rows after it: incremental costs,
life-years and QALYs, the ICERs (``icer_per_qaly``, ``icer_per_life_year``; an unbounded
interval is ``-inf`` to ``inf``) and net monetary benefit (``nmb_<threshold>``), as differences
from the first scenario in the ``diff`` columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from .results_dir import write_json

__all__ = ["write_budget", "write_comparison_files"]


class Comparison(Protocol):
    """What is written of a :class:`v2vsim.experiments.compare.Comparison` (typed by shape, so
    that outputs never import experiments)."""

    table: pd.DataFrame

    def to_dict(self) -> dict[str, Any]: ...


def write_budget(budget: pd.DataFrame, directory: Path) -> Path:
    """``budget.csv``: the budget impact table (mean cost per calendar year and category with
    its interval across replications; a comparison's also has the paired difference from the
    first scenario)."""
    path = Path(directory) / "budget.csv"
    budget.to_csv(path, index=False)
    return path


def write_comparison_files(comparison: Comparison, directory: Path) -> list[Path]:
    """``comparison.csv`` and ``comparison.json`` in ``directory``, and ``budget.csv`` when the
    comparison has a budget impact; returns their paths."""
    directory = Path(directory)
    csv_path = directory / "comparison.csv"
    json_path = directory / "comparison.json"
    rows = getattr(comparison, "rows", comparison.table)
    rows.to_csv(csv_path, index=False)
    write_json(json_path, comparison.to_dict())
    written = [csv_path, json_path]
    economics = getattr(comparison, "economics", None)
    if economics is not None and len(economics.budget):
        written.append(write_budget(economics.budget, directory))
    return written
