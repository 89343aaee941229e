"""Results never depend on how replications are split into tasks.

Every engine (SimPy, vectorised, compiled) is run with tasks of many replications and uneven
splits (n = 37, 50, 203 replications; ``jobs`` 1, 2 and 3, whose plans hold 2 to 10
replications per task with a shorter last task; hand-made splits submitted out of order;
precision batches that start mid-way; a sweep's points sharing the workers), and every table
must equal the reference: each replication run in a task of its own, itself checked
replication by replication against the engine run directly. The scenario's slots are tight
enough that the vectorised engine hands about half its replications to SimPy, so a task
mixes engines. ``tests/mutations/run_mutations.py`` holds the deliberate bugs these tests
must catch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import v2vsim
from v2vsim import experiments as ex
from v2vsim.engine.collect import Coded
from v2vsim.engine.compiled import numba_available
from v2vsim.engine.engines import run_replication
from v2vsim.engine.runner import Results, assemble, plan_ranges, run_ranges, single_task

SCENARIO = """\
name: tasks
horizon_days: 400
replications: 10
seed: 11
currency: HKD
arrivals: {rate_per_year: 25}
cohorts:
  - name: adult
    share: 0.7
    pathway: p
    time_to_death: {dist: exponential, mean: 200}
    after_infusion:
      response_probability: 0.6
      survival_responder: {dist: exponential, mean: 2000}
      survival_non_responder: {dist: exponential, mean: 300}
  - name: child
    share: 0.3
    pathway: p
    time_to_death: {dist: exponential, mean: 500}
    after_infusion:
      response_probability: 0.8
      survival_responder: {dist: exponential, mean: 4000}
      survival_non_responder: {dist: exponential, mean: 600}
sites:
  plant: {slots: 4}
pathways:
  p:
    steps:
      - {name: apheresis, kind: apheresis, duration: 1, cost: 1000}
      - {name: manufacture, kind: manufacture, site: plant, reserve_from: apheresis,
         duration: {dist: uniform, low: 10, high: 30}, failure_probability: 0.15, cost: 200000}
      - {name: infusion, kind: infusion, duration: {dist: uniform, low: 1, high: 3}, cost: 50000}
economics:
  follow_up_years: 5
  utilities: {waiting: 0.6, responder: 0.85, non_responder: 0.5, progressed: 0.4}
  wtp: [200000]
"""
SEED = 11
COUNTS = (37, 50, 203)
ENGINES = ["simpy", "vectorised",
           pytest.param("compiled", marks=pytest.mark.skipif(not numba_available(), reason="needs Numba"))]
TABLES = ("patients", "replications", "events", "site_days", "budget")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> v2vsim.Scenario:
    path = Path(tmp_path_factory.mktemp("tasks")) / "tasks.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return v2vsim.load_scenario(path)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=3) as executor:
        yield executor


@pytest.fixture(scope="module")
def reference(scenario: v2vsim.Scenario) -> dict[int, Results]:
    """Each replication in a task of its own (SimPy), by replication count."""
    return {n: assemble(scenario, SEED, run_ranges(scenario, SEED, [(r, r + 1) for r in range(n)],
                                                   engine="simpy")) for n in COUNTS}


def assert_same(got: Results, want: Results) -> None:
    """Every table equal (the SimPy event count too, when SimPy ran every replication: the
    count is the engine's own)."""
    assert got.n_replications == want.n_replications
    for name in TABLES:
        assert_frame_equal(getattr(got, name), getattr(want, name), check_exact=True, obj=name)
    if got.extra["engines"] == want.extra["engines"]:
        assert got.events_processed == want.events_processed


def test_the_reference_is_each_replication_run_directly(scenario: v2vsim.Scenario,
                                                        reference: dict[int, Results]) -> None:
    ref = reference[max(COUNTS)]
    patients = ref.patients
    assert patients["replication"].unique().tolist() == list(range(ref.n_replications))
    assert ref.replications["replication"].tolist() == list(range(ref.n_replications))
    for r in (0, 1, 9, 10, 32, 100, ref.n_replications - 1):
        out = run_replication(scenario, SEED, r, engine="simpy", trace_patients=40 if r == 0 else 0)
        mine = patients[patients["replication"] == r]
        for column in ("referral_day", "infusion_day", "vein_to_vein_days", "queue_wait_days", "cost", "qalys"):
            np.testing.assert_array_equal(mine[column].to_numpy(dtype=float),
                                          np.asarray(out.columns[column], dtype=float), err_msg=f"{r} {column}")
        assert mine["outcome"].astype(str).tolist() == list(out.columns["outcome"])
        assert ref.replications.loc[r, "end_day"] == out.end_day
    # Replications are different draws: no two have the same referral days.
    days = patients.groupby("replication")["referral_day"].apply(lambda s: tuple(s.round(9)))
    assert days.nunique() == ref.n_replications
    # Only replication 0 is traced.
    assert set(ref.events["replication"]) == {0}
    # The shorter replications are the first ones of the longer.
    for n in COUNTS[:-1]:
        short = reference[n].patients
        assert_frame_equal(short, patients[patients["replication"] < n].reset_index(drop=True))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_task_sizes_never_change_results(scenario: v2vsim.Scenario, reference: dict[int, Results],
                                         pool: ProcessPoolExecutor, engine: str, jobs: int) -> None:
    for n in COUNTS:
        sizes = {b - a for a, b in (plan_ranges(0, n, jobs) if jobs > 1
                                    else plan_ranges(0, n, 1, single_task(scenario, engine)))}
        assert max(sizes) > 1, sizes  # tasks of several replications (and, but for 50 on one job, a shorter last)
        got = (v2vsim.simulate(scenario, n, jobs=1, engine=engine) if jobs == 1
               else v2vsim.simulate(scenario, n, jobs=jobs, executor=pool, engine=engine))
        assert_same(got, reference[n])
        ran = got.extra["engines"]
        assert sum(ran.values()) == n
        if engine == "vectorised":  # the tight slots send some replications to SimPy
            assert ran.get("vectorised", 0) > 0 and ran.get("simpy", 0) > 0, ran
        else:
            assert ran == {engine: n}


@pytest.mark.parametrize("engine", ENGINES)
def test_uneven_splits_submitted_out_of_order(scenario: v2vsim.Scenario, reference: dict[int, Results],
                                              pool: ProcessPoolExecutor, engine: str) -> None:
    rng = random.Random(3)
    for n in COUNTS:
        bounds = [0, 1, 5, 6, n // 3, n // 3 + 2, n - 7, n - 1, n]  # tasks of 1 to 127 replications
        ranges = list(zip(bounds[:-1], bounds[1:]))
        assert any(b - a > 10 for a, b in ranges) and any(b - a == 1 for a, b in ranges), ranges
        rng.shuffle(ranges)
        batches = run_ranges(scenario, SEED, ranges, executor=pool, engine=engine)
        assert_same(assemble(scenario, SEED, batches), reference[n])
        inline = run_ranges(scenario, SEED, ranges, engine=engine)
        assert_same(assemble(scenario, SEED, list(reversed(inline))), reference[n])


def test_simulate_with_its_own_pool(scenario: v2vsim.Scenario, reference: dict[int, Results]) -> None:
    assert_same(v2vsim.simulate(scenario, 37, jobs=2, engine="simpy"), reference[37])


def test_precision_batches_starting_mid_way(scenario: v2vsim.Scenario, reference: dict[int, Results]) -> None:
    # An unreachable precision: batches of 10 from 13 up to 37 (13, 23, 33, 37), two workers.
    prec = ex.Precision(0.0001, min_replications=13, max_replications=37, batch=10)
    got = ex.simulate_to_precision(scenario, prec, SEED, jobs=2, engine="vectorised")
    assert got.extra["precision"]["replications"] == 37
    assert_same(got, reference[37])


def test_sweep_points_sharing_workers(scenario: v2vsim.Scenario, reference: dict[int, Results],
                                      pool: ProcessPoolExecutor) -> None:
    points = [ex.Point(i, {}, scenario, SEED, n, engine) for i, (n, engine) in
              enumerate([(37, "simpy"), (50, "vectorised"), (203, "vectorised"), (50, "simpy")])]
    found: dict[int, pd.DataFrame] = {}
    ex.run_points(points, lambda p, res: found.__setitem__(p.index, res.replications), executor=pool, workers=3)
    for p in points:
        assert_frame_equal(found[p.index], reference[p.replications].replications, check_exact=True)


@pytest.mark.parametrize("engine", ENGINES[1:])
def test_replications_joined_in_groups_give_each_its_own_results(
        engine: str, scenario: v2vsim.Scenario, reference: dict[int, Results], monkeypatch: pytest.MonkeyPatch) -> None:
    # Survival and economics of a task's replications are computed for their patients joined,
    # in groups of up to JOIN_PATIENTS: groups of one to three replications here (about 20
    # patients each), and every table still the reference's.
    from v2vsim.engine import results as engine_results

    monkeypatch.setattr(engine_results, "JOIN_PATIENTS", 60)
    got = assemble(scenario, SEED, run_ranges(scenario, SEED, [(0, 37)], engine=engine))
    assert_same(got, reference[37])


class _Recording:
    """An executor that records the replication ranges submitted to it."""

    def __init__(self, executor: ProcessPoolExecutor) -> None:
        self.executor = executor
        self.ranges: list[tuple[int, int, int]] = []

    def submit(self, fn, scenario, seed, start, stop, *args):  # type: ignore[no-untyped-def]
        self.ranges.append((id(scenario), start, stop))
        return self.executor.submit(fn, scenario, seed, start, stop, *args)


def test_many_points_run_whole_in_a_task_and_give_the_same_tables(
        scenario: v2vsim.Scenario, reference: dict[int, Results], pool: ProcessPoolExecutor) -> None:
    # Twelve points on three workers: each point is one task (up to the referrals a task
    # holds) instead of tasks of a few replications; every table as the reference's.
    engines = ["simpy", "vectorised"] + (["compiled"] if numba_available() else [])
    plan = [(COUNTS[k % 3], engines[k % len(engines)]) for k in range(4 * 3)]
    points = [ex.Point(i, {}, scenario, SEED, n, engine) for i, (n, engine) in enumerate(plan)]
    found: dict[int, Results] = {}
    recording = _Recording(pool)
    ex.run_points(points, lambda p, res: found.__setitem__(p.index, res), executor=recording,  # type: ignore[arg-type]
                  workers=3)
    for p in points:  # (a sweep's points keep no trace or site days)
        for name in ("replications", "budget"):
            assert_frame_equal(getattr(found[p.index], name), getattr(reference[p.replications], name),
                               check_exact=True, obj=name)
    sizes = sorted({b - a for _, a, b in recording.ranges})
    assert len(recording.ranges) < sum(-(-n // 10) for n, _ in plan), sizes  # fewer tasks than in 10s
    assert max(sizes) > 10, sizes


def test_tasks_coding_strings_differently_merge_to_the_same_table(scenario: v2vsim.Scenario,
                                                                  reference: dict[int, Results]) -> None:
    # A task whose string columns carry their labels in another order (as another engine or
    # version may send them) must still give each patient the same strings.
    batches = run_ranges(scenario, SEED, [(0, 5), (5, 12), (12, 13)], engine="simpy")
    for batch in batches[1:]:
        for name in ("cohort", "outcome_step"):
            column = batch.patients[name]
            assert isinstance(column, Coded) and len(column.labels) > 1
            order = column.labels[::-1]
            position = np.array([order.index(label) for label in column.labels])
            batch.patients[name] = Coded(position[column.codes].astype(column.codes.dtype), tuple(order))
    patients = assemble(scenario, SEED, batches).patients
    want = reference[37].patients
    assert_frame_equal(patients, want[want["replication"] < 13].reset_index(drop=True), check_exact=True)
