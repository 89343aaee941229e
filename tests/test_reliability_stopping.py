"""Every command that starts workers stops cleanly on a signal to its process group, and its
workers never outlive it.

Real commands in real process groups (what a terminal's Ctrl-C, ``timeout`` and a batch
scheduler signal), at random (seeded) moments: exit 130 on SIGINT and 143 on SIGTERM within a
few seconds, no process of the group left, the earlier results directory byte-identical
(``benchmarks/stop_signals.py`` runs the same trials, more of them). A parent killed with
SIGKILL takes its workers with it.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals and /proc")

_spec = importlib.util.spec_from_file_location("stop_signals", ROOT / "benchmarks" / "stop_signals.py")
assert _spec is not None and _spec.loader is not None
stop = importlib.util.module_from_spec(_spec)
sys.modules["stop_signals"] = stop
_spec.loader.exec_module(stop)

#: Seconds from a signal to the command's exit that count as stopping promptly (a shared,
#: loaded machine; the stops measured take 0.1-0.7 s).
WITHIN = 8.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stopping")


@pytest.mark.parametrize("command", ["run", "compare", "capacity", "sweep", "psa"])
def test_a_signal_to_the_process_group_stops_the_command(command: str, folder: Path) -> None:
    rng = random.Random(f"stop-{command}")
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Any moment from the first worker's start to well into the run (figures included).
        delay = rng.uniform(0.0, 2.0)
        t = stop.trial(command, signum, delay, folder, within=WITHIN, after_workers=True)
        what = f"{command}: {signal.Signals(signum).name} {delay:.2f} s after the workers started"
        assert not t.ended_first, f"{what}: it had finished already (lengthen it in stop_signals.COMMANDS)"
        assert t.returncode is not None, f"{what}: still running {WITHIN} s later\n{t.stderr[-3000:]}"
        assert t.returncode == 128 + signum, f"{what}: exit {t.returncode}\n{t.stderr[-3000:]}"
        assert not t.left, f"{what}: processes {t.left} of its group are left"
        assert t.intact, f"{what}: the earlier results changed"
        assert "Traceback" not in t.stderr, t.stderr[-3000:]


def test_a_second_signal_while_stopping_changes_nothing(folder: Path) -> None:
    # Ctrl-C pressed twice (50 ms apart): the first stops the run, the second is ignored.
    t = stop.trial("run", signal.SIGINT, 1.0, folder, within=WITHIN, after_workers=True, repeat=2)
    assert t.returncode == 130 and not t.left and t.intact, (t.returncode, t.left, t.stderr[-3000:])
    assert "Traceback" not in t.stderr, t.stderr[-3000:]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Leave nothing of a command that failed its test running into the next tests."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=10)  # its pipes closed
    except ValueError:  # read to the end already
        pass


def test_workers_die_with_a_parent_killed_by_sigkill(folder: Path) -> None:
    args, _ = stop.COMMANDS["run"]
    proc = stop.v2vsim([*args, "-n", "2000", "-o", str(folder / "killed")], cwd=folder)
    try:
        deadline = time.monotonic() + 60
        while len(stop.group_members(proc.pid)) < 3:  # the parent and both workers
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        time.sleep(0.5)  # the workers are simulating
        workers = [p for p in stop.group_members(proc.pid) if p != proc.pid]
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        deadline = time.monotonic() + 3
        while stop.group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not stop.group_members(proc.pid), f"workers {workers} outlived their parent by 3 s"
    finally:
        _kill_group(proc)


@pytest.mark.parametrize("delay", [0.2, 0.5])
def test_a_worker_that_dies_by_itself_ends_the_command_in_one_line(delay: float, folder: Path) -> None:
    # The worker may die between results or while sending one (a few tenths of a second in).
    args, _ = stop.COMMANDS["run"]
    out = folder / f"worker-died-{delay}"
    proc = stop.v2vsim([*args, "-o", str(out)], cwd=folder)
    try:
        deadline = time.monotonic() + 60
        while len(stop.group_members(proc.pid)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        time.sleep(delay)
        os.kill(next(p for p in stop.group_members(proc.pid) if p != proc.pid), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
    finally:
        _kill_group(proc)
    lines = stderr.decode().strip().splitlines()
    assert proc.returncode == 1, stderr.decode()[-3000:]
    assert lines == ["error: a worker process ended unexpectedly (killed by a signal, or out of memory); "
                     "the command stopped"], lines
    assert not out.exists() and not stop.group_members(proc.pid)


def test_a_worker_that_dies_in_a_sweep_keeps_the_finished_points(folder: Path) -> None:
    out = folder / "sweep-worker-died"
    args = ["sweep", "local", "--set", "sites.hkib.slots=1,2,3,4,5,6,7,8", "-n", "400", "-j", "2",
            "--engine", "simpy", "--no-figures", "-o", str(out)]
    proc = stop.v2vsim(args, cwd=folder)
    points = out.with_name(out.name + ".partial") / "points"
    deadline = time.monotonic() + 120
    while not list(points.glob("*.json")):  # a point finished
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(next(p for p in stop.group_members(proc.pid) if p != proc.pid), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    text = stderr.decode()
    assert proc.returncode == 1, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith("error: a worker process ended unexpectedly") and "Traceback" not in text, text
    assert " finished point" in last and "run the same command with --resume to continue" in last, last
    assert not stop.group_members(proc.pid)
    resumed = stop.v2vsim([*args, "--resume"], cwd=folder)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()[-3000:]
    assert "resuming:" in stderr.decode() and (out / "sweep.csv").is_file()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_starts_exits_at_once(signum: int, tmp_path: Path) -> None:
    # From the first moment v2vsim's code runs (some 50 ms after the interpreter starts) to the
    # start of the command: exit 130/143 without a traceback, nothing written.
    out = tmp_path / "out"
    for delay in (0.15, 0.2, 0.3, 0.45):
        proc = stop.v2vsim(["run", "local", "-n", "300", "-o", str(out), "--no-figures"], cwd=tmp_path)
        time.sleep(delay)
        os.killpg(proc.pid, signum)
        _, stderr = proc.communicate(timeout=WITHIN)
        text = stderr.decode(errors="replace")
        assert proc.returncode == 128 + signum, (delay, proc.returncode, text[-2000:])
        assert "Traceback" not in text and "interrupted" in text, (delay, text[-2000:])
        assert not out.exists(), delay


# A task that dies half-way through sending its result: it takes the result pipe's lock, writes a
# message's length and part of its bytes, and kills itself (what a SIGKILL or the OOM killer
# does to a worker whose result is on its way). Python's own pool then waits for ever.
_DIES_SENDING = """
import gc, os, signal, struct, sys, time
from multiprocessing.queues import SimpleQueue
from v2vsim._workers import WorkerDied, WorkerPool

def task(i):
    if i == 0:
        queue = next(o for o in gc.get_objects() if isinstance(o, SimpleQueue) and hasattr(o, "_writer"))
        queue._wlock.acquire()
        os.write(queue._writer.fileno(), struct.pack("!i", 1000) + bytes(10))
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return i

start = time.monotonic()
try:
    with WorkerPool(max_workers=2) as pool:
        futures = [pool.submit(task, i) for i in (1, 0, 2, 3)]
        [f.result() for f in futures]
except WorkerDied as exc:
    print(f"died {time.monotonic() - start:.2f}", exc)
"""


def test_a_worker_killed_while_sending_a_result_breaks_the_pool() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _DIES_SENDING], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        _kill_group(proc)
    text = out.decode()
    assert proc.returncode == 0 and text.startswith("died "), (text, err.decode()[-3000:])
    assert "a worker process ended unexpectedly" in text
    assert float(text.split()[1]) < 10, text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pipe sizes are set on Linux")
def test_the_result_pipe_holds_a_reply_of_several_hundred_kilobytes() -> None:
    """The pool's result pipe is widened to RESULT_PIPE_BYTES (or what the system allows), so a
    worker's reply of a few hundred kilobytes is written at once and the worker goes on."""
    import fcntl

    from v2vsim._workers import RESULT_PIPE_BYTES, WorkerPool

    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    with WorkerPool(max_workers=1) as pool:
        assert pool.submit(len, b"x" * 700_000).result() == 700_000
        size = fcntl.fcntl(pool._result_queue._reader.fileno(), getattr(fcntl, "F_GETPIPE_SZ", 1032))
    assert size >= min(RESULT_PIPE_BYTES, limit)
