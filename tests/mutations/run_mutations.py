"""Deliberate bugs in the engine and the runner that the tests must catch.

Each mutation below is one small hand-written change to the package's source, of the kind that
makes results depend on how replications are split into tasks (an off-by-one in the split, a
seed or replication number offset per task, a task's replications merged in the wrong order,
streams of two purposes swapped when a task's seeds are computed together, a dropped last
task, ...). The script copies the package and its tests to a temporary directory, checks that
the unchanged copy passes, then applies each mutation in turn to the copy, runs the tests
named with it against the copy, and reports whether the tests *caught* it (failed) or it
*survived* (they passed). It exits 0 only if every mutation is caught.

It is not part of the normal test run (it takes a few minutes). Run it from the repository
root with the project's Python::

    python tests/mutations/run_mutations.py                 # every mutation
    python tests/mutations/run_mutations.py --only seed_offset_per_task reversed_merge
    python tests/mutations/run_mutations.py --list          # names and descriptions
    python tests/mutations/run_mutations.py --tests tests/test_experiments_parallel.py
                                                            # which of them older tests catch

The copy lives in ``$TMPDIR/v2vsim-mutations`` (always the same path, so that Numba's on-disk
cache of the compiled engine, copied with the package, stays valid; no mutation touches the
compiled loop itself) and is deleted at the end unless ``--keep``. A mutation whose text is no
longer found in the source is reported as ``stale``, and the script fails: update it with the
code.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TESTS = ("tests/test_reliability_tasks.py", "tests/test_experiments_parallel.py")


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # inside the repository
    old: str  # must occur exactly once
    new: str
    what: str


R, E, P, REP, C = ("v2vsim/engine/runner.py", "v2vsim/engine/engines.py", "v2vsim/experiments/parallel.py",
                   "v2vsim/engine/replication.py", "v2vsim/engine/compiled.py")

MUTATIONS = [
    Mutation("split_gap", R, "return [(a, min(a + size, stop)) for a in range(start, stop, size)]",
             "return [(a, min(a + size - 1, stop)) for a in range(start, stop, size)]",
             "off-by-one in the split: each task stops one replication short"),
    Mutation("dropped_short_last_task", R, "return [(a, min(a + size, stop)) for a in range(start, stop, size)]",
             "return [(a, min(a + size, stop)) for a in range(start, stop - size + 1, size)]",
             "an uneven split loses its shorter last task"),
    Mutation("dropped_last_task", R, "    return [future.result() for future in futures]",
             "    return [future.result() for future in futures[:-1]]",
             "the last task's reply is dropped (workers)"),
    Mutation("seed_offset_per_task", R, "run_replications(scenario, seed, range(start, stop),",
             "run_replications(scenario, seed + start, range(start, stop),",
             "each task's seed offset by its first replication"),
    Mutation("seed_depends_on_task_size", R, "run_replications(scenario, seed, range(start, stop),",
             "run_replications(scenario, seed + (stop - start > 1), range(start, stop),",
             "a task of several replications runs them with another seed"),
    Mutation("replication_offset_in_task", R, "run_replications(scenario, seed, range(start, stop),",
             "run_replications(scenario, seed, range(start + (stop - start > 1), stop + (stop - start > 1)),",
             "a task of several replications runs replications one further on"),
    Mutation("trace_first_of_each_task", R, "trace = {0: TRACE_PATIENTS} if detail else {}",
             "trace = {start: TRACE_PATIENTS} if detail else {}",
             "each task traces its own first replication, not replication 0"),
    Mutation("reversed_within_task", R, "parts = [_one(out, detail) for out in run_replications(",
             "parts = [_one(out, detail) for out in reversed(run_replications(",
             "a task's replications merged in reverse"),
    Mutation("runs_reversed_within_task", R, "runs=[p.run for p in parts],",
             "runs=[p.run for p in reversed(parts)],",
             "a task's per-replication numbers merged in reverse"),
    Mutation("site_days_first_of_task", R, "site_days=[b for p in parts for b in p.sites] if detail else None,",
             "site_days=[b for p in parts[:1] for b in p.sites] if detail else None,",
             "only the first replication of a task keeps its site days"),
    Mutation("budget_first_of_task", R,
             "budget=[p.budget for p in parts] if parts and parts[0].budget is not None else None,",
             "budget=[parts[0].budget for p in parts] if parts and parts[0].budget is not None else None,",
             "every replication of a task gets the first one's budget"),
    Mutation("labels_assumed_equal", R, "    if all(v.labels == labels for v in values):",
             "    if all(len(v.labels) == len(labels) for v in values):",
             "string codes of two parts with as many (but other) labels not remapped"),
    Mutation("reversed_merge", R, "ordered = sorted(batches, key=lambda b: b.start)",
             "ordered = sorted(batches, key=lambda b: (b.stop - b.start, b.start))",
             "tasks merged by size, not by first replication"),
    Mutation("swapped_purposes_batched", REP, "by_rep.setdefault(r, {})[purpose] = words",
             "by_rep.setdefault(r, {})[{'clock:death': 'clock:ineligible', 'clock:ineligible': 'clock:death'}"
             ".get(purpose, purpose)] = words",
             "streams of two purposes swapped when a task's seeds are computed together"),
    Mutation("first_replication_states", REP, "compiled=compiled, states=by_rep.get(r))",
             "compiled=compiled, states=by_rep.get(replications[0]))",
             "every replication of a task set up with the first one's streams"),
    Mutation("fallback_seed_offset", E, "set_up(scenario, seed, missing, trace, record_timeline)",
             "set_up(scenario, seed + len(missing) // 2, missing, trace, record_timeline)",
             "replications the vectorised engine hands to SimPy run with a seed shifted by their number"),
    Mutation("fallback_results_swapped", E,
             "by_simpy = {rep.replication: rep.run() for rep in set_up(",
             "by_simpy = {r: rep.run() for r, rep in zip(missing[::-1], set_up(",
             "results of the replications handed to SimPy matched in reverse"),
    Mutation("vectorised_batch_reversed", E, "outputs[a:a + size] = run_batch(scenario, seed, reps[a:a + size], trace=trace,",
             "outputs[a:a + size] = run_batch(scenario, seed, reps[a:a + size][::-1], trace=trace,",
             "the vectorised engine computes a task's replications in reverse"),
    Mutation("compiled_reversed", C, "return [_run_one(rep, run, static, attempts) for rep in reps]",
             "return [_run_one(rep, run, static, attempts) for rep in reps[::-1]]",
             "the compiled engine returns a task's replications in reverse"),
    Mutation("received_counts_tasks", P, "state.received += batch.stop - batch.start",
             "state.received += 1", "a point counts tasks received, not replications"),
]

# The edits that need a closing bracket added after the changed call.
_CLOSE = {
    "reversed_within_task": ("engine=engine, trace=trace)]", "engine=engine, trace=trace))]"),
    "fallback_results_swapped": ("record_timeline)}", "record_timeline))}"),
}


def mutated(text: str, m: Mutation) -> str | None:
    if text.count(m.old) != 1:
        return None
    out = text.replace(m.old, m.new)
    if m.name in _CLOSE:
        before, after = _CLOSE[m.name]
        start = out.index(m.new)
        at = out.find(before, start)
        if at < 0:
            return None
        out = out[:at] + after + out[at + len(before):]
    return out


def run_tests(work: Path, tests: list[str], timeout: float) -> tuple[bool, str, float]:
    env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timeout", time.perf_counter() - started
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
    detail = failed[0] if failed else proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return proc.returncode == 0, detail, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), help="test files to run")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--keep", action="store_true", help="keep the copy")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:28} {m.path:32} {m.what}")
        return 0
    if args.only and len(chosen) != len(set(args.only)):
        print(f"unknown mutation(s): {sorted(set(args.only) - {m.name for m in MUTATIONS})}", file=sys.stderr)
        return 2
    work = Path(tempfile.gettempdir()) / "v2vsim-mutations"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(ROOT / "v2vsim", work / "v2vsim", copy_function=shutil.copy2)
    shutil.copytree(ROOT / "tests", work / "tests", copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("mutations", ".pytest_cache"))
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
    started = time.perf_counter()
    try:
        ok, detail, seconds = run_tests(work, args.tests, args.timeout)
        print(f"unchanged copy: {'passes' if ok else 'FAILS'} ({seconds:.0f} s) {'' if ok else detail}", flush=True)
        if not ok:
            return 2
        rows = []
        for m in chosen:
            source = (ROOT / m.path).read_text(encoding="utf-8")
            text = mutated(source, m)
            if text is None:
                rows.append((m, "stale", "", 0.0))
                print(f"{m.name:28} stale (text not found once in {m.path})", flush=True)
                continue
            (work / m.path).write_text(text, encoding="utf-8")
            try:
                passed, detail, seconds = run_tests(work, args.tests, args.timeout)
            finally:
                shutil.copy2(ROOT / m.path, work / m.path)
            verdict = "survived" if passed else "caught"
            rows.append((m, verdict, detail, seconds))
            print(f"{m.name:28} {verdict:8} {seconds:5.0f} s  {detail}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    caught = sum(v == "caught" for _, v, _, _ in rows)
    print(f"\n{caught} of {len(rows)} mutations caught in {total:.0f} s (tests: {' '.join(args.tests)})")
    print("| mutation | file | what | result | caught by |")
    print("|---|---|---|---|---|")
    for m, verdict, detail, _ in rows:
        print(f"| {m.name} | {m.path} | {m.what} | {verdict} | {detail if verdict == 'caught' else ''} |")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
