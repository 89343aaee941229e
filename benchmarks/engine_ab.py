"""This checkout's engine against another checkout's, in one process, replication by replication.

    git worktree add ../v2vsim-old HEAD~5
    python benchmarks/engine_ab.py ../v2vsim-old                     # bundled local and overseas
    python benchmarks/engine_ab.py ../v2vsim-old scenarios/hybrid.yaml --replications 50

Both packages are imported side by side (the other one under the name ``v2vsim_other``, copied
to a temporary folder; its modules import each other relatively), and each replication is run
by both engines in turn, alternating which goes first, so that the machine's drift and noise
fall on both alike. Each replication counts set-up, the SimPy run and the raw columns (what
``run_replication`` does), not the result frames. Prints both totals and their ratio.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _other_engine(checkout: Path) -> tuple[object, object]:
    """(load_scenario, a callable (scenario, seed, replication) -> run) of the other checkout."""
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(checkout / "v2vsim", folder / "v2vsim_other")
    sys.path.insert(0, str(folder))
    package = importlib.import_module("v2vsim_other")
    try:
        replication = importlib.import_module("v2vsim_other.engine.replication")
        return package.load_scenario, lambda sc, seed, rep: replication.Replication(sc, seed, rep).run()
    except ImportError:  # the engine before its subpackage: one model module
        model = importlib.import_module("v2vsim_other.model")
        return package.load_scenario, lambda sc, seed, rep: model._Sim(sc, seed, rep, 0, True).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="another checkout of v2vsim (its top folder)")
    parser.add_argument("scenarios", nargs="*", default=["scenarios/local.yaml", "scenarios/overseas.yaml"])
    parser.add_argument("--replications", type=int, default=100)
    args = parser.parse_args()

    import v2vsim
    from v2vsim.engine.replication import Replication

    other_load, other_run = _other_engine(args.other.resolve())
    for path in args.scenarios:
        mine, theirs = v2vsim.load_scenario(ROOT / path), other_load(ROOT / path)
        seed = mine.seed
        t_mine = t_theirs = 0.0
        for rep in range(args.replications):
            order = (0, 1) if rep % 2 == 0 else (1, 0)
            for which in order:
                started = time.perf_counter()
                if which == 0:
                    Replication(mine, seed, rep).run()
                    t_mine += time.perf_counter() - started
                else:
                    other_run(theirs, seed, rep)  # type: ignore[operator]
                    t_theirs += time.perf_counter() - started
        print(f"{path}, {args.replications} replications: this checkout {t_mine:.3f} s, "
              f"{args.other} {t_theirs:.3f} s, ratio {t_mine / t_theirs:.3f} (below 1: this checkout is faster)")


if __name__ == "__main__":
    main()
