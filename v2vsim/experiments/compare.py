"""Comparing scenarios on the same virtual patients (common random numbers).

Every scenario runs with the same base seed and replications, so replication *r* of each
scenario sees the same referrals, cohorts, disease clocks and draws for steps of the same name
(spec section 3). Differences are therefore estimated per replication and summarised with the
t-interval of those paired differences, which is much narrower than comparing two independent
means whenever the scenarios' results move together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import metrics
from ..engine.runner import Results, simulate
from ..scenario import Scenario, load_scenario

__all__ = ["Comparison", "check_comparable", "compare"]


@dataclass
class Comparison:
    """Results of several scenarios run on the same seed, and their paired comparison."""

    results: list[Results]
    #: One row per metric and scenario: see :func:`v2vsim.metrics.paired_comparison`.
    table: pd.DataFrame
    seed: int
    replications: int
    level: float = 0.95

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

    def to_dict(self) -> dict[str, Any]:
        """The content of ``comparison.json`` (NaN stays NaN here; the writer makes it null)."""
        return {
            "scenarios": self.names,
            "baseline": self.baseline,
            "replications": self.replications,
            "seed": self.seed,
            "rows": self.table.to_dict(orient="records"),
        }


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


def compare(
    scenarios: Sequence[Scenario | str | os.PathLike[str]],
    replications: int | None = None,
    seed: int | None = None,
    jobs: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
    level: float = 0.95,
    engine: str = "auto",
) -> Comparison:
    """Run every scenario on the same seed and compare each with the first (the baseline).

    ``scenarios`` are :class:`Scenario` objects or paths of scenario files. ``replications``
    and ``seed`` default to the first scenario's and apply to all of them (the pairing needs
    one seed). ``jobs`` is passed to :func:`v2vsim.simulate` (results do not depend on it);
    ``progress(done, total)`` counts replications over all scenarios. Raises ``ValueError``
    for fewer than two scenarios, repeated names or different currencies. ``engine``: as
    :func:`v2vsim.simulate`.
    """
    loaded = [_as_scenario(s) for s in scenarios]
    check_comparable(loaded)
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
    return Comparison(results=results, table=table, seed=base_seed, replications=n, level=level)

