"""Large-run limits: every command that can run big counts its whole work (every scenario,
point, slot count, parameter set and case, times their replications and referrals) against
``LARGE_REFERRALS`` before it simulates anything, and runs past the limit only with
``--allow-large``.

Each command is run as a real process just above the limit (refused: exit 2 within seconds,
the message gives the total, how it was counted and the flag, nothing written) and, with
``--allow-large``, the same command gets past the size check to the next check before
simulating: the refusal to replace a directory v2vsim did not write (exit 2, a different
message). The bundled scenarios have about 100 referrals per replication (20 a year for 5
years); the zuma1 validation case 111 (its trial size).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from v2vsim.cli.common import LARGE_REFERRALS
from v2vsim.experiments import capacity

ROOT = Path(__file__).resolve().parents[1]
SC = ROOT / "scenarios"
#: A refusal comes before any simulation: start-up and loading only (about 1-2 s; generous for
#: a shared machine; the refused runs would take hours).
FAST_SECONDS = 20.0

TARGET = "queue_wait_mean<=7"

#: (name, arguments just above the limit, the total the message must give, its explanation).
CASES = [
    ("run", ["run", SC / "local.yaml", "-n", "200001"],
     "20,000,100", "200,001 replications x about 100 referrals per replication"),
    # Each scenario alone is 10,000,000 referrals, under the limit; the three are 30,000,000.
    ("compare", ["compare", SC / "local.yaml", SC / "overseas.yaml", SC / "hybrid.yaml",
                 "-n", "100000"],
     "30,000,000", "3 scenarios x 100,000 replications x about 100 referrals per replication"),
    # A linear search may run all 50 counts of 1..50.
    ("capacity", ["capacity", SC / "local.yaml", "--site", "hkib", "--target", TARGET,
                  "-n", "4001"],
     "20,005,000", "at most 50 slot counts of 1 to 50 by linear search x 4,001 replications"),
    # Bisection over 1..50 (doubling 1, 2, ..., 32, 50; at most 5 more inside a gap; 1 beyond).
    ("capacity bisect", ["capacity", SC / "local.yaml", "--site", "hkib", "--target", TARGET,
                         "--search", "bisect", "-n", "15385"],
     "20,000,500", "at most 13 slot counts of 1 to 50 by bisect search x 15,385 replications"),
    ("sweep", ["sweep", SC / "local.yaml", "--set", "sites.hkib.slots=1,2", "-n", "100001"],
     "20,000,200", "2 points x 100,001 replications"),
    # The high bound doubles the referrals: 100 + 100 + 200 per replication at the three points.
    ("sensitivity", ["sensitivity", SC / "local.yaml", "--param", "arrivals.rate_per_year", "20",
                     "40", "-n", "50001"],
     "20,000,400", "3 points x 50,001 replications x about 133 referrals"),
    ("psa", ["psa", SC / "economics_local.yaml", SC / "economics_overseas.yaml", "--sets", "1000",
             "-n", "101"],
     "20,200,000", "2,000 runs, 1,000 per scenario with uncertain inputs"),
    # zuma1 runs its trial once and once for each of its 4 sensitivity values.
    ("validation", ["validation", ROOT / "validation" / "zuma1.yaml", "-n", "36037"],
     "20,000,535", "5 runs of 1 case x 36,037 replications x about 111 referrals"),
]


def _v2vsim(args: list[object], cwd: Path, timeout: float = 3 * FAST_SECONDS,
            ) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run v2vsim in its own process group; one that is still running after ``timeout`` (it
    started simulating) is killed with its workers and fails the test."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"}
    argv = [sys.executable, "-m", "v2vsim", *map(str, args)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"still running after {timeout:.0f} s (not refused): {' '.join(argv[3:])}")
    finally:
        try:  # workers left behind by a failing command
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return (subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr),
            time.perf_counter() - started)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("name", "args", "total", "how"), CASES, ids=[c[0] for c in CASES])
def test_just_above_the_limit_is_refused_fast_and_allowed_with_the_flag(
        tmp_path: Path, name: str, args: list[object], total: str, how: str) -> None:
    out = tmp_path / "out"
    refused, seconds = _v2vsim([*args, "-o", out], tmp_path)
    message = _one_line(refused.stderr + refused.stdout)
    assert refused.returncode == 2, message
    assert seconds < FAST_SECONDS, f"{name} took {seconds:.1f} s to refuse"
    assert f"about {total} referrals in all" in message, message
    assert how in message, message
    assert f"more than {LARGE_REFERRALS:,}" in message and "--allow-large" in message, message
    assert not out.exists() and list(tmp_path.iterdir()) == []

    # With the flag the size check passes; the next check (before any simulation) refuses a
    # directory v2vsim did not write, which shows the command would have run.
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    allowed, seconds = _v2vsim([*args, "-o", out, "--allow-large"], tmp_path)
    message = _one_line(allowed.stderr + allowed.stdout)
    assert allowed.returncode == 2, message
    assert "would simulate" not in message, message
    assert "v2vsim did not write" in message or "--force" in message, message
    assert seconds < FAST_SECONDS
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_at_the_limit_is_not_refused(tmp_path: Path) -> None:
    """Exactly LARGE_REFERRALS (200,000 x 100) is allowed: refused is *more than* the limit."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    proc, _ = _v2vsim(["run", SC / "local.yaml", "-n", "200000", "-o", out], tmp_path)
    message = _one_line(proc.stderr + proc.stdout)
    assert proc.returncode == 2 and "would simulate" not in message, message


def test_allowed_run_above_the_limit_starts_simulating(tmp_path: Path) -> None:
    """With --allow-large a run just above the limit is still running well after a refusal
    would have come (then it is killed: its process group, started here)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "v2vsim", "run", str(SC / "local.yaml"),
                             "-n", "200001", "-j", "1", "--no-figures", "-o", str(tmp_path / "out"),
                             "--allow-large"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=FAST_SECONDS)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
    assert "would simulate" not in stderr


def _counts_run(lo: int, hi: int, search: str, beyond: int, meets: dict[int, bool]) -> int:
    asked: set[int] = set()

    def evaluate(slots: int) -> bool:
        assert lo <= slots <= hi
        asked.add(slots)
        return meets[slots]

    capacity.search_slots(lo, hi, search, beyond, evaluate)
    return len(asked)


@pytest.mark.parametrize("search", ["linear", "bisect"])
def test_most_counts_searched_bounds_every_search(search: str) -> None:
    """For every range within 1..12 (and 3..20), every beyond 0..3 and every pattern of counts
    meeting or missing the targets (monotone or not), the search asks at most
    most_counts_searched counts; for linear search some pattern asks exactly that many."""
    ranges = [(lo, hi) for lo in range(1, 5) for hi in range(lo, 13)] + [(3, 20)]
    for (lo, hi), beyond in itertools.product(ranges, range(4)):
        bound = capacity.most_counts_searched(lo, hi, search, beyond)
        size = hi - lo + 1
        patterns = (itertools.product([False, True], repeat=size) if size <= 12 else
                    ([False] * k + [True] * (size - k) for k in range(size + 1)))
        worst = max(_counts_run(lo, hi, search, beyond, dict(zip(range(lo, hi + 1), p)))
                    for p in patterns)
        assert worst <= bound <= size, (lo, hi, beyond, worst, bound)
        if search == "linear":
            assert worst == bound
    assert capacity.most_counts_searched(1, 50, "linear", 1) == 50
    assert capacity.most_counts_searched(1, 50, "bisect", 1) == 13
