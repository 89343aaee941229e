"""The waitlist figure: its after-listing shares from a hand-made patients table, the rule that
draws it, and the figure itself for a scenario with a waitlist and one without."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import v2vsim
from v2vsim.outputs.figures.run import run_figures
from v2vsim.outputs.figures.waitlist import MONTH_DAYS, after_listing, has_waitlist

M = MONTH_DAYS
NAN = float("nan")


def _patients() -> pd.DataFrame:
    """Two replications. Replication 0: four listed patients and one never listed; replication
    1: two listed patients."""
    rows = [
        # replication, listed_day, slot_day, outcome, outcome_day
        (0, 10.0, 10.0, "infused", 80.0),            # slot at once (month 0)
        (0, 20.0, 20.0 + 2.5 * M, "infused", 200.0),  # slot after 2.5 months
        (0, 0.0, NAN, "died", 4.0 * M),               # died while listed after 4 months
        (0, 5.0, NAN, "ineligible", 50.0),            # left the list otherwise: neither
        (0, NAN, NAN, "died", 30.0),                  # never listed: not in the denominator
        (1, 0.0, 0.5 * M, "died", 3.0 * M),           # slot after half a month (then died)
        (1, 0.0, NAN, "unresolved", NAN),             # still waiting at the end
    ]
    return pd.DataFrame(rows, columns=["replication", "listed_day", "slot_day", "outcome",
                                       "outcome_day"])


def test_after_listing_matches_hand_computed_shares() -> None:
    shares = after_listing(_patients(), months=np.array([0, 1, 3, 6]))
    got = shares.set_index(["replication", "month"])
    expected = {  # (replication, month): (slotted, died)
        (0, 0): (1 / 4, 0.0), (0, 1): (1 / 4, 0.0), (0, 3): (2 / 4, 0.0), (0, 6): (2 / 4, 1 / 4),
        (1, 0): (0.0, 0.0), (1, 1): (1 / 2, 0.0), (1, 3): (1 / 2, 0.0), (1, 6): (1 / 2, 0.0),
    }
    assert len(got) == len(expected)
    for (rep, month), (slotted, died) in expected.items():
        assert got.loc[(rep, month), "slotted"] == pytest.approx(slotted), (rep, month)
        assert got.loc[(rep, month), "died"] == pytest.approx(died), (rep, month)


def test_after_listing_default_months_cover_the_95th_percentile() -> None:
    months = after_listing(_patients())["month"].unique()
    # Times on the list: 0, 2.5, 4, 45/M, 0.5 months (the one still waiting has none): the
    # 95th percentile is in month 4, so months 0-4.
    assert list(months) == [0, 1, 2, 3, 4]


def test_the_rule_that_draws_the_figure() -> None:
    patients = _patients()
    assert has_waitlist(patients)
    prompt = patients.assign(slot_day=patients["listed_day"])  # every slot free on request
    assert not has_waitlist(prompt)
    assert not has_waitlist(patients.drop(columns=["listed_day"]))  # no sites


@pytest.mark.parametrize(("scenario", "drawn"), [("slot_shortage", True), ("overseas", False)])
def test_waitlist_figure_is_drawn_only_where_a_waitlist_forms(scenario: str, drawn: bool,
                                                              tmp_path: Path) -> None:
    sc = v2vsim.load_scenario(f"scenarios/{scenario}.yaml")
    res = v2vsim.simulate(sc, replications=5, seed=1)
    paths = run_figures(res.patients, res.site_days, res.events, scenario, tmp_path,
                        footer=f"Scenario: {scenario}", scenario=sc)
    written = {p.name for p in paths}
    assert ({"waitlist.png", "waitlist.svg"} <= written) is drawn
    assert "waitlist.png" not in written or (tmp_path / "waitlist.png").stat().st_size > 10_000
    assert "site_utilisation.png" in written
