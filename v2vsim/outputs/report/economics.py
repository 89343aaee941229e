"""The report's health economics: the incremental analysis of a comparison (``comparison.json``'s
``economics``: incremental costs, life-years and QALYs, ICERs, net monetary benefit, dominance in
words) and the budget impact (``budget.csv``), as plain data for the template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .load import CompareDir, RunDir
from .table import _MINUS, _finite

__all__ = ["ECONOMIC_PREFIXES", "budget_context", "drop_economic_rows", "economics_context"]

#: Metrics of ``comparison.csv`` that are economic rows (shown in their own table).
ECONOMIC_PREFIXES = ("incremental_", "icer_", "nmb_")

#: Measures of the incremental table, in order: (measure, label, kind of number).
_MEASURES = (
    ("incremental_cost_discounted", "Incremental cost, discounted", "money"),
    ("incremental_cost", "Incremental cost, undiscounted", "money"),
    ("incremental_life_years_discounted", "Incremental life-years, discounted", "effect"),
    ("incremental_life_years", "Incremental life-years, undiscounted", "effect"),
    ("incremental_qalys_discounted", "Incremental QALYs, discounted", "effect"),
    ("incremental_qalys", "Incremental QALYs, undiscounted", "effect"),
    ("icer_per_qaly", "ICER: discounted cost per QALY gained", "ratio"),
    ("icer_per_life_year", "ICER: discounted cost per life-year gained", "ratio"),
)


def _number(value: Any, kind: str, signed: bool = True) -> str:
    if not _finite(value):
        return "–"
    v = float(value)
    text = f"{abs(v):,.0f}" if kind in ("money", "ratio") else f"{abs(v):,.3f}"
    if kind == "ratio" or not signed:
        return (_MINUS if v < 0 else "") + text
    return ("+" if v > 0 else _MINUS if v < 0 else "±") + text


def _cell(row: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    if row is None:
        return {"value": "–", "ci": "", "excludes_zero": False}
    note = str(row.get("note") or "")
    low, high = row.get("ci_low"), row.get("ci_high")
    if note.startswith("unbounded"):
        ci = "unbounded (" + note.removeprefix("unbounded: ") + ")"
    elif _finite(low) and _finite(high):
        ci = f"{_number(low, kind)} to {_number(high, kind)}"
    else:
        ci = ""
    clear = kind != "ratio" and _finite(low) and _finite(high) and (float(low) > 0 or float(high) < 0)
    return {"value": _number(row.get("estimate"), kind), "ci": ci, "excludes_zero": clear}


def economics_context(compare: CompareDir | None, names: Sequence[str]) -> dict[str, Any] | None:
    """The incremental analysis of a comparison directory, or None without one."""
    info = None if compare is None else compare.economics
    if not info or not isinstance(info.get("rows"), list):
        return None
    rows = [r for r in info["rows"] if isinstance(r, Mapping)]
    comparator = str(info.get("comparator") or (names[0] if names else ""))
    scenarios = [n for n in names if n != comparator and any(r.get("scenario") == n for r in rows)]
    scenarios += [str(s) for s in dict.fromkeys(r.get("scenario") for r in rows)
                  if s is not None and str(s) not in scenarios and str(s) != comparator]
    currency = str(info.get("currency") or "")

    def find(scenario: str, measure: str, wtp: float | None = None) -> Mapping[str, Any] | None:
        for r in rows:
            if r.get("scenario") == scenario and r.get("measure") == measure and (
                    wtp is None or (_finite(r.get("wtp")) and float(r["wtp"]) == wtp)):
                return r
        return None

    quadrants = info.get("quadrants") if isinstance(info.get("quadrants"), Mapping) else {}

    def ratio_cell(scenario: str, measure: str) -> dict[str, Any]:
        cell = _cell(find(scenario, measure), "ratio")
        quadrant = str(quadrants.get(scenario, ""))
        if quadrant in ("dominant", "dominated"):
            # A negative ICER does not rank options: say which way it goes instead.
            cell["ci"] = f"ratio {cell['value']}" + (f"; {cell['ci']}" if cell["ci"] else "")
            cell["value"] = quadrant
        return cell

    table = []
    for measure, label, kind in _MEASURES:
        unit = (f"{currency} per referred patient" if kind == "money"
                else "per referred patient" if kind == "effect"
                else f"{currency} per {'QALY' if measure.endswith('qaly') else 'life-year'}")
        table.append({"label": label, "unit": unit.strip(),
                      "cells": [ratio_cell(s, measure) if kind == "ratio" else _cell(find(s, measure), kind)
                                for s in scenarios]})
    thresholds = sorted({float(r["wtp"]) for r in rows if r.get("measure") == "nmb" and _finite(r.get("wtp"))})
    for wtp in thresholds:
        table.append({"label": f"Net monetary benefit at {wtp:,.0f} {currency} per QALY".replace("  ", " "),
                      "unit": f"{currency} per referred patient".strip(),
                      "cells": [_cell(find(s, "nmb", wtp), "money") for s in scenarios]})
    statements = info.get("statements") if isinstance(info.get("statements"), Mapping) else {}
    index = {n: i for i, n in enumerate(names)}
    return {
        "comparator": comparator,
        "comparator_index": index.get(comparator, 0),
        "currency": currency,
        "scenarios": [{"name": s, "index": index.get(s, k + 1)} for k, s in enumerate(scenarios)],
        "rows": table,
        "statements": [{"scenario": s, "index": index.get(s, k + 1), "text": str(statements.get(s, ""))}
                       for k, s in enumerate(scenarios) if statements.get(s)],
        "wtp": [f"{w:,.0f}" for w in thresholds],
    }


def _money_cell(mean: Any, low: Any, high: Any, signed: bool = False) -> dict[str, str]:
    ci = f"{_number(low, 'money', signed)} to {_number(high, 'money', signed)}" \
        if _finite(low) and _finite(high) else ""
    return {"value": _number(mean, "money", signed), "ci": ci}


def budget_context(compare: CompareDir | None, runs: Sequence[RunDir],
                   names: Sequence[str]) -> dict[str, Any] | None:
    """The budget impact table: per calendar year, each scenario's total cost charged (mean and
    interval across replications) and, for a comparison, the paired difference from the first
    scenario; None when no budget was written."""
    frames: dict[str, pd.DataFrame] = {}
    paired = False
    if compare is not None and compare.budget is not None and "scenario" in compare.budget:
        budget = compare.budget.copy()
        budget["scenario"] = budget["scenario"].astype(str)
        frames = {str(n): g for n, g in budget.groupby("scenario", sort=False)}
        paired = {"diff", "diff_ci_low", "diff_ci_high"} <= set(budget.columns)
    else:
        for run, name in zip(runs, names):
            if run.budget is not None:
                frames[name] = run.budget
    if not frames:
        return None
    shown = [n for n in names if n in frames] + [n for n in frames if n not in names]
    totals = {n: f[f["category"].astype(str) == "total"].set_index("year") for n, f in frames.items()}
    years = sorted({int(y) for t in totals.values() for y in t.index})
    rows = []
    for year in years:
        cells, diffs = [], []
        for k, name in enumerate(shown):
            t = totals[name]
            if year not in t.index:
                cells.append({"value": "–", "ci": ""})
                if paired and k:
                    diffs.append({"value": "–", "ci": ""})
                continue
            r = t.loc[year]
            cells.append(_money_cell(r["mean"], r["ci_low"], r["ci_high"]))
            if paired and k:
                diffs.append(_money_cell(r["diff"], r["diff_ci_low"], r["diff_ci_high"], True))
        rows.append({"year": str(year), "cells": cells, "diffs": diffs})
    sums = [float(totals[n]["mean"].sum()) for n in shown]
    total = {"cells": [{"value": _number(v, "money", False), "ci": ""} for v in sums],
             "diffs": [{"value": _number(v - sums[0], "money"), "ci": ""} for v in sums[1:]] if paired else []}
    currency = next((r.currency for r in runs if r.currency), "")
    index = {n: i for i, n in enumerate(names)}
    return {"scenarios": [{"name": n, "index": index.get(n, i)} for i, n in enumerate(shown)],
            "diff_columns": [{"name": n, "index": index.get(n, i + 1)} for i, n in enumerate(shown[1:])] if paired else [],
            "paired": paired, "rows": rows, "total": total, "currency": currency,
            "years": f"{years[0]}–{years[-1]}" if len(years) > 1 else (str(years[0]) if years else "")}


def drop_economic_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison table without its economic rows (they have a table of their own)."""
    if table.empty:
        return table
    keep = ~table["metric"].astype(str).str.startswith(ECONOMIC_PREFIXES)
    return table[keep] if not keep.all() else table
