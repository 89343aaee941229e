"""Throughput and memory of the model against a bare SimPy baseline, measured in one run.

    python benchmarks/throughput.py            # local scenario, 1,000,000-referral stress, CLI time
    python benchmarks/throughput.py --quick    # smaller stress run (100,000 referrals)
    python benchmarks/throughput.py --against ../v2vsim-old   # this checkout vs another, A B A B

``--against DIR`` times the same workloads on another checkout of v2vsim (for example the
commit before an engine change: ``git worktree add ../v2vsim-old HEAD~1``), alternating the
two in fresh child processes, and prints the ratio of the model's time pair by pair; the time
per patient is compared, not per event, because engines may schedule different numbers of
events for the same patients.

For each case the model's events and wall time are measured, then a *bare SimPy baseline*
runs in the same process: the same number of patient processes arriving at the same times,
each doing the same mean number of timeouts per patient and nothing else. The ratio of the
costs per event is the model's overhead. Peak memory is measured in a fresh child process
(``ru_maxrss``) so cases do not inflate each other.

Targets: cost per event <= 2.5x the baseline; 1,000,000 referrals within 1 GB peak memory;
``v2vsim run scenarios/local.yaml`` (default replications) under 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bare_simpy(arrivals: list[float], timeouts_per_patient: float, mean_timeout: float) -> tuple[float, int]:
    """A process per patient with the same number of timeouts, nothing else."""
    import simpy

    env = simpy.Environment()
    rate = timeouts_per_patient

    def patient(k: int):
        # floor((k+1)r) - floor(kr) timeouts: exactly r per patient on average.
        for _ in range(int((k + 1) * rate) - int(k * rate)):
            yield env.timeout(mean_timeout)

    def source():
        for k, day in enumerate(arrivals):
            if day > env.now:
                yield env.timeout(day - env.now)
            env.process(patient(k))

    env.process(source())
    started = time.perf_counter()
    env.run()
    return time.perf_counter() - started, next(env._eid)


def measure(scenario_path: str, replications: int) -> dict:
    """Model vs bare SimPy on the same arrivals (runs in a child process)."""
    from v2vsim import load_scenario
    from v2vsim.engine.replication import set_up
    from v2vsim.engine.runner import single_task

    sc = load_scenario(scenario_path)
    model_s = bare_s = setup_s = 0.0
    model_events = bare_events = patients = 0
    size = single_task(sc, "simpy")  # replications set up together, as a run's tasks are
    sims: list = []
    for rep in range(replications):
        started = time.perf_counter()
        if not sims:
            sims = set_up(sc, sc.seed, list(range(rep, min(rep + size, replications))), {})
        sim = sims.pop(0)
        built = time.perf_counter()
        out = sim.run()
        model_s += time.perf_counter() - started
        setup_s += built - started
        n = int(sim.n)
        patients += n
        model_events += out.events_processed
        # Same arrivals, same number of scheduled events per patient (arrival + process
        # start + its timeouts), no resources, no bookkeeping.
        per_patient = max(out.events_processed / max(n, 1) - 2.0, 0.0)
        t, e = _bare_simpy(sim.arrivals.tolist(), per_patient, 1.0)
        bare_s += t
        bare_events += e
        del sim, out
    return {
        "scenario": scenario_path,
        "replications": replications,
        "patients": patients,
        "model_seconds": model_s,
        "setup_seconds": setup_s,
        "model_events": model_events,
        "bare_seconds": bare_s,
        "bare_events": bare_events,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(scenario: str, replications: int, root: Path = ROOT) -> dict:
    import os

    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "throughput.py"), "--child", scenario, str(replications)],
        check=True, capture_output=True, text=True, cwd=root, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _against(other: Path, stress_file: str, pairs: int = 3) -> None:
    """This checkout (A) against another (B), alternating, ratio A/B of the model's seconds."""
    cases = [("scenarios/local.yaml", 200), (stress_file, 1)]
    for scenario, reps in cases:
        print(f"\n{scenario}, {reps} replication(s): model seconds, this checkout (A) vs {other} (B)")
        ratios = []
        for k in range(pairs):
            a = _child(scenario, reps)
            b = _child(scenario, reps, other)
            if a["patients"] != b["patients"]:
                raise SystemExit("the two checkouts simulate different patients: not comparable")
            ratios.append(a["model_seconds"] / b["model_seconds"])
            print(f"  pair {k + 1}: A {a['model_seconds']:.2f} s ({a['patients'] / a['model_seconds']:,.0f} patients/s, "
                  f"{a['model_events']:,} events), B {b['model_seconds']:.2f} s "
                  f"({b['patients'] / b['model_seconds']:,.0f} patients/s, {b['model_events']:,} events), "
                  f"A/B {ratios[-1]:.3f}")
        ratios.sort()
        print(f"  A/B time ratio: median {ratios[len(ratios) // 2]:.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f});"
              f" below 1 means this checkout is faster")


def _report(case: str, m: dict) -> float:
    model_us = 1e6 * m["model_seconds"] / m["model_events"]
    bare_us = 1e6 * m["bare_seconds"] / m["bare_events"]
    ratio = model_us / bare_us
    print(f"\n{case}")
    print(f"  patients simulated     {m['patients']:>12,}  ({m['replications']} replication(s))")
    print(f"  model                  {m['model_events']:>12,} events in {m['model_seconds']:.2f} s"
          f"  = {m['patients'] / m['model_seconds']:>10,.0f} patients/s, {m['model_events'] / m['model_seconds']:>10,.0f} events/s")
    print(f"  bare SimPy baseline    {m['bare_events']:>12,} events in {m['bare_seconds']:.2f} s"
          f"  = {m['bare_events'] / m['bare_seconds']:>10,.0f} events/s")
    print(f"  cost per event         model {model_us:.2f} us, baseline {bare_us:.2f} us, ratio {ratio:.2f}x (target <= 2.5x)")
    loop_us = 1e6 * (m["model_seconds"] - m["setup_seconds"]) / m["model_events"]
    print(f"    of which setup       {m['setup_seconds']:.2f} s building replications (named random streams, "
          f"arrivals, draws); without it {loop_us:.2f} us per event, ratio {loop_us / bare_us:.2f}x")
    print(f"  peak memory (process)  {m['peak_rss_mb']:,.0f} MB")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "REPS"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="100,000-referral stress run")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="another checkout to time against this one, alternating (A B A B)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]))))
        return

    stress_file = "benchmarks/stress_1m.yaml"
    if args.quick:
        import tempfile

        text = (ROOT / stress_file).read_text().replace("rate_per_year: 100000", "rate_per_year: 10000")
        tmp = Path(tempfile.mkdtemp()) / "stress_100k.yaml"
        tmp.write_text(text)
        stress_file = str(tmp)
    if args.against:
        _against(args.against.resolve(), stress_file)
        return

    local = _child("scenarios/local.yaml", 200)
    ratio_local = _report("scenarios/local.yaml, 200 replications", local)
    stress = _child(stress_file, 1)
    ratio_stress = _report(f"{stress_file}, 1 replication", stress)

    # The whole command as a user runs it: default replications, all cores, figures on.
    import tempfile

    out_dir = Path(tempfile.mkdtemp()) / "run"
    started = time.perf_counter()
    subprocess.run([sys.executable, "cli.py", "run", "scenarios/local.yaml", "-o", str(out_dir)],
                   check=True, cwd=ROOT, capture_output=True)
    cli_s = time.perf_counter() - started

    print("\nSummary")
    print(f"  cost-per-event ratio, local   {ratio_local:.2f}x  (target <= 2.5x)  {'ok' if ratio_local <= 2.5 else 'MISSED'}")
    print(f"  cost-per-event ratio, stress  {ratio_stress:.2f}x  (target <= 2.5x)  {'ok' if ratio_stress <= 2.5 else 'MISSED'}")
    print(f"  peak memory, {stress['patients']:,} referrals  {stress['peak_rss_mb']:,.0f} MB  (target <= 1024 MB)"
          f"  {'ok' if stress['peak_rss_mb'] <= 1024 else 'MISSED'}")
    print(f"  v2vsim run scenarios/local.yaml (200 replications, figures)  {cli_s:.1f} s  (target < 20 s)"
          f"  {'ok' if cli_s < 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
