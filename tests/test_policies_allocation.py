"""Slot allocations: at most ``starts_per_month`` / ``starts_per_week`` uses of a site start in a
calendar month / week; a use starts when a patient takes a slot; unused allocation is lost.

Day 0 is ``start_date``. With the default 2025-01-06 (a Monday) the calendar months begin on
days 26 (1 Feb), 54 (1 Mar), 85 (1 Apr), 115 (1 May), ...; weeks begin on every 7th day.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd

import v2vsim
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import Scenario, scenario_from_dict

MONTH_STARTS = {"feb": 26.0, "mar": 54.0, "apr": 85.0, "may": 115.0}
EVENT_COLUMNS = ["patient", "step", "kind", "attempt", "ready_day", "start_day", "end_day", "status"]


def make(site: dict[str, Any], arrivals: dict[str, Any], *, horizon: float = 200, cohort: dict[str, Any] | None = None,
         reserve: bool = False, start_date: str | None = None, drain: float = 3650) -> Scenario:
    manufacture: dict[str, Any] = {"name": "manufacture", "kind": "manufacture", "site": "lab", "duration": 10}
    if reserve:
        manufacture["reserve_from"] = "apheresis"
    data: dict[str, Any] = {
        "name": "allocation",
        "horizon_days": horizon,
        "drain_days": drain,
        "arrivals": arrivals,
        "cohorts": [{"name": "all", "pathway": "p", **(cohort or {})}],
        "sites": {"lab": site},
        "pathways": {"p": {"steps": [
            {"name": "apheresis", "kind": "apheresis", "duration": 0.5},
            manufacture,
            {"name": "infusion", "kind": "infusion", "duration": 0},
        ]}},
    }
    if start_date:
        data["start_date"] = start_date
    return scenario_from_dict(data)


def test_monthly_allocation_hand_worked_trace() -> None:
    # Five slots but one start a month, the slot taken before apheresis (0.5 d) for manufacture
    # (10 d). Referrals on days 0, 1, 2, 30, 31 (no clocks):
    #   P0 takes January's start at 0 (manufacture 0.5-10.5, infused 10.5);
    #   P1, P2 queue; P1 gets February's start at 26 (1 Feb), P2 March's at 54;
    #   P3 (day 30) and P4 (day 31) queue behind P2: April's start (85) and May's (115).
    sc = make({"slots": 5, "starts_per_month": 1}, {"schedule": [0, 1, 2, 30, 31]}, reserve=True)
    res = v2vsim.simulate(sc, replications=1, seed=1)
    p = res.patients
    grant = [0.0, 26.0, 54.0, 85.0, 115.0]
    assert p["apheresis_day"].tolist() == grant
    assert p["infusion_day"].tolist() == [g + 10.5 for g in grant]
    assert p["queue_wait_days"].tolist() == [0.0, 25.0, 52.0, 55.0, 84.0]
    out = run_replication(sc, 1, 0)
    assert out.site_starts["lab"].tolist() == grant
    # Settled site state (time, in use, waiting) after each instant's changes.
    settled: dict[float, tuple[float, float]] = {}
    for t, in_use, queue in out.site_timeline["lab"].tolist():
        settled[t] = (in_use, queue)
    assert list(settled.items()) == [
        (0.0, (1, 0)), (1.0, (1, 1)), (2.0, (1, 2)), (10.5, (0, 2)), (26.0, (1, 1)),
        (30.0, (1, 2)), (31.0, (1, 3)), (36.5, (0, 3)), (54.0, (1, 2)), (64.5, (0, 2)),
        (85.0, (1, 1)), (95.5, (0, 1)), (115.0, (1, 0)), (125.5, (0, 0)),
    ]
    # Slots stood free while patients waited: utilisation is low although the queue was long.
    assert res.replications.loc[0, "utilization_lab"] == 5 * 10.5 / (5 * 200)


def test_weekly_allocation_follows_calendar_weeks_from_start_date() -> None:
    # start_date 2025-01-08 is a Wednesday: the first week ends on Sunday (day 4), the next
    # Mondays are days 5, 12, 19. Two starts a week; referrals on days 0..5 at 00:00 and 0.5.
    referrals = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    sc = make({"slots": 100, "starts_per_week": 2}, {"schedule": referrals}, start_date="2025-01-08", reserve=True)
    p = v2vsim.simulate(sc, replications=1, seed=1).patients
    # P0, P1 this week; P2, P3 on Monday day 5 at 00:00; P4, P5 on day 12; P6 on day 19.
    assert p["apheresis_day"].tolist() == [0.0, 0.5, 5.0, 5.0, 12.0, 12.0, 19.0]


def _calendar_counts(days: np.ndarray, start: dt.date) -> tuple[pd.Series, pd.Series]:
    dates = pd.to_datetime([start + dt.timedelta(days=float(d)) for d in days])
    months = pd.Series(1, index=dates).groupby([dates.year, dates.month]).sum()
    iso = dates.isocalendar()
    weeks = pd.Series(1, index=dates).groupby([iso["year"].to_numpy(), iso["week"].to_numpy()]).sum()
    return months, weeks


def test_starts_never_exceed_the_allocation_in_any_month_or_week() -> None:
    # Heavy demand (100 a year) against 3 starts a month and 1 a week, with death clocks (some
    # die in the queue, some while holding a slot), a slot booked before apheresis, weekday
    # starts and a start date mid-week: the trace's slot-taking instants never exceed either
    # allocation, in any calendar month (1st to last day) or ISO week (Monday to Sunday).
    start = dt.date(2025, 3, 13)  # a Thursday
    sc = make({"slots": 2, "starts_per_month": 3, "starts_per_week": 1, "starts_on": ["mon", "tue", "wed", "thu", "fri"]},
              {"rate_per_year": 100}, horizon=730, reserve=True, start_date=str(start),
              cohort={"time_to_death": {"dist": "exponential", "mean": 120}})
    total = 0
    full_months = 0
    for rep in range(3):
        out = run_replication(sc, 5, rep, trace_patients=10_000)
        ev = pd.DataFrame(out.events, columns=EVENT_COLUMNS)
        # The slot is taken when apheresis begins (the apheresis step has no start-day rule):
        # the first-attempt apheresis rows that started (not a death in the queue).
        aph = ev[(ev["step"] == "apheresis") & ~((ev["status"] == "died") & (ev["start_day"] == ev["end_day"]))]
        starts = np.sort(aph["start_day"].to_numpy())
        np.testing.assert_array_equal(starts, out.site_starts["lab"])
        months, weeks = _calendar_counts(starts, start)
        assert months.max() <= 3 and weeks.max() <= 1
        total += len(starts)
        # Demand is high: most months use the whole allocation of the weeks they contain.
        full_months += int((months == 3).sum())
        # Each start happens when an allocation is renewed (Monday or the 1st, 00:00), a slot
        # frees up or a patient is referred, never at another instant.
        ends = set(ev.loc[ev["step"] == "manufacture", "end_day"]) | set(ev.loc[ev["status"] == "died", "end_day"])
        referral = set(out.columns["referral_day"].tolist())
        for s in starts:
            date = start + dt.timedelta(days=float(s))
            renewal = s == math.floor(s) and (date.weekday() == 0 or date.day == 1)
            assert renewal or s in ends or s in referral, s
    assert total > 200 and full_months > 10


def test_the_waitlist_grows_when_demand_exceeds_the_allocation() -> None:
    # No disease clocks, 60 referrals a year against 2 starts a month (24 a year), ample slots:
    # once a queue has formed every month starts exactly 2 uses at its first instant, so the
    # queue grows by (60 - 24) / 365 patients a day on average; with demand below the
    # allocation (12 a year) it does not grow.
    def slopes(rate: float) -> np.ndarray:
        sc = make({"slots": 50, "starts_per_month": 2}, {"rate_per_year": rate}, horizon=1095, drain=0)
        res = v2vsim.simulate(sc, replications=12, seed=21)
        out = []
        for _, days in res.site_days.groupby("replication"):
            d = days[days["day"] >= 180]  # after the queue has formed
            out.append(np.polyfit(d["day"], d["queue"], 1)[0])
        return np.asarray(out)

    high = slopes(60)
    expected = (60 - 24) / 365
    se = high.std(ddof=1) / math.sqrt(len(high))
    assert abs(high.mean() - expected) <= 4 * se + 1e-3, (high.mean(), expected, se)
    assert (high > 0.5 * expected).all()
    low = slopes(12)
    assert abs(low.mean()) < 0.1 * expected

    # Every month's starts sit exactly on its first instant once the queue is long.
    sc = make({"slots": 50, "starts_per_month": 2}, {"rate_per_year": 60}, horizon=1095, drain=0)
    starts = run_replication(sc, 21, 0).site_starts["lab"]
    later = starts[starts > 180]
    first_of_month = {float((dt.date(y, m, 1) - dt.date(2025, 1, 6)).days)
                      for y in range(2025, 2029) for m in range(1, 13)}
    assert set(later.tolist()) <= first_of_month
    assert (pd.Series(later).value_counts() == 2).all()


def test_invariants_on_the_bundled_policy_scenarios() -> None:
    # The model's general invariants (one outcome each, days in order, no patient dropped,
    # utilisation consistent with the daily profile) hold with routing, allocations, bridging
    # and survival in play; the shortage centre never starts more than 2 uses a month.
    from pathlib import Path

    from test_model_invariants import check_patient_invariants, check_site_invariants

    scenarios = Path(__file__).resolve().parent.parent / "scenarios"
    for name in ("hybrid.yaml", "slot_shortage.yaml"):
        sc = v2vsim.load_scenario(scenarios / name)
        res = v2vsim.simulate(sc, replications=4, seed=11)
        check_patient_invariants(res)
        check_site_invariants(res)
        for site in sc.sites:
            out = run_replication(sc, 11, 1)
            log = out.site_timeline[site]
            t, in_use = log[:, 0], log[:, 1]
            busy = float(np.sum(in_use[:-1] * np.diff(t)) + in_use[-1] * (out.end_day - t[-1]))
            assert np.isclose(busy, out.site_busy_slot_days[site], rtol=1e-9)
    starts = run_replication(sc, 11, 2).site_starts["commercial_allocation"]
    months, _ = _calendar_counts(starts, sc.start_date)
    assert months.max() == 2 and len(starts) > 100
