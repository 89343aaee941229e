"""Apheresis sessions: ``starts_per_day: N`` on a site lets at most N uses start per calendar
day, renewed at each midnight, and with ``starts_on`` only on those weekdays (no slot of the site
is taken on another day), so that collection can be the bottleneck.

Day 0 is ``start_date``; the default 2025-01-06 is a Monday, so the weekdays are days 0-4,
7-11, 14-18, ... Hand-worked traces, the closed form of a saturated unit, the per-day bound on
random runs with clocks and retries, the routing estimate's rate, the compiled engine on the
same runs, and the refused values.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import v2vsim
from v2vsim.engine.compiled import numba_available, run_compiled
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import Scenario, scenario_from_dict

from test_engine_compiled import assert_same_run
from test_policies_validation import expect_one, insert

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
EVENT_COLUMNS = ["patient", "step", "kind", "attempt", "ready_day", "start_day", "end_day", "status"]
ENGINES = [False, True] if numba_available() else [False]  # the loop as plain Python, compiled


def make(chairs: dict[str, Any], arrivals: dict[str, Any], *, start_date: str = "2025-01-06",
         horizon: float = 60, cohort: dict[str, Any] | None = None, apheresis: dict[str, Any] | None = None,
         rule: dict[str, Any] | None = None) -> Scenario:
    """Apheresis (a quarter day) on the unit ``chairs``, then manufacture and infusion; with
    ``rule``, a fallback pathway that collects elsewhere."""
    steps = [{"name": "apheresis", "kind": "apheresis", "site": "chairs", "duration": 0.25, **(apheresis or {})},
             {"name": "manufacture", "kind": "manufacture", "duration": 10},
             {"name": "infusion", "kind": "infusion", "duration": 0}]
    pathways: dict[str, Any] = {"p": {"steps": steps}}
    sites: dict[str, Any] = {"chairs": chairs}
    pathway: Any = "p"
    if rule is not None:
        far = [dict(steps[0], site="elsewhere"), *steps[1:]]
        pathways["far"] = {"steps": far}
        sites["elsewhere"] = {"slots": 100}
        pathway = {"primary": "p", "fallback": "far", "when": rule}
    return scenario_from_dict({
        "name": "apheresis", "horizon_days": horizon, "start_date": start_date, "arrivals": arrivals,
        "cohorts": [{"name": "all", "pathway": pathway, **(cohort or {})}],
        "sites": sites, "pathways": pathways,
    })


def weekday_number(k: int) -> float:
    """Day of the k-th weekday (from 0) counted from a Monday."""
    return float(7 * (k // 5) + k % 5)


# --------------------------------------------------------------------------- hand-worked traces

def test_one_session_a_weekday_collects_the_kth_patient_on_the_kth_weekday() -> None:
    # Twelve referrals at day 0 (a Monday), ten chairs, one session a weekday: P0 on Monday 0,
    # P1 on Tuesday 1, ... P4 on Friday 4; nobody on the weekend (days 5, 6); P5 on Monday 7,
    # ... P9 on Friday 11; P10, P11 on days 14, 15. Each waits from referral to collection.
    sc = make({"slots": 10, "starts_per_day": 1, "starts_on": WEEKDAYS}, {"schedule": [0.0] * 12})
    p = v2vsim.simulate(sc, replications=1, seed=1).patients
    days = [0.0, 1.0, 2.0, 3.0, 4.0, 7.0, 8.0, 9.0, 10.0, 11.0, 14.0, 15.0]
    assert p["apheresis_day"].tolist() == days
    assert p["queue_wait_days"].tolist() == days
    assert p["infusion_day"].tolist() == [d + 10.25 for d in days]
    assert run_replication(sc, 1, 0).site_starts["chairs"].tolist() == days


def test_two_sessions_a_weekday_collect_two_patients_a_day() -> None:
    sc = make({"slots": 10, "starts_per_day": 2, "starts_on": WEEKDAYS}, {"schedule": [0.0] * 12})
    p = v2vsim.simulate(sc, replications=1, seed=1).patients
    assert p["apheresis_day"].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 7.0, 7.0]


def test_one_chair_two_sessions_back_to_back() -> None:
    # One chair, two sessions a day: the second patient of a day starts when the first one's
    # quarter-day collection ends (0.25), the third waits for the next weekday's sessions.
    sc = make({"slots": 1, "starts_per_day": 2, "starts_on": WEEKDAYS}, {"schedule": [0.0] * 12})
    p = v2vsim.simulate(sc, replications=1, seed=1).patients
    assert p["apheresis_day"].tolist() == [0.0, 0.25, 1.0, 1.25, 2.0, 2.25, 3.0, 3.25, 4.0, 4.25, 7.0, 7.25]


def test_a_start_on_a_weekend_and_referrals_during_the_day() -> None:
    # start_date 2025-01-04 is a Saturday: no session on days 0, 1; Monday is day 2. Sessions on
    # Monday, Wednesday and Friday (days 2, 4, 6, 9, 11, ...), one each. Referrals at 0, 0.5,
    # 2.5, 2.6, 4.5: P0 on Monday 2 at 00:00; P1 on Wednesday 4 at 00:00; P2 (2.5, after Monday's
    # session is gone) on Friday 6; P3 on Monday 9; P4 (4.5) on Wednesday 11.
    sc = make({"slots": 3, "starts_per_day": 1, "starts_on": ["mon", "wed", "fri"]},
              {"schedule": [0.0, 0.5, 2.5, 2.6, 4.5]}, start_date="2025-01-04")
    p = v2vsim.simulate(sc, replications=1, seed=1).patients
    assert p["apheresis_day"].tolist() == [2.0, 4.0, 6.0, 9.0, 11.0]


def test_without_starts_on_every_day_has_its_sessions() -> None:
    # No weekday rule: one session every calendar day, the weekend included; a referral after
    # the day's session waits for the next midnight.
    sc = make({"slots": 5, "starts_per_day": 1}, {"schedule": [0.0, 0.0, 0.0, 5.5, 5.6]})
    p = v2vsim.simulate(sc, replications=1, seed=1).patients
    assert p["apheresis_day"].tolist() == [0.0, 1.0, 2.0, 5.5, 6.0]


# --------------------------------------------------------------------------- closed form, invariants

@pytest.mark.parametrize("per_day", [1, 3])
def test_a_saturated_unit_collects_n_patients_each_weekday(per_day: int) -> None:
    # 200 referrals at day 0, no clocks: the unit never idles, so the k-th patient is collected
    # on weekday number floor(k / N), and the run's starts are N per weekday exactly.
    n = 200
    sc = make({"slots": 50, "starts_per_day": per_day, "starts_on": WEEKDAYS}, {"schedule": [0.0] * n},
              horizon=400)
    p = v2vsim.simulate(sc, replications=1, seed=1).patients
    expected = [weekday_number(k // per_day) for k in range(n)]
    assert p["apheresis_day"].tolist() == expected
    starts = run_replication(sc, 1, 0).site_starts["chairs"]
    counts = pd.Series(starts).value_counts().sort_index()
    assert counts.index.tolist() == [weekday_number(k) for k in range(len(counts))]
    assert (counts.iloc[:-1] == per_day).all() and counts.iloc[-1] == n - per_day * (len(counts) - 1)


def heavy(seed_site: dict[str, Any] | None = None) -> Scenario:
    """Demand well above 2 sessions on Monday, Wednesday and Friday, from a Thursday, with death
    clocks (some die in the queue), failed collections retried and a 2-day slot hold."""
    chairs = {"slots": 2, "starts_per_day": 2, "starts_on": ["mon", "wed", "fri"], **(seed_site or {})}
    return make(chairs, {"rate_per_year": 400}, start_date="2025-03-13", horizon=365,
                cohort={"time_to_death": {"dist": "exponential", "mean": 90}},
                apheresis={"duration": {"dist": "uniform", "low": 0.1, "high": 2.0},
                           "failure_probability": 0.2, "on_failure": {"retry_from": "apheresis", "max_attempts": 3}})


def test_no_calendar_day_ever_has_more_than_n_starts() -> None:
    sc = heavy()
    start = sc.start_date
    total = full = 0
    for rep in range(3):
        out = run_replication(sc, 5, rep, trace_patients=10_000)
        starts = out.site_starts["chairs"]
        days = np.floor(starts).astype(int)
        weekday = [(start + dt.timedelta(days=int(d))).weekday() for d in days]
        assert set(weekday) <= {0, 2, 4}  # Monday, Wednesday, Friday only
        counts = pd.Series(days).value_counts()
        assert counts.max() <= 2
        total += len(starts)
        full += int((counts == 2).sum())
        # The starts are the collections (first attempts and retries) that began: the trace's
        # apheresis rows but those of patients who died in the queue.
        ev = pd.DataFrame(out.events, columns=EVENT_COLUMNS)
        aph = ev[(ev["step"] == "apheresis") & ~((ev["status"] == "died") & (ev["start_day"] == ev["end_day"]))]
        np.testing.assert_array_equal(np.sort(aph["start_day"].to_numpy()), starts)
        assert (aph["attempt"] > 1).any() and (ev["status"] == "died").any()
    assert total > 300 and full > 100  # the sessions bind: most session days are full


def test_a_large_daily_allocation_without_weekdays_changes_no_patient() -> None:
    # 10**6 sessions a day never bind: the site has a calendar (its pool renews the allocation
    # at each midnight) but every patient's days are those of the plain site.
    plain = heavy({"starts_on": None, "starts_per_day": None})
    daily = heavy({"starts_on": None, "starts_per_day": 1_000_000})
    assert daily.sites["chairs"].has_calendar and not plain.sites["chairs"].has_calendar
    a = v2vsim.simulate(plain, replications=3, seed=9, engine="simpy").patients
    b = v2vsim.simulate(daily, replications=3, seed=9, engine="simpy").patients
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- the compiled engine

@pytest.mark.parametrize("compiled", ENGINES)
def test_the_compiled_engine_gives_the_same_sessions(compiled: bool) -> None:
    cases = [
        make({"slots": 10, "starts_per_day": 1, "starts_on": WEEKDAYS}, {"schedule": [0.0] * 12}),
        make({"slots": 1, "starts_per_day": 2, "starts_on": WEEKDAYS}, {"schedule": [0.0] * 12}),
        make({"slots": 3, "starts_per_day": 1, "starts_on": ["mon", "wed", "fri"]},
             {"schedule": [0.0, 0.5, 2.5, 2.6, 4.5]}, start_date="2025-01-04"),
        heavy(),
    ]
    for sc in cases:
        reps = [0, 1]
        ref = [run_replication(sc, 5, r, trace_patients=10**6) for r in reps]
        for out, expect in zip(run_compiled(sc, 5, reps, trace={0: 10**6, 1: 10**6}, compiled=compiled), ref):
            assert_same_run(out, expect)
    [out] = run_compiled(cases[0], 1, [0], compiled=compiled)
    assert out.columns["apheresis_day"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 7.0, 8.0, 9.0, 10.0, 11.0, 14.0, 15.0]


# --------------------------------------------------------------------------- routing estimate

@pytest.mark.parametrize("engine", ["simpy", "compiled"])
def test_expected_wait_uses_the_mean_daily_allocation(engine: str) -> None:
    # Ten chairs, a quarter-day hold, one session a weekday: uses per day = min(10 / 0.25,
    # 1 x 5 / 7) = 5/7. P0 (0) takes Monday's session: near. P1 (0.1): nobody waits, no session
    # left: (0 + 1) x 7/5 = 1.4 <= 3 -> near; P2 (0.2): (1 + 1) x 1.4 = 2.8 -> near; P3 (0.3):
    # 4.2 > 3 -> far, and P4 (0.4) too. (With the slots' rate alone all would stay near; with
    # one a day P3 would, at 3.)
    sc = make({"slots": 10, "starts_per_day": 1, "starts_on": WEEKDAYS}, {"schedule": [0.0, 0.1, 0.2, 0.3, 0.4]},
              rule={"expected_wait_more_than_days": 3})
    if engine == "compiled":
        p = v2vsim.simulate(sc, replications=1, seed=1, engine="compiled").patients
    else:
        p = v2vsim.simulate(sc, replications=1, seed=1, engine="simpy").patients
    assert p["pathway"].tolist() == ["p", "p", "p", "far", "far"]
    assert p["apheresis_day"].tolist() == [0.0, 1.0, 2.0, 0.3, 0.4]


# --------------------------------------------------------------------------- refused values

@pytest.mark.parametrize(("value", "fragment"), [
    ("0", "must be at least 1 (got 0)"),
    ("-2", "must be at least 1"),
    ("true", "not true"),
    ("1.5", "valid integer"),
    ("two", "valid integer"),
], ids=["zero", "negative", "bool", "float", "word"])
def test_bad_daily_allocations_are_refused_with_file_line_and_key(tmp_path: Path, value: str, fragment: str) -> None:
    # BASE_LINES of test_policies_validation: the site `lab` is on lines 9-10, so the new key is
    # line 11.
    expect_one(tmp_path, insert(10, f"    starts_per_day: {value}"), 11, "sites.lab.starts_per_day", fragment)


def test_a_misspelt_daily_allocation_is_named(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(10, "    starts_per_dya: 2"), 11, "sites.lab.starts_per_dya",
               "unknown key", "did you mean 'starts_per_day'?")
