"""``python -m v2vsim ...`` behaves like the ``v2vsim`` command, whose entry point is :func:`main`."""

from __future__ import annotations


def _stopped_while_starting(signum: int, _frame: object) -> None:
    # Ctrl-C or SIGTERM while Python imports the command line (its first few tenths of a
    # second): nothing has started and nothing is written, so exit at once, 130 or 143, without
    # the traceback of a KeyboardInterrupt raised inside an import.
    import os

    os.write(2, b"interrupted: nothing was written\n")
    os._exit(128 + signum)


def main() -> None:
    """Entry point of the ``v2vsim`` console script and of ``python -m v2vsim``: the stop
    signals are handled from the first moment (:mod:`v2vsim.cli.stopping` takes over once the
    command line is imported)."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stopped_while_starting)
    from v2vsim.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
