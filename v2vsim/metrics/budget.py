"""Budget impact across replications: the payer's undiscounted cost charged in each calendar
year of the horizon, by cost category and in total, mean with a t-interval across replications;
against a comparator, the paired difference per year (common random numbers).

``Results.budget`` (``replication, year, category, cost``) is the input; a replication, year and
category without a row cost 0. Pure numpy/pandas, like the rest of :mod:`v2vsim.metrics`, so a
results directory can be written without the experiments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

from ..scenario.economics import COST_CATEGORIES
from . import paired_difference, t_interval

__all__ = ["BUDGET_COLUMNS", "budget_impact", "budget_summary"]

#: Columns of a budget table (:func:`budget_summary`; :func:`budget_impact` adds ``scenario``
#: first and the paired ``diff`` columns last).
BUDGET_COLUMNS: Final = ("year", "category", "mean", "ci_low", "ci_high", "n")


def _categories(present: Sequence[str]) -> list[str]:
    return [c for c in COST_CATEGORIES if c in present] + sorted(set(present) - set(COST_CATEGORIES))


def _budget_cube(budget: pd.DataFrame, replications: Sequence[int], years: Sequence[int],
                 categories: Sequence[str]) -> np.ndarray:
    """Cost per (replication, year, category), 0 where the budget has no row."""
    cube = np.zeros((len(replications), len(years), len(categories)))
    if len(budget):
        r = pd.Index(list(replications)).get_indexer(budget["replication"])
        y = pd.Index(list(years)).get_indexer(budget["year"])
        c = pd.Index(list(categories)).get_indexer(budget["category"].astype(str))
        if (r < 0).any():
            raise ValueError("the budget has replications that are not in the run")
        np.add.at(cube, (r, y, c), budget["cost"].to_numpy(dtype=float))
    return cube


def _budget_axes(budgets: Sequence[pd.DataFrame]) -> tuple[list[int], list[str]]:
    years = sorted({int(y) for b in budgets for y in b["year"]})
    categories = _categories(list(dict.fromkeys(str(c) for b in budgets for c in b["category"])))
    return years, categories


def _replications_of(budget: pd.DataFrame, replications: Sequence[int] | None) -> list[int]:
    if replications is not None:
        return sorted(int(r) for r in replications)
    return sorted({int(r) for r in budget["replication"]})


def _summary_rows(cube: np.ndarray, years: Sequence[int], categories: Sequence[str],
                  level: float, base: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Rows per year and category (and ``total``): mean and t-interval across replications,
    and with ``base`` (the comparator's cube) the paired difference."""
    with_total = np.concatenate([cube, cube.sum(axis=2, keepdims=True)], axis=2)
    base_total = None if base is None else np.concatenate([base, base.sum(axis=2, keepdims=True)], axis=2)
    rows = []
    for j, year in enumerate(years):
        for k, category in enumerate([*categories, "total"]):
            mean, low, high, n = t_interval(with_total[:, j, k], level)
            row: dict[str, Any] = {"year": int(year), "category": category, "mean": mean,
                                   "ci_low": low, "ci_high": high, "n": n}
            if base_total is not None:
                d, d_low, d_high, _ = paired_difference(base_total[:, j, k], with_total[:, j, k], level)
                row.update(diff=d, diff_ci_low=d_low, diff_ci_high=d_high)
            rows.append(row)
    return rows


def budget_summary(budget: pd.DataFrame, replications: Sequence[int] | None = None,
                   level: float = 0.95) -> pd.DataFrame:
    """One scenario's budget impact: :data:`BUDGET_COLUMNS`, one row per calendar year and cost
    category (in the order of ``COST_CATEGORIES``, those that appear) plus ``total`` per year.

    ``budget`` is ``Results.budget`` (``replication, year, category, cost``); a replication,
    year and category without a row cost 0 (``replications``, the run's replication numbers,
    counts replications with no cost at all). Means and t-intervals are across replications.
    """
    if budget.empty:
        return pd.DataFrame(columns=list(BUDGET_COLUMNS))
    reps = _replications_of(budget, replications)
    years, categories = _budget_axes([budget])
    cube = _budget_cube(budget, reps, years, categories)
    return pd.DataFrame(_summary_rows(cube, years, categories, level), columns=list(BUDGET_COLUMNS))


def budget_impact(budgets: Mapping[str, pd.DataFrame],
                  replications: Mapping[str, Sequence[int]] | None = None,
                  level: float = 0.95) -> pd.DataFrame:
    """Every scenario's budget per calendar year and category (:func:`budget_summary`, on the
    years and categories of all of them) with ``scenario`` first, and ``diff, diff_ci_low,
    diff_ci_high``: the paired difference from the first scenario per replication (NaN on the
    first scenario's rows). The scenarios must share replication numbers."""
    names = list(budgets)
    if not names:
        raise ValueError("no budgets given")
    columns = ["scenario", *BUDGET_COLUMNS, "diff", "diff_ci_low", "diff_ci_high"]
    if all(b.empty for b in budgets.values()):
        return pd.DataFrame(columns=columns)
    reps = {n: _replications_of(b, None if replications is None else replications.get(n))
            for n, b in budgets.items()}
    if any(reps[n] != reps[names[0]] for n in names[1:]):
        raise ValueError("the scenarios' budgets have different replications; a paired budget "
                         "impact needs the same replications and seed")
    years, categories = _budget_axes(list(budgets.values()))
    cubes = {n: _budget_cube(b, reps[n], years, categories) for n, b in budgets.items()}
    rows = []
    for name in names:
        base = None if name == names[0] else cubes[names[0]]
        for row in _summary_rows(cubes[name], years, categories, level, base):
            rows.append({"scenario": name, **row})
    return pd.DataFrame(rows, columns=columns)
