"""The command line's memory settings for large arrays (:mod:`v2vsim._memory`): NumPy's huge
pages off and glibc's thresholds raised, in the command's process and so in its workers, the
user's own settings left alone. Each case runs in a fresh interpreter (the settings are the
process's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux settings")

_PROBE = """
import json, os, sys
{before}
from v2vsim.cli import main
sys.argv = ["v2vsim", "--version"]
try:
    main()
except SystemExit:
    pass
import numpy as np
core = getattr(np, "_core", None) or np.core
print(json.dumps({{"env": os.environ.get("NUMPY_MADVISE_HUGEPAGE"),
                   "hugepage": bool(core.multiarray._get_madvise_hugepage())}}))
"""


def _probe(before: str = "", env: dict[str, str] | None = None) -> dict[str, object]:
    full = {k: v for k, v in os.environ.items() if k not in ("NUMPY_MADVISE_HUGEPAGE",
                                                             "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    full.update(env or {})
    done = subprocess.run([sys.executable, "-c", _PROBE.format(before=before)], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_command_line_turns_numpys_huge_pages_off_before_numpy_is_imported() -> None:
    assert _probe() == {"env": "0", "hugepage": False}


def test_numpy_imported_first_is_set_too() -> None:
    assert _probe(before="import numpy") == {"env": "0", "hugepage": False}


def test_the_users_own_setting_is_kept() -> None:
    assert _probe(env={"NUMPY_MADVISE_HUGEPAGE": "1"}) == {"env": "1", "hugepage": True}


def test_without_the_command_line_numpy_keeps_its_default() -> None:
    done = subprocess.run([sys.executable, "-c", "import v2vsim, numpy as np, os; "
                           "print(os.environ.get('NUMPY_MADVISE_HUGEPAGE'))"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"})
    assert done.stdout.strip() == "None", done.stderr


def test_glibcs_thresholds_are_raised_unless_the_user_set_them() -> None:
    # mallopt's effect is not readable back; what is checked is that the call is made (or not)
    # and that a large array is still allocated and freed as usual afterwards.
    code = ("import ctypes, json\n"
            "calls = []\n"
            "class Libc:\n"
            "    def mallopt(self, *a): calls.append(list(a)); return 1\n"
            "ctypes.CDLL = lambda *a, **k: Libc()\n"
            "from v2vsim._memory import settle_for_large_arrays, MMAP_THRESHOLD, TRIM_THRESHOLD\n"
            "settle_for_large_arrays(); settle_for_large_arrays()\n"
            "print(json.dumps([calls, MMAP_THRESHOLD, TRIM_THRESHOLD]))\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    calls, mmap, trim = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean,
                                                  capture_output=True, text=True, timeout=60).stdout)
    if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
        assert calls == []
        return
    assert calls == [[-3, mmap], [-1, trim]]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD; once
    assert 8 * 2**20 < mmap <= 32 * 2**20 and trim >= mmap
    theirs = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                                       env={**clean, "MALLOC_TRIM_THRESHOLD_": "1000000"},
                                       capture_output=True, text=True, timeout=60).stdout)
    assert theirs[0] == []
