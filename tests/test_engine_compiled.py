"""The compiled engine against the SimPy engine (the reference): the same events, the same patients.

Random small scenarios where patients queue (one to three slots, two priorities, routing rules
that read the queue at referral, site calendars, bridging with toxicity, referrals at the same instant, retries from earlier steps, several sites booked with ``reserve_from``,
shelf lives, weekday starts, disease clocks that cut waits, runs that stop mid-journey) run on
both engines with the same seed. Every patient column must be equal (the same floats), and so
must the slot-days, the sites' change logs row for row, the trace, and the number of events
SimPy schedules: the compiled loop replays SimPy's own event order, so the counts agree too.
With Numba installed (``.[fast]``) the compiled loop is tested; the same loop as plain
Python is tested on a few cases either way.
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
from v2vsim.engine.compiled import _bridging_table, compiled_problems, numba_available, run_compiled
from v2vsim.engine.engines import EngineError, engine_for
from v2vsim.engine.replication import Replication, run_replication

from test_engine_vectorised import assert_identical, load, scenarios

ROOT = Path(__file__).resolve().parents[1]
JIT = numba_available()


def assert_same_run(out: Any, ref: Any) -> None:
    """What the vectorised engine's test compares, and more: the trace in the order it
    happened, the change logs row for row, the start of each use and SimPy's event count."""
    assert_identical(out, ref)
    assert out.events == ref.events
    for site, log in ref.site_timeline.items():
        assert np.array_equal(out.site_timeline[site], log), site
    assert out.site_starts.keys() == ref.site_starts.keys()
    for site, starts in ref.site_starts.items():
        assert np.array_equal(out.site_starts[site], starts), site
    for site, daily in ref.site_daily_slots.items():
        assert np.array_equal(out.site_daily_slots[site], daily), site
    assert out.site_slots == ref.site_slots
    assert out.events_processed == ref.events_processed


@st.composite
def queueing(draw: st.DrawFn) -> dict[str, Any]:
    """The vectorised engine's random scenarios (bridging with toxicity included), mostly with
    few slots, sometimes a routing rule (the fallback pathway when the booking site is
    congested) and site calendars: allocations of starts per month, week or day (a daily one
    on the site's weekdays, its sessions), closures, slot schedules."""
    data = draw(scenarios())
    horizon = data["horizon_days"]
    if "q" in data["pathways"] and draw(st.integers(0, 9)) < 7:
        when = draw(st.sampled_from([{"waiting_more_than": draw(st.integers(0, 2))},
                                     {"expected_wait_more_than_days": draw(st.floats(0.0, 10.0))}]))
        data["cohorts"][0]["pathway"] = {"primary": "p", "fallback": "q", "when": when}
    for site in data["sites"].values():
        if draw(st.integers(0, 9)) < 8:
            site["slots"] = draw(st.integers(1, 3))
        if draw(st.integers(0, 9)) < 2:
            site["starts_per_month"] = draw(st.integers(1, 4))
        if draw(st.integers(0, 9)) < 2:
            site["starts_per_week"] = draw(st.integers(1, 2))
        if draw(st.integers(0, 9)) < 2:
            first = draw(st.integers(0, horizon))
            site["closures"] = [{"from_day": first, "to_day": first + draw(st.integers(0, 20))}]
        if draw(st.integers(0, 9)) < 2:
            site["slots"] = [{"from_day": 0, "slots": draw(st.integers(1, 3))},
                             {"from_day": draw(st.integers(1, horizon)), "slots": draw(st.integers(0, 3))}]
        if draw(st.integers(0, 9)) < 2:
            site["starts_per_day"] = draw(st.integers(1, 2))
            if draw(st.booleans()):
                site["starts_on"] = draw(st.sampled_from([["mon", "tue", "wed", "thu", "fri"],
                                                          ["mon", "wed", "fri", "sat"], ["tue", "thu"]]))
    return data


FOUND: dict[str, int] = {}


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=queueing(), seed=st.integers(0, 2**32))
def test_compiled_engine_replays_the_simpy_engines_run(data: dict[str, Any], seed: int) -> None:
    sc = load(data)
    assume(sc is not None)
    assert compiled_problems(sc) == []
    ref = run_replication(sc, seed, 0, trace_patients=10**6)
    [out] = run_compiled(sc, seed, [0], trace={0: 10**6}, compiled=JIT)
    assert out.engine == "compiled"
    assert_same_run(out, ref)
    waited = any(log[:, 2].max() > 0 for log in ref.site_timeline.values() if log.size)
    FOUND["queued"] = FOUND.get("queued", 0) + waited
    FOUND["unresolved"] = FOUND.get("unresolved", 0) + ("unresolved" in ref.columns["outcome"].tolist())
    FOUND["expired"] = FOUND.get("expired", 0) + ("product_expired" in ref.columns["outcome"].tolist())
    FOUND["rerouted"] = FOUND.get("rerouted", 0) + bool(np.nansum(ref.columns["rerouted"]) > 0)
    FOUND["bridging"] = FOUND.get("bridging", 0) + bool((~np.isnan(ref.columns["bridging_day"])).any())
    FOUND["toxicity"] = FOUND.get("toxicity", 0) + bool((ref.columns["bridging_toxicity"] == 1.0).any())
    # Bridging computed in the loop (closed-form clocks) and by the replication's callback (others).
    bridged = set(np.asarray(ref.columns["cohort"])[~np.isnan(ref.columns["bridging_day"])].tolist())
    in_loop = _bridging_table(Replication(sc, seed, 0))[:, 0]
    cohorts = [c.name for c in sc.cohorts]
    FOUND["bridged_in_loop"] = FOUND.get("bridged_in_loop", 0) + any(in_loop[cohorts.index(c)] for c in bridged)
    FOUND["bridged_by_callback"] = FOUND.get("bridged_by_callback", 0) + any(
        not in_loop[cohorts.index(c)] for c in bridged)
    FOUND["calendar"] = FOUND.get("calendar", 0) + bool(ref.site_starts)
    daily = [s for s, site in sc.sites.items() if site.starts_per_day is not None]
    FOUND["daily"] = FOUND.get("daily", 0) + any(len(ref.site_starts[s]) for s in daily)
    FOUND["economics"] = FOUND.get("economics", 0) + bool(ref.budget is not None and ref.budget.sum() > 0)


def test_the_differential_test_had_patients_queue() -> None:
    if not FOUND:
        pytest.skip("run with the differential test")
    assert FOUND["queued"] >= 100 and FOUND["unresolved"] >= 5 and FOUND["expired"] >= 5, FOUND
    assert FOUND["rerouted"] >= 10 and FOUND["bridging"] >= 30 and FOUND["toxicity"] >= 5, FOUND
    assert FOUND["bridged_in_loop"] >= 10 and FOUND["bridged_by_callback"] >= 5, FOUND
    assert FOUND["calendar"] >= 30 and FOUND["economics"] >= 30 and FOUND["daily"] >= 15, FOUND


@pytest.mark.parametrize("name", ["local.yaml", "overseas.yaml", "hybrid.yaml", "slot_shortage.yaml",
                                  "economics_local.yaml", "../validation/scenarios/juliet.yaml"])
def test_bundled_scenarios_on_the_plain_python_loop_and_the_compiled_one(name: str) -> None:
    """The loop as plain Python (what Numba compiles) and compiled give SimPy's results (the
    validation scenarios have no site at all)."""
    sc = v2vsim.load_scenario(ROOT / "scenarios" / name)
    reps = [0, 1, 2]
    ref = [run_replication(sc, 7, r, trace_patients=40 if r == 0 else 0) for r in reps]
    for compiled in ([False, True] if JIT else [False]):
        for out, expect in zip(run_compiled(sc, 7, reps, trace={0: 40}, compiled=compiled), ref):
            assert_same_run(out, expect)


def test_simulate_on_the_compiled_engine_gives_identical_frames() -> None:
    if not JIT:
        pytest.skip("Numba is not installed")
    sc = v2vsim.load_scenario(ROOT / "scenarios" / "local.yaml")
    ref = v2vsim.simulate(sc, replications=12, seed=5, engine="simpy")
    for jobs in (1, 2):
        res = v2vsim.simulate(sc, replications=12, seed=5, engine="compiled", jobs=jobs)
        assert res.extra["engines"] == {"compiled": 12}
        for frame in ("patients", "replications", "site_days", "events"):
            assert getattr(res, frame).equals(getattr(ref, frame)), (jobs, frame)
        assert res.events_processed == ref.events_processed


def test_auto_takes_the_compiled_engine_for_large_runs_of_any_scenario() -> None:
    """Every feature is in the compiled engine's scope; auto takes it only for runs large
    enough to repay loading it (and never where the vectorised engine fits)."""
    for name in ("local.yaml", "hybrid.yaml", "slot_shortage.yaml"):
        sc = v2vsim.load_scenario(ROOT / "scenarios" / name)
        assert compiled_problems(sc) == []
        assert engine_for(sc, "auto", 10) == "simpy", name  # too small to repay loading the loop
        assert engine_for(sc, "auto", 100_000) == ("compiled" if JIT else "simpy"), name
    overseas = v2vsim.load_scenario(ROOT / "scenarios" / "overseas.yaml")
    assert engine_for(overseas, "auto", 100_000) == "vectorised"
    if not JIT:
        with pytest.raises(EngineError, match="Numba is not installed"):
            engine_for(overseas, "compiled")


def test_a_signal_during_a_compiled_run_stops_it_like_a_simpy_run(tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM while the compiled loop runs (at several moments) ends the command
    with 130 or 143 and the message of an interrupted run, never a traceback of the compiled
    code."""
    if not JIT:
        pytest.skip("Numba is not installed")
    import os
    import signal
    import subprocess
    import sys
    import time

    # The compiled loop is on disk (Numba's cache) before the commands start, so that the
    # signals reach the run and not the compilation.
    from v2vsim.engine.compiled import run_compiled

    run_compiled(v2vsim.load_scenario(ROOT / "scenarios" / "local.yaml"), 1, [0], compiled=True)
    long = tmp_path / "long.yaml"
    long.write_text((ROOT / "scenarios" / "local.yaml").read_text().replace("replications: 200", "replications: 100000"))
    for sig, delay in ((signal.SIGINT, 2.0), (signal.SIGTERM, 3.0), (signal.SIGINT, 4.5)):
        # A signal before the command has started (a loaded machine imports slowly) ends it
        # silently; then the same signal again, later, until it reaches the run.
        for extra in (0.0, 3.0, 6.0, 10.0):
            proc = subprocess.Popen([sys.executable, "-m", "v2vsim", "run", str(long), "-o", str(tmp_path / "out"),
                                     "-j", "1", "--engine", "compiled", "--no-figures"], cwd=tmp_path,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            time.sleep(delay + extra)
            os.killpg(proc.pid, sig)
            _, stderr = proc.communicate(timeout=60)
            # 128 + the signal: exited so, or (before the command started) ended by it
            assert proc.returncode in (128 + sig, -sig), (sig, delay, stderr.decode()[-2000:])
            assert b"Traceback" not in stderr and b"SystemError" not in stderr, stderr.decode()[-2000:]
            assert not (tmp_path / "out").exists()
            if stderr:
                break
        assert b"interrupted" in stderr, (sig, delay, stderr.decode()[-2000:])


def test_a_signal_that_surfaces_as_systemerror_from_the_compiled_loop_is_raised_as_itself() -> None:
    """A signal handled while Numba hands back the loop's arrays surfaces as "returned a result
    with an exception set" (SystemError, the signal's exception as its cause): the engine
    raises the signal's own exception (KeyboardInterrupt), which the commands turn into exit
    130; any other SystemError stays what it is."""
    from v2vsim.engine import compiled

    sc = v2vsim.load_scenario(ROOT / "scenarios" / "local.yaml")
    [rep] = compiled.set_up(sc, 1, [0], {})
    static, attempts = compiled._static_tables(rep), compiled._attempts_bound(rep)

    def interrupted(*args: Any) -> Any:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as signal_exc:
            raise SystemError("CPUDispatcher(<function _kernel>) returned a result with an exception set") from signal_exc

    def broken(*args: Any) -> Any:
        raise SystemError("something else")

    with pytest.raises(KeyboardInterrupt):
        compiled._run_one(rep, interrupted, static, attempts)
    with pytest.raises(SystemError, match="something else"):
        compiled._run_one(rep, broken, static, attempts)


def test_the_compiled_loops_cache_key_covers_the_pools() -> None:
    # Numba keys the loop's disk cache on kernel.py alone; the loop inlines kernel_pools.py, so
    # kernel.py records the pools' digest: a change to the pools must change kernel.py too
    # (else a cached loop would silently run the old pools).
    import hashlib

    from v2vsim.engine import kernel, kernel_pools

    digest = hashlib.sha256(Path(kernel_pools.__file__).read_bytes()).hexdigest()
    assert kernel.KERNEL_POOLS_SHA256 == digest, (
        f"kernel_pools.py changed: set KERNEL_POOLS_SHA256 = {digest!r} in v2vsim/engine/kernel.py")


def test_the_loops_bridged_clock_is_the_references_to_the_last_bit() -> None:
    """Bridging of closed-form clocks in the loop (kernel._bridged_clock, plain and compiled)
    against .clocks.bridged_clock, on random clocks, uniforms, starts, courses (some until
    infusion) and hazard ratios (0, 1 and between); and the closed forms against the
    distributions' own cumulative hazards."""
    from v2vsim.engine import kernel
    from v2vsim.engine.clocks import _cumhaz, bridged_clock, hazard_form
    from v2vsim.engine.compiled import _kernel_function
    from v2vsim.scenario.distributions import Exponential, Weibull

    _kernel_function(JIT)  # compiles the loop's functions where Numba is installed
    compiled = kernel._bridged_clock
    plain = getattr(compiled, "py_func", compiled)
    rng = np.random.default_rng(11)
    checked = moved = 0
    for k in range(3000):
        dist = (Weibull(dist="weibull", shape=float(rng.uniform(0.3, 4.0)), median=float(rng.uniform(5.0, 800.0)))
                if k % 3 else Exponential(dist="exponential", mean=float(rng.uniform(5.0, 800.0))))
        form = hazard_form(dist)
        u = float(rng.uniform(1e-6, 1 - 1e-6))
        t0 = float(dist.ppf(np.array([u]))[0])
        s = float(rng.uniform(0.0, 1.5 * t0))
        d = math.inf if k % 7 == 0 else float(rng.uniform(0.0, 200.0))
        ratio = [0.0, 1.0, float(rng.uniform(0.0, 2.0))][k % 3]
        expect = bridged_clock(dist, u, t0, s, d, ratio)
        for f in (plain, compiled):
            assert f(*form, u, t0, s, d, ratio) == expect, (k, dist, u, t0, s, d, ratio)
        h = _cumhaz(dist, form, s)
        assert h == pytest.approx(float(dist.cumhaz(np.array([s]))[0]), rel=1e-13, abs=1e-300)
        checked += 1
        moved += expect != t0
    assert checked == 3000 and moved > 1000


def test_the_compiled_loops_disk_cache_holds_no_replication() -> None:
    """Numba's disk cache of the loop keeps what its object-mode block (bridging by callback)
    refers to: that must be the kernel module's own function, by name, never a replication's
    closure, which would be pickled whole and fail to load once the replication's classes
    change (a stale cache then breaks the engine instead of compiling again)."""
    if not JIT:
        pytest.skip("Numba is not installed")
    import pickle

    from v2vsim.engine import kernel
    from v2vsim.engine.compiled import _kernel_function

    data = {"name": "callback", "horizon_days": 60, "drain_days": 30, "start_date": "2025-01-01",
            "arrivals": {"schedule": [0.0, 1.0, 2.0]},
            "cohorts": [{"name": "a", "share": 1.0, "pathway": "p",
                         "time_to_death": {"dist": "lognormal", "median": 40.0, "p90": 300.0},
                         "bridging": {"start_step": "s0", "duration": 5.0, "hazard_ratio": 0.5}}],
            "pathways": {"p": {"steps": [{"name": "s0", "kind": "apheresis", "duration": 2.0, "site": "x"},
                                         {"name": "s1", "kind": "infusion", "duration": 1.0}]}},
            "sites": {"x": {"slots": 1}}}
    sc = load(data)
    assert sc is not None and _bridging_table(Replication(sc, 1, 0))[0, 0] == 0  # bridged by the callback
    [out] = run_compiled(sc, 1, [0])
    assert_same_run(out, run_replication(sc, 1, 0))
    assert len(pickle.dumps(kernel.bridge_callback)) < 200  # kept by name
    run = _kernel_function(True)
    cache = Path(run._cache._cache_path)
    index = run._cache._cache_file._index_name  # this source's entries: <name>.nbi, <name>.<k>.nbc
    files = sorted(cache.glob(index[:-len(".nbi")] + ".*nbc"))
    assert files, (cache, index)
    for f in files:
        raw = f.read_bytes()
        for name in (b"Attempts", b"EngineStep", b"Recorder", b"UniformStream", b"Shared", b"Given"):
            assert name not in raw, (f.name, name)


def test_the_compiled_pcg64_gives_numpys_doubles_and_its_streams_continue_as_numpys() -> None:
    """The streams' first blocks made by the compiled PCG64 (rng._pcg64_fill) are the doubles of
    numpy's Generator(PCG64(seed)).random(), bit for bit, for seed words at the edges of their
    range too; a stream filled so and then extended continues numpy's sequence (its generator
    steps over the values made without it); the plain-Python form is the same function."""
    from v2vsim.engine import compiled, rng

    class Words(np.random.bit_generator.ISeedSequence):
        def __init__(self, words: np.ndarray) -> None:
            self.words = words

        def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
            return self.words.copy()

    words = [np.random.SeedSequence(seed, spawn_key=(r, 99)).generate_state(4, np.uint64)
             for seed in (0, 1, 2**40) for r in range(5)]
    words += [np.array(w, dtype=np.uint64) for w in ([2**64 - 1] * 4, [0] * 4, [2**63, 1, 2**64 - 1, 0])]
    words_array = np.array(words, dtype=np.uint64)
    expected = np.array([np.random.Generator(np.random.PCG64(Words(w))).random(300) for w in words])
    with np.errstate(over="ignore"):
        plain = np.empty((len(words), 3))
        rng._pcg64_fill(words_array, plain)
    assert np.array_equal(plain, expected[:, :3])
    if not JIT:
        pytest.skip("Numba is not installed")
    compiled._kernel_function(True)  # compiles the loop and the fill, and puts the fill to use
    fill = rng._COMPILED_FILL[0]
    assert fill is not None
    out = np.empty((len(words), 300))
    fill(words_array, out)
    assert np.array_equal(out, expected)
    for n in (1, 256, 257, 1000):
        streams = [rng.UniformStream(5, r, "step:make:2:duration") for r in range(3)]
        rng.UniformStream.fill_sized(streams, [n, 2 * n, 3 * n])
        for r, (stream, size) in enumerate(zip(streams, (n, 2 * n, 3 * n))):
            alone = rng.UniformStream(5, r, "step:make:2:duration")
            assert stream.values.size == alone.extend_to(size).size
            assert np.array_equal(stream.extend_to(5 * size), alone.extend_to(5 * size)), (n, r)
