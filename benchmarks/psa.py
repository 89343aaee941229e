"""A 1,000-set probabilistic sensitivity analysis of a pair of scenarios at 50 replications a
set (100,000 replications), on two worker processes: wall time and peak memory.

    python benchmarks/psa.py scenarios/economics_overseas.yaml scenarios/economics_local.yaml   # the bundled pair
    python benchmarks/psa.py                       # the pair below, built from scenarios/
    python benchmarks/psa.py A.yaml B.yaml         # a pair of economic scenarios with uncertain inputs
    python benchmarks/psa.py --sets 100            # a smaller run

Without arguments the pair is scenarios/local.yaml and scenarios/overseas.yaml with an economics
section, survival after infusion and five uncertain inputs added (written to a temporary
folder; the values are for timing, not for a decision). The PSA runs as the command line runs
it (``v2vsim psa ... --jobs 2``, figures included) in a child process; peak memory is the
largest resident set of that process and of its worker processes (``ru_maxrss`` of the
children, which the operating system reports as the largest of them), and this script's own.
Target (issue 11): at most 3 minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SURVIVAL = {
    "survival_responder": {"dist": "exponential", "mean": 3650},
    "survival_non_responder": {"dist": "exponential", "mean": 270},
}
ECONOMICS = {
    "follow_up_years": 10,
    "utilities": {"waiting": 0.6, "responder": 0.83, "non_responder": 0.55, "progressed": 0.45},
    "wtp": [250000, 500000, 1000000],
}


def _pair(folder: Path) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from v2vsim.scenario.yaml_io import read_yaml, to_plain

    out = []
    for name, cost_step in (("local", "manufacture"), ("overseas", "manufacture")):
        path = ROOT / "scenarios" / f"{name}.yaml"
        data = to_plain(read_yaml(path.read_text(encoding="utf-8"), str(path)))
        for cohort in data["cohorts"]:
            cohort.setdefault("after_infusion", {}).update(SURVIVAL)
        data["economics"] = ECONOMICS
        pathway = next(iter(data["pathways"]))
        steps = {s["name"]: s for s in data["pathways"][pathway]["steps"]}
        cost = float(steps[cost_step].get("cost", 100000)) or 100000.0
        data["uncertain"] = [
            {"path": f"pathways.{pathway}.steps.{cost_step}.cost", "name": f"{name}_manufacture_cost",
             "distribution": {"gamma": {"mean": cost, "sd": cost / 5}}},
            {"path": f"pathways.{pathway}.steps.{cost_step}.failure_probability", "name": f"{name}_failure",
             "distribution": {"beta": {"mean": float(steps[cost_step].get("failure_probability", 0.05)) or 0.05,
                                       "sd": 0.015}}},
            {"path": "cohorts.adult_LBCL.after_infusion.response_probability", "name": "response_LBCL",
             "distribution": {"beta": {"mean": 0.82, "sd": 0.04}}},
            {"path": "cohorts.paediatric_ALL.after_infusion.response_probability", "name": "response_ALL",
             "distribution": {"beta": {"mean": 0.81, "sd": 0.05}}},
            {"path": "economics.utilities.responder", "name": "utility_responder",
             "distribution": {"beta": {"mean": 0.83, "sd": 0.05}}},
        ]
        target = folder / f"{name}_psa.yaml"
        target.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")  # JSON is YAML
        out.append(target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", type=Path)
    parser.add_argument("--sets", type=int, default=1000)
    parser.add_argument("-n", "--replications", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = [p.resolve() for p in args.scenarios] or _pair(Path(tmp))
        out = Path(tmp) / "out"
        command = [str(Path(sys.executable).with_name("v2vsim")), "psa", *map(str, files), "--sets", str(args.sets),
                   "-n", str(args.replications), "--jobs", str(args.jobs), "-o", str(out)]
        print("$", " ".join(command[1:]), flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, env={**os.environ, "COLUMNS": "120"})
        wall = time.perf_counter() - started
        if done.returncode:
            sys.exit(done.returncode)
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        engines = json.loads((out / "psa.json").read_text(encoding="utf-8")).get("engines")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reps = args.sets * args.replications * len(files)
    print(f"\n{args.sets} sets x {args.replications} replications x {len(files)} scenarios = {reps:,} replications "
          f"on {args.jobs} jobs (engines: {engines})")
    print(f"wall time: {wall:.1f} s (the command's own count: {manifest['wall_seconds']:.1f} s); "
          f"target <= 180 s: {'met' if wall <= 180 else 'not met'}")
    print(f"peak memory: {children:.0f} MB (largest child: the command or a worker), {own:.0f} MB (this script)")


if __name__ == "__main__":
    main()
