"""The ``v2vsim`` command: thin Typer commands over plain functions.

Exit status: 0 success, 1 a failed check (``verify``), 2 bad input (scenario or options).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .._version import __version__
from ..experiments.compare import Comparison, check_comparable, write_comparison_files
from ..experiments.compare import compare as compare_scenarios
from ..metrics import LOSS_CAUSES, headline_rows, overload_warnings
from ..outputs.results_dir import OutputError, check_target, manifest_fields, verify_dir, write_results_dir, write_tables
from ..engine.runner import Results, default_jobs, simulate
from ..scenario import Scenario, ScenarioError, load_scenario

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
            from ..outputs.figures import run_figures

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
    sets: Annotated[Optional[list[str]], typer.Option("--set", metavar="PATH=VALUE", help="Override a scenario value, e.g. --set sites.hkib.slots=2 (repeatable; steps and cohorts by name).")] = None,
    precision: Annotated[Optional[float], typer.Option("--precision", min=0.0001, max=0.9999, help="Add replications (batches of 10, from 10) until the 95% CI half-width of infused_fraction, vein_to_vein_median and queue_wait_mean is within this fraction of the mean; --replications is then the cap (default 1000).")] = None,
    cluster: Annotated[Optional[str], typer.Option("--cluster", metavar="tcp://HOST:PORT", help="Run the replications on this Dask scheduler's workers (same results).")] = None,
) -> None:
    """Run SCENARIO's replications and write its results directory."""
    if sets:
        from .experiments import load_cli

        scenario = load_cli(scenario_file, sets)
    else:
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
        if precision is not None or cluster is not None:
            from .experiments import run_extended

            results = run_extended(scenario, replications, base_seed, jobs, precision, cluster)
            n = results.n_replications
        else:
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


def _scenario_dirs(names: list[str]) -> list[str]:
    """Distinct subdirectory names for the scenarios of a comparison (slugs, made unique)."""
    taken = {"figures", "comparison.csv", "comparison.json", "manifest.json"}
    dirs = []
    for name in names:
        base = _slug(name)[:80]
        slug, k = base, 2
        while slug in taken:
            slug, k = f"{base}-{k}", k + 1
        taken.add(slug)
        dirs.append(slug)
    return dirs


def default_compare_dir(names: list[str]) -> Path:
    """``results/compare-<first>-vs-<second>...`` from the scenario names."""
    stem = "compare-" + "-vs-".join(_slug(n)[:60] for n in names)
    return Path("results") / stem[:200]


def write_compare_dir(comparison: Comparison, out_dir: Path, *, scenario_files: list[Path],
                      figures: bool, force: bool, jobs: int = 1) -> Path:
    """A comparison's results directory, written atomically: one subdirectory per scenario
    exactly as ``run`` writes it (with its own manifest), ``comparison.csv`` and ``.json``,
    the comparison figures and a top-level manifest of every file."""
    dirs = _scenario_dirs(comparison.names)

    def fill(tmp: Path) -> dict:
        for results, sub, path in zip(comparison.results, dirs, scenario_files):
            write_run_dir(results, tmp / sub, csv=False, figures=figures, force=False,
                          scenario_file=path, jobs=jobs)
        write_comparison_files(comparison, tmp)
        if figures:
            from ..outputs.figures import comparison_figures

            footer = (f"{comparison.replications} replications per scenario · seed "
                      f"{comparison.seed}: the same virtual patients in every scenario · "
                      f"v2vsim {__version__}")
            comparison_figures({r.scenario.name: r.patients for r in comparison.results},
                               {r.scenario.name: r.replications for r in comparison.results},
                               tmp / "figures", currency=comparison.currency, footer=footer,
                               jobs=jobs)
        manifest = manifest_fields(comparison.results[0], ["v2vsim", *sys.argv[1:]], None)
        for key in ("scenario_name", "scenario_file", "scenario_sha256"):
            manifest.pop(key, None)
        manifest.update(
            kind="compare",
            baseline=comparison.baseline,
            scenarios=[{"name": name, "dir": sub} for name, sub in zip(comparison.names, dirs)],
            wall_seconds=round(sum(r.wall_seconds for r in comparison.results), 3),
        )
        return manifest

    return write_results_dir(out_dir, fill, force=force)


def _fmt_compare(value: float, unit: str, diff: bool = False, bare: bool = False) -> str:
    """A number of a comparison table in its unit (``%``: a fraction shown as a percentage,
    differences in percentage points); ``bare`` leaves out the unit (inside an interval)."""
    if value is None or not math.isfinite(value):
        return "–"
    sign = "+" if diff else ""
    if unit == "%":
        text = f"{100 * value:{sign}.1f}"
        return text if bare else text + (" pp" if diff else "%")
    if unit == "days":
        return f"{value:{sign}.1f}"
    if unit == "count":
        return f"{value:{sign}.2f}"
    return f"{value:{sign},.0f}"


def comparison_summary_table(comparison: Comparison, title: str) -> Table:
    """Key metrics per scenario (mean and CI) and the paired difference against the first;
    scenarios are lettered A, B, ... (named in the caption) to keep the table narrow."""
    by_metric = {m: frame.set_index("scenario")
                 for m, frame in comparison.table.groupby("metric", sort=False)}
    # Death and ineligibility always; other causes when they happen in any scenario.
    causes = [m for m in LOSS_CAUSES if m != "died" and m in by_metric
              and (m == "ineligible" or (by_metric[m]["mean"] > 0).any())]
    order = ["infused_fraction", "died", *causes, "vein_to_vein_median", "vein_to_vein_p90",
             "referral_to_infusion_median", "queue_wait_mean", "cost_per_infused",
             "cost_per_referred", "responders", "icu_admissions"]
    names = comparison.names
    letters = [chr(ord("A") + i) if i < 26 else f"S{i + 1}" for i in range(len(names))]
    caption = "\n".join(f"{letter} = {name}" + (" (baseline)" if i == 0 else "")
                        for i, (letter, name) in enumerate(zip(letters, names)))
    caption += ("\nDifferences are paired by replication: the same virtual patients go through "
                "each pathway.")
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left",
                  show_lines=True)
    table.add_column("Metric")
    for letter in letters:
        table.add_column(f"{letter}\nmean (95% CI)", justify="right")
    for letter in letters[1:]:
        table.add_column(f"{letter} − {letters[0]}\npaired (95% CI)", justify="right")

    def cell(row: Any, mean: str, low: str, high: str, diff: bool) -> str:
        unit = str(row["unit"])
        return (f"{_fmt_compare(row[mean], unit, diff)}\n({_fmt_compare(row[low], unit, diff, True)}"
                f" to {_fmt_compare(row[high], unit, diff, True)})")

    for metric in order:
        if metric not in by_metric:
            continue
        frame = by_metric[metric]
        unit = str(frame["unit"].iloc[0])
        label = str(frame["label"].iloc[0])
        label += " (per replication)" if unit == "count" else "" if unit == "%" else f" ({unit})"
        cells = [label]
        cells += [cell(frame.loc[n], "mean", "ci_low", "ci_high", False) if n in frame.index
                  else "–" for n in names]
        cells += [cell(frame.loc[n], "diff", "diff_ci_low", "diff_ci_high", True)
                  if n in frame.index else "–" for n in names[1:]]
        table.add_row(*cells)
    return table


@app.command()
def compare(
    scenario_files: Annotated[list[Path], typer.Argument(metavar="A B [C...]", help="Scenario YAML files; the first is the baseline.")],
    replications: Annotated[Optional[int], typer.Option("--replications", "-n", min=1, help="Replications of every scenario (default: the first scenario's).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Base seed of every scenario (default: the first scenario's).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results directory (default: results/compare-<first>-vs-<second>...).")] = None,
    jobs: Jobs = None,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the figures.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an output directory that v2vsim did not write.")] = False,
    allow_large: Annotated[bool, typer.Option("--allow-large", help=f"Allow runs of more than {LARGE_REFERRALS:,} referrals per scenario.")] = False,
    sets: Annotated[Optional[list[str]], typer.Option("--set", metavar="PATH=VALUE", help="Override a value in every scenario (repeatable), e.g. --set cohorts.adult_LBCL.priority=0.")] = None,
    precision: Annotated[Optional[float], typer.Option("--precision", min=0.0001, max=0.9999, help="Replications until the 95% CI half-width of the key metrics is within this fraction of their mean in every scenario (the largest count is used for all); -n is then the cap (default 1000).")] = None,
) -> None:
    """Run scenarios on the same virtual patients and compare each with the first (paired)."""
    if len(scenario_files) < 2:
        _fail("error: compare needs at least two scenario files")
    if sets:
        from .experiments import load_cli

        scenarios = [load_cli(path, sets) for path in scenario_files]
    else:
        scenarios = [_load(path) for path in scenario_files]
    try:
        check_comparable(scenarios)
    except ValueError as exc:
        _fail(f"error: {exc}")
    first = scenarios[0]
    n = replications or first.replications
    base_seed = first.seed if seed is None else seed
    for scenario in scenarios:
        _check_size(scenario, n, allow_large)
    if any((seed is None and s.seed != first.seed)
           or (replications is None and s.replications != first.replications) for s in scenarios):
        err.print(f"note: every scenario runs with the first one's seed {base_seed} and {n} "
                  "replications (the pairing needs one seed)", markup=False, highlight=False)
    target = out_dir or default_compare_dir([s.name for s in scenarios])
    try:
        check_target(target, force)
    except OutputError as exc:
        _fail(f"error: {exc}")
    workers = jobs or default_jobs()
    started = time.perf_counter()
    if precision is not None:
        from ..experiments import Precision, replications_for_precision

        n = replications_for_precision(
            scenarios, Precision(precision, max_replications=replications or 1000), base_seed,
            jobs=workers)
        err.print(f"precision {precision:g}: {n} replications per scenario", markup=False,
                  highlight=False)
    try:
        with _progress() as progress:
            task = progress.add_task(f"{len(scenarios)} scenarios", total=n * len(scenarios))
            comparison = compare_scenarios(
                scenarios, replications=n, seed=base_seed, jobs=workers,
                progress=lambda done, total: progress.update(task, completed=done))
    except KeyboardInterrupt:
        _fail("interrupted: nothing was written", 130)
        raise
    out.print(comparison_summary_table(
        comparison, f"{len(scenarios)} scenarios — {n} replications each, seed {base_seed}, "
        "same patients in each"))
    for results in comparison.results:
        sc = results.scenario
        for warning in overload_warnings(results.replications, results.site_days,
                                         sc.horizon_days, sc.horizon_days + sc.drain_days):
            err.print(f"warning: {sc.name}: {warning}", markup=False, highlight=False,
                      soft_wrap=True)
    try:
        written = write_compare_dir(comparison, target, scenario_files=scenario_files,
                                    figures=not no_figures, force=force, jobs=workers)
    except OutputError as exc:
        _fail(f"error: {exc}")
        raise
    except KeyboardInterrupt:
        _fail("interrupted: nothing was written, earlier results are untouched", 130)
        raise
    out.print(f"Wrote {written}/ in {time.perf_counter() - started:.1f} s.", markup=False,
              highlight=False)


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


@app.command()
def report(
    directories: Annotated[list[Path], typer.Argument(metavar="RESULTS_DIR...", help="Results directories written by `v2vsim run` or `v2vsim compare`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
) -> None:
    """Write one self-contained HTML report (key numbers, figures, assumptions, method)."""
    from ..outputs.report import ReportError, write_report

    try:
        written = write_report(directories, output)
    except ReportError as exc:
        _fail(f"error: {exc}")
        raise
    out.print(f"Wrote {written} ({written.stat().st_size / 1e6:.1f} MB).", markup=False, highlight=False)


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


from .experiments import register as _register_experiments; _register_experiments(app)  # noqa: E402,E702


def main() -> None:
    """Entry point of the ``v2vsim`` console script."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    app(prog_name="v2vsim")

