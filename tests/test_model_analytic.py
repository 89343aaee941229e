"""The model against closed forms: deterministic pathways, disease clocks, retries, weekday
starts and shelf life.

Every scenario here has no capacity constraint that matters (no site, or ample slots), so
patients are independent and each patient is one Bernoulli or one i.i.d. draw: the standard
error of a fraction is the binomial one, sqrt(p (1 - p) / n), and of a mean sd / sqrt(n). Every
statistical check allows 4 standard errors (a false alarm about once in 16,000 runs of one
check; the seeds are fixed, so a run is reproducible), and each uses enough patients that a
wrong model misses by far more than that.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

import v2vsim
from v2vsim.scenario import Scenario, scenario_from_dict

Z = 4.0  # tolerance in standard errors


def make_scenario(steps: list[dict[str, Any]], *, sites: dict[str, Any] | None = None,
                  cohort: dict[str, Any] | None = None, **top: Any) -> Scenario:
    """A one-cohort, one-pathway scenario built from plain data (validated like a YAML file)."""
    data: dict[str, Any] = {
        "name": "analytic test",
        "horizon_days": 365,
        "arrivals": {"rate_per_year": 100},
        "cohorts": [{"name": "all", "pathway": "p", **(cohort or {})}],
        "sites": sites or {},
        "pathways": {"p": {"steps": steps}},
    }
    data.update(top)
    return scenario_from_dict(data)


def many_patients(n_target: int, horizon_days: float = 365.0) -> dict[str, Any]:
    """Poisson arrivals giving about ``n_target`` patients over the horizon."""
    return {"horizon_days": horizon_days,
            "arrivals": {"rate_per_year": n_target * 365.0 / horizon_days}}


def binomial_check(hits: int, n: int, p: float) -> None:
    se = math.sqrt(p * (1 - p) / n)
    assert abs(hits / n - p) <= Z * se, f"{hits}/{n} = {hits / n:.5f} vs {p:.5f} (se {se:.5f})"


# --------------------------------------------------------------------- 1. deterministic pathway

# name, kind, duration, cost. The manufacture step also pays the site's cost_per_use.
_PATH = [
    ("screening", "screen", 2.0, 100.0),
    ("apheresis", "apheresis", 1.0, 1000.0),
    ("cryo", "cryopreserve", 0.75, 50.0),
    ("courier", "transport", 1.5, 0.0),
    ("manufacture", "manufacture", 9.0, 40000.0),
    ("qc", "release", 2.25, 3000.0),
    ("lymphodepletion", "conditioning", 3.0, 700.0),
    ("infusion", "infusion", 0.5, 9000.0),
]
_COST_PER_USE = 2500.0


@pytest.mark.parametrize("reserve_from", [None, "apheresis"])
def test_deterministic_pathway_is_the_sum_of_its_steps(reserve_from: str | None) -> None:
    steps = []
    for name, kind, duration, cost in _PATH:
        step: dict[str, Any] = {"name": name, "kind": kind, "duration": duration, "cost": cost}
        if kind == "manufacture":
            step["site"] = "plant"
            if reserve_from:
                step["reserve_from"] = reserve_from
        if kind == "release":
            step["duration"] = {"dist": "fixed", "value": duration}  # the explicit fixed form
        steps.append(step)
    # Ample slots (more than all referrals) and no disease clocks (both default to never).
    sc = make_scenario(steps, sites={"plant": {"slots": 10_000, "cost_per_use": _COST_PER_USE}},
                       arrivals={"rate_per_year": 300})
    res = v2vsim.simulate(sc, replications=3, seed=11)
    p = res.patients
    assert len(p) > 600

    durations = {name: d for name, _, d, _ in _PATH}
    t_before_apheresis = durations["screening"]
    t_to_manufacture = t_before_apheresis + durations["apheresis"] + durations["cryo"] + durations["courier"]
    t_to_release = t_to_manufacture + durations["manufacture"] + durations["qc"]
    total = sum(durations.values())  # 20.0 days referral to infusion
    v2v = total - t_before_apheresis  # 18.0 days from the start of apheresis
    cost = sum(c for *_, c in _PATH) + _COST_PER_USE

    ref = p["referral_day"].to_numpy()
    tol = {"rtol": 0, "atol": 1e-9}  # float sums of the same numbers in another order
    np.testing.assert_allclose(p["apheresis_day"], ref + t_before_apheresis, **tol)
    np.testing.assert_allclose(p["manufacture_start_day"], ref + t_to_manufacture, **tol)
    np.testing.assert_allclose(p["release_day"], ref + t_to_release, **tol)
    np.testing.assert_allclose(p["infusion_day"], ref + total, **tol)
    np.testing.assert_allclose(p["vein_to_vein_days"], v2v, **tol)
    np.testing.assert_allclose(p["referral_to_infusion_days"], total, **tol)
    assert (p["queue_wait_days"] == 0).all()
    assert (p["cost"] == cost).all()
    assert (p["outcome"] == "infused").all()
    assert (p["outcome_step"] == "infusion").all()
    assert (p["manufacturing_attempts"] == 1).all()

    # The trace: every step starts when it is ready and lasts exactly its duration.
    ev = res.events
    assert len(ev) == 40 * len(_PATH)
    assert (ev["status"] == "done").all()
    assert (ev["start_day"] == ev["ready_day"]).all()
    np.testing.assert_allclose(ev["end_day"] - ev["start_day"], ev["step"].map(durations), **tol)

    # Utilisation = slot-days held / (slots x run length); the slot is held for the
    # manufacture step, or from the start of apheresis with reserve_from.
    hold = durations["manufacture"] + (t_to_manufacture - t_before_apheresis if reserve_from else 0.0)
    reps = res.replications
    counts = p.groupby("replication").size().to_numpy()
    expected_util = counts * hold / (10_000 * reps["end_day"].to_numpy())
    np.testing.assert_allclose(reps["utilization_plant"], expected_util, rtol=1e-9)
    np.testing.assert_allclose(reps["end_day"], p.groupby("replication")["infusion_day"].max().clip(lower=365))
    np.testing.assert_allclose(reps["cost_per_infused"], cost)
    np.testing.assert_allclose(reps["vein_to_vein_median"], v2v)


# --------------------------------------------------------------------- 3. disease clocks

_T = 10.0  # fixed pathway length before infusion


def _clock_scenario(death: Any, ineligible: Any, n: int) -> Scenario:
    steps = [
        {"name": "screening", "kind": "screen", "duration": 3},
        {"name": "bridging", "kind": "delay", "duration": _T - 3},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    return make_scenario(steps, cohort={"time_to_death": death, "time_to_ineligible": ineligible},
                         **many_patients(n))


def test_survival_to_infusion_with_an_exponential_death_clock() -> None:
    m = 20.0
    res = v2vsim.simulate(_clock_scenario({"dist": "exponential", "mean": m}, "never", 20_000),
                          replications=1, seed=3)
    p = res.patients
    n = len(p)
    counts = p["outcome"].value_counts()
    # Infused iff death > T: P = exp(-T/m) = 0.6065.
    binomial_check(int(counts["infused"]), n, math.exp(-_T / m))
    assert counts["infused"] + counts["died"] == n
    # Deaths happen at the clock time: E[X | X < T] = m - T e^{-T/m} / (1 - e^{-T/m}) = 4.59 d.
    died = p[p["outcome"] == "died"]
    t_death = died["outcome_day"] - died["referral_day"]
    assert (t_death < _T).all()
    q = math.exp(-_T / m)
    cond_mean = m - _T * q / (1 - q)
    # Var[X | X < T] for the truncated exponential, by numerical integration of the density.
    x = np.linspace(0, _T, 200_001)
    w = np.exp(-x / m)
    w /= w.sum()
    cond_sd = math.sqrt(float((w * (x - cond_mean) ** 2).sum()))
    se = cond_sd / math.sqrt(len(t_death))
    assert abs(t_death.mean() - cond_mean) <= Z * se, (t_death.mean(), cond_mean, se)
    # Died patients report the step they died in and no infusion.
    assert died["infusion_day"].isna().all()
    assert set(died["outcome_step"]) == {"screening", "bridging"}


def test_competing_death_and_ineligibility_clocks() -> None:
    m1, m2 = 20.0, 30.0
    sc = _clock_scenario({"dist": "exponential", "mean": m1}, {"dist": "exponential", "median": m2 * math.log(2)},
                         20_000)
    res = v2vsim.simulate(sc, replications=1, seed=4)
    p = res.patients
    n = len(p)
    counts = p["outcome"].value_counts()
    hazard = 1 / m1 + 1 / m2
    gone = 1 - math.exp(-_T * hazard)
    # Competing exponentials: the first clock is death with probability (1/m1) / hazard =
    # m2 / (m1 + m2), independently of when it rings.
    binomial_check(int(counts["died"]), n, m2 / (m1 + m2) * gone)  # 0.339
    binomial_check(int(counts["ineligible"]), n, m1 / (m1 + m2) * gone)  # 0.226
    binomial_check(int(counts["infused"]), n, 1 - gone)  # 0.435
    assert counts["died"] + counts["ineligible"] + counts["infused"] == n


# --------------------------------------------------------------------- 4. retries

@pytest.mark.parametrize("retry_from", ["manufacture", "apheresis"])
def test_failure_after_retries_is_p_to_the_k(retry_from: str) -> None:
    p_fail, k = 0.4, 3
    steps = [
        {"name": "apheresis", "kind": "apheresis", "duration": 1, "cost": 1000},
        {"name": "manufacture", "kind": "manufacture", "duration": 10, "cost": 5000,
         "failure_probability": p_fail, "on_failure": {"retry_from": retry_from, "max_attempts": k}},
        {"name": "qc", "kind": "release", "duration": 1, "cost": 300},
        {"name": "infusion", "kind": "infusion", "duration": 0, "cost": 20},
    ]
    res = v2vsim.simulate(make_scenario(steps, **many_patients(20_000)), replications=1, seed=5)
    p = res.patients
    n = len(p)
    failed = p["outcome"] == "manufacturing_failed"
    binomial_check(int(failed.sum()), n, p_fail**k)  # 0.064
    assert (p.loc[~failed, "outcome"] == "infused").all()
    assert (p.loc[failed, "outcome_step"] == "manufacture").all()

    # Attempts A: P(A = a) = p^(a-1) (1 - p) for a < k, P(A = k) = p^(k-1);
    # E[A] = (1 - p^k) / (1 - p) = 1.56.
    a = np.arange(1, k + 1)
    pa = p_fail ** (a - 1) * np.where(a < k, 1 - p_fail, 1.0)
    mean_a = (1 - p_fail**k) / (1 - p_fail)
    assert math.isclose(float((a * pa).sum()), mean_a)
    sd_a = math.sqrt(float((a**2 * pa).sum()) - mean_a**2)
    attempts = p["manufacturing_attempts"]
    assert abs(attempts.mean() - mean_a) <= Z * sd_a / math.sqrt(n), (attempts.mean(), mean_a)
    assert (attempts[failed] == k).all()
    assert np.allclose(
        np.bincount(attempts, minlength=k + 1)[1:] / n, pa, atol=Z * math.sqrt(0.25 / n))

    # Each attempt is charged; a retry from apheresis charges apheresis again.
    apheresis_visits = attempts if retry_from == "apheresis" else 1
    expected_cost = 1000 * apheresis_visits + 5000 * attempts + np.where(failed, 0, 320)
    np.testing.assert_allclose(p["cost"], expected_cost)
    # Every failed attempt costs 11 days (retry from apheresis) or 10 (from manufacture).
    infused = p[~failed]
    per_retry = 11.0 if retry_from == "apheresis" else 10.0
    np.testing.assert_allclose(infused["referral_to_infusion_days"],
                               12.0 + per_retry * (infused["manufacturing_attempts"] - 1), atol=1e-9)


# --------------------------------------------------------------------- 5. weekday starts

def test_monday_only_start_wait_matches_the_closed_form() -> None:
    # Day 0 is Monday 00:00. With Poisson arrivals on a horizon of whole weeks, the arrival time
    # within the week, t, is uniform on [0, 7). A patient arriving on Monday (t < 1) starts at
    # once; otherwise the step starts next Monday 00:00, after 7 - t days. So
    #   E[W] = (1/7) * integral_1^7 (7 - t) dt = 18/7 = 2.571 days,
    #   E[W^2] = (1/7) * integral_0^6 s^2 ds = 72/7, P(W = 0) = 1/7.
    steps = [
        {"name": "review", "kind": "screen", "duration": 0.5, "starts_on": ["mon"]},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    sc = make_scenario(steps, **many_patients(20_000, horizon_days=7 * 1000))
    p = v2vsim.simulate(sc, replications=1, seed=6).patients
    n = len(p)
    wait = p["queue_wait_days"]
    mean = 18 / 7
    sd = math.sqrt(72 / 7 - mean**2)
    assert abs(wait.mean() - mean) <= Z * sd / math.sqrt(n), (wait.mean(), mean)
    binomial_check(int((wait == 0).sum()), n, 1 / 7)
    # Every start is on a Monday, and nobody waits a week or more.
    start = p["referral_day"] + wait
    assert (np.floor(start) % 7 == 0).all()
    assert (wait < 7).all()
    np.testing.assert_allclose(p["infusion_day"], start + 0.5, atol=1e-9)


def test_weekday_starts_hand_worked() -> None:
    # Day 0 = Monday 2025-01-06; day d is weekday d % 7 (0 = Monday, 5 = Saturday).
    # review: Mondays only, 2.25 days. manufacture: site allows tue/wed, step allows wed/thu, so
    # only Wednesdays (days 2, 9, 16, 23); 1 day. Slots are ample.
    steps = [
        {"name": "review", "kind": "screen", "duration": 2.25, "starts_on": ["mon"]},
        {"name": "manufacture", "kind": "manufacture", "duration": 1, "site": "lab",
         "starts_on": ["wed", "thu"]},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    referrals = [0.25, 0.875, 5.5, 7.0, 10.75, 15.0]
    sc = make_scenario(steps, sites={"lab": {"slots": 10, "starts_on": ["tue", "wed"]}},
                       horizon_days=30, arrivals={"schedule": referrals})
    res = v2vsim.simulate(sc, replications=1, seed=1)
    p = res.patients
    # referral -> review start (next Monday unless on a Monday) -> review end -> manufacture
    # start (next Wednesday unless on a Wednesday) -> infusion.
    expected = pd.DataFrame({
        "referral_day": referrals,
        "review_start": [0.25, 0.875, 7.0, 7.0, 14.0, 21.0],  # Sat 5.5 -> Mon 7.0; Thu 10.75 -> Mon 14
        # review ends 2.5 (Wed: start now), 3.125 (Thu: next Wed 9.0), 9.25 (Wed), 9.25,
        # 16.25 (Wed), 23.25 (Wed)
        "manufacture_start_day": [2.5, 9.0, 9.25, 9.25, 16.25, 23.25],
        "infusion_day": [3.5, 10.0, 10.25, 10.25, 17.25, 24.25],
        "queue_wait_days": [0.0, 5.875, 1.5, 0.0, 3.25, 6.0],
    })
    ev = res.events
    review = ev[ev["step"] == "review"].sort_values("patient")
    assert review["start_day"].tolist() == expected["review_start"].tolist()
    for column in ("referral_day", "manufacture_start_day", "infusion_day", "queue_wait_days"):
        assert p[column].tolist() == expected[column].tolist(), column


def test_weekday_starts_follow_start_date() -> None:
    # start_date on a Wednesday: day 0 is Wednesday, so the first Monday is day 5.
    steps = [
        {"name": "review", "kind": "screen", "duration": 1, "starts_on": ["mon"]},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    sc = make_scenario(steps, horizon_days=30, arrivals={"schedule": [0.5, 5.25, 6.0]},
                       start_date="2025-01-08")
    p = v2vsim.simulate(sc, replications=1, seed=1).patients
    assert p["infusion_day"].tolist() == [6.0, 6.25, 13.0]
    assert p["queue_wait_days"].tolist() == [4.5, 0.0, 6.0]


def test_death_while_waiting_for_a_start_day() -> None:
    # Referred Tuesday (day 1) to a Monday-only step, death fixed 3 days after referral: dies
    # on day 4 while waiting for day 7; the 3 days spent waiting are queue wait.
    # Referred Monday 7.25: starts at once, infused at 8.25, before its death at 10.25.
    steps = [
        {"name": "review", "kind": "screen", "duration": 1, "starts_on": ["mon"]},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    sc = make_scenario(steps, horizon_days=30, arrivals={"schedule": [1.0, 7.25]},
                       cohort={"time_to_death": 3})
    res = v2vsim.simulate(sc, replications=1, seed=1)
    p = res.patients
    assert p["outcome"].astype(str).tolist() == ["died", "infused"]
    assert p["outcome_step"].tolist() == ["review", "infusion"]
    assert p["outcome_day"].tolist() == [4.0, 8.25]
    assert p["queue_wait_days"].tolist() == [3.0, 0.0]
    assert res.events[["patient", "ready_day", "start_day", "end_day", "status"]].values.tolist() == [
        [0, 1.0, 4.0, 4.0, "died"], [1, 7.25, 7.25, 8.25, "done"], [1, 8.25, 8.25, 8.25, "done"]]


def test_patients_still_in_the_pathway_at_the_stop_are_unresolved() -> None:
    # The first patient holds the only slot for 100 days, past the stop (10 + 20 days); without
    # a disease clock nobody dies: both are reported unresolved, with their wait so far (a
    # step that could never start is refused at load instead: tests/test_engine_rules.py).
    steps = [
        {"name": "manufacture", "kind": "manufacture", "site": "lab", "duration": 100},
        {"name": "infusion", "kind": "infusion", "duration": 0},
    ]
    sc = make_scenario(steps, sites={"lab": {"slots": 1}}, horizon_days=10,
                       drain_days=20, arrivals={"schedule": [0.0, 2.5]})
    res = v2vsim.simulate(sc, replications=1, seed=1)
    p = res.patients
    assert p["outcome"].astype(str).tolist() == ["unresolved", "unresolved"]
    assert p["outcome_day"].isna().all()
    assert p["queue_wait_days"].tolist() == [0.0, 27.5]
    assert p["manufacture_start_day"].tolist()[0] == 0.0
    assert res.replications.loc[0, "unresolved"] == 2
    assert res.replications.loc[0, "end_day"] == 30.0


# --------------------------------------------------------------------- 6. shelf life

def _shelf_scenario(on_failure: dict[str, Any] | None, n: int) -> Scenario:
    infusion: dict[str, Any] = {"name": "infusion", "kind": "infusion",
                                "duration": {"dist": "exponential", "mean": 1}, "shelf_life": 3}
    if on_failure:
        infusion["on_failure"] = on_failure
    steps = [
        {"name": "manufacture", "kind": "manufacture", "duration": 2},
        {"name": "qc", "kind": "release", "duration": 1},
        infusion,
    ]
    return make_scenario(steps, **many_patients(n))


def test_shelf_life_expiry_without_retry() -> None:
    res = v2vsim.simulate(_shelf_scenario(None, 20_000), replications=1, seed=7)
    p = res.patients
    n = len(p)
    expired = p["outcome"] == "product_expired"
    binomial_check(int(expired.sum()), n, math.exp(-3))  # P(D > 3) = 0.0498
    assert (p.loc[~expired, "outcome"] == "infused").all()
    # Expiry happens exactly shelf_life after the end of release; infusions happen before it.
    np.testing.assert_allclose(p.loc[expired, "outcome_day"], p.loc[expired, "release_day"] + 3, atol=1e-9)
    assert (p.loc[expired, "outcome_step"] == "infusion").all()
    gap = (p["infusion_day"] - p["release_day"])[~expired]
    assert (gap < 3).all()
    # E[D | D < 3] = 1 - 3 e^-3 / (1 - e^-3) = 0.843 for D ~ Exp(1).
    q = math.exp(-3)
    cond_mean = 1 - 3 * q / (1 - q)
    cond_var = (2 - (9 + 6 + 2) * q) / (1 - q) - cond_mean**2  # E[D^2 | D < 3] - mean^2
    assert abs(gap.mean() - cond_mean) <= Z * math.sqrt(cond_var / len(gap)), (gap.mean(), cond_mean)


def test_shelf_life_expiry_with_one_remanufacture() -> None:
    res = v2vsim.simulate(
        _shelf_scenario({"retry_from": "manufacture", "max_attempts": 2}, 40_000), replications=1, seed=8)
    p = res.patients
    n = len(p)
    expired = p["outcome"] == "product_expired"
    # Two independent fitness waits must both exceed 3 days: e^-6 = 0.00248.
    binomial_check(int(expired.sum()), n, math.exp(-6))
    assert (p.loc[~expired, "outcome"] == "infused").all()
    # One remanufacture after each first expiry: E[attempts] = 1 + e^-3.
    attempts = p["manufacturing_attempts"]
    binomial_check(int((attempts == 2).sum()), n, math.exp(-3))
    assert set(attempts) <= {1, 2}
    # After a remanufacture the shelf life runs from the new release:
    # remade patients are infused at least 3 + 2 + 1 days after the first release ended.
    remade = p[(attempts == 2) & ~expired]
    first_release_end = remade["referral_day"] + 3
    assert (remade["release_day"] >= first_release_end + 6 - 1e-9).all()
    assert (remade["infusion_day"] - remade["release_day"] < 3).all()
