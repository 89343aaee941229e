"""Invariants that hold for any scenario, checked on the bundled scenarios and a stressed one.

Each patient has exactly one outcome; days never go backwards; the outcome agrees with the days;
a site never has more holders than slots and never leaves a slot idle while someone queues; no
patient is dropped (unresolved ones are counted); more slots never lengthen the wait.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

import v2vsim
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import OUTCOMES
from v2vsim.scenario import Scenario, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
EPS = 1e-9
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
DAY_COLUMNS = ["referral_day", "apheresis_day", "manufacture_start_day", "release_day", "infusion_day"]


def load_yaml(name: str) -> dict[str, Any]:
    """A bundled scenario as plain data, to change one value and validate again."""
    return YAML(typ="safe", pure=True).load((SCENARIOS / name).read_text(encoding="utf-8"))


def stressed(slots: int = 1, drain_days: float = 60.0, reserve: bool = True,
             site_weekdays: bool = True) -> Scenario:
    """Demand far above one slot's capacity, short drain: queues, deaths and unresolved patients,
    with every feature in play (priorities, both clocks, failures, retries, shelf life)."""
    manufacture: dict[str, Any] = {
        "name": "manufacture", "kind": "manufacture", "site": "plant",
        "duration": {"dist": "gamma", "mean": 12, "sd": 3}, "failure_probability": 0.1,
        "on_failure": {"retry_from": "apheresis", "max_attempts": 2}, "cost": 100}
    if reserve:
        manufacture["reserve_from"] = "apheresis"
    site: dict[str, Any] = {"slots": slots, "cost_per_use": 10}
    if site_weekdays:
        site["starts_on"] = WEEKDAYS
    return scenario_from_dict({
        "name": "stressed",
        "horizon_days": 730,
        "drain_days": drain_days,
        "arrivals": {"rate_per_year": 60},  # ~1.6 x one slot's capacity
        "cohorts": [
            {"name": "child", "share": 0.3, "pathway": "p", "priority": 0,
             "time_to_death": {"dist": "weibull", "shape": 0.8, "median": 200},
             "time_to_ineligible": {"dist": "exponential", "mean": 400}},
            {"name": "adult", "share": 0.7, "pathway": "p", "priority": 1,
             "time_to_death": {"dist": "lognormal", "median": 150, "p90": 600}},
        ],
        "sites": {"plant": site},
        "pathways": {"p": {"steps": [
            {"name": "screening", "kind": "screen", "duration": {"dist": "uniform", "low": 1, "high": 5},
             "failure_probability": 0.05},
            {"name": "apheresis", "kind": "apheresis", "starts_on": WEEKDAYS, "duration": 0.25,
             "failure_probability": 0.03, "on_failure": {"retry_from": "apheresis", "max_attempts": 2}},
            {"name": "courier", "kind": "transport",
             "duration": {"dist": "triangular", "low": 0.5, "mode": 1, "high": 3}, "failure_probability": 0.01},
            manufacture,
            {"name": "qc", "kind": "release", "duration": {"dist": "uniform", "low": 1, "high": 4},
             "failure_probability": 0.05, "on_failure": {"retry_from": "manufacture", "max_attempts": 2}},
            {"name": "bridging", "kind": "conditioning", "duration": 2},
            {"name": "infusion", "kind": "infusion", "duration": {"dist": "exponential", "mean": 1},
             "shelf_life": 3, "on_failure": {"retry_from": "manufacture", "max_attempts": 2}},
        ]}},
    })


def check_patient_invariants(res: v2vsim.Results) -> None:
    p = res.patients
    reps = res.replications
    sc = res.scenario

    # No patient dropped: one row per referral, numbered 0..n-1 in each replication, and the
    # outcome counts add up to the referrals.
    assert reps["replication"].tolist() == list(range(res.n_replications))
    sizes = p.groupby("replication").size().reindex(reps["replication"], fill_value=0)
    assert (sizes.to_numpy() == reps["referred"].to_numpy()).all()
    for _, group in p.groupby("replication"):
        assert group["patient"].tolist() == list(range(len(group)))
    assert (reps[list(OUTCOMES)].sum(axis=1) == reps["referred"]).all()
    assert (reps["referred"] > 0).all()

    # Exactly one known outcome per patient.
    assert p["outcome"].notna().all()
    assert set(p["outcome"].astype(str)) <= set(OUTCOMES)
    assert not p.duplicated(["replication", "patient"]).any()
    counted = pd.crosstab(p["replication"], p["outcome"].astype(str)).reindex(columns=list(OUTCOMES), fill_value=0)
    assert (counted.to_numpy() == reps[list(OUTCOMES)].to_numpy()).all()

    # Days never go backwards (where present), referrals inside the horizon.
    assert p["referral_day"].between(0, sc.horizon_days, inclusive="left").all()
    days = p[DAY_COLUMNS].to_numpy()
    for a in range(len(DAY_COLUMNS)):
        for b in range(a + 1, len(DAY_COLUMNS)):
            both = ~np.isnan(days[:, a]) & ~np.isnan(days[:, b])
            assert (days[both, a] <= days[both, b] + EPS).all(), (DAY_COLUMNS[a], DAY_COLUMNS[b])
    last = np.nanmax(days, axis=1)

    # The outcome agrees with the days.
    outcome = p["outcome"].astype(str)
    infused = (outcome == "infused").to_numpy()
    unresolved = (outcome == "unresolved").to_numpy()
    assert (p["infusion_day"].notna().to_numpy() == infused).all()
    assert (p["outcome_day"].isna().to_numpy() == unresolved).all()
    assert (p["outcome_day"][infused] == p["infusion_day"][infused]).all()
    resolved = ~unresolved
    assert (p["outcome_day"].to_numpy()[resolved] >= last[resolved] - EPS).all()
    np.testing.assert_allclose(p["vein_to_vein_days"], p["infusion_day"] - p["apheresis_day"])
    np.testing.assert_allclose(p["referral_to_infusion_days"], p["infusion_day"] - p["referral_day"])
    assert (p["vein_to_vein_days"].notna().to_numpy() == infused).all()  # every pathway has apheresis
    manufactured = p["manufacture_start_day"].notna()
    assert ((p["manufacturing_attempts"] > 0) == manufactured).all()
    assert (p.loc[outcome == "manufacturing_failed", "manufacture_start_day"].notna()).all()
    assert (p.loc[outcome.isin(["infused", "product_expired"]), "release_day"].notna()).all()
    # Unresolved patients are in the pathway at the stop, resolved ones left before it.
    end = p["replication"].map(reps.set_index("replication")["end_day"]).to_numpy()
    assert (p["outcome_day"].to_numpy()[resolved] <= end[resolved] + EPS).all()
    stop = sc.horizon_days + sc.drain_days
    if unresolved.any():
        assert (reps.loc[reps["unresolved"] > 0, "end_day"] == stop).all()

    # Waits are within the time spent in the system; costs are non-negative.
    wait = p["queue_wait_days"].to_numpy()
    in_system = np.where(unresolved, end, p["outcome_day"].to_numpy()) - p["referral_day"].to_numpy()
    assert (wait >= 0).all()
    assert (wait <= in_system + EPS).all()
    assert (p["cost"] >= 0).all()
    assert np.isfinite(reps["queue_wait_mean"]).all()
    np.testing.assert_allclose(reps["infused_fraction"], reps["infused"] / reps["referred"])


def check_site_invariants(res: v2vsim.Results) -> None:
    days = res.site_days
    assert (days["in_use"] <= days["slots"] + EPS).all()
    assert (days["in_use"] >= -EPS).all() and (days["queue"] >= -EPS).all()
    for site, cfg in res.scenario.sites.items():
        util = res.replications[f"utilization_{site}"]
        assert util.between(0, 1 + EPS).all()
        # The daily profile integrates to the busy slot-days of the utilisation metric.
        held = days[days["site"] == site].groupby("replication")["in_use"].sum()
        np.testing.assert_allclose(held.to_numpy(), util.to_numpy() * cfg.slots * res.replications["end_day"],
                                   rtol=1e-9)


def check_timeline(sc: Scenario, seed: int, replication: int) -> None:
    """The raw change log of every site, row by row (stricter than daily averages)."""
    out = run_replication(sc, seed, replication)
    for site, cfg in sc.sites.items():
        log = out.site_timeline[site]
        assert log.shape[1] == 3 and len(log) > 0
        t, in_use, queue = log[:, 0], log[:, 1], log[:, 2]
        assert (np.diff(t) >= 0).all()
        assert (in_use <= cfg.slots).all() and (in_use >= 0).all() and (queue >= 0).all()
        # Settled state at each instant (last row at that time): nobody queues while a slot is free.
        last_at_time = np.r_[t[1:] != t[:-1], True]
        settled_in_use, settled_queue = in_use[last_at_time], queue[last_at_time]
        assert (settled_in_use[settled_queue > 0] == cfg.slots).all()
        # Integral of slots held = the busy slot-days behind the utilisation metric.
        busy = float(np.sum(in_use[:-1] * np.diff(t)) + in_use[-1] * (out.end_day - t[-1]))
        assert np.isclose(busy, out.site_busy_slot_days[site], rtol=1e-9)


@pytest.mark.parametrize("name", ["local.yaml", "overseas.yaml"])
def test_invariants_on_bundled_scenarios(name: str) -> None:
    sc = v2vsim.load_scenario(SCENARIOS / name)
    res = v2vsim.simulate(sc, replications=20, seed=123)
    check_patient_invariants(res)
    check_site_invariants(res)
    for rep in (0, 1):
        check_timeline(sc, 123, rep)


def test_invariants_on_a_stressed_scenario() -> None:
    sc = stressed()
    res = v2vsim.simulate(sc, replications=20, seed=5)
    check_patient_invariants(res)
    check_site_invariants(res)
    for rep in range(3):
        check_timeline(sc, 5, rep)
    p = res.patients
    outcome = p["outcome"].astype(str)
    # The stress is real: queues, deaths, failures and patients still in the pathway at the stop.
    for name in ("infused", "died", "ineligible", "unresolved", "screen_failed", "manufacturing_failed",
                 "product_expired"):
        assert (outcome == name).any(), name
    unresolved = p[outcome == "unresolved"]
    # Patients still waiting at the stop have their wait so far counted (not zero) ...
    assert (unresolved["queue_wait_days"] > 0).mean() > 0.5
    # ... and costs already charged are counted too (manufacture 100 + cost_per_use 10 per start).
    started = unresolved[unresolved["manufacture_start_day"].notna()]
    assert len(started) > 0
    np.testing.assert_allclose(started["cost"], 110.0 * started["manufacturing_attempts"])


def test_slots_are_never_overbooked_in_the_event_trace() -> None:
    # Without reserve_from and site weekdays the slot is held exactly during the manufacture
    # step, so the trace's manufacture rows are the holding intervals.
    sc = stressed(slots=2, drain_days=3000, reserve=False, site_weekdays=False)
    for rep in range(3):
        out = run_replication(sc, 17, rep, trace_patients=10_000)
        ev = pd.DataFrame(out.events, columns=["patient", "step", "kind", "attempt", "ready_day",
                                               "start_day", "end_day", "status"])
        assert len(out.columns["patient"]) > 100
        rows = ev[ev["step"] == "manufacture"]
        held = rows[rows["start_day"] < rows["end_day"]]
        # Sweep: +1 at a start, -1 at an end; ends before starts at the same instant.
        times = np.r_[held["start_day"], held["end_day"]]
        delta = np.r_[np.ones(len(held)), -np.ones(len(held))]
        order = np.lexsort((delta, times))
        assert np.cumsum(delta[order]).max() <= 2
        assert np.isclose((held["end_day"] - held["start_day"]).sum(), out.site_busy_slot_days["plant"])
        # Every step row is ordered ready <= start <= end, and a patient's steps follow each other.
        assert ((ev["ready_day"] <= ev["start_day"]) & (ev["start_day"] <= ev["end_day"])).all()
        for _, steps in ev.groupby("patient", sort=False):
            assert (steps["ready_day"].to_numpy()[1:] >= steps["end_day"].to_numpy()[:-1] - EPS).all()


def test_more_slots_never_lengthen_the_mean_wait() -> None:
    # Same seed: common random numbers give the same patients in both runs.
    def waits(sc: Scenario) -> np.ndarray:
        return v2vsim.simulate(sc, replications=20, seed=9).replications["queue_wait_mean"].to_numpy()

    one, two = waits(stressed(slots=1)), waits(stressed(slots=2))
    assert (two <= one).all()
    data = load_yaml("local.yaml")
    data["sites"]["hkib"]["slots"] = 1
    one = waits(scenario_from_dict(data))
    data["sites"]["hkib"]["slots"] = 2
    two = waits(scenario_from_dict(data))
    assert (two <= one).all()


def test_more_slots_never_lengthen_any_wait_in_a_fifo_queue() -> None:
    # FIFO G/G/c with the same arrival times and service times (common random numbers): each
    # customer's wait is non-increasing in c (the Kiefer-Wolfowitz workload vector is monotone),
    # so the comparison holds patient by patient, not only on average.
    def waits(slots: int) -> np.ndarray:
        sc = scenario_from_dict({
            "name": "G/G/c", "horizon_days": 2000, "arrivals": {"rate_per_year": 40},
            "cohorts": [{"name": "all", "pathway": "p"}],
            "sites": {"plant": {"slots": slots}},
            "pathways": {"p": {"steps": [
                {"name": "courier", "kind": "transport", "duration": {"dist": "uniform", "low": 0, "high": 3}},
                {"name": "manufacture", "kind": "manufacture", "site": "plant",
                 "duration": {"dist": "lognormal", "median": 10, "p90": 20}},
                {"name": "infusion", "kind": "infusion"},
            ]}},
        })
        return v2vsim.simulate(sc, replications=5, seed=3).patients["queue_wait_days"].to_numpy()

    w1, w2, w3 = waits(1), waits(2), waits(3)
    assert w1.mean() > 10  # a real queue with one slot
    assert (w2 <= w1 + EPS).all() and (w3 <= w2 + EPS).all()
