"""Comparing scenarios on the same virtual patients (common random numbers).

Every scenario runs with the same base seed and replications, so replication *r* of each
scenario sees the same referrals, cohorts, disease clocks and draws for steps of the same name
(spec section 3). Differences are therefore estimated per replication and summarised with the
t-interval of those paired differences, which is much narrower than comparing two independent
means whenever the scenarios' results move together. When every scenario has an ``economics``
section the comparison also holds the incremental cost-effectiveness against the first scenario
and the budget impact (:mod:`.economics`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import metrics
from ..engine.runner import Results, simulate
from ..scenario import Scenario, load_scenario
from .economics import EconomicComparison, economic_comparison

__all__ = ["Comparison", "check_comparable", "check_wtp", "compare", "wtp_thresholds"]


@dataclass
class Comparison:
    """Results of several scenarios run on the same seed, and their paired comparison."""

    results: list[Results]
    #: One row per metric and scenario: see :func:`v2vsim.metrics.paired_comparison`.
    table: pd.DataFrame
    seed: int
    replications: int
    level: float = 0.95
    #: The incremental analysis against the first scenario and the budget impact, when every
    #: scenario has an ``economics`` section (else None).
    economics: EconomicComparison | None = None

    @property
    def names(self) -> list[str]:
        """Scenario names, baseline first."""
        return [r.scenario.name for r in self.results]

    @property
    def baseline(self) -> str:
        """Name of the first scenario, against which differences are taken."""
        return self.names[0]

    @property
    def currency(self) -> str:
        return self.results[0].scenario.currency

    @property
    def rows(self) -> pd.DataFrame:
        """The rows of ``comparison.csv``: :attr:`table`, then the economic rows (ICER, NMB and
        the incremental costs and effects, as differences from the first scenario)."""
        if self.economics is None:
            return self.table
        return pd.concat([self.table, self.economics.comparison_rows()], ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``comparison.json`` (NaN stays NaN here; the writer makes it null)."""
        document: dict[str, Any] = {
            "scenarios": self.names,
            "baseline": self.baseline,
            "replications": self.replications,
            "seed": self.seed,
            "rows": self.table.to_dict(orient="records"),
        }
        if self.economics is not None:
            document["economics"] = self.economics.to_dict()
        return document


def _as_scenario(item: Scenario | str | os.PathLike[str]) -> Scenario:
    return item if isinstance(item, Scenario) else load_scenario(Path(item))


def check_comparable(scenarios: Sequence[Scenario]) -> None:
    """Raise ``ValueError`` if the scenarios cannot be compared side by side."""
    if len(scenarios) < 2:
        raise ValueError("a comparison needs at least two scenarios")
    names = [s.name for s in scenarios]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError("scenario names must be distinct to tell the results apart; repeated: "
                         + ", ".join(f"'{n}'" for n in repeated))
    currencies = sorted({s.currency for s in scenarios})
    if len(currencies) > 1:
        raise ValueError("the scenarios use different currencies (" + ", ".join(currencies)
                         + "), so their costs cannot be compared")


def _has_economics(scenario: Scenario) -> bool:
    return getattr(scenario, "economics", None) is not None


def check_wtp(scenarios: Sequence[Scenario], wtp: Sequence[float] | None) -> None:
    """Raise ``ValueError`` if thresholds are given but a scenario has no economics section, or a
    threshold is not a positive number."""
    if wtp is None:
        return
    without = [s.name for s in scenarios if not _has_economics(s)]
    if without:
        raise ValueError("willingness-to-pay thresholds need an economics section in every "
                         "scenario; none in " + ", ".join(f"'{n}'" for n in without))
    bad = [w for w in wtp if not (math.isfinite(float(w)) and float(w) > 0)]
    if bad:
        raise ValueError(f"willingness-to-pay thresholds must be positive numbers, not {bad[0]!r}")


def wtp_thresholds(scenarios: Sequence[Scenario], wtp: Sequence[float] | None = None) -> list[float]:
    """The thresholds of a comparison: ``wtp`` if given, else every threshold the scenarios'
    economics sections name (ascending, each once)."""
    if wtp is not None:
        return [float(w) for w in wtp]
    found = {float(w) for s in scenarios if _has_economics(s) for w in s.economics.wtp}
    return sorted(found)


def compare(
    scenarios: Sequence[Scenario | str | os.PathLike[str]],
    replications: int | None = None,
    seed: int | None = None,
    jobs: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
    level: float = 0.95,
    engine: str = "auto",
    wtp: Sequence[float] | None = None,
) -> Comparison:
    """Run every scenario on the same seed and compare each with the first (the baseline).

    ``scenarios`` are :class:`Scenario` objects or paths of scenario files. ``replications``
    and ``seed`` default to the first scenario's and apply to all of them (the pairing needs
    one seed). ``jobs`` is passed to :func:`v2vsim.simulate` (results do not depend on it);
    ``progress(done, total)`` counts replications over all scenarios. Raises ``ValueError``
    for fewer than two scenarios, repeated names or different currencies. ``engine``: as
    :func:`v2vsim.simulate`.

    When every scenario has an ``economics`` section, :attr:`Comparison.economics` holds the
    incremental analysis against the first scenario, with net monetary benefit at the
    willingness-to-pay thresholds ``wtp`` (default: those of the scenarios' economics sections),
    and the budget impact. Thresholds given for a scenario without economics raise
    ``ValueError``.
    """
    loaded = [_as_scenario(s) for s in scenarios]
    check_comparable(loaded)
    check_wtp(loaded, wtp)
    n = loaded[0].replications if replications is None else int(replications)
    base_seed = loaded[0].seed if seed is None else int(seed)
    total = n * len(loaded)
    results: list[Results] = []
    for index, scenario in enumerate(loaded):
        done_before = index * n
        step = None if progress is None else (
            lambda done, _total, offset=done_before: progress(offset + done, total))
        results.append(simulate(scenario, replications=n, seed=base_seed, jobs=jobs, progress=step,
                                engine=engine))
    table = metrics.paired_comparison(
        {r.scenario.name: r.replications for r in results}, loaded[0].currency, level)
    economics = None
    if all(_has_economics(s) for s in loaded):
        budgets = {r.scenario.name: getattr(r, "budget", None) for r in results}
        economics = economic_comparison(
            {r.scenario.name: r.replications for r in results},
            {k: v for k, v in budgets.items() if v is not None} if all(
                v is not None for v in budgets.values()) else None,
            wtp_thresholds(loaded, wtp), loaded[0].currency, level)
    return Comparison(results=results, table=table, seed=base_seed, replications=n, level=level,
                      economics=economics)

