"""Closures and capacity schedules of a site, against hand-worked traces.

Day 0 is 2025-01-06 (a Monday). A closure ``{from: D1, to: D2}`` closes whole days D1..D2
inclusive, i.e. ``[day(D1), day(D2) + 1)``: no slot of the site is taken and no step on the
site begins then; uses under way go on. A slot schedule changes capacity at midnight of its
days; a reduction evicts nobody.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import v2vsim
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import Scenario, scenario_from_dict

EVENT_COLUMNS = ["patient", "step", "attempt", "ready_day", "start_day", "end_day", "status"]


def make(site: dict[str, Any], steps: list[dict[str, Any]], referrals: list[float],
         horizon: float = 40, cohort: dict[str, Any] | None = None) -> Scenario:
    return scenario_from_dict({
        "name": "calendar",
        "horizon_days": horizon,
        "arrivals": {"schedule": referrals},
        "cohorts": [{"name": "all", "pathway": "p", **(cohort or {})}],
        "sites": {"lab": site},
        "pathways": {"p": {"steps": steps}},
    })


def events(res: v2vsim.Results) -> list[tuple[Any, ...]]:
    ev = res.events.sort_values(["patient", "start_day"], kind="stable")
    return list(ev[EVENT_COLUMNS].itertuples(index=False, name=None))


# screen 0.5 d, then manufacture 3 d on the site, the slot booked from the screen step.
STEPS = [
    {"name": "screen", "kind": "screen", "duration": 0.5},
    {"name": "manufacture", "kind": "manufacture", "site": "lab", "reserve_from": "screen", "duration": 3},
    {"name": "infusion", "kind": "infusion", "duration": 0},
]


def test_closures_hand_worked_trace() -> None:
    # Two slots; closed 2025-01-08..09 (days [2, 4), dates) and day 10 ([10, 11), day numbers).
    #   P0 (1.8): takes a slot while open; screen 1.8-2.3; manufacture may not begin while the
    #     site is closed: waits to 4, 4-7; infused 7 (waited 1.7).
    #   P1 (2.5): the site is closed, so no slot is taken: queues to 4 (the second slot),
    #     screen 4-4.5, manufacture 4.5-7.5 (waited 1.5).
    #   P2 (9.0): open, takes a slot; screen 9-9.5; manufacture 9.5-12.5 runs through the
    #     closure of day 10 (a use under way goes on).
    #   P3 (10.5): closed: queues to 11, screen 11-11.5, manufacture 11.5-14.5 (waited 0.5).
    site = {"slots": 2, "closures": [{"from": "2025-01-08", "to": "2025-01-09"}, {"from_day": 10, "to_day": 10}]}
    res = v2vsim.simulate(make(site, STEPS, [1.8, 2.5, 9.0, 10.5]), replications=1, seed=1)
    assert events(res) == [
        (0, "screen", 1, 1.8, 1.8, 2.3, "done"),
        (0, "manufacture", 1, 2.3, 4.0, 7.0, "done"),
        (0, "infusion", 1, 7.0, 7.0, 7.0, "done"),
        (1, "screen", 1, 2.5, 4.0, 4.5, "done"),
        (1, "manufacture", 1, 4.5, 4.5, 7.5, "done"),
        (1, "infusion", 1, 7.5, 7.5, 7.5, "done"),
        (2, "screen", 1, 9.0, 9.0, 9.5, "done"),
        (2, "manufacture", 1, 9.5, 9.5, 12.5, "done"),
        (2, "infusion", 1, 12.5, 12.5, 12.5, "done"),
        (3, "screen", 1, 10.5, 11.0, 11.5, "done"),
        (3, "manufacture", 1, 11.5, 11.5, 14.5, "done"),
        (3, "infusion", 1, 14.5, 14.5, 14.5, "done"),
    ]
    p = res.patients
    np.testing.assert_allclose(p["queue_wait_days"], [1.7, 1.5, 0.0, 0.5], rtol=0, atol=1e-12)
    assert p["infusion_day"].tolist() == [7.0, 7.5, 12.5, 14.5]


def test_closure_with_weekdays_and_death() -> None:
    # Site open Mon-Fri and closed 2025-01-13..15 (days [7, 10), Monday to Wednesday).
    #   P0 referred Saturday 5.5: weekend, then the closure: manufacture begins Thursday 10
    #     (the first instant that is a weekday and outside the closure).
    #   P1 referred Sunday 6.0: the same.
    steps = [
        {"name": "manufacture", "kind": "manufacture", "site": "lab", "duration": 1},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    site = {"slots": 5, "starts_on": ["mon", "tue", "wed", "thu", "fri"],
            "closures": [{"from": "2025-01-13", "to": "2025-01-15"}]}
    res = v2vsim.simulate(make(site, steps, [5.5, 6.0]), replications=1, seed=1)
    assert res.patients["manufacture_start_day"].tolist() == [10.0, 10.0]
    assert res.patients["queue_wait_days"].tolist() == [4.5, 4.0]
    # With death 2.5 days after referral both die waiting for the site to reopen, at 8.0 and 8.5.
    res = v2vsim.simulate(make(site, steps, [5.5, 6.0], cohort={"time_to_death": 2.5}), replications=1, seed=1)
    p = res.patients
    assert p["outcome"].astype(str).tolist() == ["died", "died"]
    assert p["outcome_day"].tolist() == [8.0, 8.5]
    assert p["queue_wait_days"].tolist() == [2.5, 2.5]


def test_capacity_schedule_hand_worked_trace() -> None:
    # One slot from the start, two from day 10, one again from 2025-01-26 (day 20);
    # manufacture 8 days, slot taken at the step.
    #   P0 (0): 0-8.  P1 (1), P2 (2), P3 (3) queue.
    #   8: P0 frees its slot -> P1 8-16.  10: a second slot -> P2 10-18.
    #   P4 (15) queues behind P3.  16: P1 frees -> P3 16-24.  P5 (16.5) queues.
    #   18: P2 frees -> P4 18-26 (two held).  20: capacity back to one, nobody evicted.
    #   24: P3 frees but 1 is still held = capacity: P5 waits.  26: P4 frees -> P5 26-34.
    steps = [
        {"name": "manufacture", "kind": "manufacture", "site": "lab", "duration": 8},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    site = {"slots": [{"from": "2025-01-06", "slots": 1}, {"from_day": 10, "slots": 2},
                      {"from": "2025-01-26", "slots": 1}]}
    sc = make(site, steps, [0, 1, 2, 3, 15, 16.5])
    res = v2vsim.simulate(sc, replications=1, seed=1)
    p = res.patients
    assert p["manufacture_start_day"].tolist() == [0.0, 8.0, 10.0, 16.0, 18.0, 26.0]
    assert p["infusion_day"].tolist() == [8.0, 16.0, 18.0, 24.0, 26.0, 34.0]
    assert p["queue_wait_days"].tolist() == [0.0, 7.0, 8.0, 13.0, 3.0, 9.5]
    out = run_replication(sc, 1, 0)
    settled: dict[float, tuple[float, float]] = {}
    for t, in_use, queue in out.site_timeline["lab"].tolist():
        settled[t] = (in_use, queue)
    assert list(settled.items()) == [
        (0.0, (1, 0)), (1.0, (1, 1)), (2.0, (1, 2)), (3.0, (1, 3)), (8.0, (1, 2)),
        (10.0, (2, 1)), (15.0, (2, 2)), (16.0, (2, 1)), (16.5, (2, 2)), (18.0, (2, 1)),
        (24.0, (1, 1)), (26.0, (1, 0)), (34.0, (0, 0)),
    ]
    # The daily capacity follows the schedule, and utilisation divides the slot-days held
    # (6 x 8 = 48) by the capacity's slot-days over the 40-day run (10 x 1 + 10 x 2 + 20 x 1).
    assert res.site_days["slots"].tolist() == [1.0] * 10 + [2.0] * 10 + [1.0] * 20
    assert res.replications.loc[0, "utilization_lab"] == 48 / 50
    assert ((res.site_days["in_use"] <= res.site_days["slots"]) | (res.site_days["day"] >= 20)).all()


def test_a_plain_slot_count_and_a_one_entry_schedule_agree() -> None:
    # The schedule [{from: start_date, slots: 2}] is the plain count 2 (both run by different
    # pool classes): identical patients, day by day.
    steps = [
        {"name": "manufacture", "kind": "manufacture", "site": "lab",
         "duration": {"dist": "exponential", "mean": 10}},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    data: dict[str, Any] = {
        "name": "same", "horizon_days": 2000, "arrivals": {"rate_per_year": 60},
        "cohorts": [{"name": "all", "pathway": "p", "time_to_death": {"dist": "exponential", "mean": 60}}],
        "sites": {"lab": {"slots": 2}}, "pathways": {"p": {"steps": steps}},
    }
    a = v2vsim.simulate(scenario_from_dict(data), replications=2, seed=4)
    data["sites"]["lab"]["slots"] = [{"from_day": 0, "slots": 2}]
    b = v2vsim.simulate(scenario_from_dict(data), replications=2, seed=4)
    assert (a.patients["queue_wait_days"] > 0).mean() > 0.3
    columns = ["referral_day", "manufacture_start_day", "infusion_day", "outcome", "outcome_day", "queue_wait_days"]
    assert a.patients[columns].equals(b.patients[columns])
    assert a.replications["utilization_lab"].equals(b.replications["utilization_lab"])
