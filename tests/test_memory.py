"""Large arrays from malloc's heap (v2vsim._memory): set once, in the command line and in the
workers, never where the environment already tunes malloc; results do not depend on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):
        return False


GLIBC = _glibc()


def _in_child(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                              "GLIBC_TUNABLES")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**base, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_the_thresholds_are_set_once_and_not_over_the_environments() -> None:
    assert _in_child("from v2vsim._memory import keep_freed_memory as k; print(k(), k())") == "True True"
    assert _in_child("from v2vsim._memory import keep_freed_memory as k; print(k())",
                     MALLOC_TRIM_THRESHOLD_="1000000") == "False"


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_the_command_line_and_the_workers_keep_freed_memory() -> None:
    code = ("import sys; sys.argv = ['v2vsim', '--version']\n"
            "from v2vsim.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "from v2vsim import _memory; print('cli', _memory._state.get('done'))\n"
            "from v2vsim._workers import WorkerPool\n"
            "with WorkerPool(max_workers=1) as pool:\n"
            "    print('worker', pool.submit(_memory._state.get, 'done').result())\n")
    out = _in_child(code).splitlines()
    assert out[-2:] == ["cli True", "worker True"], out


def test_results_do_not_depend_on_it() -> None:
    """The same replications with and without the thresholds (stress-sized arrays are what
    they change; a shortened stress scenario on the vectorised engine, and local on SimPy)."""
    code = ("import sys, hashlib, numpy as np\n"
            "from v2vsim import _memory\n"
            "if sys.argv[1] == 'on': assert _memory.keep_freed_memory() or True\n"
            "from v2vsim import load_scenario\n"
            "from v2vsim.engine.engines import run_replications\n"
            "h = hashlib.sha256()\n"
            "for path, engine in (('benchmarks/stress_1m.yaml', 'vectorised'), ('scenarios/local.yaml', 'simpy')):\n"
            "    sc = load_scenario(path)\n"
            "    if 'stress' in path: sc = sc.model_copy(update={'horizon_days': 365})\n"
            "    for out in run_replications(sc, 1, range(2), engine=engine):\n"
            "        for k in sorted(out.columns):\n"
            "            c = out.columns[k]\n"
            "            if c is None: continue\n"
            "            h.update(repr(c.tolist()).encode() if c.dtype == object else np.ascontiguousarray(c).tobytes())\n"
            "print(h.hexdigest())\n")
    on = subprocess.run([sys.executable, "-c", code, "on"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    off = subprocess.run([sys.executable, "-c", code, "off"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "MALLOC_TRIM_THRESHOLD_": "131072"})
    assert on.returncode == 0 and off.returncode == 0, (on.stderr[-1500:], off.stderr[-1500:])
    assert on.stdout.strip() == off.stdout.strip() != ""
