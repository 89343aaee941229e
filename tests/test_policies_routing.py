"""Routing with overflow: a cohort's pathway rule picks the primary or the fallback at referral.

The primary's booking site is the site of the first slot its pathway takes. ``waiting_more_than:
N`` sends a patient to the fallback when more than N patients wait for that site;
``expected_wait_more_than_days: D`` when the estimate exceeds D days: 0 if a slot can be taken
now, otherwise (waiting + 1) / (uses per day) plus the rest of a closure, where uses per day =
min(slots / mean hold, starts_per_month / 30.4375, starts_per_week / 7, starts_per_day x session
days a week / 7) and the mean hold is the sum of the mean durations from the booking step through
the step on the site (the daily allocation's case is in ``test_policies_apheresis.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from ruamel.yaml import YAML

import v2vsim
from v2vsim.scenario import Scenario, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def make(when: dict[str, Any], referrals: list[float], near: dict[str, Any] | None = None) -> Scenario:
    return scenario_from_dict({
        "name": "routing",
        "horizon_days": 60,
        "arrivals": {"schedule": referrals},
        "cohorts": [{"name": "all", "pathway": {"primary": "near", "fallback": "far", "when": when}}],
        "sites": {"dev": near or {"slots": 1}, "plant": {"slots": 100}},
        "pathways": {
            "near": {"steps": [
                {"name": "manufacture", "kind": "manufacture", "site": "dev", "duration": 10},
                {"name": "infusion", "kind": "infusion", "duration": 0},
            ]},
            "far": {"steps": [
                {"name": "ship", "kind": "transport", "duration": 5},
                {"name": "manufacture", "kind": "manufacture", "site": "plant", "duration": 10},
                {"name": "infusion", "kind": "infusion", "duration": 0},
            ]},
        },
    })


def test_waiting_more_than_hand_worked_trace() -> None:
    # One device, manufacture 10 days; overflow when more than 0 patients wait.
    #   P0 (0): nobody waits -> near, 0-10.   P1 (1): nobody waits (P0 holds the device) ->
    #   near, waits to 10, 10-20.   P2 (2), P3 (3): P1 waits -> far: ship 5, manufacture 10.
    #   P4 (12): P1 got the device at 10, nobody waits -> near, waits to 20, 20-30.
    res = v2vsim.simulate(make({"waiting_more_than": 0}, [0, 1, 2, 3, 12]), replications=1, seed=1)
    p = res.patients
    assert p["pathway"].tolist() == ["near", "near", "far", "far", "near"]
    assert p["rerouted"].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
    assert p["manufacture_start_day"].tolist() == [0.0, 10.0, 7.0, 8.0, 20.0]
    assert p["infusion_day"].tolist() == [10.0, 20.0, 17.0, 18.0, 30.0]
    assert p["queue_wait_days"].tolist() == [0.0, 9.0, 0.0, 0.0, 8.0]
    assert res.replications.loc[0, "rerouted"] == 2
    # The step names of the pathway actually taken.
    assert p["outcome_step"].tolist() == ["infusion"] * 5
    assert res.events.loc[res.events["patient"] == 2, "step"].tolist() == ["ship", "manufacture", "infusion"]


def test_expected_wait_with_slots() -> None:
    # Two devices, mean hold 10 days: the estimate is 0 while a device is free, then
    # (waiting + 1) x 10 / 2: P2 (2) 5 days, P3 (3) 10 days, P4 (4) 15 days > 12 -> far.
    res = v2vsim.simulate(make({"expected_wait_more_than_days": 12}, [0, 1, 2, 3, 4], {"slots": 2}),
                          replications=1, seed=1)
    assert res.patients["pathway"].tolist() == ["near", "near", "near", "near", "far"]


def test_expected_wait_with_an_allocation_and_a_closure() -> None:
    # Five devices but one start a week (uses per day = min(5 / 10, 1 / 7) = 1/7), closed on
    # days 3-4 ([3, 5)). P0 (0) takes the week's start -> near. P1 (1): no start left this
    # week, nobody waiting: (0 + 1) x 7 = 7 <= 10 -> near, starts Monday 7. P2 (3.5): closed,
    # P1 waiting: (1 + 1) x 7 + (5 - 3.5) = 15.5 > 10 -> far.
    near = {"slots": 5, "starts_per_week": 1, "closures": [{"from_day": 3, "to_day": 4}]}
    res = v2vsim.simulate(make({"expected_wait_more_than_days": 10}, [0, 1, 3.5], near), replications=1, seed=1)
    p = res.patients
    assert p["pathway"].tolist() == ["near", "near", "far"]
    assert p["manufacture_start_day"].tolist() == [0.0, 7.0, 8.5]


def load_yaml(name: str) -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load((SCENARIOS / name).read_text(encoding="utf-8"))


def test_a_rule_that_never_fires_reproduces_the_primary_scenario() -> None:
    # hybrid.yaml with an unreachable threshold is local.yaml patient by patient (common random
    # numbers: the rule only picks a pathway; every draw is read by patient index).
    data = load_yaml("hybrid.yaml")
    for cohort in data["cohorts"]:
        cohort["pathway"]["when"] = {"waiting_more_than": 1_000_000}
    never = v2vsim.simulate(scenario_from_dict(data), replications=3, seed=8)
    local = v2vsim.simulate(v2vsim.load_scenario(SCENARIOS / "local.yaml"), replications=3, seed=8)
    columns = [c for c in local.patients.columns if c != "rerouted"]
    pd.testing.assert_frame_equal(never.patients[columns], local.patients[columns])
    assert (never.patients["rerouted"] == 0).all() and local.patients["rerouted"].isna().all()
    assert never.replications["utilization_commercial_plant"].eq(0).all()


def test_hybrid_overflows_and_pairs_with_local() -> None:
    # The bundled hybrid scenario: some patients go overseas (recorded in `pathway`), the same
    # patients (referral days, cohorts) as local.yaml, and overflow shortens the local queue.
    hybrid = v2vsim.simulate(v2vsim.load_scenario(SCENARIOS / "hybrid.yaml"), replications=6, seed=3)
    local = v2vsim.simulate(v2vsim.load_scenario(SCENARIOS / "local.yaml"), replications=6, seed=3)
    h, lo = hybrid.patients, local.patients
    assert h["referral_day"].equals(lo["referral_day"]) and h["cohort"].equals(lo["cohort"])
    assert set(h["pathway"]) == {"local", "overseas"}
    assert ((h["pathway"] == "overseas") == (h["rerouted"] == 1)).all()
    assert (hybrid.replications["rerouted"] == h.groupby("replication")["rerouted"].sum().to_numpy()).all()
    # Patients who stayed local never waited longer than in local.yaml on average.
    assert hybrid.replications["queue_wait_mean"].mean() < local.replications["queue_wait_mean"].mean()
    # The overseas step names appear only for patients who were rerouted.
    ev = hybrid.events
    far = set(ev.loc[ev["step"] == "flight_to_plant", "patient"])
    assert far <= set(h.loc[(h["replication"] == 0) & (h["pathway"] == "overseas"), "patient"])
