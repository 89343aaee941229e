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
from collections.abc import Iterator
from concurrent.futures import Executor

__all__ = ["ClusterError", "cluster_executor", "worker_versions"]


class ClusterError(RuntimeError):
    """The cluster cannot be used (message says why)."""


def worker_versions() -> dict[str, str]:
    """Versions that decide the results (runs on each worker)."""
    from .._version import package_versions

    versions = package_versions()
    return {k: versions[k] for k in ("v2vsim", "python", "simpy", "numpy", "scipy", "pandas", "pydantic")}


@contextlib.contextmanager
def cluster_executor(address: str, timeout_seconds: float = 10.0) -> Iterator[tuple[Executor, int]]:
    """Connect to the Dask scheduler at ``address``; yields ``(executor, worker threads)``.

    The client is closed on exit, also on Ctrl-C (pending tasks are then cancelled).
    """
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - dask is a dependency
        raise ClusterError("--cluster needs dask.distributed (pip install 'dask[distributed]')") from None
    try:
        client = Client(address, timeout=timeout_seconds, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
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
        yield client.get_executor(pure=False), max(1, threads)
    finally:
        client.close()
