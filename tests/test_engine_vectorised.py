"""The vectorised engine against the SimPy engine (the reference): the same patients, bit for bit.

Random small scenarios over everything the vectorised engine covers — retries from earlier
steps, several sites booked with ``reserve_from``, shelf lives (expiry during waits and steps),
weekday starts, bridging with toxicity, survival after infusion, referrals at the same instant,
runs that stop with patients still in the pathway — are run on both engines with the same
seed. Every patient column must be *equal* (not close: the same floats), and so must the
slot-days, the end day and the trace. Slots are sometimes ample, sometimes tight: a replication
whose slots could bind must be handed back (``None``) and then runs on SimPy.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import v2vsim
from v2vsim.engine.engines import EngineError, engine_for, likely_free, scope_problems
from v2vsim.engine.replication import run_replication
from v2vsim.engine.clocks import referral_clock
from v2vsim.engine.vectorised import run_vectorised
from v2vsim.scenario import ScenarioError, scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["screen", "apheresis", "cryopreserve", "transport", "manufacture", "release", "conditioning", "delay"]


@st.composite
def durations(draw: st.DrawFn, scale: float = 1.0) -> Any:
    mean = draw(st.floats(0.5, 12.0)) * scale
    which = draw(st.sampled_from(["fixed", "fixed_day", "exponential", "uniform", "lognormal"]))
    if which == "fixed":
        return round(mean, 3)
    if which == "fixed_day":
        return float(max(1, round(mean)))
    if which == "exponential":
        return {"dist": "exponential", "mean": mean}
    if which == "uniform":
        return {"dist": "uniform", "low": mean / 2, "high": mean * 1.5}
    return {"dist": "lognormal", "median": mean, "p90": mean * 2}


@st.composite
def pathways(draw: st.DrawFn, sites: list[str]) -> dict[str, Any]:
    n = draw(st.integers(2, 5))
    steps: list[dict[str, Any]] = []
    for j in range(n):
        step: dict[str, Any] = {"name": f"s{j}", "kind": draw(st.sampled_from(KINDS)),
                                "duration": draw(durations()), "cost": draw(st.sampled_from([0.0, 10.0, 1234.5]))}
        if draw(st.integers(0, 9)) < 6:
            step["site"] = draw(st.sampled_from(sites))
            if j > 0 and draw(st.booleans()):
                step["reserve_from"] = f"s{draw(st.integers(0, j - 1))}"
        if draw(st.integers(0, 9)) < 5:
            step["failure_probability"] = draw(st.floats(0.05, 0.6))
            if draw(st.integers(0, 9)) < 8:
                step["on_failure"] = {"retry_from": f"s{draw(st.integers(0, j))}",
                                      "max_attempts": draw(st.integers(1, 3))}
        if draw(st.integers(0, 9)) < 3:
            step["starts_on"] = draw(st.sampled_from([["mon", "wed", "fri"], ["tue", "thu"], ["mon", "tue", "wed", "thu", "fri"]]))
        steps.append(step)
    infusion: dict[str, Any] = {"name": "infusion", "kind": "infusion", "duration": draw(durations(scale=0.3))}
    clock = [j for j, s in enumerate(steps) if s["kind"] == "release"] or \
        [j for j, s in enumerate(steps) if s["kind"] == "manufacture"]
    if clock and draw(st.integers(0, 9)) < 5:
        infusion["shelf_life"] = draw(st.floats(0.5, 6.0))
    if draw(st.integers(0, 9)) < 3:
        infusion["failure_probability"] = draw(st.floats(0.05, 0.4))
    if draw(st.integers(0, 9)) < 5:
        infusion["on_failure"] = {"retry_from": f"s{draw(st.integers(0, n - 1))}",
                                  "max_attempts": draw(st.integers(1, 3))}
    steps.append(infusion)
    return {"steps": steps}


@st.composite
def cohort(draw: st.DrawFn, name: str, path: dict[str, Any], path_name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "share": draw(st.floats(0.2, 1.0)), "pathway": path_name,
                           "priority": draw(st.integers(0, 1))}
    for key in ("time_to_death", "time_to_ineligible"):
        if draw(st.integers(0, 9)) < 7:
            out[key] = draw(st.sampled_from([
                {"dist": "exponential", "mean": draw(st.floats(5.0, 120.0))},
                {"dist": "weibull", "shape": draw(st.floats(0.5, 2.0)), "median": draw(st.floats(10.0, 200.0))},
                # No closed-form cumulative hazard: the compiled loop bridges it by a callback.
                {"dist": "lognormal", "median": draw(st.floats(10.0, 200.0)), "p90": draw(st.floats(250.0, 600.0))},
            ]))
    if draw(st.integers(0, 9)) < 4:
        bridging: dict[str, Any] = {"start_step": draw(st.sampled_from([s["name"] for s in path["steps"]])),
                                    "duration": draw(durations()), "hazard_ratio": draw(st.floats(0.0, 2.0)),
                                    "cost": draw(st.sampled_from([0.0, 500.0]))}
        if draw(st.booleans()):
            bridging["toxicity_probability"] = draw(st.floats(0.1, 0.9))
            bridging["toxicity_delay"] = draw(durations())
        out["bridging"] = bridging
    after: dict[str, Any] = {"response_probability": draw(st.floats(0.0, 1.0)),
                             "icu_probability": draw(st.floats(0.0, 0.5))}
    if draw(st.booleans()):
        after.update({"survival_responder": {"dist": "exponential", "mean": 2000.0},
                      "survival_non_responder": {"dist": "exponential", "mean": 200.0},
                      "follow_up_days": 730})
    out["after_infusion"] = after
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    tight = draw(st.integers(0, 9)) < 3
    sites = {f"site{k}": {"slots": draw(st.integers(1, 2) if tight else st.integers(30, 200))}
             for k in range(draw(st.integers(1, 2)))}
    names = list(sites)
    two = draw(st.booleans())
    paths = {"p": draw(pathways(names))}
    if two:
        paths["q"] = draw(pathways(names))
    horizon = draw(st.integers(20, 200))
    if draw(st.booleans()):
        arrivals: dict[str, Any] = {"rate_per_year": draw(st.integers(5, 60)) * 365.0 / horizon}
    else:  # referrals on half days, often several at one instant
        spread = draw(st.integers(1, 2 * horizon))
        arrivals = {"schedule": draw(st.lists(st.integers(0, spread).map(lambda k: k / 2), min_size=2, max_size=60))}
    cohorts = [draw(cohort("a", paths["p"], "p")), draw(cohort("b", paths["q" if two else "p"], "q" if two else "p"))]
    data = {"name": "differential", "horizon_days": horizon,
            "drain_days": draw(st.sampled_from([5, 30, 400])),  # short drains stop runs mid-journey
            "start_date": draw(st.sampled_from(["2025-01-01", "2025-01-04", "2025-06-30"])),
            "arrivals": arrivals, "cohorts": cohorts, "sites": sites, "pathways": paths}
    if draw(st.integers(0, 9)) < 3:
        data["economics"] = draw(economics(cohorts, sites))
    return data


@st.composite
def economics(draw: st.DrawFn, cohorts: list[dict[str, Any]], sites: dict[str, Any]) -> dict[str, Any]:
    """An economics section (and what it needs of the cohorts): the charges' log, discounting
    by charge day and the budget by calendar year must come out the same on every engine."""
    for c in cohorts:
        after = c["after_infusion"]
        after.pop("follow_up_days", None)
        after.setdefault("survival_responder", {"dist": "exponential", "mean": draw(st.floats(100.0, 3000.0))})
        after.setdefault("survival_non_responder", {"dist": "exponential", "mean": 200.0})
        after.update(cure_fraction=draw(st.sampled_from([0.0, 0.5])), crs_probability=draw(st.floats(0.0, 0.5)),
                     wait_effect={"response_odds_ratio": draw(st.sampled_from([1.0, 0.8])),
                                  "survival_hazard_ratio": draw(st.sampled_from([1.0, 1.3]))})
        c["age"] = {"dist": "uniform", "low": 1.0, "high": 99.0}
    for site in sites.values():
        site["fixed_cost_per_year"] = draw(st.sampled_from([0.0, 1000.0]))
        site["cost_per_use"] = draw(st.sampled_from([0.0, 77.0]))
    return {"follow_up_years": draw(st.sampled_from([0.5, 3, "lifetime"])),
            "discount": {"costs": draw(st.sampled_from([0.0, 0.035, 0.2])), "outcomes": draw(st.sampled_from([0.0, 0.035])),
                         "method": draw(st.sampled_from(["annual", "continuous"]))},
            "life_table": {"ages": list(range(0, 101)), "qx": {"all": [min(1.0, 0.001 * 1.09 ** a) for a in range(101)]}},
            "utilities": {"waiting": 0.6, "bridging": 0.5, "responder": 0.8, "non_responder": 0.5, "progressed": -0.1},
            "disutilities": {"icu": 0.03, "crs": 0.01},
            "costs": {"icu": 100.0, "crs": 50.0, "follow_up_per_year": draw(st.sampled_from([0.0, 365.25])),
                      "progressed_per_year": 10.0}}


def load(data: dict[str, Any]) -> Any:
    try:
        return scenario_from_dict(data)
    except ScenarioError:
        return None


def assert_identical(out: Any, ref: Any) -> None:
    """Every patient column equal (the same floats; NaN where NaN), slot-days, end day, trace."""
    assert out.columns.keys() == ref.columns.keys()
    for key, a in out.columns.items():
        b = ref.columns[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        if a.dtype == object:
            assert a.tolist() == b.tolist(), key
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), (key, np.flatnonzero(
                ~((a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b))[:5])
    assert out.site_busy_slot_days == ref.site_busy_slot_days
    assert out.end_day == ref.end_day
    assert (out.budget is None) == (ref.budget is None)
    if ref.budget is not None:
        assert np.array_equal(out.budget, ref.budget)
        assert out.fixed_cost_discounted == ref.fixed_cost_discounted
    assert sorted(out.events, key=lambda e: e[0]) == sorted(ref.events, key=lambda e: e[0])
    for site, log in ref.site_timeline.items():  # the per-day profile reads the last row of each instant
        mine = out.site_timeline[site]
        if out.engine != "vectorised":  # the other engines log every change, as the pools do
            assert np.array_equal(mine, log), site
        elif log.size:
            last = np.ones(len(log), dtype=bool)
            last[:-1] = log[1:, 0] != log[:-1, 0]
            assert np.array_equal(mine, log[last]), site


FOUND: Counter = Counter()


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=scenarios(), seed=st.integers(0, 2**32))
def test_vectorised_engine_gives_the_simpy_engines_patients_bit_for_bit(data: dict[str, Any], seed: int) -> None:
    sc = load(data)
    assume(sc is not None)
    assert scope_problems(sc) == []
    ref = run_replication(sc, seed, 0, trace_patients=10**6)
    out = run_vectorised(sc, seed, 0, trace_patients=10**6)
    if out is None:
        FOUND["handed back"] += 1
        return
    FOUND["compared"] += 1
    assert_identical(out, ref)
    outcomes = set(ref.columns["outcome"].tolist())
    FOUND.update(f"outcome {o}" for o in outcomes)
    if (ref.columns["manufacturing_attempts"] > 1).any() or any(e[3] > 1 for e in ref.events):
        FOUND["retries"] += 1
    if not np.isnan(ref.columns["bridging_day"]).all():
        FOUND["bridging"] += 1
    if (ref.columns["bridging_toxicity"] == 1.0).any():
        FOUND["toxicity"] += 1
    if not np.isnan(ref.columns["life_years"]).all():
        FOUND["survival"] += 1
    if "qalys" in ref.columns and ref.budget.sum() > 0:
        FOUND["economics"] += 1


def test_the_differential_test_exercised_every_feature() -> None:
    """The random scenarios above reached every rule they are meant to test (run after it)."""
    if not FOUND:
        pytest.skip("run with the differential test")
    for what in ("compared", "handed back", "retries", "bridging", "toxicity", "survival", "economics",
                 "outcome infused", "outcome died", "outcome ineligible", "outcome product_expired",
                 "outcome unresolved", "outcome manufacturing_failed"):
        assert FOUND[what] >= 3, (what, dict(FOUND))


def test_the_referral_clock_is_the_simpy_clock() -> None:
    """``now + (day - now)`` is not always ``day``: the clock is replayed where they part."""
    rng = np.random.default_rng(1)
    for days in (np.sort(rng.uniform(0, 1e-3, 50)), np.cumsum(rng.exponential(0.7, 5000)),
                 np.array([0.0, 0.0, 1e-300, 0.1, 0.1, 0.30000000000000004, 3.0]),
                 np.sort(rng.uniform(0, 1e6, 1000)), np.zeros(0)):
        expect, now = [], 0.0
        for day in days.tolist():
            if day > now:
                now = now + (day - now)
            expect.append(now)
        assert referral_clock(days).tolist() == expect


def scenario(slots: int, referrals: list[float], *, starts_on: list[str] | None = None) -> Any:
    step = {"name": "make", "kind": "manufacture", "site": "plant", "duration": 10}
    if starts_on:
        step["starts_on"] = starts_on
    return scenario_from_dict({
        "name": "hand", "horizon_days": 100, "drain_days": 100, "start_date": "2025-01-06",
        "arrivals": {"schedule": referrals},
        "cohorts": [{"name": "all", "pathway": "p"}],
        "sites": {"plant": {"slots": slots}},
        "pathways": {"p": {"steps": [step, {"name": "infusion", "kind": "infusion", "duration": 1}]}},
    })


def test_a_replication_whose_slots_bind_is_handed_back_to_simpy() -> None:
    """Hand traces: one slot, makes of 10 days. Referrals at 0 and 5 overlap: the second waits
    (SimPy: infused at 21), so the vectorised engine must not answer. Referrals at 0 and 10
    touch (a release and a take at day 10): safe in SimPy's order, but the check counts both
    and hands it back too (conservative). Referrals at 0 and 11: answered, identical."""
    overlap = scenario(1, [0.0, 5.0])
    assert run_vectorised(overlap, 1, 0) is None
    assert run_replication(overlap, 1, 0).columns["infusion_day"].tolist() == [11.0, 21.0]
    assert run_vectorised(scenario(1, [0.0, 10.0]), 1, 0) is None
    apart = scenario(1, [0.0, 11.0])
    out = run_vectorised(apart, 1, 0)
    assert out is not None and out.engine == "vectorised"
    assert out.columns["infusion_day"].tolist() == [11.0, 22.0]
    assert_identical(out, run_replication(apart, 1, 0))
    assert run_vectorised(scenario(2, [0.0, 5.0]), 1, 0) is not None  # two slots: nobody waits


def test_a_weekday_start_is_the_simpy_engines() -> None:
    """Monday 2025-01-06 is day 0; a referral on Saturday (day 5) starts on Monday (day 7)."""
    sc = scenario(5, [0.0, 5.0, 5.5], starts_on=["mon"])
    out = run_vectorised(sc, 1, 0)
    assert out is not None
    assert out.columns["manufacture_start_day"].tolist() == [0.0, 7.0, 7.0]
    assert out.columns["queue_wait_days"].tolist() == [0.0, 2.0, 1.5]
    assert_identical(out, run_replication(sc, 1, 0))


def test_simulate_gives_identical_frames_on_every_engine() -> None:
    """The whole result (patients, replications, site days, trace) of a bundled scenario the
    vectorised engine covers, and of one whose slots bind (it falls back replication by
    replication), on every engine."""
    for name, expect in (("overseas.yaml", "vectorised"), ("local.yaml", "simpy")):
        sc = v2vsim.load_scenario(ROOT / "scenarios" / name)
        runs = {engine: v2vsim.simulate(sc, replications=6, seed=11, engine=engine)
                for engine in ("simpy", "vectorised", "auto")}
        ref = runs["simpy"]
        assert ref.extra["engines"] == {"simpy": 6}
        for engine, res in runs.items():
            for frame in ("patients", "replications", "site_days", "events"):
                a, b = getattr(res, frame), getattr(ref, frame)
                assert a.equals(b), (name, engine, frame)
        assert runs["auto"].extra["engines"] == {expect: 6}, name
    forced = v2vsim.simulate(v2vsim.load_scenario(ROOT / "scenarios" / "local.yaml"), replications=3, seed=1,
                             engine="vectorised")
    assert forced.extra["engines"] == {"simpy": 3}  # one slot: every replication handed back


def test_auto_routes_a_scenario_outside_the_scope_to_simpy_and_forcing_it_is_refused() -> None:
    hybrid = v2vsim.load_scenario(ROOT / "scenarios" / "hybrid.yaml")
    shortage = v2vsim.load_scenario(ROOT / "scenarios" / "slot_shortage.yaml")
    assert engine_for(hybrid) == "simpy" and engine_for(shortage) == "simpy"
    with pytest.raises(EngineError, match="routed by a rule that reads a queue"):
        v2vsim.simulate(hybrid, replications=1, engine="vectorised")
    with pytest.raises(EngineError, match="has a calendar"):
        v2vsim.simulate(shortage, replications=1, engine="vectorised")
    with pytest.raises(EngineError, match="unknown engine 'numba'"):
        v2vsim.simulate(hybrid, replications=1, engine="numba")


def test_auto_tries_the_vectorised_engine_only_where_slots_are_ample() -> None:
    """A speed rule only (results are identical either way): the stress scenario and the
    overseas route (ample slots) are tried vectorised; one local device is not."""
    assert likely_free(v2vsim.load_scenario(ROOT / "benchmarks" / "stress_1m.yaml"))
    assert likely_free(v2vsim.load_scenario(ROOT / "scenarios" / "overseas.yaml"))
    assert not likely_free(v2vsim.load_scenario(ROOT / "scenarios" / "local.yaml"))


def test_every_command_takes_engine_and_the_results_directory_does_not_depend_on_it(tmp_path: Path) -> None:
    """``run --engine simpy`` and ``--engine vectorised`` write the same tables (the manifest
    says which engine ran); a forced engine that cannot run a scenario exits 2 with the reason,
    before anything runs; every command that simulates has the option."""
    import pandas as pd
    from typer.testing import CliRunner

    from v2vsim.cli import app

    runner = CliRunner()
    overseas = ROOT / "scenarios" / "overseas.yaml"
    written = {}
    for engine in ("simpy", "vectorised"):
        out = tmp_path / engine
        result = runner.invoke(app, ["run", str(overseas), "-n", "3", "-o", str(out), "--no-figures",
                                     "-j", "1", "--engine", engine])
        assert result.exit_code == 0, result.output
        manifest = __import__("json").loads((out / "manifest.json").read_text())
        assert manifest["engines"] == {engine: 3}
        written[engine] = out
    assert pd.read_parquet(written["simpy"] / "patients.parquet").equals(
        pd.read_parquet(written["vectorised"] / "patients.parquet"))
    for name in ("replications.csv", "summary.csv"):
        assert (written["simpy"] / name).read_bytes() == (written["vectorised"] / name).read_bytes(), name
    refused = runner.invoke(app, ["run", str(ROOT / "scenarios" / "hybrid.yaml"), "-n", "1", "-o",
                                  str(tmp_path / "no"), "--engine", "vectorised"])
    assert refused.exit_code == 2
    assert "cannot run scenario" in refused.output and "routed by a rule" in refused.output
    assert not (tmp_path / "no").exists()
    bad = runner.invoke(app, ["run", str(overseas), "--engine", "fast"])
    assert bad.exit_code == 2 and "unknown engine 'fast'" in bad.output
    for command in ("run", "compare", "sweep", "sensitivity", "capacity"):
        assert "--engine" in runner.invoke(app, [command, "--help"]).output, command


def test_stream_seeds_computed_together_are_numpys_seed_sequence() -> None:
    """The named streams' PCG64 seed words computed together (one vectorised SeedSequence for
    many streams) are numpy's own, word for word, and give the same uniforms; so are the
    replications set up together."""
    from v2vsim.engine.replication import Replication, set_up
    from v2vsim.engine.rng import UniformStream, replication_states, stream_seed, stream_states

    replications, purposes = [0, 1, 7, 2**32 - 1, 2**32 + 1, 2**45], ["arrivals", "cohort", "step:make:2:failure", ""]
    keys = [(r, p) for r in replications for p in purposes]
    for seed in (0, 1, 20251201, 2**32, 2**64 + 7, 2**130 + 3):
        found = stream_states(seed, keys)
        by_replication = replication_states(seed, replications, purposes)
        for key in keys:
            assert np.array_equal(found[key], stream_seed(seed, *key).generate_state(4, np.uint64)), (seed, key)
            assert np.array_equal(by_replication[key[0]][key[1]], found[key]), (seed, key)
            assert np.array_equal(UniformStream(seed, *key, state=found[key]).extend_to(300),
                                  UniformStream(seed, *key).extend_to(300))
    sc = v2vsim.load_scenario(ROOT / "scenarios" / "overseas.yaml")
    together = set_up(sc, 3, list(range(6)), {0: 40})
    for rep in together:
        alone = Replication(sc, 3, rep.replication, 40 if rep.replication == 0 else 0)
        assert_identical(rep.run(), alone.run())


@pytest.mark.parametrize("name", ["local", "slot_shortage", "economics_local", "hybrid", "waitlist_fifo"])
def test_replications_set_up_together_are_set_up_alone(name: str) -> None:
    """Replications set up together (the tables they share made once, each distribution applied
    to all their uniforms at once, the retries' durations made together, as the compiled engine
    makes them too) have the draws and the results of each set up alone."""
    from v2vsim.engine.compiled import _bridging_draws, _bridging_draws_together, _bridging_table, _draws, _draws_together
    from v2vsim.engine.replication import Replication, set_up

    sc = v2vsim.load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    together = set_up(sc, 5, list(range(5)), {1: 20})
    compiled_reps = set_up(sc, 5, list(range(5)), {1: 20})  # their draws made as the compiled engine makes them
    table = _bridging_table(compiled_reps[0])
    at_once = _draws_together(compiled_reps, 3)
    bridging = _bridging_draws_together(compiled_reps, table)
    for rep, made, bridged in zip(together, at_once, bridging):
        alone = Replication(sc, 5, rep.replication, 20 if rep.replication == 1 else 0)
        for a, b, c in zip(_draws(rep, 3), _draws(alone, 3), made):
            assert a.tobytes() == b.tobytes() == c.tobytes()
        assert _bridging_draws(alone, table).tobytes() == bridged.tobytes()
        assert_identical(rep.run(), alone.run())
