"""The ``run``, ``validate``, ``schema`` and ``verify`` commands: one scenario's replications and
its results directory, checking scenario files, their JSON Schema, checking a results directory.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .common import (
    LARGE_REFERRALS,
    Engine,
    Jobs,
    Seed,
    _check_size,
    check_engine_cli,
    check_target_cli,
    write_or_fail,
    _fail,
    _load,
    _precision,
    _progress,
    err,
    load_cli,
    out,
    print_table,
    result_name,
    run_scenario,
    write_run_dir,
)

if TYPE_CHECKING:  # the library is imported in the commands that use it (see .common)
    from rich.table import Table

    from ..engine.runner import Results
    from ..scenario import Scenario

__all__ = ["run", "run_extended", "schema", "summary_table", "validate", "verify"]

Replications = Annotated[Optional[int], typer.Option("--replications", "-n", min=1, help="Replications (default: the scenario's).")]


def summary_table(results: Results, title: str) -> Table:
    """The run's console summary: the headline metrics with their 95% CI, and those of the
    scenario's policies (rerouted, bridged, life-years, QALYs, ...) when it has them."""
    from rich.table import Table

    from ..metrics import headline_rows

    from ..metrics import CLIPPED_NOTE, counted_window

    horizon = counted_window(results.scenario)
    warmup = results.scenario.warmup_days
    caption = (f"Counts of patients are per 100 referred; 'a year' is the mean number a year "
               f"over the {horizon:g}-day referral window"
               + (f" after a {warmup:g}-day warm-up (its patients are not counted)" if warmup else "")
               + f". {CLIPPED_NOTE}")
    table = Table(title=title, title_justify="left", show_lines=False, caption=caption,
                  caption_justify="left")
    table.add_column("Metric")
    table.add_column("Mean", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("A year", justify="right")
    sites = results.scenario.sites
    for metric, label, mean, ci, yearly in headline_rows(results.summary(),
                                                         results.scenario.currency, horizon):
        key = metric[len("utilization_"):]
        if metric.startswith("utilization_") and key in sites and sites[key].label:
            name = str(sites[key].label)  # the site's display name, without a parenthesis
            label = f"Utilisation of {name.split(' (')[0] if name.endswith(')') else name}"
        table.add_row(label, mean, ci, yearly)
    return table


def run(
    scenario_file: Annotated[Path, typer.Argument(metavar="SCENARIO", help="Scenario YAML file, or the NAME of a bundled one (see `v2vsim scenarios`).")],
    replications: Replications = None,
    seed: Seed = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results directory (default: results/<file name without .yaml>, e.g. results/local).")] = None,
    jobs: Jobs = None,
    csv: Annotated[bool, typer.Option("--csv", help="Also write patients.csv.")] = False,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the figures.")] = False,
    warmup_figure: Annotated[bool, typer.Option("--warmup-figure", help="Also draw figures/warmup (Welch's method, to choose warmup_days) and print its suggestion; drawn anyway for a scenario with warmup_days.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an output directory that v2vsim did not write, or that holds other results (another command's or scenario's, or figures a --no-figures run would delete).")] = False,
    allow_large: Annotated[bool, typer.Option("--allow-large", help=f"Allow runs of more than {LARGE_REFERRALS:,} referrals in all.")] = False,
    sets: Annotated[Optional[list[str]], typer.Option("--set", metavar="PATH=VALUE", help="Override a scenario value, e.g. --set sites.hkib.slots=2 (repeatable; steps and cohorts by name).")] = None,
    precision: Annotated[Optional[float], typer.Option("--precision", min=0.0001, max=0.9999, help="Add replications (batches of 10, from 10) until the 95% CI half-width of infused_fraction, vein_to_vein_median and queue_wait_mean is within this fraction of the mean; --replications is then the cap (default 1000).")] = None,
    cluster: Annotated[Optional[str], typer.Option("--cluster", metavar="tcp://HOST:PORT", help="Run the replications on this Dask scheduler's workers (same results).")] = None,
    engine: Engine = "auto",
) -> None:
    """Run SCENARIO's replications and write its results directory.

    Examples:

    \b
      v2vsim run scenarios/local.yaml
      v2vsim run scenarios/local.yaml -n 400 --seed 7 -o results/local-400 --csv
      v2vsim run scenarios/local.yaml --set sites.hkib.slots=2 -o results/local-two-devices
      v2vsim run scenarios/overseas.yaml --precision 0.02 -n 2000
    """
    from ..engine.runner import default_jobs
    from ..metrics import overload_warnings
    from ..outputs.results_dir import estimated_bytes

    if sets:
        scenario = load_cli(scenario_file, sets)
    else:
        scenario = _load(scenario_file)
    engine = check_engine_cli(engine, [scenario])
    n = replications or scenario.replications
    base_seed = scenario.seed if seed is None else seed
    target = out_dir or Path("results") / result_name([scenario_file])
    _check_size(scenario, (replications or 1000) if precision is not None else n, allow_large)
    size = estimated_bytes(scenario.expected_referrals() * n, n, csv=csv, figures=not no_figures)
    check_target_cli(target, force, kind="run", scenarios=[scenario_file], figures=not no_figures,
                     need_bytes=size)
    workers = jobs or default_jobs()
    started = time.perf_counter()
    try:
        if precision is not None or cluster is not None:
            results = run_extended(scenario, replications, base_seed, jobs, precision, cluster, engine)
            n = results.n_replications
        else:
            results = run_scenario(scenario, n, base_seed, workers, scenario.name, engine)
    except KeyboardInterrupt:
        _fail("interrupted: nothing was written", 130)
        raise
    print_table(summary_table(results, f"{scenario.name} — {n} replications, seed {base_seed}"))
    for warning in overload_warnings(results.replications, results.site_profile,
                                     scenario.horizon_days,
                                     scenario.horizon_days + scenario.drain_days):
        err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    written = write_or_fail(lambda: write_run_dir(results, target, csv=csv, figures=not no_figures,
                                                  force=force, scenario_file=scenario_file, jobs=workers,
                                                  need_bytes=size, warmup_figure=warmup_figure))
    if "warmup" in results.extra:
        out.print(results.extra["warmup"]["text"], markup=False, highlight=False, soft_wrap=True)
    out.print(f"Wrote {written}/ in {time.perf_counter() - started:.1f} s ({engine_note(results)}).",
              markup=False, highlight=False)


def engine_note(results: Results) -> str:
    """Which engines computed the replications, and the SimPy engine's event count."""
    engines = results.extra.get("engines", {})
    parts = []
    if engines.get("vectorised"):
        parts.append(f"{engines['vectorised']:,} replication(s) vectorised")
    if engines.get("simpy", 0) or not parts:
        parts.append(f"{results.events_processed:,} SimPy events")
    return ", ".join(parts)


def _note_precision(results: Results) -> None:
    info = results.extra.get("precision")
    if not info:
        return
    widths = ", ".join(f"{k} ±{100 * v:.1f}%" for k, v in info["relative_half_widths"].items() if v is not None)
    if info["reached"]:
        err.print(f"precision {100 * info['relative']:g}% reached after {info['n_solution']} replications "
                  f"(held for {info['replications'] - info['n_solution']} more); used {info['replications']}: "
                  f"{widths}", markup=False, highlight=False)
    else:
        err.print(f"warning: precision {100 * info['relative']:g}% not reached within "
                  f"{info['replications']} replications (the cap; raise it with --replications): {widths}",
                  markup=False, highlight=False)


def run_extended(scenario: Scenario, replications: int | None, seed: int, jobs: int | None,
                 precision: float | None, cluster: str | None, engine: str = "auto") -> Results:
    """``run`` with ``--precision`` (``replications`` is then the cap) or ``--cluster``."""
    from .. import experiments as ex
    from ..engine.distributed import ClusterError
    from ..engine.runner import simulate

    try:
        if precision is not None:
            with _progress(scenario.name, 1) as bars:
                results = ex.simulate_to_precision(scenario, _precision(precision, replications), seed,
                                                   jobs=jobs, cluster=cluster, progress=bars, engine=engine)
            _note_precision(results)
            return results
        n = replications or scenario.replications
        if cluster is None:
            return run_scenario(scenario, n, seed, jobs or 1, scenario.name, engine)
        with ex.executor_for(None, cluster) as (executor, workers), _progress(scenario.name, 1) as bars:
            bars.add_replications(n)
            return simulate(scenario, n, seed, jobs=workers, executor=executor, engine=engine,
                            progress=lambda done, total: bars.bar.update(bars.reps, completed=done))
    except ClusterError as exc:
        _fail(f"error: {exc}")
        raise


def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Scenario YAML files.")],
) -> None:
    """Check scenario files; print every problem as FILE:LINE: key.path: message.

    Examples:

    \b
      v2vsim validate scenarios/*.yaml
      v2vsim validate scenarios/local.yaml scenarios/hybrid.yaml
    """
    from ..scenario import ScenarioError, load_scenario

    bad = False
    from ..scenario.bundled import scenario_path

    for path in files:
        try:
            path = scenario_path(path)  # a bundled NAME stands for its file
            sc = load_scenario(path)
            if sc.uncertain:  # what `psa` would refuse: unknown paths, draws the value does not allow
                from ..scenario.overrides import ScenarioSource
                from ..scenario.uncertain_checks import uncertain_problems

                problems = uncertain_problems(ScenarioSource(path))
                if problems:
                    raise ScenarioError(problems)
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


def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to a file instead of standard output.")] = None,
    case: Annotated[bool, typer.Option("--case", help="The schema of validation case files instead (see `v2vsim validation`).")] = False,
) -> None:
    """Print the JSON Schema of scenario files (for editor completion and checking).

    Examples:

    \b
      v2vsim schema -o v2vsim.schema.json
      v2vsim schema --case -o v2vsim.case.schema.json
    """
    if case:
        from ..scenario.cases import case_json_schema

        document = case_json_schema()
    else:
        from ..scenario.json_schema import scenario_json_schema

        document = scenario_json_schema()
    text = json.dumps(document, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def verify(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A results directory.")],
) -> None:
    """Check every file of a results directory against the sha256 in its manifest.

    Examples:

    \b
      v2vsim verify results/local
      v2vsim verify results/compare-local-vs-overseas
    """
    from ..outputs.results_dir import verify_dir

    problems = verify_dir(directory)
    if problems:
        _fail(problems, 1)
    out.print(f"{directory}: every file matches its manifest", markup=False, highlight=False)
