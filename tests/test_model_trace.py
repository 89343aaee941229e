"""An exact, hand-worked trace: one slot booked from apheresis, priorities and death clocks.

Pathway (fixed durations): apheresis 1 -> courier 0.5 -> manufacture 4 on site ``dev``
(1 slot, booked from the start of apheresis: ``reserve_from: apheresis``) -> qc 0.5 ->
infusion 0.25. A patient therefore holds the slot for 5.5 days and needs 6.25 days once
granted it.

Cohorts: ``urgent`` (priority 0, dies 6.25 days after referral) and ``routine`` (priority 1,
dies 6.5 days after referral). Referrals on days 0, 1, 2, 3. Seed 41 draws the cohorts
routine, routine, urgent, routine (asserted first: the hand-worked trace depends on it).

By hand:

* P0 (routine, dies at 6.5): slot at 0; apheresis 0-1, courier 1-1.5, manufacture 1.5-5.5
  (slot freed at 5.5), qc 5.5-6, infusion 6-6.25: infused at 6.25, before its death at 6.5.
* P1 (routine, dies at 7.5) queues from day 1; P2 (urgent, dies at 8.25) queues from day 2 but
  is served first (priority 0); P3 (routine, dies at 9.5) queues from day 3 behind P1 (FIFO).
* 5.5: the slot goes to P2: apheresis 5.5-6.5, courier 6.5-7, manufacture from 7.
* 7.5: P1 dies in the queue (waited 6.5 days); its request is withdrawn.
* 8.25: P2 dies during manufacture; the slot is released at that moment and P3, the next in
  the queue, starts apheresis at 8.25 (waited 5.25 days): apheresis 8.25-9.25, courier from 9.25.
* 9.5: P3 dies in the courier step, still holding the booked slot, which is released.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

import v2vsim
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import Scenario, scenario_from_dict

SEED = 41
NAN = math.nan
COSTS = {"apheresis": 100.0, "courier": 10.0, "manufacture": 1000.0, "qc": 20_000.0, "infusion": 300_000.0}
COST_PER_USE = 7.0


def make_scenario(reserve_from: str | None = "apheresis") -> Scenario:
    steps = [
        {"name": "apheresis", "kind": "apheresis", "duration": 1},
        {"name": "courier", "kind": "transport", "duration": 0.5},
        {"name": "manufacture", "kind": "manufacture", "site": "dev", "duration": 4},
        {"name": "qc", "kind": "release", "duration": 0.5},
        {"name": "infusion", "kind": "infusion", "duration": 0.25},
    ]
    for step in steps:
        step["cost"] = COSTS[step["name"]]
    if reserve_from:
        steps[2]["reserve_from"] = reserve_from
    data: dict[str, Any] = {
        "name": "hand-worked trace",
        "horizon_days": 10,
        "arrivals": {"schedule": [0, 1, 2, 3]},
        "cohorts": [
            {"name": "urgent", "share": 0.5, "pathway": "p", "priority": 0, "time_to_death": 6.25},
            {"name": "routine", "share": 0.5, "pathway": "p", "priority": 1,
             "time_to_death": {"dist": "fixed", "value": 6.5}, "time_to_ineligible": "never"},
        ],
        "sites": {"dev": {"slots": 1, "cost_per_use": COST_PER_USE}},
        "pathways": {"p": {"steps": steps}},
    }
    return scenario_from_dict(data)


def test_hand_worked_trace() -> None:
    res = v2vsim.simulate(make_scenario(), replications=1, seed=SEED)
    p = res.patients
    assert p["cohort"].tolist() == ["routine", "routine", "urgent", "routine"]

    # (patient, step, attempt, ready_day, start_day, end_day, status)
    expected_events = [
        (0, "apheresis", 1, 0.0, 0.0, 1.0, "done"),
        (0, "courier", 1, 1.0, 1.0, 1.5, "done"),
        (0, "manufacture", 1, 1.5, 1.5, 5.5, "done"),
        (0, "qc", 1, 5.5, 5.5, 6.0, "done"),
        (0, "infusion", 1, 6.0, 6.0, 6.25, "done"),
        (1, "apheresis", 1, 1.0, 7.5, 7.5, "died"),  # died in the queue
        (2, "apheresis", 1, 2.0, 5.5, 6.5, "done"),  # jumped the queue (priority 0)
        (2, "courier", 1, 6.5, 6.5, 7.0, "done"),
        (2, "manufacture", 1, 7.0, 7.0, 8.25, "died"),  # died holding the slot
        (3, "apheresis", 1, 3.0, 8.25, 9.25, "done"),  # granted the slot as P2 died
        (3, "courier", 1, 9.25, 9.25, 9.5, "died"),
    ]
    ev = res.events.sort_values(["patient", "start_day"], kind="stable")
    got = list(ev[["patient", "step", "attempt", "ready_day", "start_day", "end_day", "status"]]
               .itertuples(index=False, name=None))
    assert got == expected_events
    assert (res.events["replication"] == 0).all()
    assert res.events.groupby("patient")["cohort"].first().tolist() == p["cohort"].tolist()

    site_cost = COSTS["manufacture"] + COST_PER_USE
    expected = pd.DataFrame({
        "patient": [0, 1, 2, 3],
        "referral_day": [0.0, 1.0, 2.0, 3.0],
        "apheresis_day": [0.0, NAN, 5.5, 8.25],
        "manufacture_start_day": [1.5, NAN, 7.0, NAN],
        "release_day": [6.0, NAN, NAN, NAN],
        "infusion_day": [6.25, NAN, NAN, NAN],
        "outcome": ["infused", "died", "died", "died"],
        "outcome_step": ["infusion", "apheresis", "manufacture", "courier"],
        "outcome_day": [6.25, 7.5, 8.25, 9.5],
        "vein_to_vein_days": [6.25, NAN, NAN, NAN],
        "referral_to_infusion_days": [6.25, NAN, NAN, NAN],
        "queue_wait_days": [0.0, 6.5, 3.5, 5.25],
        "manufacturing_attempts": [1, 0, 1, 0],
        "cost": [sum(COSTS.values()) + COST_PER_USE, 0.0,
                 COSTS["apheresis"] + COSTS["courier"] + site_cost, COSTS["apheresis"] + COSTS["courier"]],
    })
    got_p = p[list(expected.columns)].assign(outcome=p["outcome"].astype(str))
    pd.testing.assert_frame_equal(got_p, expected, check_dtype=False)

    reps = res.replications.iloc[0]
    assert (reps["referred"], reps["infused"], reps["died"], reps["unresolved"]) == (4, 1, 3, 0)
    assert reps["end_day"] == 10.0  # the horizon (every outcome is before it)
    # The slot is held without a gap from 0 to 9.5: busy 9.5 slot-days over a 10-day run.
    assert reps["utilization_dev"] == 0.95
    assert reps["queue_wait_mean"] == (0 + 6.5 + 3.5 + 5.25) / 4


def _settled(timeline: np.ndarray) -> list[tuple[float, float, float]]:
    """The state after the last change at each instant: (time, in_use, queue)."""
    out: dict[float, tuple[float, float]] = {}
    for t, in_use, queue in timeline.tolist():
        out[t] = (in_use, queue)
    return [(t, *v) for t, v in out.items()]


def test_hand_worked_site_timeline() -> None:
    out = run_replication(make_scenario(), SEED, 0, trace_patients=4)
    assert _settled(out.site_timeline["dev"]) == [
        (0.0, 1, 0),   # P0 granted at once
        (1.0, 1, 1),   # P1 queues
        (2.0, 1, 2),   # P2 queues
        (3.0, 1, 3),   # P3 queues
        (5.5, 1, 2),   # P0's manufacture ends; P2 granted at the same instant
        (7.5, 1, 1),   # P1 dies in the queue
        (8.25, 1, 0),  # P2 dies; P3 granted at the same instant
        (9.5, 0, 0),   # P3 dies; the slot is free
    ]
    # Never more holders than slots, at any row (not only the settled ones).
    assert (out.site_timeline["dev"][:, 1] <= 1).all()
    assert out.site_busy_slot_days == {"dev": 9.5}

    # Daily profile: mean slots held and queue length per day, by hand from the timeline.
    res = v2vsim.simulate(make_scenario(), replications=1, seed=SEED)
    days = res.site_days
    assert days["day"].tolist() == list(range(10))
    assert days["in_use"].tolist() == [1.0] * 9 + [0.5]
    assert days["queue"].tolist() == [0, 1, 2, 3, 3, 2.5, 2, 1.5, 0.25, 0]


def test_without_reserve_from_the_slot_is_taken_at_manufacture() -> None:
    # Same patients without reserve_from: apheresis and courier need no slot, so everybody is
    # collected at referral; the slot queue forms in front of manufacture (4 days each).
    res = v2vsim.simulate(make_scenario(reserve_from=None), replications=1, seed=SEED)
    p = res.patients
    # P0: aph 0-1, courier 1-1.5, manufacture 1.5-5.5, qc 5.5-6, infusion 6-6.25 (infused).
    # P1 (dies 7.5) reaches manufacture at 2.5 and queues; P2 (urgent, dies 8.25) at 3.5, served
    # first at 5.5, dies in manufacture at 8.25; P1 died in the queue at 7.5; P3 (dies 9.5)
    # reaches manufacture at 4.5, is granted the slot at 8.25 and dies in manufacture at 9.5.
    assert p["outcome"].astype(str).tolist() == ["infused", "died", "died", "died"]
    assert p["outcome_step"].tolist() == ["infusion", "manufacture", "manufacture", "manufacture"]
    assert p["apheresis_day"].tolist() == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_array_equal(p["manufacture_start_day"], [1.5, NAN, 5.5, 8.25])
    assert p["outcome_day"].tolist() == [6.25, 7.5, 8.25, 9.5]
    assert p["queue_wait_days"].tolist() == [0.0, 5.0, 2.0, 3.75]
    assert res.replications.loc[0, "utilization_dev"] == (9.5 - 1.5) / 10
