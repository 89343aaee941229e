"""The ``v2vsim`` command: thin Typer commands over plain functions.

Exit status: 0 success, 1 a failed check (``verify``), 2 bad input (scenario or options).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .metrics import headline_rows, overload_warnings
from .output import OutputError, check_target, manifest_fields, verify_dir, write_results_dir, write_tables
from .runner import Results, default_jobs, simulate
from .scenario import Scenario, ScenarioError, load_scenario

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Simulate the vein-to-vein logistics of autologous CAR-T cell therapy.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

#: Runs larger than this many referrals in all need --allow-large.
LARGE_REFERRALS = 20_000_000


def _fail(lines: list[str] | str, code: int = 2) -> None:
    for line in [lines] if isinstance(lines, str) else lines:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load(path: Path) -> Scenario:
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        _fail([str(p) for p in exc.problems])
        raise  # unreachable


def _check_size(scenario: Scenario, replications: int, allow_large: bool) -> None:
    expected = scenario.expected_referrals() * replications
    if expected > LARGE_REFERRALS and not allow_large:
        _fail(f"error: this run would simulate about {expected:,.0f} referrals "
              f"({scenario.expected_referrals():,.0f} per replication x {replications} replications), "
              f"more than {LARGE_REFERRALS:,}; pass --allow-large if that is intended")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("replications"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=err, transient=False, disable=not err.is_terminal,
    )


def run_scenario(scenario: Scenario, replications: int, seed: int, jobs: int, label: str) -> Results:
    """Simulate with a progress bar on the terminal."""
    with _progress() as progress:
        task = progress.add_task(label, total=replications)
        return simulate(scenario, replications=replications, seed=seed, jobs=jobs,
                        progress=lambda done, total: progress.update(task, completed=done))


def summary_table(results: Results, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("Metric")
    table.add_column("Mean", justify="right")
    table.add_column("95% CI", justify="right")
    for _metric, label, mean, ci in headline_rows(results.summary(), results.scenario.currency):
        table.add_row(label, mean, ci)
    return table


def write_run_dir(results: Results, out_dir: Path, *, csv: bool, figures: bool, force: bool,
                  scenario_file: Path | None, jobs: int = 1) -> Path:
    """The run's results directory (spec section 5), written atomically."""

    def fill(tmp: Path) -> dict:
        write_tables(results, tmp, csv=csv, source=scenario_file)
        if figures:
            from .plots import run_figures

            footer = (f"{results.scenario.name} · {results.n_replications} replications · "
                      f"seed {results.seed} · v2vsim {__version__}")
            run_figures(results.patients, results.site_days, results.events,
                        results.scenario.name, tmp / "figures", footer=footer, jobs=jobs)
        return manifest_fields(results, ["v2vsim", *sys.argv[1:]], scenario_file)

    return write_results_dir(out_dir, fill, force=force)


def _slug(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name.strip())
    return keep.strip("._") or "scenario"


Replications = Annotated[Optional[int], typer.Option("--replications", "-n", min=1, help="Replications (default: the scenario's).")]
Seed = Annotated[Optional[int], typer.Option("--seed", min=0, help="Base seed (default: the scenario's).")]
Jobs = Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Worker processes (default: all cores). Results do not depend on it.")]


@app.command()
def run(
    scenario_file: Annotated[Path, typer.Argument(metavar="SCENARIO", help="Scenario YAML file.")],
    replications: Replications = None,
    seed: Seed = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results directory (default: results/<scenario name>).")] = None,
    jobs: Jobs = None,
    csv: Annotated[bool, typer.Option("--csv", help="Also write patients.csv.")] = False,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the figures.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an output directory that v2vsim did not write.")] = False,
    allow_large: Annotated[bool, typer.Option("--allow-large", help=f"Allow runs of more than {LARGE_REFERRALS:,} referrals in all.")] = False,
) -> None:
    """Run SCENARIO's replications and write its results directory."""
    scenario = _load(scenario_file)
    n = replications or scenario.replications
    base_seed = scenario.seed if seed is None else seed
    target = out_dir or Path("results") / _slug(scenario.name)
    _check_size(scenario, n, allow_large)
    try:
        check_target(target, force)
    except OutputError as exc:
        _fail(f"error: {exc}")
    workers = jobs or default_jobs()
    started = time.perf_counter()
    try:
        results = run_scenario(scenario, n, base_seed, workers, scenario.name)
    except KeyboardInterrupt:
        _fail("interrupted: nothing was written", 130)
        raise
    out.print(summary_table(results, f"{scenario.name} — {n} replications, seed {base_seed}"))
    for warning in overload_warnings(results.replications, results.site_days,
                                     scenario.horizon_days,
                                     scenario.horizon_days + scenario.drain_days):
        err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    try:
        written = write_run_dir(results, target, csv=csv, figures=not no_figures, force=force,
                                scenario_file=scenario_file, jobs=workers)
    except OutputError as exc:
        _fail(f"error: {exc}")
        raise
    except KeyboardInterrupt:
        _fail("interrupted: nothing was written, earlier results are untouched", 130)
        raise
    out.print(f"Wrote {written}/ in {time.perf_counter() - started:.1f} s "
              f"({results.events_processed:,} events).", markup=False, highlight=False)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Scenario YAML files.")],
) -> None:
    """Check scenario files; print every problem as FILE:LINE: key.path: message."""
    bad = False
    for path in files:
        try:
            sc = load_scenario(path)
        except ScenarioError as exc:
            bad = True
            for problem in exc.problems:
                err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
            continue
        out.print(f"{path}: ok — '{sc.name}', {len(sc.cohorts)} cohort(s), {len(sc.pathways)} "
                  f"pathway(s), {len(sc.sites)} site(s), about {sc.expected_referrals():,.0f} "
                  "referrals per replication", markup=False, highlight=False)
    if bad:
        raise typer.Exit(2)


@app.command()
def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to a file instead of standard output.")] = None,
) -> None:
    """Print the JSON Schema of scenario files (for editor completion and checking)."""
    document = Scenario.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "v2vsim scenario"
    text = json.dumps(document, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


@app.command()
def verify(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A results directory.")],
) -> None:
    """Check every file of a results directory against the sha256 in its manifest."""
    problems = verify_dir(directory)
    if problems:
        _fail(problems, 1)
    out.print(f"{directory}: every file matches its manifest", markup=False, highlight=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"v2vsim {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Simulate the vein-to-vein logistics of autologous CAR-T cell therapy."""


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM (a scheduler or `kill`) stops like Ctrl-C: clean up, keep earlier results.
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``v2vsim`` console script."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    app(prog_name="v2vsim")


if __name__ == "__main__":
    main()
