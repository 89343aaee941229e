"""Common random numbers and reproducibility.

The contract (SCENARIO_SPEC section 3): the same seed, replication and patient give the same
referral day, cohort, disease clocks and, for a step of the same name, the same durations and
failure draws, whatever else differs; results do not depend on the number of workers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import v2vsim
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import Scenario, scenario_from_dict

SEED = 77
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def make_scenario(*, qc_duration: Any = None, slots: int = 1, extra_step: bool = False) -> Scenario:
    steps: list[dict[str, Any]] = [
        {"name": "apheresis", "kind": "apheresis", "starts_on": WEEKDAYS,
         "duration": {"dist": "uniform", "low": 0.1, "high": 0.3}, "failure_probability": 0.05,
         "on_failure": {"retry_from": "apheresis", "max_attempts": 2}},
        {"name": "courier", "kind": "transport", "duration": {"dist": "triangular", "low": 1, "mode": 2, "high": 4}},
        {"name": "manufacture", "kind": "manufacture", "site": "plant", "reserve_from": "apheresis",
         "duration": {"dist": "gamma", "mean": 12, "sd": 3}, "failure_probability": 0.15,
         "on_failure": {"retry_from": "manufacture", "max_attempts": 2}},
        {"name": "qc", "kind": "release", "duration": qc_duration or {"dist": "uniform", "low": 1, "high": 3},
         "failure_probability": 0.05},
        {"name": "infusion", "kind": "infusion", "duration": {"dist": "exponential", "mean": 1}},
    ]
    if extra_step:  # a new step in the middle: shifts times, must not shift anyone's draws
        steps.insert(2, {"name": "customs", "kind": "delay", "duration": {"dist": "uniform", "low": 0, "high": 2}})
    return scenario_from_dict({
        "name": "crn",
        "horizon_days": 730,
        "arrivals": {"rate_per_year": 40},
        "cohorts": [
            {"name": "child", "share": 0.4, "pathway": "p", "priority": 0,
             "time_to_death": {"dist": "weibull", "shape": 0.9, "median": 150}},
            {"name": "adult", "share": 0.6, "pathway": "p", "priority": 1,
             "time_to_death": {"dist": "exponential", "mean": 200},
             "time_to_ineligible": {"dist": "exponential", "mean": 300}},
        ],
        "sites": {"plant": {"slots": slots, "starts_on": WEEKDAYS}},
        "pathways": {"p": {"steps": steps}},
    })


def first_attempts(sc: Scenario, replication: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patients and the completed (done or failed) first attempt of every step, by patient."""
    out = run_replication(sc, SEED, replication, trace_patients=100_000)
    ev = pd.DataFrame(out.events, columns=["patient", "step", "kind", "attempt", "ready_day",
                                           "start_day", "end_day", "status"])
    done = ev[(ev["attempt"] == 1) & ev["status"].isin(["done", "failed"])]
    done = done.assign(duration=done["end_day"] - done["start_day"]).set_index(["patient", "step"])
    return pd.DataFrame(out.columns), done[["duration", "status"]]


@pytest.mark.parametrize("variant", [
    {"qc_duration": {"dist": "lognormal", "median": 4, "p90": 9}},  # a later step's duration
    {"slots": 3},  # site capacity
    {"extra_step": True},  # an extra step before manufacture
])
def test_common_random_numbers_across_scenarios(variant: dict[str, Any]) -> None:
    base, other = make_scenario(), make_scenario(**variant)
    compared = 0
    for rep in range(3):
        pa, ea = first_attempts(base, rep)
        pb, eb = first_attempts(other, rep)
        # Same referrals and cohorts, patient by patient.
        assert len(pa) == len(pb) > 40
        assert pa["referral_day"].tolist() == pb["referral_day"].tolist()
        assert pa["cohort"].tolist() == pb["cohort"].tolist()
        # Same disease clocks: a patient who dies in both runs dies on the same day.
        died = (pa["outcome"] == "died") & (pb["outcome"] == "died")
        assert died.sum() > 5
        np.testing.assert_array_equal(pa.loc[died, "outcome_day"], pb.loc[died, "outcome_day"])
        # Same first-attempt durations and failure draws for steps of the same name.
        common = ea.index.intersection(eb.index)
        assert {"apheresis", "manufacture", "qc"} <= set(common.get_level_values("step"))
        a, b = ea.loc[common], eb.loc[common]
        same = ["apheresis", "courier", "manufacture"] + ([] if "qc_duration" in variant else ["qc"])
        sel = a.index.get_level_values("step").isin(same)
        np.testing.assert_allclose(a.loc[sel, "duration"], b.loc[sel, "duration"], rtol=0, atol=1e-9)
        # Failure draws do not depend on the duration distribution, so qc's too.
        assert a["status"].tolist() == b["status"].tolist()
        compared += int(sel.sum())
        # The scenarios really differ (the check is not vacuous).
        assert not pa["outcome_day"].equals(pb["outcome_day"])
    assert compared > 300


def test_same_seed_same_frames_and_different_seed_different_frames() -> None:
    sc = make_scenario()
    a = v2vsim.simulate(sc, replications=4, seed=SEED)
    b = v2vsim.simulate(sc, replications=4, seed=SEED)
    pd.testing.assert_frame_equal(a.patients, b.patients)
    pd.testing.assert_frame_equal(a.replications, b.replications)
    pd.testing.assert_frame_equal(a.site_days, b.site_days)
    pd.testing.assert_frame_equal(a.events, b.events)
    c = v2vsim.simulate(sc, replications=4, seed=SEED + 1)
    assert len(c.patients) != len(a.patients) or not np.array_equal(
        c.patients["referral_day"], a.patients["referral_day"])
    assert not c.replications["queue_wait_mean"].equals(a.replications["queue_wait_mean"])
    # Replications are different draws, not copies.
    by_rep = a.patients.groupby("replication")["referral_day"].apply(tuple)
    assert by_rep.nunique() == 4
    # The scenario's own seed is the default.
    d = v2vsim.simulate(sc, replications=2)
    e = v2vsim.simulate(sc, replications=2, seed=sc.seed)
    pd.testing.assert_frame_equal(d.patients, e.patients)


def test_a_replication_does_not_depend_on_how_many_are_run() -> None:
    sc = make_scenario()
    few = v2vsim.simulate(sc, replications=2, seed=SEED).patients
    many = v2vsim.simulate(sc, replications=5, seed=SEED).patients
    pd.testing.assert_frame_equal(few, many[many["replication"] < 2].reset_index(drop=True))


def test_jobs_one_equals_jobs_two() -> None:
    sc = make_scenario(slots=2)
    serial = v2vsim.simulate(sc, replications=6, seed=SEED, jobs=1)
    parallel = v2vsim.simulate(sc, replications=6, seed=SEED, jobs=2)
    pd.testing.assert_frame_equal(serial.patients, parallel.patients)
    pd.testing.assert_frame_equal(serial.replications, parallel.replications)
    pd.testing.assert_frame_equal(serial.site_days, parallel.site_days)
    pd.testing.assert_frame_equal(serial.events, parallel.events)
    assert serial.events_processed == parallel.events_processed
