"""What every ``v2vsim`` command shares: the Typer app and its ``--version``, the consoles (and
tables that do not wrap when piped), exiting on bad input, loading scenarios (with ``--set``
overrides), the size limit, the default names of results directories (from the scenario files'
names), progress bars, running replications and writing a run's results directory.

The command modules (:mod:`.run`, :mod:`.compare`, :mod:`.experiments`) import only this module
and library code; :mod:`v2vsim.cli` registers their commands on :data:`app`. They import the
library inside the functions that use it (its type names only under ``TYPE_CHECKING``), so that
``v2vsim --help`` and ``--version`` import Typer and rich alone, and each command only what it needs
(tests/test_startup.py checks it). One piece over 500 lines for that reason: it is the one
module the command modules share (tests/test_layout.py holds them to it), so what two commands
need lives here.

Exit status: 0 success, 1 a failed check (``verify``), a failed write (a full or read-only disk,
a figure that failed: the data files are kept), a worker process that died or a lost Dask cluster,
2 bad input (scenario or options), 130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import click
import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

    from .. import experiments as ex
    from ..engine.runner import Results
    from ..scenario import Scenario, ScenarioError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Simulate the vein-to-vein logistics of autologous CAR-T cell therapy.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

#: Width of tables written to a pipe or a file, unless they are wider (a terminal uses its own).
PIPED_WIDTH = 140


def print_table(table: Table) -> None:
    """Print a table on standard output: at the terminal's width on a terminal; piped or
    redirected, at :data:`PIPED_WIDTH` or the table's own width if wider, so that no row wraps
    (rich would otherwise wrap every cell at 80 columns)."""
    if out.is_terminal:
        out.print(table)
        return
    # Measured on a console wide enough not to clamp the table's natural width.
    natural = Console(file=out.file, width=100_000, no_color=True).measure(table).maximum
    console = Console(file=out.file, width=max(PIPED_WIDTH, out.width, natural), no_color=True)
    # The title and caption (left-justified in every command's tables) as lines of their own,
    # which rich would otherwise wrap to the table's width.
    title, caption = table.title, table.caption
    table.title = table.caption = None
    try:
        for text in ([title] if title else []):
            console.print(text, highlight=False, soft_wrap=True)
        console.print(table)
        for line in (str(caption).splitlines() if caption else []):
            console.print(line, highlight=False, soft_wrap=True)
    finally:
        table.title, table.caption = title, caption


#: Runs larger than this many referrals in all need --allow-large.
LARGE_REFERRALS = 20_000_000


Seed = Annotated[Optional[int], typer.Option("--seed", min=0, max=2**63 - 1, help="Base seed (default: the scenario's).")]
Jobs = Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Worker processes (default: all cores). Results do not depend on it.")]
Engine = Annotated[str, typer.Option("--engine", metavar="auto|simpy|vectorised|compiled", help="How replications are computed: simpy (the reference model), vectorised (scenarios where patients cannot compete), compiled (patients queue; needs v2vsim[fast]), auto (a fast engine where it is exact, else simpy). A forced engine is refused for a scenario outside its scope. Results do not depend on it.")]


# --------------------------------------------------------------------------- exits and loading


#: Whether the command has said why it ends (:func:`_fail`): an interrupted command that has
#: not is told about by :func:`v2vsim.cli.main`.
_told = False


def _fail(lines: list[str] | str, code: int = 2) -> None:
    global _told
    _stop_seen()
    _told = True
    for line in [lines] if isinstance(lines, str) else lines:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load(path: Path) -> Scenario:
    """The scenario of a file, or of a bundled scenario's NAME (exit 2 listing every problem)."""
    from ..scenario import ScenarioError, load_scenario
    from ..scenario.bundled import scenario_path

    try:
        return load_scenario(scenario_path(path))
    except ScenarioError as exc:
        _fail([str(p) for p in exc.problems])
        raise  # unreachable


def _source(path: Path) -> ex.ScenarioSource:
    """A file's, or a bundled scenario NAME's, source for ``--set`` variants (exit 2 if bad)."""
    from ..scenario import ScenarioError
    from ..scenario.bundled import scenario_path
    from ..scenario.overrides import ScenarioSource

    try:
        return ScenarioSource(scenario_path(path))
    except ScenarioError as exc:
        _fail([str(p) for p in exc.problems])
        raise


def _problems(exc: ScenarioError) -> None:
    _fail([str(p) for p in exc.problems])


def load_cli(path: Path, sets: Sequence[str]) -> Scenario:
    """The scenario (a file or a bundled NAME) with ``--set`` overrides, or exit 2 listing every
    problem."""
    from ..scenario import ScenarioError
    from ..scenario.overrides import parse_sets

    source = _source(path)
    try:
        return source.variant(parse_sets(sets))
    except ScenarioError as exc:
        _problems(exc)
        raise


def overrides_for(texts: Sequence[str], scenario_files: Sequence[Path | str]) -> list[list[str]]:
    """``--set-for WHICH:PATH=VALUE`` as each scenario's own ``PATH=VALUE`` overrides, in the
    order given. WHICH is a scenario's position 1..N among the files, or its file's stem (a
    number is always a position); exit 2 naming a bad or ambiguous WHICH."""
    stems = [scenario_stem(p) for p in scenario_files]
    own: list[list[str]] = [[] for _ in scenario_files]
    listing = ", ".join(f"{i} = {p}" for i, p in enumerate(scenario_files, 1))
    for text in texts:
        which, sep, assignment = text.partition(":")
        which = which.strip()
        if not sep or not which or "=" in which or not assignment.partition("=")[0].strip() \
                or "=" not in assignment:
            _fail(f"error: --set-for {text}: expected WHICH:PATH=VALUE, where WHICH is a "
                  "scenario's position or file stem, e.g. --set-for 2:sites.hkib.slots=2")
        if which.isdigit():
            index = int(which)
            if not 1 <= index <= len(scenario_files):
                _fail(f"error: --set-for {text}: there is no scenario {index}; the scenarios are "
                      f"{listing}")
            own[index - 1].append(assignment.strip())
            continue
        matches = [i for i, stem in enumerate(stems) if stem == which]
        if not matches:
            _fail(f"error: --set-for {text}: no scenario file is named '{which}'; give a position "
                  f"or a stem ({', '.join(dict.fromkeys(stems))}); the scenarios are {listing}")
        if len(matches) > 1:
            _fail(f"error: --set-for {text}: '{which}' names scenarios "
                  f"{' and '.join(str(i + 1) for i in matches)}; give its position instead")
        own[matches[0]].append(assignment.strip())
    return own


def load_scenarios_cli(scenario_files: Sequence[Path], sets: Sequence[str],
                       own: Sequence[Sequence[str]]) -> list[Scenario]:
    """Every scenario with ``--set`` then its own ``--set-for`` overrides, or exit 2 listing
    every problem of every scenario (an override's problem names the scenario it was for).

    The same file twice, changed by ``--set-for``, would share a name: a scenario with its own
    overrides and another's name gets them in its name (``... (sites.hkib.slots=2)``)."""
    from ..scenario import ScenarioError
    from ..scenario.errors import Problem
    from ..scenario.overrides import parse_sets

    def located(problem: Problem, i: int, path: Path, mine: Sequence[str]) -> str:
        if not problem.file.startswith("--set "):
            return str(problem)
        dotted = problem.file[len("--set "):]
        paths = [text.partition("=")[0].strip() for text in mine]
        if any(dotted == p or dotted.startswith(p + ".") for p in paths if p):
            return str(Problem(f"--set-for {i + 1}:{dotted}", problem.line, problem.path,
                               f"{problem.message} (in {path})"))
        return str(Problem(problem.file, problem.line, problem.path, f"{problem.message} (in {path})"))

    sources = [_source(path) for path in scenario_files]
    scenarios: list[Scenario] = []
    problems: list[str] = []
    for i, (path, source, mine) in enumerate(zip(scenario_files, sources, own)):
        try:
            scenarios.append(source.variant(parse_sets([*sets, *mine])))
        except ScenarioError as exc:
            problems += [located(p, i, path, mine) for p in exc.problems]
    if problems:
        _fail(list(dict.fromkeys(problems)))
    names = [s.name for s in scenarios]
    for i, (source, mine) in enumerate(zip(sources, own)):
        if mine and names.count(names[i]) > 1:
            try:
                scenarios[i] = source.variant(
                    [*parse_sets([*sets, *mine]), ("name", f"{names[i]} ({', '.join(mine)})")])
            except ScenarioError as exc:
                _problems(exc)
    return scenarios


def _precision(relative: float | None, cap: int | None) -> ex.Precision | None:
    if relative is None:
        return None
    from .. import experiments as ex

    cap = 1000 if cap is None else cap
    try:
        return ex.Precision(relative, min_replications=min(10, cap), max_replications=cap)
    except ValueError as exc:
        _fail(f"error: --precision: {exc}")
        raise


def check_target_cli(target: Path, force: bool, *, kind: str | None = None,
                     scenarios: Sequence[Path | str] | None = None, figures: bool | None = None,
                     need_bytes: int = 0) -> None:
    """Refuse, before anything runs, a target that cannot or must not be written (exit 2): a
    place where no directory can be written or without space for ``need_bytes``, a directory
    that v2vsim did not write, another command's or other scenarios' results, figures that a
    ``--no-figures`` run would delete (unless ``--force``), a target another v2vsim is writing.
    The target's lock is then held until its results are written; debris of a killed run on
    it is cleaned (and said)."""
    from ..outputs.results_dir import OutputError, check_target, release_target

    try:
        notes = check_target(target, force, kind=kind, figures=figures, need_bytes=need_bytes,
                             scenarios=None if scenarios is None else _scenario_files(scenarios),
                             hold=True)
    except OutputError as exc:
        _fail(f"error: {exc}")
        raise
    context = click.get_current_context(silent=True)
    if context is not None:  # the command ends: the lock goes, written or not
        context.call_on_close(lambda: release_target(target))
    for note in notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)


def _scenario_files(paths: Sequence[Path | str]) -> list[Path]:
    """The files that scenario arguments stand for (a bundled NAME: its file)."""
    from ..scenario import ScenarioError
    from ..scenario.bundled import scenario_path

    files = []
    for path in paths:
        try:
            files.append(Path(scenario_path(Path(path))))
        except ScenarioError:
            files.append(Path(path))
    return files


def write_or_fail(write: Callable[[], Path], on_interrupt: Callable[[], None] | None = None,
                  on_written: Callable[[], None] | None = None) -> Path:
    """Run ``write()`` (an atomic results-directory writer): a refusal exits 2 with its reason;
    a full disk or a read-only file system exits 1 in one line; figures that failed exit 1
    naming each (the data files are written); Ctrl-C exits 130 (or calls ``on_interrupt``)
    saying that nothing was written and earlier results are untouched, or, when the signal came
    as the new directory was put in place, that it was written (after ``on_written``, the
    clean-up a finished write does, e.g. removing the finished points kept for --resume)."""
    from ..outputs.results_dir import FiguresFailed, OutputError, WriteError, WrittenThenInterrupted

    try:
        return write()
    except WriteError as exc:
        _fail(f"error: {exc}", 1)
        raise
    except OutputError as exc:
        _fail(f"error: {exc}")
        raise
    except FiguresFailed as exc:
        _fail([f"error: figure {name} failed: {error}" for name, error in exc.failures]
              + [f"the data files and the other figures were written to {exc.path}/"], 1)
        raise
    except WrittenThenInterrupted as exc:
        if on_written is not None:
            on_written()
        _fail(f"interrupted: the results were written to {exc.path}/ just before stopping", 130)
        raise
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
        _fail("interrupted: nothing was written, earlier results are untouched", 130)
        raise


def check_large(total: float, how: str, allow_large: bool) -> None:
    """Exit 2 before anything runs when a command would simulate more than
    :data:`LARGE_REFERRALS` referrals in all, unless ``--allow-large``; ``how`` says how the
    total was counted (``"4 points x 50 replications x about 1,000 referrals"``)."""
    if total > LARGE_REFERRALS and not allow_large:
        _fail(f"error: this would simulate about {total:,.0f} referrals in all ({how}), more than "
              f"{LARGE_REFERRALS:,}; pass --allow-large if that is intended")


def _check_size(scenario: Scenario, replications: int, allow_large: bool) -> None:
    per = scenario.expected_referrals()
    check_large(per * replications, f"{replications:,} replications x about {per:,.0f} referrals "
                "per replication", allow_large)


#: Longest default name of a results directory, in bytes (file systems allow 255; the atomic
#: writer adds a prefix and a suffix to its temporary directory, and paths stay readable).
NAME_BYTES = 100


def _clip(text: str, limit: int) -> str:
    """``text`` within ``limit`` bytes of UTF-8; a shortened text ends in 8 hex digits of its
    full form's hash, so that two long names that start alike stay apart."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    digest = hashlib.sha256(raw).hexdigest()[:8]
    head = raw[:max(limit - 9, 1)].decode("utf-8", errors="ignore").rstrip("-_.")
    return f"{head}-{digest}"


def _slug(name: str, limit: int = NAME_BYTES) -> str:
    """``name`` as a file name: letters (of any script), digits, ``-_.``; others become ``_``."""
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name.strip())
    return _clip(keep.strip("._") or "scenario", limit)


def scenario_stem(path: Path | str) -> str:
    """What names a scenario's results: its file name without ``.yaml`` (a bundled NAME as is)."""
    path = Path(path)
    return path.stem if path.suffix.lower() in (".yaml", ".yml") else path.name


def result_name(scenario_files: Sequence[Path | str], prefix: str = "", suffix: str = "") -> str:
    """The default results directory name of a command: ``prefix``, the scenario files' stems
    joined by ``-vs-``, ``suffix`` (``local``, ``compare-local-vs-overseas``,
    ``local-sweep``), within :data:`NAME_BYTES` bytes: each stem gets an equal share of what
    the prefix and suffix leave (shortened as :func:`_clip` does)."""
    stems = [scenario_stem(p) for p in scenario_files]
    fixed = len(prefix.encode()) + len(suffix.encode()) + len("-vs-") * (len(stems) - 1)
    share = max(12, (NAME_BYTES - fixed) // max(len(stems), 1))
    return _clip(prefix + "-vs-".join(_slug(s, share) for s in stems) + suffix, NAME_BYTES)


# --------------------------------------------------------------------------- progress and runs


#: Environment variable naming a file to which every progress bar is also written, as JSON
#: ``{"tasks": [{"description", "completed", "total"}, ...], "finished": bool}``, replaced
#: atomically at most every 0.2 s: how a front-end (``v2vsim app``) shows a command's progress.
PROGRESS_FILE = "V2VSIM_PROGRESS_FILE"


def _progress_bar(*columns: Any) -> Progress:
    """A rich progress bar on standard error (drawn only on a terminal), also written to the file
    ``$V2VSIM_PROGRESS_FILE`` names, if it names one."""
    import os

    from rich.progress import Progress

    path = os.environ.get(PROGRESS_FILE)
    if not path:
        return Progress(*columns, console=err, transient=False, disable=not err.is_terminal)

    class FileProgress(Progress):
        def __init__(self) -> None:
            super().__init__(*columns, console=err, transient=False, disable=not err.is_terminal)
            self._last_written = 0.0

        def _write(self, finished: bool = False) -> None:
            import json
            import time

            now = time.monotonic()
            if not finished and now - self._last_written < 0.2:
                return
            self._last_written = now
            tasks = [{"description": str(t.description), "completed": float(t.completed),
                      "total": None if t.total is None else float(t.total)} for t in self.tasks]
            tmp = f"{path}.tmp-{os.getpid()}"
            try:
                with open(tmp, "w", encoding="utf-8") as handle:
                    json.dump({"tasks": tasks, "finished": finished}, handle)
                os.replace(tmp, path)
            except OSError:  # progress is a courtesy: never fail a run for it
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

        def add_task(self, *args: Any, **kwargs: Any) -> Any:
            task = super().add_task(*args, **kwargs)
            self._write()
            return task

        def update(self, *args: Any, **kwargs: Any) -> None:
            super().update(*args, **kwargs)
            self._write()

        def advance(self, *args: Any, **kwargs: Any) -> None:
            super().advance(*args, **kwargs)
            self._write()

        def stop(self) -> None:
            super().stop()
            self._write(finished=True)

    return FileProgress()


def _replication_bar() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return _progress_bar(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("replications"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )


class _Bars:
    """Two rich bars on standard error: points finished and replications run (the hooks of
    :class:`v2vsim.experiments.Progress`, not derived from it so that this module does not import
    the experiments)."""

    def __init__(self, bar: Progress, label: str, points: int) -> None:
        self.bar = bar
        self.points = bar.add_task(f"{label}: points", total=points) if points > 1 else None
        self.reps = bar.add_task(f"{label}: replications", total=0)
        self.total = 0

    def add_replications(self, k: int) -> None:
        self.total += k
        self.bar.update(self.reps, total=self.total)

    def advance(self, k: int) -> None:
        self.bar.advance(self.reps, k)

    def point_done(self) -> None:
        if self.points is not None:
            self.bar.advance(self.points, 1)


def _bar() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return _progress_bar(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )


@contextlib.contextmanager
def _progress(label: str, points: int) -> Iterator[_Bars]:
    with _bar() as bar:
        yield _Bars(bar, label, points)


def run_scenario(scenario: Scenario, replications: int, seed: int, jobs: int, label: str,
                 engine: str = "auto") -> Results:
    """Simulate with a progress bar on the terminal."""
    from ..engine.runner import simulate

    with _replication_bar() as progress:
        task = progress.add_task(label, total=replications)
        return simulate(scenario, replications=replications, seed=seed, jobs=jobs, engine=engine,
                        progress=lambda done, total: progress.update(task, completed=done))


def check_engine_cli(engine: str, scenarios: Sequence[Scenario]) -> str:
    """``--engine`` checked against every scenario before anything runs (exit 2 if refused)."""
    from ..engine.engines import EngineError, check_engine

    try:
        for scenario in scenarios:
            check_engine(engine, scenario)
    except EngineError as exc:
        _fail(f"error: {exc}")
    return engine


def write_run_dir(results: Results, out_dir: Path, *, csv: bool, figures: bool, force: bool,
                  scenario_file: Path | None, jobs: int = 1, need_bytes: int = 0,
                  warmup_figure: bool = False) -> Path:
    """The run's results directory (spec section 5), written atomically, with this command
    line in its manifest (:func:`v2vsim.outputs.run_dir.write_run_dir`)."""
    from ..outputs.run_dir import write_run_dir as write

    if scenario_file is not None and not Path(scenario_file).is_file():
        from ..scenario import ScenarioError
        from ..scenario.bundled import scenario_path

        try:  # a bundled NAME: record the file it stands for (source comments, sha256)
            scenario_file = scenario_path(scenario_file)
        except ScenarioError:
            pass
    return write(results, out_dir, command=["v2vsim", *sys.argv[1:]], csv=csv, figures=figures,
                 force=force, scenario_file=scenario_file, jobs=jobs, need_bytes=need_bytes,
                 warmup_figure=warmup_figure)


# --------------------------------------------------------------------------- the app's own option


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        out.print(f"v2vsim {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Simulate the vein-to-vein logistics of autologous CAR-T cell therapy."""


# --------------------------------------------------------------------------- stopping on a signal


def workers_lost(exc: BaseException, store: Any, noun: str = "point") -> None:
    """A worker process that ended by itself, or a Dask cluster lost, during an experiment
    whose finished ``noun``s are kept in ``store`` (a :class:`~v2vsim.experiments.PointStore`):
    exit 1 in one line that says what is kept for ``--resume`` (while stopping on a signal, the
    stop's status)."""
    from .._workers import stopping_signal

    kept = len(store.finished()) if store is not None and store.dir.exists() else 0
    tail = (f"; {kept} finished {noun}{'s' if kept != 1 else ''} kept in {store.dir}: run the same "
            "command with --resume to continue" if kept else "")
    signum = stopping_signal()
    if signum is not None:
        _fail(f"interrupted{tail or ': nothing was written'}", 128 + signum)
    _fail(f"error: {exc}; the command stopped{tail}", 1)


def stop_signal() -> int:
    """The signal the command is stopping on (SIGINT if none was recorded: a Ctrl-C that
    reached it some other way). The handlers are :mod:`.stopping`'s."""
    import signal

    from .._workers import stopping_signal

    return stopping_signal() or int(signal.SIGINT)


def _stop_seen() -> None:
    if "v2vsim._workers" in sys.modules:  # (a stop imported it)
        sys.modules["v2vsim._workers"].note_stop_seen()
