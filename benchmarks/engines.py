"""Each engine's speed on the bundled scenarios and the stress scenario, measured in one run.

    python benchmarks/engines.py            # everything (about 3 minutes on 2 cores)
    python benchmarks/engines.py --quick    # smaller stress run (100,000 referrals), smaller PSA

For every case each engine that can run it (SimPy, the reference; vectorised; compiled) runs
the same replications in a fresh process of its own, in turn, A B C A B C, so that load on a
shared machine hits all alike and no run inherits another's memory; the ratio to SimPy is
taken round by round and the median printed. The results are compared by a digest of every
patient column's bytes, the slot-days and the trace: they must be identical (the same floats). A scenario outside the
vectorised engine's scope, or a replication whose slots could bind, runs on SimPy: the table
says how many replications each engine actually ran. Every process sets itself up for large
arrays as the command line does (:mod:`v2vsim._memory`: NumPy's huge pages off, glibc's
thresholds raised).

Then peak memory of ``v2vsim run benchmarks/stress_1m.yaml`` (figures included) in a child
process, and the wall time of a PSA-sized workload: 1,000 parameter sets x 50 replications of
``scenarios/overseas.yaml`` and of ``scenarios/local.yaml`` (manufacturing failure, its most
likely duration and the adults' median untreated survival drawn per set), run as ``v2vsim
sweep`` runs points, on two workers, with ``engine="auto"``; the SimPy engine's time for the
same workload is measured on a sample of the sets.

Targets (issue #10): vectorised >= 30x SimPy on the stress scenario; peak memory of the 1M
run <= 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2vsim import load_scenario  # noqa: E402
from v2vsim.engine.compiled import compiled_problems, numba_available  # noqa: E402
from v2vsim.engine.engines import engine_for, run_replications, scope_problems  # noqa: E402


def digest(outputs: list) -> str:
    """A fingerprint of replications' results: every patient column's bytes (NaN included),
    slot-days, end day and the trace (patient by patient)."""
    import hashlib

    h = hashlib.sha256()
    for out in outputs:
        for key in sorted(out.columns):
            column = out.columns[key]
            h.update(key.encode())
            h.update(repr(column.tolist()).encode() if column.dtype == object else np.ascontiguousarray(column).tobytes())
        h.update(repr(sorted(out.site_busy_slot_days.items())).encode())
        h.update(repr(out.end_day).encode())
        h.update(repr(sorted(out.events, key=lambda e: e[0])).encode())
    return h.hexdigest()


def child(engine: str, path: str, replications: int, seed: int) -> None:
    """One timed run of ``engine`` in this (fresh) process; prints JSON."""
    sc = load_scenario(path)
    if engine == "compiled":
        run_replications(sc, seed, [0], engine="compiled")  # load (or compile) the loop first
    t0 = time.perf_counter()
    outs = run_replications(sc, seed, range(replications), engine=engine, trace={0: 40})
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "digest": digest(outs), "patients": sum(o.columns["patient"].size for o in outs),
                      "ran": sum(o.engine == engine for o in outs)}))


def _in_child(engine: str, path: Path, replications: int, seed: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", engine, str(path), str(replications), str(seed)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def engine_case(path: Path, replications: int, pairs: int, seed: int = 1) -> dict:
    """Every engine that can run ``path`` on the same replications, each in a fresh process
    (so that no run inherits another's memory), in turn, ``pairs`` times; ratios to SimPy pair
    by pair (median), and whether every engine's results have SimPy's digest."""
    sc = load_scenario(path)
    engines = ["simpy"]
    if not scope_problems(sc):
        engines.append("vectorised")
    if not compiled_problems(sc) and numba_available():
        engines.append("compiled")
    seconds: dict[str, list[float]] = {e: [] for e in engines}
    ran: dict[str, int] = {}
    same = True
    patients = 0
    for _ in range(pairs):
        found = {engine: _in_child(engine, path, replications, seed) for engine in engines}
        for engine, res in found.items():
            seconds[engine].append(res["seconds"])
            ran[engine] = res["ran"]
        patients = found["simpy"]["patients"]
        same = same and all(res["digest"] == found["simpy"]["digest"] for res in found.values())
    out = {"case": path.name, "replications": replications, "patients": patients,
           "auto": engine_for(sc, "auto", replications), "identical": same, "engines": {}}
    for engine in engines:
        ratios = [s0 / s1 for s0, s1 in zip(seconds["simpy"], seconds[engine])]
        out["engines"][engine] = {"patients_per_s": patients / statistics.median(seconds[engine]),
                                  "ratio": statistics.median(ratios), "ran": ran[engine]}
    return out


def peak_rss_of_cli(scenario: Path, out: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of ``v2vsim run SCENARIO`` (figures included), as the CLI
    process itself reports it at its end (its own ``ru_maxrss``: the children of this benchmark
    would otherwise count too)."""
    code = ("import resource, sys, time; sys.argv = ['v2vsim', 'run', %r, '-o', %r, '--force', '-j', '1'];"
            "from v2vsim.cli import main; t = time.perf_counter();\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('WALL', time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
            ) % (str(scenario), str(out))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    line = next(line for line in proc.stderr.splitlines() if line.startswith("WALL"))
    _, wall, rss_kb = line.split()
    return float(rss_kb) / 1024, float(wall)


def psa_workload(scenario: str, sets: int, replications: int, sample: int) -> dict:
    """Wall time of ``sets`` parameter sets x ``replications`` on two workers (engine auto),
    and the SimPy engine's time on the first ``sample`` sets, scaled to all of them."""
    from v2vsim import experiments as ex

    source = ex.ScenarioSource(ROOT / "scenarios" / f"{scenario}.yaml")
    rng = np.random.default_rng(2026)
    low, high = {"overseas": (8.0, 11.0), "local": (11.5, 13.5)}[scenario]  # inside each triangle
    design = [{f"pathways.{scenario}.steps.manufacture.failure_probability": float(rng.uniform(0.01, 0.1)),
               f"pathways.{scenario}.steps.manufacture.duration.mode": float(rng.uniform(low, high)),
               "cohorts.adult_LBCL.time_to_death.median": float(rng.uniform(150, 250))}
              for _ in range(sets)]
    timings, engines = {}, {}
    for engine, chosen in (("auto", design), ("simpy", design[:sample])):
        points = ex.make_points(source, chosen, seed=1, replications=replications, engine=engine)
        engines[engine] = points[0].engine
        started = time.perf_counter()
        with ex.executor_for(2) as (executor, workers):
            ex.run_points(points, lambda _p, _r: None, executor=executor, workers=workers)
        timings[engine] = time.perf_counter() - started
    return {"scenario": scenario, "sets": sets, "replications": replications, "engine": engines["auto"],
            "wall_s_auto": timings["auto"], "wall_s_simpy_estimated": timings["simpy"] * sets / sample,
            "simpy_sample_sets": sample}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000-referral stress, 100-set PSA")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", nargs=4, metavar=("ENGINE", "SCENARIO", "REPLICATIONS", "SEED"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    # This process and each child are set up for large arrays as the command line sets itself up.
    from v2vsim._memory import settle_for_large_arrays

    settle_for_large_arrays()
    if args.child:
        engine, path, reps, seed = args.child
        child(engine, path, int(reps), int(seed))
        return
    stress = ROOT / "benchmarks" / "stress_1m.yaml"
    quick_stress = Path("/tmp/v2vsim-stress-100k.yaml")
    if args.quick:
        text = stress.read_text().replace("horizon_days: 3650", "horizon_days: 365")
        quick_stress.write_text(text)
        stress = quick_stress
    print(f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} cores · load {os.getloadavg()[0]:.2f}", flush=True)
    cases = [
        engine_case(ROOT / "scenarios" / "local.yaml", 200, 3),
        engine_case(ROOT / "scenarios" / "overseas.yaml", 200, 3),
        engine_case(ROOT / "scenarios" / "slot_shortage.yaml", 200, 3),
        engine_case(stress, 1, 2 if args.quick else 1),
    ]
    print(f"\n{'case':<22}{'reps':>5}{'patients':>10}{'auto':>12}  engine: patients/s (x SimPy, replications it ran)")
    for c in cases:
        parts = [f"{e}: {v['patients_per_s']:,.0f}/s ({v['ratio']:.1f}x, {v['ran']})" for e, v in c["engines"].items()]
        print(f"{c['case']:<22}{c['replications']:>5}{c['patients']:>10,}{c['auto']:>12}  " + "; ".join(parts)
              + ("" if c["identical"] else "  NOT IDENTICAL"))
    print("(a replication the vectorised engine hands back, its slots could bind, runs on SimPy: "
          "'ran' counts those it computed itself)")
    rss, wall = peak_rss_of_cli(stress, Path("/tmp/v2vsim-bench-stress"))
    print(f"\n`v2vsim run {stress.name}` (figures included): peak RSS {rss:,.0f} MB "
          f"(target <= 1,024), {wall:.1f} s")
    sets = 100 if args.quick else 1000
    psas = [psa_workload(name, sets, 50, 10 if args.quick else 40) for name in ("overseas", "local")]
    for psa in psas:
        print(f"PSA-sized workload, {psa['sets']:,} sets x {psa['replications']} replications of {psa['scenario']}.yaml "
              f"on 2 workers: {psa['wall_s_auto']:.1f} s with engine auto ({psa['engine']}); SimPy engine "
              f"~{psa['wall_s_simpy_estimated']:.0f} s (from {psa['simpy_sample_sets']} sets)")
    stress_ratio = cases[-1]["engines"].get("vectorised", {"ratio": 0.0})["ratio"]
    local_ratio = cases[0]["engines"].get("compiled", {"ratio": 0.0})["ratio"]
    print(f"\ntarget compiled >= 10x SimPy on local.yaml: {local_ratio:.1f}x " + ("met" if local_ratio >= 10 else "NOT met")
          + f"; vectorised >= 30x SimPy on the stress scenario: {stress_ratio:.1f}x "
          + ("met" if stress_ratio >= 30 else "NOT met")
          + f"; peak memory <= 1 GB: {'met' if rss <= 1024 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"cases": cases, "peak_rss_mb": rss, "psa": psas}, indent=2))


if __name__ == "__main__":
    main()
