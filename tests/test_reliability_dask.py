"""A Dask cluster that fails while a command uses it ends the command with one clear line and
a nonzero exit status, within a stated time: a killed scheduler (exit 1 at once), a lost last
worker (exit 1 after NO_WORKERS_SECONDS), a bad ``--cluster`` address (exit 2 before anything
connects). Real ``dask scheduler`` and ``dask worker`` processes, killed with SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from v2vsim.engine.distributed import NO_WORKERS_SECONDS

pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[1]
DASK = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
pytestmark = [pytest.mark.skipif(DASK is None, reason="the dask command is not installed"),
              pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
#: A run of a minute or more on one worker thread (it is stopped by the fault long before).
RUN = ["run", "local", "-n", "4000", "--engine", "simpy", "--no-figures"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture()
def cluster() -> Iterator[tuple[str, subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
    worker = _start([str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"])
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        yield address, scheduler, worker
    finally:
        _kill(worker)
        _kill(scheduler)


def _run_and_kill(address: str, victim: subprocess.Popen[bytes], tmp_path: Path,
                  within: float) -> tuple[int, list[str], float]:
    """Start ``run --cluster``, kill ``victim`` once tasks run, return (status, stderr lines,
    seconds from the kill to the exit)."""
    proc = subprocess.Popen([sys.executable, "-m", "v2vsim", *RUN, "--cluster", address, "-o",
                             str(tmp_path / "out")], env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        time.sleep(6)  # connected, versions checked, tasks running (the run takes longer)
        assert proc.poll() is None, proc.communicate()
        _kill(victim)
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=within)
        return proc.returncode, stderr.decode().strip().splitlines(), time.monotonic() - killed
    finally:
        _kill(proc)


def test_a_killed_scheduler_ends_the_run_in_one_line(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address, scheduler, _ = cluster
    status, lines, seconds = _run_and_kill(address, scheduler, tmp_path, within=30)
    assert status == 1, lines
    assert lines == [f"error: lost the connection to the Dask scheduler at {address}; the command stopped"], lines
    assert seconds < 15, seconds
    assert not (tmp_path / "out").exists()


def test_losing_the_last_worker_ends_the_run_after_the_stated_timeout(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address, _, worker = cluster
    status, lines, seconds = _run_and_kill(address, worker, tmp_path, within=NO_WORKERS_SECONDS + 30)
    assert status == 1, lines
    assert lines == [f"error: the Dask cluster at {address} has had no worker for {NO_WORKERS_SECONDS:g} s; "
                     f"start workers (dask worker {address}) and run again; the command stopped"], lines
    assert NO_WORKERS_SECONDS <= seconds < NO_WORKERS_SECONDS + 15, seconds


@pytest.mark.parametrize("address", ["garbage", "tcp://no-such-host.invalid:8786", "tcp://127.0.0.1:99999"])
def test_a_bad_cluster_address_is_refused_at_once(address: str, tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "v2vsim", "run", "local", "-n", "4", "--no-figures",
                           "--cluster", address, "-o", str(tmp_path / "out")], env=ENV, cwd=tmp_path,
                          capture_output=True, timeout=60)
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"error: --cluster {address}: "), lines
    # Python's start and the scenario's loading, no connection attempt (that waits 10 s)
    assert time.monotonic() - started < 8, time.monotonic() - started
