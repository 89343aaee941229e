"""Stopping on a signal: every command alike, on Ctrl-C (SIGINT) and SIGTERM (``timeout``, a
batch scheduler, a terminal closing).

The first signal raises KeyboardInterrupt in the main thread: the command cleans up (worker
pools kill their workers, a half-written results directory is removed, finished points are
kept for ``--resume``) and exits 130 (SIGINT) or 143 (SIGTERM). A second signal while it stops
is ignored, a third exits at once, and a stop that takes more than :data:`STOP_SECONDS` exits
regardless. :func:`v2vsim.cli.main` installs the handlers (not the app itself, so that a test
runner keeps its own Ctrl-C).
"""

from __future__ import annotations

from .common import _stop_seen, err, stop_signal

#: Seconds a stopping command may take after the first signal before it exits regardless.
STOP_SECONDS = 10.0
#: Seconds after which a stop that nothing has seen yet is raised again: Python ignores
#: (prints) an exception raised in a weakref callback or a finaliser, a signal's too.
RESEND_SECONDS = 2.0

_more_signals = 0


def _on_stop_signal(signum: int, _frame: object) -> None:
    # The first Ctrl-C or SIGTERM stops the command (KeyboardInterrupt: clean up, keep earlier
    # results); a second one while it stops is ignored, so that the clean-up finishes; a third
    # ends the process at once. Workers die with it (v2vsim._workers).
    global _more_signals
    import os

    from .._workers import note_stop, stop_seen, stopping_signal

    first = stopping_signal()
    if first is None:
        note_stop(signum)
        _watchdog(signum)
        raise KeyboardInterrupt
    if not stop_seen():  # the first one was lost
        raise KeyboardInterrupt
    _more_signals += 1
    if _more_signals >= 2:
        os._exit(128 + first)


def _watchdog(signum: int) -> None:
    import _thread
    import os
    import threading
    import time

    from .._workers import stop_seen

    def watch() -> None:
        deadline = time.monotonic() + STOP_SECONDS
        time.sleep(RESEND_SECONDS)
        if not stop_seen():
            _thread.interrupt_main(signum)
        time.sleep(max(0.0, deadline - time.monotonic()))
        try:
            err.print(f"stopping took more than {STOP_SECONDS:g} s: exiting now", markup=False,
                      highlight=False)
        finally:
            os._exit(128 + signum)

    threading.Thread(target=watch, name="v2vsim-stop-watchdog", daemon=True).start()


def handle_stop_signals() -> None:
    """Every command stops alike on Ctrl-C (SIGINT) and SIGTERM (``timeout``, a batch
    scheduler): exit 130 and 143, earlier results untouched, no worker left; a second signal
    while stopping is ignored, a third exits at once. Installed by :func:`v2vsim.cli.main` (in
    the main thread; not by the app itself, so that a test runner keeps its own Ctrl-C)."""
    import signal

    # The handler's state lives in v2vsim._workers: loaded now, so that a signal that comes
    # while a command is importing it (as it starts its first worker pool) does not find the
    # module half made (an ImportError instead of the stop).
    from .. import _workers  # noqa: F401

    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)


def exit_status(code: int | str | None) -> int | str | None:
    """The process's exit status for a command's ``code``: an interrupted command (130, what
    the commands and Typer give a KeyboardInterrupt) exits 128 + the signal it stopped on."""
    from .._workers import stopping_signal

    _stop_seen()
    signum = stopping_signal()
    if code == 130 or (signum is not None and code == 128 + signum):
        _forget_unhandled_interrupt()
        # Exiting: further signals are ignored (the interpreter would otherwise restore their
        # default action for its last moments, and a second Ctrl-C would end it by SIGINT).
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return 128 + stop_signal()
    return code


def _forget_unhandled_interrupt() -> None:
    # CPython 3.11 marks a KeyboardInterrupt raised in code run by exec() or eval() of a string
    # (generated methods, lazy imports) as unhandled even when it was caught, and `python -m`
    # then ends with SIGINT whatever the exit status: the stop was handled.
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, ValueError, AttributeError, OSError):  # another build or Python
        pass


def worker_died(exc: BaseException) -> int:
    """A worker process that ended by itself (BrokenProcessPool) or a Dask cluster lost
    (ClusterLost): one line, exit 1; while stopping on a signal, the stop's own message and
    status."""
    from .._workers import stopping_signal

    signum = stopping_signal()
    if signum is not None:
        err.print("interrupted: nothing was written", markup=False, highlight=False)
        return 128 + signum
    err.print(f"error: {exc}; the command stopped", markup=False, highlight=False, soft_wrap=True)
    return 1
