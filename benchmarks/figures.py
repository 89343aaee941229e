"""Figure and summary time against the number of replications, measured in one run.

    python benchmarks/figures.py                              # n = 500, 1000, 2000, 4000, 10000
    python benchmarks/figures.py --sizes 500 1000 2000 4000   # without the 10,000 point
    python benchmarks/figures.py --rounds 3                   # best of 3 (the 10,000 point once)

For each n the scenario (``scenarios/local.yaml`` by default) and its pair
(``scenarios/overseas.yaml``) are simulated with ``-n`` replications (not timed), then each
standard figure of ``v2vsim run`` is drawn and saved (PNG and SVG, as ``run`` writes them), the
summary is computed (``Results.summary``, the run's headline table), and each comparison figure
of ``v2vsim compare`` is drawn and saved (PNG, SVG and PDF) with the paired comparison table.
A figure's time is its drawing and saving, one process, one figure at a time (``--jobs 1``).

Printed per n: seconds of each figure, of all run figures, of all comparison figures and of the
summaries; then, per step from one n to the next, the ratio of times scaled to a doubling
(``(t2 / t1) ** (1 / log2(n2 / n1))``): about 2 means linear in replications, about 4
quadratic. Rounds after the first take the best time (the 10,000 point is timed once).

Target: every ratio near 2 (linear), and the run figures of ``local.yaml -n 10000`` in well
under a minute.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import v2vsim  # noqa: E402
from v2vsim import metrics  # noqa: E402
from v2vsim.outputs.figures.compare import (  # noqa: E402
    COMPARISON_FIGURES,
    _draw_and_save_comparison,
)
from v2vsim.outputs.figures.run import PATIENT_COLUMNS, _draw_and_save  # noqa: E402

RUN_FIGURES = ("vein_to_vein", "attrition_funnel", "cumulative_incidence", "site_utilisation",
               "journey")
#: Above this many replications a point is timed once, whatever ``--rounds`` says.
ONCE_ABOVE = 4000


def _best(fn: Callable[[], object], rounds: int) -> float:
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure(scenario: Path, pair: Path, n: int, rounds: int, jobs: int) -> dict[str, float]:
    """Seconds of each figure and summary for ``n`` replications of ``scenario`` and ``pair``."""
    base = v2vsim.load_scenario(scenario)
    other = v2vsim.load_scenario(pair)
    started = time.perf_counter()
    results = v2vsim.simulate(base, n, base.seed, jobs=jobs)
    paired = v2vsim.simulate(other, n, base.seed, jobs=jobs)
    print(f"  n={n}: simulated both scenarios in {time.perf_counter() - started:.1f} s "
          f"({len(results.patients):,} + {len(paired.patients):,} patients)", flush=True)
    patients = results.patients
    frames = {
        "journey": results.events,
        "site_utilisation": results.site_profile,
        **{stem: patients[[c for c in PATIENT_COLUMNS[stem] if c in patients.columns]]
           for stem in ("vein_to_vein", "attrition_funnel", "cumulative_incidence")},
    }
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for stem in RUN_FIGURES:
            times[f"run/{stem}"] = _best(
                lambda: _draw_and_save(stem, frames[stem], base.name, out / "run", "footer", True),
                rounds)
        by_name = {base.name: results, other.name: paired}
        pats = {name: r.patients for name, r in by_name.items()}
        reps = {name: r.replications for name, r in by_name.items()}
        for stem in COMPARISON_FIGURES:
            times[f"compare/{stem}"] = _best(
                lambda: _draw_and_save_comparison(stem, pats, reps, base.currency, out / "compare",
                                                  "footer", ("png", "svg", "pdf"), 300),
                rounds)
    times["summary/run"] = _best(results.summary, rounds)
    times["summary/compare"] = _best(lambda: metrics.paired_comparison(reps, base.currency, 0.95),
                                     rounds)
    times["all run figures"] = sum(v for k, v in times.items() if k.startswith("run/"))
    times["all compare figures"] = sum(v for k, v in times.items() if k.startswith("compare/"))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "local.yaml")
    parser.add_argument("--pair", type=Path, default=ROOT / "scenarios" / "overseas.yaml",
                        help="The second scenario of the comparison figures.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000, 10000])
    parser.add_argument("--rounds", type=int, default=1,
                        help=f"Best of this many timings per point (points above {ONCE_ABOVE:,} "
                             "replications once).")
    parser.add_argument("--jobs", type=int, default=2, help="Workers for the simulation only.")
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    table: dict[int, dict[str, float]] = {}
    for n in sizes:
        table[n] = measure(args.scenario, args.pair, n,
                           1 if n > ONCE_ABOVE else max(args.rounds, 1), args.jobs)
    rows = list(table[sizes[0]])
    width = max(len(r) for r in rows)
    print("\nSeconds (best of the rounds)")
    print(f"{'':{width}}  " + "  ".join(f"{'n=' + str(n):>9}" for n in sizes))
    for row in rows:
        print(f"{row:{width}}  " + "  ".join(f"{table[n][row]:9.2f}" for n in sizes))
    if len(sizes) > 1:
        print("\nRatio per doubling of replications (2 = linear, 4 = quadratic)")
        steps = list(zip(sizes, sizes[1:]))
        print(f"{'':{width}}  " + "  ".join(f"{f'{a}->{b}':>11}" for a, b in steps))
        for row in rows:
            cells = []
            for a, b in steps:
                ta, tb = table[a][row], table[b][row]
                cells.append(f"{(tb / ta) ** (1 / math.log2(b / a)):11.2f}" if ta > 0 else
                             f"{'-':>11}")
            print(f"{row:{width}}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
