"""Run v2vsim from a checkout without installing it: ``python cli.py run scenarios/local.yaml``.

Without v2vsim's dependencies (a fresh checkout, outside its environment) it says how to install
them and exits 1, instead of a traceback.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

INSTALL = """\
error: v2vsim's dependencies are not installed (no module named {name!r}).
In {root}:

    python3 -m venv .venv && . .venv/bin/activate && pip install -e .

then run `v2vsim ...` (or `python cli.py ...`) with that environment active."""


def _missing(exc: ModuleNotFoundError) -> None:
    """Exit 1 with the install command when a dependency is missing; re-raise anything else."""
    name = (exc.name or "").partition(".")[0]
    if not name or name == "v2vsim":  # a module of v2vsim itself: a bug, not an install step
        raise exc
    print(INSTALL.format(name=name, root=ROOT), file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
    try:
        from v2vsim.__main__ import main
    except ModuleNotFoundError as exc:
        _missing(exc)
    try:
        main()
    except ModuleNotFoundError as exc:  # a dependency a command imports when it runs
        _missing(exc)
