"""Running replications on a Dask distributed cluster (``--cluster tcp://HOST:PORT``).

The cluster gets exactly the tasks a local process pool would (ranges of replications, see
:func:`v2vsim.runner.run_ranges`) through ``Client.get_executor()``, a
:class:`concurrent.futures.Executor`, and the results are assembled in replication order,
so they are identical to a local run. Every worker must have the same version of v2vsim (and
of the scientific packages) installed; this is checked before anything is submitted.

    dask scheduler                          # on one machine: prints tcp://HOST:8786
    dask worker tcp://HOST:8786 --nthreads 1 --nworkers auto   # on each machine
    v2vsim run scenarios/local.yaml --cluster tcp://HOST:8786
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, CancelledError, Executor, Future
from typing import Any

__all__ = ["NO_WORKERS_SECONDS", "ClusterError", "ClusterLost", "cluster_executor", "worker_versions"]

#: Seconds a running cluster may have no worker before the run stops (Dask itself would wait
#: for one for ever).
NO_WORKERS_SECONDS = 10.0
#: Seconds between two looks at the cluster while tasks run.
WATCH_SECONDS = 0.5
_ADDRESS = re.compile(r"^(?:(?P<scheme>tcp|tls)://)?(?P<host>\[[^\]]+\]|[^:/\s]+):(?P<port>\d{1,5})$")


class ClusterError(RuntimeError):
    """The cluster cannot be used (message says why)."""


class ClusterLost(BrokenExecutor):
    """A cluster in use lost its scheduler, or its last worker for :data:`NO_WORKERS_SECONDS`."""


def check_address(address: str) -> None:
    """A scheduler's address, ``[tcp://|tls://]HOST:PORT`` with a host that resolves, or a
    :class:`ClusterError` saying what is wrong with it (before any connection is tried)."""
    found = _ADDRESS.match(address.strip())
    if not found or not 0 < int(found["port"]) < 65536:
        raise ClusterError(f"--cluster {address}: expected a Dask scheduler's address, "
                           "tcp://HOST:PORT (what `dask scheduler` prints)")
    host = found["host"].strip("[]")
    try:
        socket.getaddrinfo(host, int(found["port"]))
    except (OSError, UnicodeError) as exc:
        raise ClusterError(f"--cluster {address}: unknown host {host!r} ({exc})") from None


class _WatchedExecutor(Executor):
    """The client's executor, with its futures failed (:class:`ClusterLost`) when the cluster
    loses its scheduler, or has had no worker for :data:`NO_WORKERS_SECONDS`."""

    def __init__(self, client: Any, address: str, no_workers_seconds: float) -> None:
        self._client = client
        self._inner = client.get_executor(pure=False)
        self._address = address
        self._no_workers_seconds = no_workers_seconds
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watch = threading.Thread(target=self._watch_cluster, name="v2vsim-cluster-watch", daemon=True)
        self._watch.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        outer: Future[Any] = Future()
        inner = self._inner.submit(fn, *args, **kwargs)
        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        with self._lock:
            self._pending.add(outer)

        def copy(done: Future[Any]) -> None:
            with self._lock:
                self._pending.discard(outer)
            if outer.done():
                return
            try:
                if done.cancelled():  # by the client, when it lost the scheduler
                    outer.set_exception(self._lost_scheduler())
                elif done.exception() is not None:
                    outer.set_exception(done.exception())  # type: ignore[arg-type]
                else:
                    outer.set_result(done.result())
            except (CancelledError, Exception):  # outer finished meanwhile
                pass

        inner.add_done_callback(copy)
        return outer

    def _lost_scheduler(self) -> ClusterLost:
        return ClusterLost(f"lost the connection to the Dask scheduler at {self._address}")

    def _fail_all(self, exc: ClusterLost) -> None:
        with self._lock:
            pending, self._pending = self._pending, set()
        for future in pending:
            try:
                future.set_exception(exc)
            except Exception:  # finished meanwhile
                pass

    def _watch_cluster(self) -> None:
        since: float | None = None  # when the cluster was last seen without a worker
        while not self._closed.wait(WATCH_SECONDS):
            if self._client.status not in ("running", "newly-created"):
                self._fail_all(self._lost_scheduler())
                return
            try:
                workers = len(self._client.scheduler_info().get("workers", {}))
            except Exception:  # the scheduler went away while asked
                continue  # the client's status says so on the next look
            if workers:
                since = None
                continue
            since = time.monotonic() if since is None else since
            if time.monotonic() - since >= self._no_workers_seconds:
                self._fail_all(ClusterLost(
                    f"the Dask cluster at {self._address} has had no worker for "
                    f"{self._no_workers_seconds:g} s; start workers (dask worker {self._address}) "
                    "and run again"))
                return

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed.set()
        self._fail_all(ClusterLost("the cluster executor was shut down"))


def worker_versions() -> dict[str, str]:
    """Versions that decide the results (runs on each worker)."""
    from .._version import package_versions

    versions = package_versions()
    return {k: versions[k] for k in ("v2vsim", "python", "simpy", "numpy", "scipy", "pandas", "pydantic")}


@contextlib.contextmanager
def cluster_executor(address: str, timeout_seconds: float = 10.0) -> Iterator[tuple[Executor, int]]:
    """Connect to the Dask scheduler at ``address``; yields ``(executor, worker threads)``.

    The client is closed on exit, also on Ctrl-C (pending tasks are then cancelled). While
    tasks run, losing the scheduler, or every worker for :data:`NO_WORKERS_SECONDS`, fails them
    with :class:`ClusterLost`.
    """
    check_address(address)
    # The client (and its event loop) log a lost connection with tracebacks; what it means is
    # said once, by ClusterLost. Its loggers, with levels of their own, exist once it is imported.
    try:
        import distributed  # noqa: F401
    except ImportError:  # pragma: no cover - dask is a dependency
        raise ClusterError("--cluster needs dask.distributed (pip install 'dask[distributed]')") from None
    with _quiet("distributed"), _quiet("tornado"), _quiet("asyncio"):
        yield from _connected(address, timeout_seconds)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    import logging

    logs = [logging.getLogger(name)] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
                                        if n.startswith(name + ".")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)


def _connected(address: str, timeout_seconds: float) -> Iterator[tuple[Executor, int]]:
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - dask is a dependency
        raise ClusterError("--cluster needs dask.distributed (pip install 'dask[distributed]')") from None
    try:
        client = Client(address, timeout=timeout_seconds, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
    executor: _WatchedExecutor | None = None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout_seconds)
        except (TimeoutError, OSError):
            raise ClusterError(f"the Dask scheduler at {address} has no workers "
                               f"(start some with: dask worker {address})") from None
        here = worker_versions()
        try:
            there = client.run(worker_versions)
        except Exception as exc:  # a worker that cannot import v2vsim fails to unpickle the call
            raise ClusterError(f"the workers at {address} cannot run v2vsim ({type(exc).__name__}: "
                               f"{exc}); install the same v2vsim on every worker") from None
        for worker, versions in sorted(there.items()):
            differ = {k: (v, here.get(k)) for k, v in versions.items() if here.get(k) != v}
            if differ:
                shown = ", ".join(f"{k} {a} (here {b})" for k, (a, b) in differ.items())
                raise ClusterError(f"worker {worker} has {shown}: results would differ; "
                                   "install the same versions everywhere")
        threads = sum(client.nthreads().values())
        executor = _WatchedExecutor(client, address, NO_WORKERS_SECONDS)
        yield executor, max(1, threads)
    finally:
        if executor is not None:
            executor.shutdown(wait=False)
        try:
            client.close(timeout=timeout_seconds)
        except Exception:  # a lost scheduler: nothing left to close cleanly
            pass
