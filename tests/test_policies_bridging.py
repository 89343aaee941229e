"""Bridging therapy: disease clocks as cumulative-hazard budgets, against closed forms.

A clock drawn as ``t0 = ppf(u)`` is the time its cumulative hazard ``H`` reaches the budget
``E = -log(1 - u)``. Bridging from ``s`` for ``d`` days with hazard ratio ``r`` spends the budget
at ``r`` times the hazard on ``[s, s + d]``, so the probability of surviving to ``T > s + d`` is
``exp(-(H(s) + r (H(s + d) - H(s)) + H(T) - H(s + d)))``; for an exponential clock with mean m
and bridging from referral, ``exp(-r T / m)`` (bridging throughout) or
``exp(-(T - b + r b) / m)`` (bridging for the first b days). Patient by patient (same u), an
exponential clock moves from t0 to ``s + (t0 - s) / r`` if that is within the course, else to
``t0 + d (1 - r)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter
from scipy import stats

import v2vsim
from v2vsim.scenario.distributions import Distribution
from v2vsim.scenario import Scenario, scenario_from_dict

Z = 4.0
DIST = TypeAdapter(Distribution)


# --------------------------------------------------------------------- cumulative hazards

@pytest.mark.parametrize(("spec", "frozen"), [
    ({"dist": "uniform", "low": 3, "high": 7}, stats.uniform(loc=3, scale=4)),
    ({"dist": "triangular", "low": 3, "mode": 5, "high": 10}, stats.triang(c=2 / 7, loc=3, scale=7)),
    ({"dist": "exponential", "median": 21}, stats.expon(scale=21 / math.log(2))),
    ({"dist": "lognormal", "median": 14, "p90": 21},
     stats.lognorm(s=math.log(21 / 14) / stats.norm.ppf(0.9), scale=14)),
    ({"dist": "gamma", "mean": 14, "sd": 3}, stats.gamma(a=(14 / 3) ** 2, scale=9 / 14)),
    ({"dist": "weibull", "shape": 1.3, "median": 150},
     stats.weibull_min(c=1.3, scale=150 / math.log(2) ** (1 / 1.3))),
])
def test_cumulative_hazard_and_its_inverse_match_scipy(spec: dict[str, Any], frozen: Any) -> None:
    dist = DIST.validate_python(spec)
    u = np.array([1e-6, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-9])
    t = frozen.ppf(u)
    np.testing.assert_allclose(dist.cumhaz(t), -np.log(frozen.sf(t)), rtol=1e-7)
    np.testing.assert_allclose(dist.sf(t), frozen.sf(t), rtol=1e-7, atol=1e-15)
    # H^-1(-log(1 - u)) is the inverse CDF: no bridging, the same clock as ppf(u).
    np.testing.assert_allclose(dist.cumhaz_inv(-np.log1p(-u)), t, rtol=1e-7)
    np.testing.assert_allclose(dist.ppf(u), t, rtol=1e-7)
    # Below the support there is no hazard.
    assert dist.cumhaz(np.array([0.0]))[0] == pytest.approx(-math.log(frozen.sf(0.0)), abs=1e-12)


def test_cumulative_hazard_of_degenerate_forms() -> None:
    fixed = DIST.validate_python(5)
    assert fixed.cumhaz(np.array([4.9, 5.0]))[0] == 0 and fixed.cumhaz(np.array([5.0]))[0] == math.inf
    assert fixed.cumhaz_inv(np.array([0.1, 3.0])).tolist() == [5.0, 5.0]
    never = DIST.validate_python("never")
    assert never.cumhaz(np.array([1e9]))[0] == 0 and never.cumhaz_inv(np.array([2.0]))[0] == math.inf
    emp = DIST.validate_python({"dist": "empirical", "values": [12, 13, 15, 21], "weights": [1, 2, 2, 1]})
    # S(t) = P(X > t): 1, 5/6 from 12, 3/6 from 13, 1/6 from 15, 0 from 21.
    np.testing.assert_allclose(emp.sf(np.array([11, 12, 12.5, 13, 15, 20.9, 21])),
                               [1, 5 / 6, 5 / 6, 3 / 6, 1 / 6, 1 / 6, 0])
    u = np.array([0.1, 0.2, 0.6, 0.95])
    np.testing.assert_array_equal(emp.cumhaz_inv(-np.log1p(-u)), emp.ppf(u))


# --------------------------------------------------------------------- scenarios

_T = 10.0  # the pathway: a 3-day screen, a 7-day wait, infusion at day 10


def make(bridging: dict[str, Any] | None, death: Any, ineligible: Any = "never", *, n: int = 20_000,
         wait: float = _T - 3, **extra: Any) -> Scenario:
    cohort: dict[str, Any] = {"name": "all", "pathway": "p", "time_to_death": death,
                              "time_to_ineligible": ineligible}
    if bridging is not None:
        cohort["bridging"] = bridging
    return scenario_from_dict({
        "name": "bridging",
        "horizon_days": 365,
        "arrivals": {"rate_per_year": n},
        "cohorts": [cohort],
        "pathways": {"p": {"steps": [
            {"name": "screening", "kind": "screen", "duration": 3},
            {"name": "waiting", "kind": "delay", "duration": wait},
            {"name": "infusion", "kind": "infusion", "duration": 0},
        ]}},
        **extra,
    })


def binomial_check(hits: int, n: int, p: float) -> None:
    se = math.sqrt(p * (1 - p) / n)
    assert abs(hits / n - p) <= Z * se, f"{hits}/{n} = {hits / n:.5f} vs {p:.5f} (se {se:.5f})"


@pytest.mark.parametrize(("start_step", "days", "effective_days"), [
    ("screening", 1000.0, 0.5 * _T),            # bridging throughout: r T
    ("screening", 4.0, _T - 4 + 0.5 * 4),        # the first 4 days: T - b + r b
    ("waiting", 5.0, 3 + 0.5 * 5 + (_T - 8)),   # from day 3 for 5 days
])
def test_survival_to_infusion_with_an_exponential_clock(start_step: str, days: float,
                                                          effective_days: float) -> None:
    m = 20.0
    sc = make({"start_step": start_step, "duration": days, "hazard_ratio": 0.5},
              {"dist": "exponential", "mean": m})
    p = v2vsim.simulate(sc, replications=1, seed=31).patients
    binomial_check(int((p["outcome"] == "infused").sum()), len(p), math.exp(-effective_days / m))
    # Bridging starts on reaching its step; patients who died during screening never did.
    started = p["bridging_day"].notna()
    np.testing.assert_allclose(p.loc[started, "bridging_day"] - p.loc[started, "referral_day"],
                               0.0 if start_step == "screening" else 3.0, atol=1e-9)
    gone = p.loc[~started]
    assert ((gone["outcome"] == "died") & (gone["outcome_step"] == "screening")).all()
    assert started.mean() > 0.8


@pytest.mark.parametrize("death", [
    {"dist": "weibull", "shape": 0.7, "median": 15},
    {"dist": "lognormal", "median": 12, "p90": 40},
    {"dist": "gamma", "mean": 12, "sd": 6},
])
def test_survival_to_infusion_with_other_clocks(death: dict[str, Any]) -> None:
    # Hazard ratio 0.3 from day 3 for 4 days: S(10) = exp(-(H(3) + 0.3 (H(7) - H(3)) + H(10) - H(7))).
    dist = DIST.validate_python(death)
    h3, h7, h10 = (float(dist.cumhaz(np.array([t]))[0]) for t in (3.0, 7.0, 10.0))
    expected = math.exp(-(h3 + 0.3 * (h7 - h3) + h10 - h7))
    sc = make({"start_step": "waiting", "duration": 4, "hazard_ratio": 0.3}, death, n=12_000)
    p = v2vsim.simulate(sc, replications=1, seed=32).patients
    binomial_check(int((p["outcome"] == "infused").sum()), len(p), expected)
    assert expected > math.exp(-h10) + 0.05  # bridging matters here


def test_each_patients_clocks_move_exactly() -> None:
    # A pathway too long to survive: every patient's clock rings. Without bridging it rings at
    # t0 (death, mean 20, or ineligibility, mean 30); with bridging from s = 3 for d = 4 days
    # at r = 0.5 it rings at g(t0): t0 if t0 <= 3, 3 + (t0 - 3) / 0.5 if that is before 7,
    # else t0 + 4 x 0.5. g is the same for both exponential clocks, so the same clock rings.
    clocks = ({"dist": "exponential", "mean": 20}, {"dist": "exponential", "mean": 30})
    plain = v2vsim.simulate(make(None, *clocks, n=2000, wait=1e6), replications=2, seed=33).patients
    bridged = v2vsim.simulate(make({"start_step": "waiting", "duration": 4, "hazard_ratio": 0.5}, *clocks,
                                   n=2000, wait=1e6), replications=2, seed=33).patients
    assert (plain["outcome"] == bridged["outcome"]).all()
    t0 = (plain["outcome_day"] - plain["referral_day"]).to_numpy()
    inside = 3 + (t0 - 3) / 0.5
    g = np.where(t0 <= 3, t0, np.where(inside <= 7, inside, t0 + 2.0))
    np.testing.assert_allclose(bridged["outcome_day"] - bridged["referral_day"], g, rtol=1e-9, atol=1e-9)
    assert ((t0 > 3) & (t0 < 5)).sum() > 50 and (t0 > 5).sum() > 1000  # all three branches


def test_a_weibull_clock_moves_as_its_closed_form() -> None:
    # H(t) = (t / scale)^k. The budget E = H(t0); by s the spent budget is H(s); during the
    # course r (H(t) - H(s)); after it the plain hazard again.
    k, median = 1.6, 12.0
    scale = median / math.log(2) ** (1 / k)

    def h(t: np.ndarray) -> np.ndarray:
        return (t / scale) ** k

    def h_inv(e: np.ndarray) -> np.ndarray:
        return scale * e ** (1 / k)

    s, d, r = 3.0, 4.0, 0.4
    death = {"dist": "weibull", "shape": k, "median": median}
    plain = v2vsim.simulate(make(None, death, n=3000, wait=1e6), replications=1, seed=34).patients
    bridged = v2vsim.simulate(make({"start_step": "waiting", "duration": d, "hazard_ratio": r}, death,
                                   n=3000, wait=1e6), replications=1, seed=34).patients
    t0 = (plain["outcome_day"] - plain["referral_day"]).to_numpy()
    e = h(t0)
    with np.errstate(invalid="ignore"):  # t0 < s: not used
        during = h_inv(h(s) + (e - h(s)) / r)
    after = h_inv(e + (1 - r) * (h(s + d) - h(s)))
    expected = np.where(t0 <= s, t0, np.where(during <= s + d, during, after))
    np.testing.assert_allclose(bridged["outcome_day"] - bridged["referral_day"], expected, rtol=1e-9)


def test_hazard_ratio_one_changes_nothing_and_bridging_costs_once() -> None:
    clocks = ({"dist": "weibull", "shape": 0.9, "median": 30}, {"dist": "exponential", "mean": 50})
    plain = v2vsim.simulate(make(None, *clocks, n=2000), replications=2, seed=35).patients
    same = v2vsim.simulate(make({"start_step": "screening", "duration": 30, "hazard_ratio": 1, "cost": 700},
                                *clocks, n=2000), replications=2, seed=35).patients
    for column in ("outcome", "outcome_day", "infusion_day"):
        assert plain[column].equals(same[column]), column
    np.testing.assert_allclose(same["cost"], plain["cost"] + 700)
    assert (same["bridging_toxicity"] == 0).all()


# --------------------------------------------------------------------- toxicity

def toxicity_scenario(death: Any = "never", failure: float = 0.0) -> Scenario:
    manufacture: dict[str, Any] = {"name": "manufacture", "kind": "manufacture", "duration": 6, "cost": 100}
    if failure:
        manufacture.update(failure_probability=failure, on_failure={"retry_from": "apheresis", "max_attempts": 2})
    return scenario_from_dict({
        "name": "toxicity",
        "horizon_days": 10,
        "arrivals": {"schedule": [0]},
        "cohorts": [{"name": "all", "pathway": "p", "time_to_death": death,
                     "bridging": {"start_step": "apheresis", "duration": 0.5, "hazard_ratio": 1, "cost": 5000,
                                  "toxicity_probability": 1, "toxicity_delay": 8.5}}],
        "pathways": {"p": {"steps": [
            {"name": "apheresis", "kind": "apheresis", "duration": 1, "cost": 10},
            {"name": "courier", "kind": "transport", "duration": 0.5},
            manufacture,
            {"name": "conditioning", "kind": "conditioning", "duration": 1},
            {"name": "infusion", "kind": "infusion", "duration": 0},
        ]}},
    })


COLUMNS = ["step", "attempt", "ready_day", "start_day", "end_day", "status"]


def test_toxicity_delays_patient_steps_only() -> None:
    # Bridging from referral for 0.5 day; its toxicity leaves the patient unfit on [0.5, 9).
    # Apheresis 0-1 had begun; courier 1-1.5 and manufacture 1.5-7.5 do not need the patient;
    # conditioning, ready at 7.5, waits until 9 (9-10); infusion at 10.
    res = v2vsim.simulate(toxicity_scenario(), replications=1, seed=1)
    assert list(res.events[COLUMNS].itertuples(index=False, name=None)) == [
        ("apheresis", 1, 0.0, 0.0, 1.0, "done"),
        ("courier", 1, 1.0, 1.0, 1.5, "done"),
        ("manufacture", 1, 1.5, 1.5, 7.5, "done"),
        ("conditioning", 1, 7.5, 9.0, 10.0, "done"),
        ("infusion", 1, 10.0, 10.0, 10.0, "done"),
    ]
    p = res.patients.iloc[0]
    assert (p["infusion_day"], p["queue_wait_days"], p["cost"]) == (10.0, 1.5, 5110.0)
    assert (p["bridging_day"], p["bridging_toxicity"]) == (0.0, 1.0)
    assert (res.replications.loc[0, "bridged"], res.replications.loc[0, "bridging_toxicities"]) == (1, 1)


def test_death_while_unfit_and_no_second_course_on_a_retry() -> None:
    res = v2vsim.simulate(toxicity_scenario(death=8.5), replications=1, seed=1)
    assert list(res.events[COLUMNS].itertuples(index=False, name=None))[-1] == \
        ("conditioning", 1, 7.5, 8.5, 8.5, "died")
    assert res.patients.loc[0, "queue_wait_days"] == 1.0
    # Manufacture always fails: apheresis again (after the patient is fit at 9), one bridging
    # course and cost in all.
    res = v2vsim.simulate(toxicity_scenario(failure=1.0), replications=1, seed=1)
    ev = res.events
    assert ev.loc[ev["step"] == "apheresis", ["attempt", "ready_day", "start_day"]].values.tolist() == [
        [1, 0.0, 0.0], [2, 7.5, 9.0]]
    p = res.patients.iloc[0]
    assert p["outcome"] == "manufacturing_failed"
    assert p["cost"] == 5000 + 2 * (10 + 100)
