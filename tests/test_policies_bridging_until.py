"""Bridging until infusion (``bridging.duration: until_infusion``) and a cost per day on
bridging, against closed forms and hand-worked cases.

The hazard ratio h applies from the start of bridging until the patient leaves the pathway: the
clock is :func:`~v2vsim.engine.clocks.bridged_clock` with an infinite course while in the
pathway, and with the course cut at the day of leaving afterwards. For an exponential death
clock with mean m, bridging from referral and a fixed wait T to infusion, the chance of being
infused is ``exp(-h T / m)``. ``cost_per_day`` is charged for the days on bridging: to the end
of a course or to leaving the pathway, whichever is first.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import v2vsim
from v2vsim.engine.compiled import numba_available, run_compiled
from v2vsim.engine.engines import engine_for
from v2vsim.engine.replication import run_replication
from v2vsim.engine.vectorised import run_vectorised
from v2vsim.scenario import Scenario, ScenarioError, scenario_from_dict

from test_engine_compiled import assert_same_run, queueing
from test_engine_vectorised import assert_identical, load, scenarios

Z = 4.0


def make(bridging: dict[str, Any] | None, *, death: Any = None, n: int = 20_000, screen_fails: float = 0.0,
         after: dict[str, Any] | None = None, arrivals: Any = None) -> Scenario:
    cohort: dict[str, Any] = {"name": "all", "pathway": "p"}
    if death is not None:
        cohort["time_to_death"] = death
    if bridging is not None:
        cohort["bridging"] = bridging
    if after is not None:
        cohort["after_infusion"] = after
    return scenario_from_dict({
        "name": "until", "horizon_days": 365,
        "arrivals": arrivals or {"rate_per_year": n},
        "cohorts": [cohort],
        "pathways": {"p": {"steps": [
            {"name": "screening", "kind": "screen", "duration": 3, "failure_probability": screen_fails},
            {"name": "waiting", "kind": "delay", "duration": 7},
            {"name": "infusion", "kind": "infusion", "duration": 0},
        ]}},
    })


def binomial_check(hits: int, n: int, p: float) -> None:
    se = math.sqrt(p * (1 - p) / n)
    assert abs(hits / n - p) <= Z * se, f"{hits}/{n} = {hits / n:.5f} vs {p:.5f} (se {se:.5f})"


@pytest.mark.parametrize("h", [0.5, 0.0, 1.6])
def test_survival_to_infusion_closed_form(h: float) -> None:
    m, t = 20.0, 10.0
    sc = make({"start_step": "screening", "duration": "until_infusion", "hazard_ratio": h},
              death={"dist": "exponential", "mean": m})
    p = v2vsim.simulate(sc, replications=1, seed=41, engine="simpy").patients
    binomial_check(int((p["outcome"] == "infused").sum()), len(p), math.exp(-h * t / m))


def test_each_clock_moves_as_with_an_endless_course() -> None:
    # All die waiting (a pathway of 1000 days): with h = 0.5 from day 3 on, a clock t0 > 3
    # rings at 3 + (t0 - 3) / 0.5, the same for every patient as the plain run's t0 (same u).
    def sc(bridging: Any) -> Scenario:
        return scenario_from_dict({
            "name": "long", "horizon_days": 365, "arrivals": {"rate_per_year": 2000},
            "cohorts": [{"name": "all", "pathway": "p", "time_to_death": {"dist": "exponential", "mean": 20},
                         **({"bridging": bridging} if bridging else {})}],
            "pathways": {"p": {"steps": [{"name": "screening", "kind": "screen", "duration": 3},
                                         {"name": "waiting", "kind": "delay", "duration": 1000},
                                         {"name": "infusion", "kind": "infusion"}]}}})
    plain = v2vsim.simulate(sc(None), replications=1, seed=2).patients
    until = v2vsim.simulate(sc({"start_step": "waiting", "duration": "until_infusion", "hazard_ratio": 0.5}),
                            replications=1, seed=2).patients
    t0 = (plain["outcome_day"] - plain["referral_day"]).to_numpy()
    got = (until["outcome_day"] - until["referral_day"]).to_numpy()
    expected = np.where(t0 <= 3, t0, 3 + (t0 - 3) / 0.5)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert (until["outcome"] == "died").all()


@pytest.mark.parametrize(("duration", "days"), [("until_infusion", 10.0), (4, 4.0), (30, 10.0)])
def test_cost_per_day_is_charged_for_the_days_on_bridging(duration: Any, days: float) -> None:
    # One patient, infused on day 10: a course until infusion, of 4 days, or of 30 days cut at
    # leaving the pathway.
    sc = make({"start_step": "screening", "duration": duration, "hazard_ratio": 0.8, "cost": 100,
               "cost_per_day": 10}, arrivals={"schedule": [0]})
    p = v2vsim.simulate(sc, replications=1, seed=1).patients
    assert p.loc[0, "outcome"] == "infused" and p.loc[0, "infusion_day"] == 10.0
    assert p.loc[0, "cost"] == 100 + 10 * days


def test_a_course_until_infusion_ends_when_the_patient_leaves_otherwise() -> None:
    # Screening always fails at day 3: the course (h = 0.5 from referral) ends there, so the
    # death clock after leaving is t0 + 1.5 (half the hazard for 3 days) instead of t0; the
    # cost per day is charged for 3 days.
    after = {"response_probability": 0.5, "survival_responder": 1000, "survival_non_responder": 100,
             "follow_up_days": 10_000}
    death = {"dist": "exponential", "mean": 50}
    plain = v2vsim.simulate(make(None, death=death, n=3000, screen_fails=1.0, after=after),
                            replications=1, seed=9).patients
    until = v2vsim.simulate(make({"start_step": "screening", "duration": "until_infusion", "hazard_ratio": 0.5,
                                  "cost_per_day": 7}, death=death, n=3000, screen_fails=1.0, after=after),
                            replications=1, seed=9).patients
    t0 = (plain["death_day"] - plain["referral_day"]).to_numpy()
    got = (until["death_day"] - until["referral_day"]).to_numpy()
    np.testing.assert_allclose(got, np.where(t0 <= 1.5, 2 * t0, t0 + 1.5), rtol=1e-9, atol=1e-9)
    left = until["outcome"] == "screen_failed"
    assert left.mean() > 0.9
    np.testing.assert_allclose(until.loc[left, "cost"], 7 * 3.0)


def test_economics_count_the_cost_per_day_as_the_cost_column_does() -> None:
    root = Path(__file__).resolve().parents[1]
    sc = v2vsim.load_scenario(root / "scenarios" / "slot_shortage.yaml")
    data = sc.model_dump(mode="json", by_alias=True, exclude_none=True)
    bridging = data["cohorts"][0]["bridging"]
    bridging.update(duration="until_infusion", cost_per_day=150.0, toxicity_probability=0.0)
    bridging.pop("toxicity_delay", None)
    data["economics"] = {"follow_up_years": 5, "discount": {"costs": 0.0, "outcomes": 0.0},
                         "utilities": {"waiting": 0.6, "responder": 0.8, "non_responder": 0.5, "progressed": 0.3}}
    for c in data["cohorts"]:
        c["after_infusion"].pop("follow_up_days", None)
    sc = scenario_from_dict(data)
    res = v2vsim.simulate(sc, replications=2, seed=3)
    p = res.patients
    bridged = p["bridging_day"].notna()
    assert bridged.any()
    # Undiscounted, the discounted cost is the pathway cost plus the cost after it.
    np.testing.assert_allclose(p["cost_discounted"], p["cost"] + p["cost_after_pathway"], rtol=1e-9)


def test_toxicity_is_refused_with_a_course_until_infusion(tmp_path: Path) -> None:
    text = """name: bad
horizon_days: 30
arrivals: {schedule: [0]}
cohorts:
  - name: all
    pathway: p
    bridging:
      start_step: infusion
      duration: until_infusion
      hazard_ratio: 0.5
      toxicity_probability: 0.1
      toxicity_delay: 7
pathways:
  p: {steps: [{name: infusion, kind: infusion}]}
"""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        v2vsim.load_scenario(path)
    assert f"{path}:11: cohorts[0].bridging.toxicity_probability: " in str(err.value)
    assert "no end for a toxicity" in str(err.value)
    path.write_text(text.replace("until_infusion", "until_death"))
    with pytest.raises(ScenarioError):
        v2vsim.load_scenario(path)


def test_without_the_keys_nothing_changes() -> None:
    bridging = {"start_step": "screening", "duration": 5, "hazard_ratio": 0.5, "cost": 10}
    a = v2vsim.simulate(make(bridging, death={"dist": "exponential", "mean": 20}, n=500), replications=1, seed=4)
    b = v2vsim.simulate(make({**bridging, "cost_per_day": 0}, death={"dist": "exponential", "mean": 20}, n=500),
                        replications=1, seed=4)
    assert a.patients.equals(b.patients)


def _until(data: dict[str, Any]) -> dict[str, Any]:
    """A random scenario with its bridging (if any) made a course until infusion, with a cost per day."""
    for cohort in data["cohorts"]:
        b = cohort.get("bridging")
        if b is not None:
            b.update(duration="until_infusion", cost_per_day=12.5)
            b.pop("toxicity_probability", None)
            b.pop("toxicity_delay", None)
    return data


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=scenarios(), seed=st.integers(0, 2**32))
def test_the_vectorised_engine_gives_the_same_patients(data: dict[str, Any], seed: int) -> None:
    sc = load(_until(data))
    assume(sc is not None and any(c.bridging is not None for c in sc.cohorts))
    ref = run_replication(sc, seed, 0, trace_patients=10**6)
    out = run_vectorised(sc, seed, 0, trace_patients=10**6)
    assume(out is not None)
    assert_identical(out, ref)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=queueing(), seed=st.integers(0, 2**32))
def test_the_compiled_engine_gives_the_same_run(data: dict[str, Any], seed: int) -> None:
    sc = load(_until(data))
    assume(sc is not None and any(c.bridging is not None for c in sc.cohorts))
    ref = run_replication(sc, seed, 0, trace_patients=10**6)
    [out] = run_compiled(sc, seed, [0], trace={0: 10**6}, compiled=numba_available())
    assert_same_run(out, ref)


def test_auto_may_take_a_fast_engine() -> None:
    sc = make({"start_step": "screening", "duration": "until_infusion", "hazard_ratio": 0.5}, n=100)
    assert engine_for(sc, "auto") == "vectorised"
    assert engine_for(sc, "compiled") == "compiled" or not numba_available()
