"""Overloaded systems: when demand exceeds capacity the run still terminates (drain limit),
reports unresolved patients and warns naming the site, its utilisation and its queue growth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from test_cli import SMALL, invoke

def test_overloaded_system_terminates_and_warns(tmp_path: Path) -> None:
    over = tmp_path / "over.yaml"
    over.write_text(SMALL.replace("rate_per_year: 40", "rate_per_year: 200")
                    .replace("slots: 2", "slots: 1").replace("horizon_days: 200",
                                                              "horizon_days: 400\ndrain_days: 30")
                    .replace(", time_to_death: {dist: exponential, mean: 300}", ""))
    result = invoke("run", over, "-o", tmp_path / "o", "--no-figures", "-n", "2")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "site 'dev' is overloaded: utilisation" in text and "its queue grew from" in text
    assert "were still in the pathway" in text and "'unresolved'" in text
    reps = pd.read_csv(tmp_path / "o" / "replications.csv")
    assert (reps["unresolved"] > 0).all()
    assert (reps[["infused", "unresolved"]].sum(axis=1) == reps["referred"]).all()


def test_allocation_bound_waitlist_is_flagged_although_slots_idle(tmp_path: Path) -> None:
    """Two starts a month against ~4 referrals a month: the queue grows at low utilisation."""
    shortage = tmp_path / "shortage.yaml"
    shortage.write_text(SMALL.replace("rate_per_year: 40", "rate_per_year: 48")
                        .replace("slots: 2, cost_per_use: 100", "slots: 5, starts_per_month: 2")
                        .replace("horizon_days: 200", "horizon_days: 730\ndrain_days: 60")
                        .replace(", time_to_death: {dist: exponential, mean: 300}", ""))
    result = invoke("run", shortage, "-o", tmp_path / "o", "--no-figures", "-n", "2")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "site 'dev' is overloaded" in text and "its queue grew from" in text
    reps = pd.read_csv(tmp_path / "o" / "replications.csv")
    assert (reps["utilization_dev"] < 0.5).all()  # the allocation binds, not the slots
