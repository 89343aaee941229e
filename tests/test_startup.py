"""What keeps the command line's start-up short, so that the gain cannot quietly go.

``import v2vsim.cli``, ``v2vsim --help`` and ``v2vsim --version`` import neither the model nor
the scientific stack, and ``validate`` imports the scenario layer without SciPy or pandas. Each
is checked in a fresh interpreter by the modules it has loaded, never by a time (machines are too
noisy for timed tests; ``benchmarks/startup.py`` times them). The lazy imports rest on numbers
that are now written out or computed without ``scipy.stats``: those are checked to the last bit.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from v2vsim import metrics

ROOT = Path(__file__).resolve().parents[1]
#: Not one of these for importing the CLI, its help or its version.
HEAVY = ("numpy", "scipy", "pandas", "pyarrow", "matplotlib", "dask", "distributed", "SALib",
         "jinja2", "simpy", "v2vsim.engine", "v2vsim.experiments", "v2vsim.outputs", "v2vsim.scenario")
#: Not one of these for checking scenario files (which needs NumPy and pydantic).
NOT_FOR_VALIDATE = ("scipy", "pandas", "pyarrow", "matplotlib", "dask", "distributed", "SALib",
                    "jinja2", "simpy", "v2vsim.engine", "v2vsim.experiments", "v2vsim.outputs")


def _loaded(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``v2vsim ARGS`` (no ARGS: only import the CLI) in a fresh interpreter; its result and
    the modules it had loaded when it finished."""
    code = (
        "import json, sys\n"
        "from v2vsim.cli import main\n"
        f"sys.argv = ['v2vsim', *{list(args)!r}]\n"
        "try:\n"
        "    main() if len(sys.argv) > 1 else None\n"
        "finally:\n"
        "    sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    _, _, tail = done.stderr.rpartition("\nMODULES ")
    assert tail, done.stderr
    return done, json.loads(tail)


def _heavy(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_importing_the_cli_imports_no_model_and_no_scientific_stack() -> None:
    done, modules = _loaded()
    assert done.returncode == 0, done.stderr
    assert "v2vsim.cli" in modules
    assert _heavy(modules, HEAVY) == []


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["run", "--help"], ["sweep", "--help"]],
                         ids=" ".join)
def test_help_and_version_import_no_model_and_no_scientific_stack(args: list[str]) -> None:
    done, modules = _loaded(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("v2vsim " if args == ["--version"] else "Usage: v2vsim")
    assert _heavy(modules, HEAVY) == []


def test_validate_imports_the_scenario_layer_without_scipy_or_pandas() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").glob("*.yaml"))
    assert len(files) >= 2
    done, modules = _loaded("validate", *files)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": ok") == len(files)
    assert "v2vsim.scenario.loading" in modules
    assert _heavy(modules, NOT_FOR_VALIDATE) == []


def test_t_quantile_is_scipy_stats_t_ppf_to_the_last_bit() -> None:
    from scipy import stats

    for level in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
        q = 0.5 + level / 2
        for df in [*range(1, 400), 999, 10_000, 1_000_000]:
            assert metrics.t_quantile(q, df) == float(stats.t.ppf(q, df)), (level, df)


def test_t_intervals_are_those_of_scipy_stats() -> None:
    from scipy import stats

    gen = np.random.default_rng(7)
    for n in (2, 3, 10, 57):
        x, y = gen.lognormal(2, 0.5, n), gen.lognormal(2.1, 0.5, n)
        for level in (0.9, 0.95):
            mean, low, high, k = metrics.t_interval(x, level)
            half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
            assert (mean, low, high, k) == (float(x.mean()), mean - half, mean + half, n)
            diff, low, high, k = metrics.paired_difference(x, y, level)
            half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float((y - x).std(ddof=1)) / math.sqrt(n)
            assert (low, high, k) == (diff - half, diff + half, n)


def test_precision_half_widths_take_scipys_t_quantiles_to_the_last_bit() -> None:
    """The running half-widths use scipy.special.stdtrit, which scipy.stats.t.ppf evaluates."""
    import numpy as np
    from scipy import stats
    from scipy.special import stdtrit

    df = np.arange(1, 5001)
    assert np.array_equal(stdtrit(df, 0.975), stats.t.ppf(0.975, df))


def test_the_stop_handlers_state_is_loaded_before_they_are_installed() -> None:
    """The stop handler reads its state from v2vsim._workers: the module is imported before the
    handlers are installed, so that a signal while a command imports it (starting its first
    pool) stops the command instead of failing with an ImportError of a half-made module."""
    code = (
        "import sys\n"
        "from v2vsim.cli.stopping import handle_stop_signals\n"
        "assert 'v2vsim._workers' not in sys.modules\n"
        "handle_stop_signals()\n"
        "print('v2vsim._workers' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
