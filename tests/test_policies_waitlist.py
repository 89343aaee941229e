"""Waitlists: a starting backlog, a site's queue order, re-referral while waiting, and the
waitlist columns (listed_day, slot_day, time_to_slot_days).

Hand-worked traces with fixed durations and fixed clocks; the backlog's conditioned clocks
against the closed form S(w + t) / S(w); the queue order checked at every hand-over of a
random run against keys computed from the patients' own clocks (not from the engine's heap).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import v2vsim
from v2vsim.engine.engines import EngineError
from v2vsim.engine.replication import Replication
from v2vsim.scenario import scenario_from_dict

from test_policies_validation import expect_one, insert

NAN = math.nan


def base_data() -> dict[str, Any]:
    """Three pathways on a one-slot and an ample site; one referral on day 99."""
    return {
        "name": "waitlist",
        "horizon_days": 100,
        "drain_days": 1000,
        "arrivals": {"schedule": [99]},
        "cohorts": [{"name": "fast", "pathway": "fast"}],
        "sites": {"lab": {"slots": 1}, "far": {"slots": 10}},
        "pathways": {
            "fast": {"steps": [
                {"name": "make", "kind": "manufacture", "site": "lab", "duration": 20},
                {"name": "infusion", "kind": "infusion", "duration": 0}]},
            "slow": {"steps": [
                {"name": "wait", "kind": "delay", "duration": 10},
                {"name": "make", "kind": "manufacture", "site": "lab", "duration": 20},
                {"name": "infusion", "kind": "infusion", "duration": 0}]},
            "away": {"steps": [
                {"name": "ship", "kind": "transport", "duration": 5},
                {"name": "make_far", "kind": "manufacture", "site": "far", "duration": 10},
                {"name": "infusion", "kind": "infusion", "duration": 0}]},
        },
    }


def scenario(**top: Any) -> v2vsim.Scenario:
    """:func:`base_data` with ``top`` replacing top-level keys."""
    return scenario_from_dict({**base_data(), **top})


def run(sc: v2vsim.Scenario, **kw: Any) -> v2vsim.Results:
    return v2vsim.simulate(sc, replications=1, seed=3, **kw)


def cols(res: v2vsim.Results, *names: str) -> list[list[Any]]:
    p = res.patients
    return [[None if isinstance(v, float) and math.isnan(v) else v for v in p[n].tolist()] for n in names]


# --------------------------------------------------------------------------- backlog

def test_backlog_is_served_longest_waiting_first_then_new_referrals() -> None:
    # Backlog waited 10, 30, 20 -> patients 0, 1, 2 are those of 30, 20, 10 days; one slot,
    # 20 days each: 0-20, 20-40, 40-60; the referral of day 99 gets the slot at once.
    sc = scenario(backlog=[{"count": 1, "waited_days": 10}, {"waited_days": 30}, {"waited_days": 20}])
    res = run(sc)
    start, infusion, waited, listed, slot, to_slot, wait, referral = cols(
        res, "manufacture_start_day", "infusion_day", "backlog_waited_days", "listed_day", "slot_day",
        "time_to_slot_days", "queue_wait_days", "referral_day")
    assert start == [0.0, 20.0, 40.0, 99.0]
    assert infusion == [20.0, 40.0, 60.0, 119.0]
    assert waited == [30.0, 20.0, 10.0, None]
    assert referral == [0.0, 0.0, 0.0, 99.0]
    assert listed == [0.0, 0.0, 0.0, 99.0] and slot == [0.0, 20.0, 40.0, 99.0]
    assert to_slot == [0.0, 20.0, 40.0, 0.0] and wait == [0.0, 20.0, 40.0, 0.0]
    reps = res.replications
    assert reps.loc[0, "referred"] == 4 and reps.loc[0, "listed"] == 4
    assert reps.loc[0, "time_to_slot_median"] == 10.0  # median of 0, 20, 40, 0
    assert reps.loc[0, "treated_within_30_days"] == 0.5  # two of four infused by day 30 of their wait


def test_backlog_count_form_and_the_auto_engine() -> None:
    res = run(scenario(backlog=3))
    assert cols(res, "backlog_waited_days")[0] == [0.0, 0.0, 0.0, None]
    assert res.extra["engines"] == {"simpy": 1}
    for engine in ("vectorised", "compiled"):
        with pytest.raises(EngineError, match="starts with a backlog of waiting patients"):
            run(scenario(backlog=3), engine=engine)


@pytest.mark.parametrize("dist", [{"dist": "weibull", "shape": 0.9, "median": 274},
                                  {"dist": "exponential", "mean": 200},
                                  {"dist": "lognormal", "median": 150, "p90": 600}])
def test_backlog_clocks_are_conditioned_on_the_days_already_waited(dist: dict[str, Any]) -> None:
    # 20,000 patients who have waited 100 days, never served (a 10-year delay before the
    # product): each dies after its residual clock, P(residual > t) = S(100 + t) / S(100).
    sc = scenario_from_dict({
        "name": "residual", "horizon_days": 1, "drain_days": 5000, "arrivals": {"schedule": []},
        "backlog": [{"count": 20_000, "waited_days": 100}],
        "cohorts": [{"name": "c", "pathway": "p", "time_to_death": dist}],
        "pathways": {"p": {"steps": [{"name": "hold", "kind": "delay", "duration": 4000},
                                     {"name": "infusion", "kind": "infusion"}]}},
    })
    p = run(sc).patients
    died = (p["outcome"] == "died").to_numpy()
    assert died.mean() > 0.99 and set(p.loc[~died, "outcome"]) <= {"infused"}
    residual = np.where(died, p["outcome_day"].to_numpy(), np.inf)  # infused on day 4,000: longer
    clock = sc.cohorts[0].time_to_death
    for t in (30.0, 100.0, 300.0):
        expected = float(clock.sf(np.array([100.0 + t]))[0] / clock.sf(np.array([100.0]))[0])
        # binomial sd <= 0.0036 at n = 20,000: a tolerance of 0.012 is over 3 sd
        assert abs((residual > t).mean() - expected) < 0.012, (t, (residual > t).mean(), expected)


def test_a_backlog_waiting_zero_days_has_the_plain_clocks() -> None:
    # Waited 0: the clocks are the unconditioned draws, bit for bit (no 1 - (1 - u) rounding).
    base = {"name": "z", "horizon_days": 1, "drain_days": 5000, "arrivals": {"schedule": [0, 0, 0]},
            "cohorts": [{"name": "c", "pathway": "p", "time_to_death": {"dist": "exponential", "mean": 50}}],
            "pathways": {"p": {"steps": [{"name": "hold", "kind": "delay", "duration": 4000},
                                         {"name": "infusion", "kind": "infusion"}]}}}
    plain = run(scenario_from_dict(base)).patients
    backlog = run(scenario_from_dict({**base, "arrivals": {"schedule": []}, "backlog": 3})).patients
    assert backlog["outcome_day"].tolist() == plain["outcome_day"].tolist()


# --------------------------------------------------------------------------- queue order

def two_cohorts(order: str | None, **extra: Any) -> v2vsim.Scenario:
    sites = {"lab": {"slots": 1, **({"queue": {"order": order}} if order else {})}, "far": {"slots": 10}}
    return scenario(sites=sites, **extra)


def test_referral_order_serves_the_earliest_referral_first() -> None:
    # Backlog waited 30, 20, 10 (patients 0, 1, 2), one lab, every batch fails and is made once
    # more. Patient 0 makes 0-20, fails and asks again at 20. First come first served by the
    # request: 1 (asked at 0) 20-40, 2 (0) 40-60, 0 (20) 60-80, 1 (40) 80-100, 2 (60) 100-120.
    # By referral (-30, -20, -10): 0's new request goes first at once (20-40), then 1 (40-60),
    # 1 again (60-80: referred before 2), 2 (80-100), 2 again (100-120).
    pathways = base_data()["pathways"]
    pathways["fast"]["steps"][0].update(failure_probability=1, on_failure={"retry_from": "make", "max_attempts": 2})
    top = {"pathways": pathways, "arrivals": {"schedule": []},
           "backlog": [{"waited_days": 10}, {"waited_days": 30}, {"waited_days": 20}]}
    starts = {}
    for order in (None, "referral", "request"):
        res = run(two_cohorts(order, **top))
        ev = res.events[res.events["step"] == "make"]
        starts[order] = [ev.loc[ev["patient"] == k, "start_day"].tolist() for k in range(3)]
        assert (res.patients["outcome"] == "manufacturing_failed").all()
    assert starts[None] == [[0.0, 60.0], [20.0, 80.0], [40.0, 100.0]]
    assert starts["referral"] == [[0.0, 20.0], [40.0, 60.0], [80.0, 100.0]]
    assert starts["request"] == starts[None]  # `order: request` is the default, written out


def test_backlog_patients_join_at_the_step_that_takes_their_slot() -> None:
    # Pathway slow: a 10-day delay, then the lab. A backlog patient is already listed: it asks
    # for the lab at day 0 (no delay run, listed_day 0); a referral of day 0 runs the delay.
    cohorts = [{"name": "slow", "pathway": "slow"}]
    res = run(scenario(cohorts=cohorts, backlog=1, arrivals={"schedule": [0]}))
    assert cols(res, "listed_day", "manufacture_start_day", "infusion_day") == [
        [0.0, 10.0], [0.0, 20.0], [20.0, 40.0]]
    assert res.events.loc[res.events["patient"] == 0, "step"].tolist() == ["make", "infusion"]


def test_sickest_first_saves_the_patient_whose_clock_is_shorter() -> None:
    # Patients 0, 1 (death on day 100) and 2 (death on day 50) all ask at 0; 0 takes the lab
    # 0-20. First come first served: 1 at 20-40, 2 at 40-60 and dies on day 50 in manufacture.
    # Sickest first: 2 at 20-40 (infused on 40 < 50), 1 at 40-60.
    cohorts = [{"name": "fast", "pathway": "fast", "time_to_death": 100},
               {"name": "sick", "share": 0, "pathway": "fast", "time_to_death": 50}]
    backlog = [{"cohort": "fast", "count": 2}, {"cohort": "sick"}]
    fifo = run(two_cohorts(None, cohorts=cohorts, backlog=backlog, arrivals={"schedule": []}))
    sickest = run(two_cohorts("sickest_first", cohorts=cohorts, backlog=backlog, arrivals={"schedule": []}))
    assert cols(fifo, "manufacture_start_day", "outcome") == [[0.0, 20.0, 40.0], ["infused", "infused", "died"]]
    assert cols(sickest, "manufacture_start_day", "outcome") == [[0.0, 40.0, 20.0], ["infused"] * 3]
    assert cols(sickest, "slot_day")[0] == [0.0, 40.0, 20.0]
    assert fifo.replications.loc[0, "died_while_listed"] == 0  # it died after its slot, in manufacture


def test_most_benefit_serves_the_likelier_responder_first() -> None:
    cohorts = [{"name": "fast", "pathway": "fast", "after_infusion": {"response_probability": 0.5}},
               {"name": "good", "share": 0, "pathway": "fast", "after_infusion": {"response_probability": 0.9}}]
    backlog = [{"cohort": "fast", "count": 2}, {"cohort": "good"}]
    res = run(two_cohorts("most_benefit", cohorts=cohorts, backlog=backlog, arrivals={"schedule": []}))
    assert cols(res, "manufacture_start_day")[0] == [0.0, 40.0, 20.0]


def random_queue(order: str, error: float = 0.0) -> v2vsim.Scenario:
    queue: dict[str, Any] = {"order": order}
    if error:
        queue["estimate_error"] = error
    return scenario_from_dict({
        "name": "queue", "horizon_days": 800, "drain_days": 2000, "arrivals": {"rate_per_year": 120},
        "backlog": [{"count": 10, "waited_days": {"dist": "uniform", "low": 0, "high": 60}}],
        "cohorts": [{"name": "c", "pathway": "p", "time_to_death": {"dist": "weibull", "shape": 0.9, "median": 200}}],
        "sites": {"lab": {"slots": 2, "queue": queue}},
        "pathways": {"p": {"steps": [
            {"name": "screen", "kind": "screen", "duration": {"dist": "uniform", "low": 0, "high": 10}},
            {"name": "make", "kind": "manufacture", "site": "lab", "duration": {"dist": "uniform", "low": 8, "high": 16}},
            {"name": "infusion", "kind": "infusion"}]}},
    })


def hand_overs(order: str, error: float = 0.0) -> tuple[int, int]:
    """Check every hand-over of the lab: the patient served has the smallest key of all those
    waiting at that instant. The keys are computed here from each patient's clock and request
    time (for sickest first, its death day as the committee estimates it when it asks)."""
    sc = random_queue(order, error)
    rep = Replication(sc, 11, 0, trace_patients=10_000)
    rep.run()
    make = [e for e in rep.rec.events if e[1] == "make"]
    death = np.asarray(rep.death) + rep.arrivals
    z = rep.estimate_noise

    def key(row: tuple[Any, ...]) -> tuple[float, float]:
        i, ready = row[0], row[4]
        if order == "sickest_first":
            left = death[i] - ready
            return (ready + left * math.exp(error * z[i]) if error else ready + left), ready
        if order == "referral":
            return rep.arrivals[i] - (rep.prior[i] if i < rep.prior.size else 0.0), ready
        return ready, ready

    def left_queue(row: tuple[Any, ...]) -> tuple[float, bool]:
        """When the patient stopped waiting, and whether it was served then (a row of a patient
        whose clock rang in the queue has start = end = the clock, and status died)."""
        in_queue = row[7] in ("died", "ineligible") and row[5] == row[6]
        return row[5], not in_queue

    checked = differs = 0
    for served in make:
        t, granted = left_queue(served)
        if not granted:
            continue
        waiting = [row for row in make if row[0] != served[0] and row[4] < t and left_queue(row)[0] > t]
        if served[4] == t and not waiting:
            continue  # a free slot taken at once: no choice was made
        checked += 1
        for row in waiting:
            assert key(served) <= key(row), (served, row)
            if order == "sickest_first" and error and (death[served[0]], served[4]) > (death[row[0]], row[4]):
                differs += 1
    return checked, differs


@pytest.mark.parametrize("order", ["request", "referral", "sickest_first"])
def test_the_order_is_applied_at_every_hand_over(order: str) -> None:
    checked, _ = hand_overs(order)
    assert checked > 100  # the queue forms: many choices were made


def test_a_noisy_estimate_orders_by_the_estimate_not_the_clock() -> None:
    checked, differs = hand_overs("sickest_first", error=0.5)
    assert checked > 100 and differs > 10  # the committee's estimate overtakes the true order


# --------------------------------------------------------------------------- re-referral

def test_re_referral_after_a_long_wait_hand_worked() -> None:
    # The lab holds patient 0 for 100 days. Patient 1 leaves the list after 30 days and starts
    # the away pathway: ship 30-35, far site 35-45, infused on 45. Patient 2's clock rings on day
    # 30, the instant it would leave: the clock wins (died, not re-referred).
    rule = {"after_days": 30, "pathway": "away"}
    cohorts = [{"name": "fast", "pathway": "fast", "re_referral": rule},
               {"name": "c30", "share": 0, "pathway": "fast", "time_to_death": 30, "re_referral": rule}]
    pathways = base_data()["pathways"]
    pathways["fast"]["steps"][0]["duration"] = 100
    res = run(scenario(cohorts=cohorts, backlog=[{"cohort": "fast", "count": 2}, {"cohort": "c30"}],
                       arrivals={"schedule": []}, pathways=pathways))
    assert cols(res, "pathway", "re_referred", "outcome", "infusion_day", "listed_day", "slot_day",
                "queue_wait_days") == [
        ["fast", "away", "fast"], [0.0, 1.0, 0.0], ["infused", "infused", "died"], [100.0, 45.0, None],
        [0.0, 0.0, 0.0], [0.0, 35.0, None], [0.0, 30.0, 30.0]]
    assert res.replications.loc[0, "re_referred"] == 1 and res.replications.loc[0, "died_while_listed"] == 1
    ev = res.events
    assert ev.loc[ev["patient"] == 1, ["step", "status"]].values.tolist() == [
        ["make", "re_referred"], ["ship", "done"], ["make_far", "done"], ["infusion", "done"]]
    assert res.extra["engines"] == {"simpy": 1}


def test_re_referral_gives_back_a_slot_booked_earlier() -> None:
    # reserve_from: the far slot is booked at the first step and held while waiting for the lab;
    # re-referral gives it back at once, so patient 2 (no rule) takes it on day 30.
    data = base_data()
    data["sites"] = {"far": {"slots": 1}, "lab": {"slots": 1}}
    data["pathways"]["both"] = {"steps": [
        {"name": "make", "kind": "manufacture", "site": "lab", "duration": 100},
        {"name": "test", "kind": "release", "site": "far", "reserve_from": "make", "duration": 1},
        {"name": "infusion", "kind": "infusion"}]}
    data["cohorts"] = [{"name": "fast", "pathway": "both", "re_referral": {"after_days": 30, "pathway": "fast"}}]
    data["arrivals"] = {"schedule": [1]}
    data["backlog"] = 1
    # Patient 0 takes far + lab at 0 (far held until its test ends on 101). Patient 1 (day 1)
    # waits for both: far first (the sites' order), so it holds nothing, leaves on 31 for
    # `fast`, waits for the lab until 100, makes 100-120.
    res = run(scenario_from_dict(data))
    assert cols(res, "pathway", "manufacture_start_day", "infusion_day") == [
        ["both", "fast"], [0.0, 100.0], [101.0, 120.0]]


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize(("lines", "after", "line", "key", "fragments"), [
    (["backlog: [{cohort: b, count: 2}]"], 2, 3, "backlog[0].cohort", ["no cohort named 'b'"]),
    (["backlog: true"], 2, 3, "backlog", ["not true"]),
    (["backlog: [{count: 0}]"], 2, 3, "backlog[0].count", ["at least 1"]),
    (["backlog: [{waited_days: -3}]"], 2, 3, "backlog[0].waited_days", []),
    (["    queue: {order: sickest}"], 10, 11, "sites.lab.queue.order", ["sickest_first"]),
    (["    queue: {estimate_error: 0.3}"], 10, 11, "sites.lab.queue", ["only used with order: sickest_first"]),
    (["    re_referral: {after_days: 30, pathway: local}"], 7, 8, "cohorts[0].re_referral.pathway",
     ["must differ"]),
    (["    re_referral: {after_days: 30, pathway: nowhere}"], 7, 8, "cohorts[0].re_referral.pathway",
     ["no pathway named 'nowhere'"]),
    (["    re_referral: {after_days: 0, pathway: overseas}"], 7, 8, "cohorts[0].re_referral.after_days",
     ["greater than 0"]),
], ids=["backlog-cohort", "backlog-bool", "backlog-zero", "backlog-negative", "order-typo",
        "error-without-sickest", "re-referral-same", "re-referral-missing", "re-referral-zero"])
def test_waitlist_errors(tmp_path: Path, lines: list[str], after: int, line: int, key: str,
                         fragments: list[str]) -> None:
    expect_one(tmp_path, insert(after, *lines), line, key, *fragments)


def test_re_referral_with_economics_is_refused(tmp_path: Path) -> None:
    import copy

    from ruamel.yaml import YAML

    root = Path(__file__).resolve().parent.parent / "scenarios"
    data = YAML(typ="safe", pure=True).load((root / "economics_local.yaml").read_text(encoding="utf-8"))
    data["pathways"]["elsewhere"] = copy.deepcopy(data["pathways"]["local"])
    data["cohorts"][0]["re_referral"] = {"after_days": 30, "pathway": "elsewhere"}
    shutil.copytree(root / "data", tmp_path / "data")
    path = tmp_path / "eco.yaml"
    with path.open("w", encoding="utf-8") as f:
        YAML(typ="safe", pure=True).dump(data, f)
    with pytest.raises(v2vsim.ScenarioError, match="re-referral is not available with an economics section"):
        v2vsim.load_scenario(path)


def test_the_report_states_the_waitlist_policies() -> None:
    from v2vsim.outputs.report.scope import _statements
    from v2vsim.scenario import read_yaml, to_plain

    path = Path(__file__).resolve().parent.parent / "scenarios" / "waitlist_sickest.yaml"
    said = _statements(to_plain(read_yaml(path.read_text(encoding="utf-8"), str(path))))
    assert any("a list of 10 patients already waiting at day 0" in s for s in said["scope"])
    assert any("serves its queue sickest first" in s for s in said["scope"])
    assert any("a real committee can only estimate" in s for s in said["assumptions"])
    assert any(s.endswith("then each site's queue order.") for s in said["limitations"])


@pytest.mark.parametrize(("top", "reason"), [
    ({"sites": {"lab": {"slots": 1, "queue": {"order": "referral"}}, "far": {"slots": 10}}},
     "site 'lab' orders its queue by referral"),
    ({"cohorts": [{"name": "fast", "pathway": "fast", "re_referral": {"after_days": 9, "pathway": "away"}}]},
     "cohort 'fast' is re-referred while waiting"),
])
def test_only_the_simpy_engine_runs_a_queue_order_or_re_referral(top: dict[str, Any], reason: str) -> None:
    sc = scenario(**top)
    assert run(sc).extra["engines"] == {"simpy": 1}
    for engine in ("vectorised", "compiled"):
        with pytest.raises(EngineError, match=reason):
            run(sc, engine=engine)


@pytest.mark.parametrize(("order", "error"), [("referral", 0.0), ("sickest_first", 0.0), ("sickest_first", 0.5)])
def test_queue_orders_match_simpys_priority_resource(order: str, error: float) -> None:
    # The same keys given to simpy.PriorityResource (the reference pool) as priorities: the
    # same patients get the same slots at the same times.
    sc = random_queue(order, error)
    light = Replication(sc, 5, 0).run().columns
    reference = Replication(sc, 5, 0, reference=True).run().columns
    for name in ("manufacture_start_day", "slot_day", "outcome_day", "queue_wait_days"):
        np.testing.assert_array_equal(light[name], reference[name], err_msg=name)
