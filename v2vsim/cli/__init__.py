"""The ``v2vsim`` command line: thin Typer commands over the public functions.

:mod:`.common` holds the app and what the commands share; each command family has its own
module (:mod:`.run`, :mod:`.compare`, :mod:`.experiments`) that imports only :mod:`.common` and
library code. The commands are registered here, in the order ``v2vsim --help`` lists them.
"""

from . import app as web_app
from . import bundled, compare, experiments, psa, run, validation
from .common import app
from .compare import default_compare_dir

app.command()(run.run)
app.command()(compare.compare)
app.command()(run.validate)
app.command()(run.schema)
app.command()(run.verify)
app.command()(compare.report)
app.command()(experiments.sweep)
app.command(cls=experiments.ParamCommand)(experiments.sensitivity)  # --param takes three words
app.command()(experiments.capacity)
app.command()(psa.psa)
app.command()(validation.validation)
app.command()(bundled.scenarios)
app.command()(bundled.init)
app.command("app")(web_app.app_command)


def main() -> None:
    """Entry point of the ``v2vsim`` console script."""
    import gc

    from .._memory import settle_for_large_arrays
    from .stopping import exit_status, handle_stop_signals, worker_died

    # Before NumPy is imported (see v2vsim._memory), and before the stop handlers: a signal
    # meanwhile is the start-up's (nothing has started), not a KeyboardInterrupt out of here.
    settle_for_large_arrays()
    handle_stop_signals()  # Ctrl-C exits 130, SIGTERM 143 (see v2vsim.cli.stopping)
    try:
        app(prog_name="v2vsim")
    except SystemExit as exc:
        from . import common

        if exc.code == 130 and not common._told:  # Typer turns a KeyboardInterrupt into 130
            common.err.print("interrupted", markup=False, highlight=False)
        code = exit_status(exc.code)
        if code != exc.code:
            raise SystemExit(code) from None
        raise
    except KeyboardInterrupt:  # before or after the command itself
        from .common import err

        err.print("interrupted", markup=False, highlight=False)
        raise SystemExit(exit_status(130)) from None
    except Exception as exc:
        from concurrent.futures import BrokenExecutor

        from .._workers import stopping_signal

        if stopping_signal() is not None:
            # The stop's KeyboardInterrupt wrapped by a library on the way (pydantic turns one
            # raised while it builds a schema into a SchemaError): still a stop, not a crash.
            from .common import err

            err.print("interrupted", markup=False, highlight=False)
            raise SystemExit(exit_status(130)) from None
        if not isinstance(exc, BrokenExecutor):  # a worker died, a Dask cluster was lost
            raise
        raise SystemExit(worker_died(exc)) from None
    finally:
        # The interpreter's last garbage collections walk every object of the run (a tenth of
        # a second after a `validate`, more after a `run`); frozen, they are left for the
        # operating system to reclaim. Every file is written and closed by now, standard
        # output and error are still flushed and atexit handlers (worker pools) still run, and
        # the exit status is app()'s own.
        gc.freeze()


__all__ = ["app", "default_compare_dir", "main"]
