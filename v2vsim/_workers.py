"""Worker processes that stop when their parent stops: :class:`WorkerPool`.

Every pool of worker processes in v2vsim (replications in :mod:`v2vsim.engine.runner`, points in
:mod:`v2vsim.experiments.parallel`, figures in :mod:`v2vsim.outputs.figures`) is a
:class:`WorkerPool`. This module sits below every layer (it imports nothing of v2vsim), so that
the figures, which never import the engine, use the same pool.

What it adds to :class:`concurrent.futures.ProcessPoolExecutor`:

* Leaving the ``with`` block on an exception (Ctrl-C, SIGTERM, a failed task) kills the workers
  (SIGTERM, then SIGKILL after :data:`KILL_AFTER_SECONDS`) instead of waiting for them: Python
  3.11's pool waits for the tasks they hold, and when a worker has died meanwhile its manager
  thread can fail (``InvalidStateError`` in ``terminate_broken``, for a task already cancelled)
  and leave the main process waiting forever.
* Each worker dies with its parent (``PR_SET_PDEATHSIG`` on Linux), also when the parent is
  killed with SIGKILL, and ignores Ctrl-C: a Ctrl-C at a terminal reaches the whole process
  group, and the parent alone decides how to stop. SIGTERM kills a worker at once.
* A worker that dies by itself (killed, out of memory) raises :class:`WorkerDied`, a
  :class:`~concurrent.futures.process.BrokenProcessPool` with a message that says so; the same
  break while the parent is stopping on a signal (:func:`note_stop`) is that stop, a
  :class:`KeyboardInterrupt`.
* Also when the worker died while sending a result: Python's pool then waits forever for the
  rest of the message, and the other workers for the lock the dead one held. A watcher thread
  sees the death; when the pool has not broken :data:`BREAK_AFTER_SECONDS` later, it kills the
  other workers and closes this process's end of the result pipe, which ends the wait.

The pool must be used in the thread that made it (the parent-death signal follows the thread
that started the workers).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any

__all__ = ["BREAK_AFTER_SECONDS", "KILL_AFTER_SECONDS", "WorkerDied", "WorkerPool", "note_stop", "note_stop_seen", "stop_seen",
           "stopping_signal"]

#: Seconds between SIGTERM and SIGKILL to a worker that is still there.
KILL_AFTER_SECONDS = 0.5

#: Seconds the pool has, after a worker died by itself, to notice before the watcher breaks it.
BREAK_AFTER_SECONDS = 1.0

_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_stop_signal: int | None = None
_stop_seen = False


class WorkerDied(BrokenProcessPool):
    """A worker process ended without being asked to (killed, or out of memory)."""


def note_stop(signum: int | None) -> None:
    """Record that this process is stopping on signal ``signum`` (``None``: it is not)."""
    global _stop_signal
    _stop_signal = signum


def note_stop_seen() -> None:
    """Record that the stop's KeyboardInterrupt reached code that stops (it was not lost)."""
    global _stop_seen
    _stop_seen = True


def stop_seen() -> bool:
    """Whether :func:`note_stop_seen` was called."""
    return _stop_seen


def stopping_signal() -> int | None:
    """The signal this process is stopping on, if :func:`note_stop` recorded one."""
    return _stop_signal


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent ends (Linux; nothing elsewhere),
    and end now if the parent ``parent`` has already gone."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


def _start_worker(parent: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    die_with_parent(parent)
    # The parent's handlers were inherited with the fork: Ctrl-C is the parent's to handle,
    # SIGTERM ends a worker at once (it holds nothing that needs cleaning up).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the parent around the fork
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if initializer is not None:
        initializer(*initargs)


class _QuietStart:
    """A multiprocessing context whose processes start with Ctrl-C and SIGTERM blocked: a
    signal to the process group between the fork and the worker's own set-up would otherwise
    run the parent's handler in the new worker, which then carries on as a copy of the parent."""

    def __init__(self, context: Any) -> None:
        self._context = context
        base = context.Process

        class Process(base):  # type: ignore[misc, valid-type]
            def start(self) -> None:
                if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
                    return super().start()
                previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
                try:
                    super().start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, previous)

        self.Process = Process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


#: Bytes the result pipe holds (Linux; at most /proc/sys/fs/pipe-max-size, 1 MiB by default).
RESULT_PIPE_BYTES = 1 << 20


def _widen_result_pipe(pool: ProcessPoolExecutor) -> None:
    """Let the pipe that carries results back hold :data:`RESULT_PIPE_BYTES` (Linux): a worker
    then writes a reply of a few hundred kilobytes and goes on to its next task, instead of
    waiting, 64 KiB at a time, for this process to be scheduled and read it (with every core
    busy with workers, that wait cost a sixth of a run's time). Elsewhere, or when the system
    allows less, the pipe stays as it is."""
    try:
        import fcntl

        set_size = getattr(fcntl, "F_SETPIPE_SZ", 1031)
        reader = pool._result_queue._reader  # type: ignore[attr-defined]
        try:
            with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as f:
                limit = int(f.read())
        except (OSError, ValueError):
            limit = RESULT_PIPE_BYTES
        fcntl.fcntl(reader.fileno(), set_size, min(RESULT_PIPE_BYTES, limit))
    except (ImportError, AttributeError, OSError, ValueError):
        pass


class WorkerPool(ProcessPoolExecutor):
    """A process pool whose workers never outlive it (see the module's docstring)."""

    def __init__(self, max_workers: int | None = None, initializer: Callable[..., Any] | None = None,
                 initargs: tuple[Any, ...] = ()) -> None:
        context = multiprocessing.get_context()
        if context.get_start_method() == "fork":  # (spawned workers inherit no handlers)
            context = _QuietStart(context)
        super().__init__(max_workers=max_workers, mp_context=context, initializer=_start_worker,
                         initargs=(os.getpid(), initializer, tuple(initargs)))
        _widen_result_pipe(self)
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        if self._watcher is None:  # the first workers have started
            self._watcher = threading.Thread(target=self._watch, daemon=True, name="v2vsim-worker-watcher")
            self._watcher.start()
        return future

    def _workers(self) -> list[Any]:
        """The pool's worker processes now (forked all at once on the first task; other start
        methods add them as tasks come)."""
        for _ in range(3):
            try:
                return list((getattr(self, "_processes", None) or {}).values())
            except RuntimeError:  # the pool's manager changed them meanwhile
                continue
        return []

    def _watch(self) -> None:
        """Break the pool when a worker dies by itself and the pool does not notice (see the
        module's docstring)."""
        from multiprocessing.connection import wait

        alive = {process.sentinel: process for process in self._workers()}
        seen = {process.pid for process in alive.values()}
        while alive and not self._stopping.is_set():
            for process in self._workers():
                if process.pid not in seen:
                    seen.add(process.pid)
                    alive[process.sentinel] = process
            for sentinel in wait(list(alive), timeout=0.25):
                process = alive.pop(sentinel)
                # The sentinel closes a moment before the process can be reaped, and the pool's
                # manager may reap it first: its exit code shows up within this second.
                deadline = time.monotonic() + 1.0
                while process.exitcode is None and time.monotonic() < deadline:
                    process.join(0.05)
                if process.exitcode not in (0, None) and not self._stopping.is_set():
                    if not self._stopping.wait(BREAK_AFTER_SECONDS) and not getattr(self, "_broken", False):
                        self._break()
                    return

    def _break(self) -> None:
        for process in self._workers():
            try:
                process.kill()
            except (OSError, ValueError, AttributeError):
                pass
        try:
            self._result_queue._writer.close()  # type: ignore[attr-defined]
        except (OSError, AttributeError):
            pass

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            note_stop_seen()
        if exc is None:
            try:
                self.shutdown(wait=True)
            except BaseException:  # a signal while the last tasks finish
                self.stop()
                raise
            return False
        self.stop()
        if isinstance(exc, BrokenProcessPool) and not isinstance(exc, WorkerDied):
            signum = stopping_signal()
            if signum is not None:  # a worker ended by the signal that stops this process
                raise KeyboardInterrupt from exc
            raise WorkerDied(_died_message(exc)) from exc
        return False

    def stop(self) -> None:
        """Kill the workers (SIGTERM, then SIGKILL) and let the pool go without waiting."""
        self._stopping.set()
        # The pool's manager fails a broken pool's waiting tasks, and in Python 3.11 it fails
        # itself on a task already cancelled (InvalidStateError, printed): such a task gets a
        # stand-in future that nobody waits for.
        for item in list((getattr(self, "_pending_work_items", None) or {}).values()):
            if item.future.done():
                item.future = Future()
        processes = list((getattr(self, "_processes", None) or {}).values())
        manager = getattr(self, "_executor_manager_thread", None)  # shutdown() forgets it
        results = getattr(self, "_result_queue", None)
        for process in processes:
            try:
                process.terminate()
            except (OSError, ValueError, AttributeError):
                pass
        deadline = time.monotonic() + KILL_AFTER_SECONDS
        for process in processes:
            try:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.exitcode is None:
                    process.kill()
                    process.join(KILL_AFTER_SECONDS)
            except (OSError, ValueError, AttributeError, AssertionError):
                pass
        # Nothing reads the task queue any more: its feeder thread must not wait at exit to
        # write into the pipe of a dead worker.
        queue = getattr(self, "_call_queue", None)
        if queue is not None:
            try:
                queue.cancel_join_thread()
            except (OSError, ValueError, AttributeError, AssertionError):
                pass
        # A worker killed while sending a result leaves the pool's manager thread (which the
        # interpreter waits for at exit) reading the rest of it: with the workers gone, this
        # process holds the last writing end, and closing it ends the read.
        try:
            results._writer.close()  # type: ignore[union-attr]
        except (OSError, AttributeError):
            pass
        try:
            self.shutdown(wait=False, cancel_futures=True)
        except Exception:  # a broken pool's manager may have failed already
            pass
        if manager is not None:
            manager.join(KILL_AFTER_SECONDS)


def _died_message(exc: BaseException) -> str:
    return "a worker process ended unexpectedly (killed by a signal, or out of memory)"
