"""Start-up and exit of the command line, against the bare interpreter, measured in one run.

    python benchmarks/startup.py                          # 15 rounds
    python benchmarks/startup.py --rounds 30
    python benchmarks/startup.py --against ../v2vsim-old  # this checkout vs another, A B A B

Each round runs every command once, as a fresh process, in an order rotated from round to round
(so no command always follows another), after one warm-up round that is not counted and that
writes the bytecode caches, as an installed copy has them (``PYTHONDONTWRITEBYTECODE`` is
dropped from the children's environment; ``__pycache__`` is ignored by git). Commands:
``python -c pass`` (the bare interpreter), ``python -c "import v2vsim.cli"``, ``v2vsim --help`` and
``v2vsim validate scenarios/local.yaml``. Each figure is the median wall time over the rounds,
with the minimum and maximum; "x bare" is the median, over rounds, of the command's time divided
by the bare interpreter's time in the same round, which holds when the machine's speed drifts.

``--against DIR`` adds the same v2vsim commands run from another checkout (for example the
commit before a change: ``git worktree add ../v2vsim-old HEAD~1``), interleaved with this
checkout's, and prints this/other pair by pair. Both run with this interpreter and its packages;
each checkout's own ``v2vsim`` package comes first on ``PYTHONPATH``.

Target: ``v2vsim --help`` and ``v2vsim validate scenarios/local.yaml`` each under 0.7 s (median
wall time, start-up and exit included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 0.7
#: The v2vsim command line as the console script runs it (``python -m v2vsim`` would put the
#: working directory on sys.path before PYTHONPATH).
CLI = "import sys; from v2vsim.cli import main; sys.argv[0] = 'v2vsim'; sys.exit(main())"


def _commands(checkout: Path, tag: str) -> list[tuple[str, list[str], Path]]:
    """(label, argv, checkout) of the v2vsim commands, run from ``checkout``."""
    py = sys.executable
    return [
        (f'python -c "import v2vsim.cli"{tag}', [py, "-c", "import v2vsim.cli"], checkout),
        (f"v2vsim --help{tag}", [py, "-c", CLI, "--help"], checkout),
        (f"v2vsim validate scenarios/local.yaml{tag}", [py, "-c", CLI, "validate", "scenarios/local.yaml"], checkout),
    ]


def _time(argv: list[str], checkout: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(checkout)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} (in {checkout}) exited {done.returncode}:\n{done.stderr.decode()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="counted rounds (default 15)")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="another checkout whose v2vsim commands are timed with this one's, interleaved")
    args = parser.parse_args()

    bare = ("python -c pass", [sys.executable, "-c", "pass"], ROOT)
    commands = [bare, *_commands(ROOT, "")]
    if args.against:
        other = args.against.resolve()
        if not (other / "v2vsim" / "cli").is_dir():
            sys.exit(f"{other}: not a v2vsim checkout")
        commands += _commands(other, " [other]")
    times: dict[str, list[float]] = {label: [] for label, _, _ in commands}
    for round_ in range(args.rounds + 1):
        k = round_ % len(commands)
        for label, argv, checkout in commands[k:] + commands[:k]:
            seconds = _time(argv, checkout)
            if round_:  # round 0 warms the file cache and the bytecode caches
                times[label].append(seconds)

    base = times[bare[0]]
    print(f"v2vsim start-up and exit: {args.rounds} rounds, commands interleaved (order rotated "
          f"each round), wall seconds; Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    width = max(len(label) for label in times)
    print(f"{'command':<{width}}  {'median':>7}  {'min':>7}  {'max':>7}  {'x bare':>7}")
    for label, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, base))
        print(f"{label:<{width}}  {statistics.median(values):7.3f}  {min(values):7.3f}  "
              f"{max(values):7.3f}  {ratio:7.1f}")
    if args.against:
        print("this checkout / other, median of the round-by-round ratios:")
        for label, _, _ in commands[1:1 + 3]:
            mine, theirs = times[label], times[label + " [other]"]
            print(f"  {label:<{width}}  {statistics.median(a / b for a, b in zip(mine, theirs)):.2f}")
    judged = [label for label, _, _ in commands[2:4]]
    medians = {label: statistics.median(times[label]) for label in judged}
    met = all(m < TARGET_SECONDS for m in medians.values())
    print(f"target: {' and '.join(judged)} each under {TARGET_SECONDS} s (median wall): "
          + ("met" if met else "NOT met") + " ("
          + ", ".join(f"{m:.2f} s" for m in medians.values()) + ")")


if __name__ == "__main__":
    main()
