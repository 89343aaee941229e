"""Results travel as arrays: workers send columns (strings as codes), the parent builds each
frame once, the site-day profile stays arrays. The frames are the ones pandas built before, to
the dtype, and the figures and warnings read the arrays to the same bytes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import v2vsim
from v2vsim import metrics
from v2vsim.engine.collect import Coded, daily_site_use
from v2vsim.engine.engines import run_replication
from v2vsim.engine.runner import EXTRA_PATIENT_COLUMNS, PATIENT_COLUMNS, _run_range
from v2vsim.outputs.figures import outcomes, sites
from v2vsim.outputs.figures.style import save_figure
from v2vsim.scenario import OUTCOMES, scenario_from_dict

STEPS = [
    {"name": "collect", "kind": "apheresis", "site": "clinic", "duration": 1},
    {"name": "make", "kind": "manufacture", "site": "plant", "reserve_from": "collect",
     "duration": {"dist": "uniform", "low": 8, "high": 14}, "failure_probability": 0.2,
     "on_failure": {"retry_from": "collect", "max_attempts": 2}},
    {"name": "infusion", "kind": "infusion", "duration": 1},
]
SCENARIO = {
    "name": "arrays", "horizon_days": 240, "start_date": "2025-01-06", "replications": 6, "seed": 4,
    "arrivals": {"rate_per_year": 70},
    "cohorts": [{"name": "adult", "pathway": "p", "time_to_death": {"dist": "exponential", "mean": 90}},
                {"name": "child", "pathway": "q", "share": 0.4, "priority": 0}],
    "sites": {"plant": {"slots": [{"from": "2025-01-06", "slots": 1}, {"from": "2025-03-03", "slots": 2}]},
              "clinic": {"slots": 1}},
    "pathways": {"p": {"steps": STEPS}, "q": {"steps": [STEPS[0], dict(STEPS[1], name="make_q"), STEPS[2]]}},
}


@pytest.fixture(scope="module")
def scenario() -> v2vsim.Scenario:
    return scenario_from_dict(SCENARIO)


def _frames_as_pandas_built_them(scenario: v2vsim.Scenario, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The patients and site-day tables built frame by frame, as the runner once did."""
    patients, days = [], []
    for rep in range(n):
        out = run_replication(scenario, scenario.seed, rep, trace_patients=40 if rep == 0 else 0)
        frame = pd.DataFrame(out.columns)
        frame.insert(0, "replication", rep)
        patients.append(frame)
        for site in out.site_busy_slot_days:
            in_use, queue = daily_site_use(out.site_timeline[site], out.end_day)
            profile = pd.DataFrame({"day": np.arange(in_use.size),
                                    "slots": np.full(in_use.size, float(out.site_slots[site])),
                                    "in_use": in_use, "queue": queue})
            if site in out.site_daily_slots:
                profile["slots"] = out.site_daily_slots[site]
            profile.insert(0, "site", site)
            profile.insert(0, "replication", rep)
            days.append(profile)
    table = pd.concat(patients, ignore_index=True)[list(PATIENT_COLUMNS) + list(EXTRA_PATIENT_COLUMNS)]
    for column in ("cohort", "pathway", "outcome_step"):
        table[column] = table[column].astype(str)
    table["outcome"] = pd.Categorical(table["outcome"], categories=list(OUTCOMES))
    return table, pd.concat(days, ignore_index=True)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a.equals(b)
    assert list(a.columns) == list(b.columns)
    assert a.dtypes.to_dict() == b.dtypes.to_dict()


@pytest.mark.parametrize("jobs", [1, 2])
def test_frames_are_the_ones_pandas_built(scenario: v2vsim.Scenario, jobs: int) -> None:
    res = v2vsim.simulate(scenario, 5, jobs=jobs)
    patients, site_days = _frames_as_pandas_built_them(scenario, 5)
    _same(res.patients, patients)
    _same(res.site_days, site_days)
    assert res.site_days is res.site_days  # built once, when first read
    assert len(res.site_profile) == len(site_days)


def test_string_columns_are_codes_until_read(scenario: v2vsim.Scenario) -> None:
    out = run_replication(scenario, 3, 0)
    held = out.columns.coded("cohort")
    assert isinstance(held, Coded) and held.codes.dtype == np.int8
    assert out.columns["cohort"].dtype == object
    assert out.columns["cohort"].tolist() == [held.labels[c] for c in held.codes]
    assert dict(out.columns)["outcome_step"].tolist() == out.columns["outcome_step"].tolist()
    assert set(pd.DataFrame(out.columns)["outcome"]) <= set(OUTCOMES)


def test_a_batch_is_arrays(scenario: v2vsim.Scenario) -> None:
    batch = pickle.loads(pickle.dumps(_run_range(scenario, 3, 0, 3)))
    assert all(isinstance(v, (np.ndarray, Coded)) for v in batch.patients.values())
    assert not any(v.dtype == object for v in batch.patients.values() if isinstance(v, np.ndarray))
    assert batch.counts.sum() == len(batch.patients["referral_day"])
    assert {site for _, site, *_ in batch.site_days} == {"plant", "clinic"}


def test_a_site_s_rows_are_those_of_the_long_table(scenario: v2vsim.Scenario) -> None:
    res = v2vsim.simulate(scenario, 4)
    profile = res.site_profile
    assert profile.site_names() == ["plant", "clinic"]
    for site in profile.site_names():
        rows = res.site_days[res.site_days["site"] == site].drop(columns="site").reset_index(drop=True)
        _same(profile.site_frame(site), rows)


def test_figures_and_warnings_read_the_arrays_to_the_same_bytes(scenario: v2vsim.Scenario,
                                                                   tmp_path: Path) -> None:
    res = v2vsim.simulate(scenario, 4)
    for name, source in (("frame", res.site_days), ("arrays", res.site_profile)):
        save_figure(sites.site_timeline_figure(source, "x"), tmp_path / name, "sites")
    for suffix in (".png", ".svg"):
        assert (tmp_path / "frame" / f"sites{suffix}").read_bytes() == \
            (tmp_path / "arrays" / f"sites{suffix}").read_bytes()
    horizon, stop = scenario.horizon_days, scenario.horizon_days + scenario.drain_days
    assert metrics.overload_warnings(res.replications, res.site_profile, horizon, stop) == \
        metrics.overload_warnings(res.replications, res.site_days, horizon, stop)


def test_the_day_by_replication_table_is_pivot_table_s() -> None:
    rng = np.random.default_rng(5)
    for trial in range(40):
        rows = []
        for rep in range(int(rng.integers(1, 12))):
            n = int(rng.integers(1, 60))
            values = rng.uniform(0, 3, n)
            values[rng.uniform(size=n) < (0.2 if trial % 3 == 0 else 0.0)] = np.nan
            rows.append(pd.DataFrame({"replication": 2 * rep, "day": np.arange(n) + trial % 2,
                                      "in_use": values}))
        frame = pd.concat(rows, ignore_index=True)
        if trial % 4 == 1:
            frame = frame.sample(frac=1, random_state=trial)
        if trial % 5 == 2:
            frame = pd.concat([frame, frame.iloc[:2]])  # two rows to a cell: pivot_table's mean
        wide = sites._day_by_replication(frame, "in_use")
        expected = frame.pivot_table(index="day", columns="replication", values="in_use", aggfunc="mean")
        _same(wide, expected)
        assert wide.index.equals(expected.index) and wide.columns.equals(expected.columns)
        if len(wide):  # the same memory layout: row means add up in the same order
            assert wide.to_numpy().flags["C_CONTIGUOUS"] == expected.to_numpy().flags["C_CONTIGUOUS"]
            np.testing.assert_array_equal(np.nanmean(wide.to_numpy(), axis=1),
                                          np.nanmean(expected.to_numpy(), axis=1))


def _incidence_one_replication_at_a_time(patients: pd.DataFrame, days: np.ndarray,
                                         groups: dict[str, list[str]]) -> pd.DataFrame:
    elapsed = (patients["outcome_day"] - patients["referral_day"]).to_numpy(dtype=float)
    outcome = patients["outcome"].astype(str).to_numpy()
    replication = patients["replication"].to_numpy()
    parts = []
    for rep in np.unique(replication):
        in_rep = replication == rep
        for name, members in groups.items():
            t = elapsed[in_rep & np.isin(outcome, members)]
            t = np.sort(t[~np.isnan(t)])
            parts.append(pd.DataFrame({
                "replication": np.full(days.size, rep), "outcome": np.full(days.size, name, dtype=object),
                "day": days, "share": np.searchsorted(t, days, side="right") / int(in_rep.sum())}))
    return pd.concat(parts, ignore_index=True)


def test_cumulative_incidence_counts_each_replication_s_slice() -> None:
    rng = np.random.default_rng(6)
    kinds = ["infused", "died", "ineligible", "unresolved"]
    for trial in range(10):
        n = int(rng.integers(1, 800))
        patients = pd.DataFrame({
            "replication": rng.integers(0, 7, n),
            "outcome": pd.Categorical(rng.choice(kinds, n), categories=list(OUTCOMES)),
            "referral_day": rng.uniform(0, 50, n)})
        patients["outcome_day"] = patients["referral_day"] + np.round(rng.exponential(20, n), trial % 3)
        patients.loc[patients["outcome"] == "unresolved", "outcome_day"] = np.nan
        days = np.arange(0.0, float(rng.integers(1, 120)))
        groups = {"infused": ["infused"], "losses": ["died", "ineligible"], "died": ["died"]}
        _same(outcomes.cumulative_incidence(patients, days, groups),
              _incidence_one_replication_at_a_time(patients, days, groups))


def test_outcome_counts_are_crosstab_s() -> None:
    rng = np.random.default_rng(8)
    kinds = list(OUTCOMES) + ["not an outcome"]
    for trial in range(10):
        n = int(rng.integers(0, 500))
        values = rng.choice(kinds, n).astype(object)
        values[: trial % 3] = None
        outcome = (pd.Categorical(values, categories=kinds[::-1]) if trial % 2
                   else pd.array(values, dtype="str"))
        patients = pd.DataFrame({"replication": rng.integers(0, 6, n), "outcome": outcome})
        for column in ("vein_to_vein_days", "referral_to_infusion_days", "queue_wait_days", "responded",
                       "icu", "cost"):
            patients[column] = rng.uniform(0, 10, n)
        runs = pd.DataFrame({"replication": np.arange(5), "end_day": 100.0, "fixed_cost": 0.0})
        table = metrics.replication_table(patients, runs)
        expected = pd.crosstab(patients["replication"], patients["outcome"]).reindex(
            index=runs["replication"], columns=list(OUTCOMES), fill_value=0)
        for name in OUTCOMES:
            assert table[name].dtype == np.int64
            assert table[name].tolist() == expected[name].tolist()


def test_runs_give_back_every_bit() -> None:
    rng = np.random.default_rng(9)
    series = []
    for _ in range(30):
        values = np.round(rng.uniform(0, 3, int(rng.integers(0, 50)))) * rng.choice([1.0, -1.0, 0.5])
        values[rng.uniform(size=values.size) < 0.1] = np.nan
        values[rng.uniform(size=values.size) < 0.1] = -0.0
        series.append(values)
    runs = metrics.Runs.concat([metrics.Runs.encode(s) for s in series])
    assert runs.values.size < sum(s.size for s in series)
    for blocks in (np.arange(30), np.array([], dtype=np.int64), np.array([0, 3, 29]), np.arange(1, 30, 2)):
        expected = np.concatenate([np.zeros(0)] + [series[b] for b in blocks])
        assert runs.expand(blocks).view(np.int64).tolist() == expected.view(np.int64).tolist()
