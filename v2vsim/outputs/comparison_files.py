"""A comparison's tables on disk: ``comparison.csv`` and ``comparison.json``.

The comparison itself (paired differences on common random numbers) is computed in
:mod:`v2vsim.experiments.compare`; this module only writes it, NaN as JSON ``null``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from .results_dir import write_json

__all__ = ["write_comparison_files"]


class Comparison(Protocol):
    """What is written of a :class:`v2vsim.experiments.compare.Comparison` (typed by shape, so
    that outputs never import experiments)."""

    table: pd.DataFrame

    def to_dict(self) -> dict[str, Any]: ...


def write_comparison_files(comparison: Comparison, directory: Path) -> list[Path]:
    """``comparison.csv`` and ``comparison.json`` in ``directory``; returns their paths."""
    directory = Path(directory)
    csv_path = directory / "comparison.csv"
    json_path = directory / "comparison.json"
    comparison.table.to_csv(csv_path, index=False)
    write_json(json_path, comparison.to_dict())
    return [csv_path, json_path]
