"""The engine's rules where the model once went wrong: each test is a hand-worked trace or a
closed form, and each failed on the engine before these rules were made explicit.

1. slots needed at one moment are taken together (no hold-and-wait deadlock), and scenarios
   that could never start or could deadlock are refused at load;
2. a slot handed back goes to the best request present at that instant, as in
   ``simpy.PriorityResource`` (a higher-priority retry gets it back);
3. a product expires when it expires, wherever the patient is;
4. ``shelf_life`` without a release step runs from the end of manufacture (never ignored);
5. ``max_attempts`` limits the runs of the ``retry_from`` step in all;
6. steps that can never start are refused at load;
7. infusion failures have their own outcome;
8. a disease clock wins a tie with any other event (here: a slot granted at that instant).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

import v2vsim
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import ScenarioError, scenario_from_dict

Z = 4.0  # tolerance of the statistical checks, in standard errors


def scenario(steps: list[dict[str, Any]], *, sites: dict[str, Any] | None = None,
             cohorts: list[dict[str, Any]] | None = None, schedule: list[float] | None = None,
             **top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "rules",
        "horizon_days": 100,
        "arrivals": {"schedule": schedule} if schedule is not None else {"rate_per_year": 365},
        "cohorts": cohorts or [{"name": "all", "pathway": "p"}],
        "sites": sites or {},
        "pathways": {"p": {"steps": steps}},
    }
    data.update(top)
    return data


def run(data: dict[str, Any], seed: int = 1) -> Any:
    return v2vsim.simulate(scenario_from_dict(data), replications=1, seed=seed).patients


def refused(data: dict[str, Any], tmp_path: Path) -> list[str]:
    """The problems ``load_scenario`` reports for ``data`` written as a YAML file."""
    path = tmp_path / "s.yaml"
    with path.open("w") as f:
        YAML().dump(data, f)
    with pytest.raises(ScenarioError) as exc:
        v2vsim.load_scenario(path)
    lines = str(exc.value).splitlines()
    for line in lines:
        file, lineno, rest = line.split(":", 2)
        assert file == str(path) and lineno.isdigit() and rest.strip()
    return lines


def seed_with_cohorts(data: dict[str, Any], wanted: list[str]) -> int:
    """The first seed whose patients' cohorts are ``wanted`` (cohorts are drawn at random)."""
    sc = scenario_from_dict(data)
    for seed in range(500):
        if v2vsim.simulate(sc, replications=1, seed=seed).patients["cohort"].tolist() == wanted:
            return seed
    raise AssertionError("no seed gives these cohorts")


# --------------------------------------------------------------------- 1. hold-and-wait

def _two_slots_one_site(slots: int) -> dict[str, Any]:
    steps = [
        {"name": "apheresis", "kind": "apheresis", "duration": 1},
        {"name": "manufacture", "kind": "manufacture", "site": "plant", "reserve_from": "apheresis",
         "duration": 10},
        {"name": "qc", "kind": "release", "site": "plant", "reserve_from": "apheresis", "duration": 2},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    return scenario(steps, sites={"plant": {"slots": slots}}, schedule=[0, 0, 5])


def test_slots_needed_at_one_moment_are_taken_together() -> None:
    # Each patient takes both plant slots at apheresis (all or none): patient 0 at day 0 frees
    # them at 11 (manufacture) and 13 (qc); patient 1 needs two, so it starts at 13; patient 2
    # (referred at 5) waits behind it (no overtaking) until 26.
    p = run(_two_slots_one_site(2))
    assert p["outcome"].tolist() == ["infused"] * 3
    assert p["apheresis_day"].tolist() == [0.0, 13.0, 26.0]
    assert p["infusion_day"].tolist() == [13.0, 26.0, 39.0]
    assert p["queue_wait_days"].tolist() == [0.0, 13.0, 21.0]


def test_more_slots_at_once_than_the_site_has_is_refused(tmp_path: Path) -> None:
    lines = refused(_two_slots_one_site(1), tmp_path)
    assert len(lines) == 1
    assert "pathways.p.steps[2].reserve_from" in lines[0]
    assert "needs 2 slots of site 'plant' at once" in lines[0] and "at most 1" in lines[0]


def test_holding_a_slot_while_waiting_for_another_of_the_same_site_is_refused(tmp_path: Path) -> None:
    # Two patients could each hold one plant slot (booked from apheresis) and wait at the
    # courier for a second: refused, with the way out.
    steps = [
        {"name": "apheresis", "kind": "apheresis", "duration": 1},
        {"name": "courier", "kind": "transport", "duration": 1},
        {"name": "manufacture", "kind": "manufacture", "site": "plant", "reserve_from": "apheresis", "duration": 10},
        {"name": "qc", "kind": "release", "site": "plant", "reserve_from": "courier", "duration": 2},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    lines = refused(scenario(steps, sites={"plant": {"slots": 2}}), tmp_path)
    assert len(lines) == 1 and "wait for each other's slots forever" in lines[0]
    assert "hold a slot of 'plant' (for step 'manufacture')" in lines[0]


def test_two_pathways_booking_two_sites_in_opposite_orders_are_refused(tmp_path: Path) -> None:
    def pathway(first: str, second: str) -> dict[str, Any]:
        return {"steps": [
            {"name": "apheresis", "kind": "apheresis", "duration": 1},
            {"name": "make", "kind": "manufacture", "site": first, "reserve_from": "apheresis", "duration": 5},
            {"name": "qc", "kind": "release", "site": second, "duration": 1},
            {"name": "infusion", "kind": "infusion", "duration": 0},
        ]}
    data = scenario([], sites={"x": {"slots": 1}, "y": {"slots": 1}},
                    cohorts=[{"name": "a", "pathway": "xy"}, {"name": "b", "pathway": "yx"}])
    # 'make' holds its site until it ends, then 'qc' asks for the other one: no hold-and-wait.
    data["pathways"] = {"xy": pathway("x", "y"), "yx": pathway("y", "x")}
    scenario_from_dict(data)
    # Booked from apheresis, both slots are held together... in opposite orders: refused.
    for name, (a, b) in (("xy", ("x", "y")), ("yx", ("y", "x"))):
        data["pathways"][name]["steps"][2]["reserve_from"] = "make"
        data["pathways"][name]["steps"][2]["site"] = b
    lines = refused(data, tmp_path)
    assert len(lines) == 1 and "wait for each other's slots forever" in lines[0]
    assert "'xy'" in lines[0] and "'yx'" in lines[0]


# --------------------------------------------------------------------- 2. same-instant release

def _retrying_child_and_waiting_adult() -> dict[str, Any]:
    steps = [
        {"name": "manufacture", "kind": "manufacture", "site": "plant", "duration": 10,
         "failure_probability": 1.0, "on_failure": {"retry_from": "manufacture", "max_attempts": 2}},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    cohorts = [{"name": "child", "pathway": "p", "priority": 0},
               {"name": "adult", "pathway": "p", "priority": 1}]
    return scenario(steps, sites={"plant": {"slots": 1}}, cohorts=cohorts, schedule=[0, 1])


def test_a_higher_priority_retry_gets_its_slot_back_before_a_lower_priority_waiter() -> None:
    # The child's batch fails at day 10 and it asks again at once; the adult has waited since
    # day 1. As with simpy.PriorityResource, the slot goes to the better request present at that
    # instant: the child (runs 0-10, 10-20), then the adult (20-30, 30-40).
    data = _retrying_child_and_waiting_adult()
    seed = seed_with_cohorts(data, ["child", "adult"])
    p = run(data, seed)
    assert p["manufacture_start_day"].tolist() == [0.0, 20.0]
    assert p["outcome_day"].tolist() == [20.0, 40.0]
    assert p["queue_wait_days"].tolist() == [0.0, 19.0]
    assert p["manufacturing_attempts"].tolist() == [2, 2]
    assert p["outcome"].tolist() == ["manufacturing_failed"] * 2
    reference = run_replication(scenario_from_dict(data), seed, 0, reference=True).columns
    assert reference["outcome_day"].tolist() == [20.0, 40.0]


# --------------------------------------------------------------------- 3-4. shelf life

def _release_then_conditioning(death: Any = "never") -> dict[str, Any]:
    steps = [
        {"name": "manufacture", "kind": "manufacture", "duration": 9},
        {"name": "qc", "kind": "release", "duration": 1},
        {"name": "conditioning", "kind": "conditioning", "duration": 5},
        {"name": "infusion", "kind": "infusion", "duration": 0, "shelf_life": 3},
    ]
    return scenario(steps, cohorts=[{"name": "all", "pathway": "p", "time_to_death": death}], schedule=[0])


def test_the_product_expires_during_conditioning_when_its_shelf_life_ends() -> None:
    p = run(_release_then_conditioning())
    assert p["release_day"].tolist() == [10.0]
    assert p["outcome"].tolist() == ["product_expired"]
    assert p["outcome_day"].tolist() == [13.0]  # release 10 + shelf life 3, not the end of conditioning (15)
    assert p["outcome_step"].tolist() == ["infusion"]


def test_an_expiry_before_death_is_not_hidden_by_the_death() -> None:
    p = run(_release_then_conditioning({"dist": "fixed", "value": 14}))
    assert p["outcome"].tolist() == ["product_expired"] and p["outcome_day"].tolist() == [13.0]


def test_an_expiry_is_retried_by_the_infusion_steps_on_failure() -> None:
    data = _release_then_conditioning()
    data["pathways"]["p"]["steps"][3]["on_failure"] = {"retry_from": "manufacture", "max_attempts": 2}
    p = run(data)
    # 0-10 product 1, expires at 13; product 2 made 13-23, expires at 26 during conditioning.
    assert p["manufacturing_attempts"].tolist() == [2]
    assert p["release_day"].tolist() == [23.0]
    assert p["outcome"].tolist() == ["product_expired"] and p["outcome_day"].tolist() == [26.0]


def test_an_expiry_that_a_retry_could_not_cure_ends_the_pathway() -> None:
    # The infusion step retries from conditioning, after the release: a retry would keep the
    # expired product. Released on day 10 (a Thursday, day 0 a Monday), the product expires on
    # day 11 while the patient waits for Monday's conditioning: the patient leaves then.
    data = _release_then_conditioning()
    data["pathways"]["p"]["steps"][2]["starts_on"] = ["mon"]
    data["pathways"]["p"]["steps"][3]["shelf_life"] = 1
    data["pathways"]["p"]["steps"][3]["on_failure"] = {"retry_from": "conditioning", "max_attempts": 3}
    p = run(data)
    assert p["outcome"].tolist() == ["product_expired"] and p["outcome_day"].tolist() == [11.0]


def test_without_a_release_step_the_shelf_life_runs_from_the_end_of_manufacture() -> None:
    steps = [
        {"name": "manufacture", "kind": "manufacture", "duration": 10},
        {"name": "conditioning", "kind": "conditioning", "duration": 2},
        {"name": "infusion", "kind": "infusion", "duration": 3, "shelf_life": 4},
    ]
    p = run(scenario(steps, schedule=[0]))
    assert p["outcome"].tolist() == ["product_expired"] and p["outcome_day"].tolist() == [14.0]
    steps[2]["duration"] = 2  # infused at 14: exactly at the end of the shelf life is in time
    p = run(scenario(steps, schedule=[0]))
    assert p["outcome"].tolist() == ["infused"] and p["infusion_day"].tolist() == [14.0]


def test_shelf_life_with_nothing_to_start_its_clock_is_refused(tmp_path: Path) -> None:
    steps = [{"name": "wait", "kind": "delay", "duration": 1},
             {"name": "infusion", "kind": "infusion", "duration": 1, "shelf_life": 3}]
    lines = refused(scenario(steps), tmp_path)
    assert len(lines) == 1 and "pathways.p.steps[1].shelf_life" in lines[0]
    assert "release" in lines[0] and "manufacture" in lines[0]


# --------------------------------------------------------------------- 5. max_attempts

def test_max_attempts_limits_the_runs_of_the_retry_step_in_all() -> None:
    # Batch failure and out-of-specification both send the patient back to apheresis, at most
    # 2 collections in all. A product is good with probability q = 0.5 x 0.5, so
    # P(infused) = q + (1 - q) q = 0.4375, and nobody has a third manufacturing run.
    retry = {"retry_from": "apheresis", "max_attempts": 2}
    steps = [
        {"name": "apheresis", "kind": "apheresis", "duration": 1},
        {"name": "manufacture", "kind": "manufacture", "duration": 10, "failure_probability": 0.5, "on_failure": retry},
        {"name": "qc", "kind": "release", "duration": 1, "failure_probability": 0.5, "on_failure": retry},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    p = run(scenario(steps, horizon_days=365, arrivals={"rate_per_year": 20_000}))
    n = len(p)
    assert p["manufacturing_attempts"].max() == 2
    infused = int((p["outcome"] == "infused").sum())
    q = 0.25
    expected = q + (1 - q) * q
    assert abs(infused / n - expected) <= Z * math.sqrt(expected * (1 - expected) / n)


def test_bundled_local_scenario_makes_at_most_two_products_per_patient() -> None:
    sc = v2vsim.load_scenario(Path(__file__).parents[1] / "scenarios" / "local.yaml")
    p = v2vsim.simulate(sc, replications=200, jobs=1).patients
    assert p["manufacturing_attempts"].max() == 2  # its comments: "one retry"


# --------------------------------------------------------------------- 6. start days

def test_a_step_with_no_common_start_day_is_refused(tmp_path: Path) -> None:
    steps = [{"name": "manufacture", "kind": "manufacture", "site": "plant", "starts_on": ["tue"], "duration": 10},
             {"name": "infusion", "kind": "infusion", "duration": 0}]
    lines = refused(scenario(steps, sites={"plant": {"slots": 1, "starts_on": ["mon"]}}), tmp_path)
    assert len(lines) == 1 and "pathways.p.steps[0].starts_on" in lines[0]
    assert "can never start" in lines[0] and "no day in common" in lines[0]


def test_a_site_closed_for_the_whole_run_is_refused(tmp_path: Path) -> None:
    steps = [{"name": "manufacture", "kind": "manufacture", "site": "plant", "duration": 10},
             {"name": "infusion", "kind": "infusion", "duration": 0}]
    site = {"slots": 1, "closures": [{"from_day": 0, "to_day": 100_000}]}
    lines = refused(scenario(steps, sites={"plant": site}), tmp_path)
    assert len(lines) == 1 and "sites.plant.closures" in lines[0] and "whole run" in lines[0]


# --------------------------------------------------------------------- 7. outcome labels

def test_an_infusion_failure_is_not_an_expiry() -> None:
    steps = [{"name": "manufacture", "kind": "manufacture", "duration": 10},
             {"name": "infusion", "kind": "infusion", "duration": 1, "failure_probability": 1.0}]
    p = run(scenario(steps, schedule=[0]))
    assert p["outcome"].tolist() == ["infusion_failed"]


# --------------------------------------------------------------------- 8. ties with a clock

def test_a_patient_whose_clock_rings_as_its_slot_is_granted_dies_without_starting() -> None:
    # The long-lived cohort's batch ends at day 8; the other patient (referred at 1, dies 7
    # days later) is granted the slot at the very instant it dies: it never starts, costs
    # nothing, and the slot passes on unused.
    steps = [{"name": "manufacture", "kind": "manufacture", "site": "plant", "duration": 8, "cost": 1000},
             {"name": "infusion", "kind": "infusion", "duration": 0}]
    cohorts = [{"name": "long", "pathway": "p"},
               {"name": "short", "pathway": "p", "time_to_death": {"dist": "fixed", "value": 7}}]
    data = scenario(steps, sites={"plant": {"slots": 1}}, cohorts=cohorts, schedule=[0, 1, 2])
    seed = seed_with_cohorts(data, ["long", "short", "long"])
    p = run(data, seed)
    assert p["outcome"].tolist() == ["infused", "died", "infused"]
    assert p["outcome_day"].tolist() == [8.0, 8.0, 16.0]
    assert math.isnan(p["manufacture_start_day"][1]) and p["manufacturing_attempts"][1] == 0
    assert p["cost"].tolist() == [1000.0, 0.0, 1000.0]
    assert p["queue_wait_days"].tolist() == [0.0, 7.0, 6.0]
    reference = run_replication(scenario_from_dict(data), seed, 0, reference=True).columns
    assert reference["outcome_day"].tolist() == [8.0, 8.0, 16.0] and reference["cost"].tolist()[1] == 0.0


def test_a_step_ending_as_the_clock_rings_does_not_complete() -> None:
    steps = [{"name": "manufacture", "kind": "manufacture", "duration": 7},
             {"name": "infusion", "kind": "infusion", "duration": 0}]
    cohorts = [{"name": "all", "pathway": "p", "time_to_death": {"dist": "fixed", "value": 7}}]
    p = run(scenario(steps, cohorts=cohorts, schedule=[0]))
    assert p["outcome"].tolist() == ["died"] and p["outcome_step"].tolist() == ["manufacture"]
