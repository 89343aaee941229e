"""The ``validation`` command: run external-validation cases (published trials as virtual
trials), print predicted against observed and write a results directory. A thin wrapper over
:func:`v2vsim.experiments.validation.run_cases`.

Exit status: 0 when every case ran (whatever the verdicts: a miss is a finding, not an error),
2 for a bad case file or option, 130/143 when interrupted (nothing is written).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .common import (LARGE_REFERRALS, Engine, Jobs, _bar, _fail, check_engine_cli, check_large,
                     check_target_cli, out, print_table, write_or_fail)

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

    from ..experiments.validation import CaseResult
    from ..scenario.cases import LoadedCase

__all__ = ["validation", "validation_table"]


def _fmt(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{100 * value:.1f}%" if unit == "fraction" else f"{value:.1f} d"


def _interval(low: Any, high: Any, unit: str) -> str:
    if any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in (low, high)):
        return "—"
    if unit == "fraction":
        return f"{100 * low:.1f}–{100 * high:.1f}%"
    return f"{low:.1f}–{high:.1f} d"


def validation_table(table: pd.DataFrame) -> Table:
    """The console table of predicted against observed, one row per case and outcome."""
    from rich.table import Table

    grid = Table(title="External validation: predicted vs observed", title_justify="left",
                 caption="Each replication is a virtual trial of the trial's size; shares are of the "
                         "enrolled patients.\nVerdict: is the observed value inside the range 95% of "
                         "such trials fall in?", caption_justify="left")
    for name, justify in (("Case", "left"), ("Outcome", "left"), ("Predicted (95% CI)", "right"),
                          ("Trial-size 95% range", "right"), ("Observed (95% CI)", "right"),
                          ("Error", "right"), ("Verdict", "left")):
        grid.add_column(name, justify=justify, no_wrap=name != "Outcome",  # type: ignore[arg-type]
                        min_width=20 if name == "Outcome" else None)
    for row in table.itertuples(index=False):
        unit = row.unit
        observed = _fmt(row.observed, unit)
        if unit == "fraction":
            observed = f"{row.observed_k}/{row.observed_n} = {observed}"
        ci = _interval(row.observed_ci_low, row.observed_ci_high, unit)
        observed += f" ({ci})" if ci != "—" else ""
        error = f"{row.error:+.1f} pp" if unit == "fraction" else f"{row.error:+.1f} d"
        outcome = row.label.replace(", % of enrolled", "").replace(" (days)", "")
        grid.add_row(row.trial.split(" (")[0], outcome,
                     f"{_fmt(row.predicted_mean, unit)} ({_interval(row.predicted_ci_low, row.predicted_ci_high, unit)})",
                     _interval(row.trial_low, row.trial_high, unit), observed, error,
                     "inside" if row.verdict == "inside" else "OUTSIDE")
    return grid


def _load_cases(files: list[Path]) -> list[LoadedCase]:
    from ..scenario import ScenarioError
    from ..scenario.cases import load_case

    cases, problems = [], []
    for path in files:
        try:
            cases.append(load_case(path))
        except ScenarioError as exc:
            problems.extend(str(p) for p in exc.problems)
    if problems:
        _fail(problems)
    names = [lc.case.name for lc in cases]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        _fail([f"error: case name '{n}' is used by more than one file; names must be unique "
               "(they name the rows and files)" for n in twice])
    return cases


def validation(
    case_files: Annotated[list[Path], typer.Argument(metavar="CASE...", help="Validation case files (e.g. validation/*.yaml).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Results directory.")] = Path("results/validation"),
    replications: Annotated[Optional[int], typer.Option("--replications", "-n", min=2, help="Virtual trials per case (default: each case's).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=2**63 - 1, help="Base seed for every case (default: each case's, else its scenario's).")] = None,
    jobs: Jobs = None,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the figures.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an output directory that v2vsim did not write, or that holds other results (another command's or cases', or figures a --no-figures run would delete).")] = False,
    allow_large: Annotated[bool, typer.Option("--allow-large", help=f"Allow runs of more than {LARGE_REFERRALS:,} referrals in all (every case's runs counted).")] = False,
    engine: Engine = "auto",
) -> None:
    """Run external-validation cases: each published trial as virtual trials of its own size,
    predicted against observed, with a verdict per outcome.

    Examples:

    \b
      v2vsim validation validation/*.yaml
      v2vsim validation validation/zuma1.yaml -n 1000 -o results/zuma1
    """
    from ..engine.runner import default_jobs
    from ..experiments.validation import run_cases, validation_points
    from ..outputs.results_dir import write_results_dir

    cases = _load_cases(case_files)
    check_engine_cli(engine, [lc.scenario for lc in cases])
    _check_cases_size(cases, replications, allow_large)
    from ..outputs.results_dir import estimated_bytes

    case_paths = [lc.file for lc in cases]
    size = sum(estimated_bytes(0, 0, figures=False) for _ in cases) + estimated_bytes(0, 0, figures=not no_figures)
    check_target_cli(out_dir, force, kind="validation", scenarios=case_paths, figures=not no_figures,
                     need_bytes=size)
    workers = jobs or default_jobs()
    started = time.perf_counter()
    try:
        with _bar() as bar:
            task = bar.add_task("validation runs", total=validation_points(cases))
            done, table, sens = run_cases(cases, seed=seed, replications=replications, jobs=workers,
                                          engine=engine, step=lambda label: bar.advance(task))
    except KeyboardInterrupt:
        _fail("interrupted: nothing was written", 130)
        raise
    print_table(validation_table(table))
    misses = table[table["verdict"] != "inside"]
    for row in misses.itertuples(index=False):
        if row.mechanism:
            out.print(f"{row.trial} · {row.label}: outside the trial-size range. {row.mechanism}",
                      markup=False, highlight=False, soft_wrap=True)
    wall = time.perf_counter() - started
    written = write_or_fail(lambda: write_results_dir(
        out_dir, lambda tmp: _fill(tmp, done, table, sens, not no_figures, wall), force=force,
        kind="validation", scenarios=case_paths, figures=not no_figures, need_bytes=size,
        inputs=[lc.source.path for lc in cases]))
    inside = int((table["verdict"] == "inside").sum())
    out.print(f"{inside} of {len(table)} observed outcomes inside the trial-size 95% range. "
              f"Wrote {written}/ in {time.perf_counter() - started:.1f} s.", markup=False, highlight=False,
              soft_wrap=True)


def _check_cases_size(cases: list[LoadedCase], replications: int | None, allow_large: bool) -> None:
    """Every case runs its trial once and once per sensitivity value, each with the case's
    replications (or ``-n``), of its trial's referrals (the trial size)."""
    runs = [1 + sum(len(s.values) for s in lc.case.sensitivity) for lc in cases]
    reps = [replications or lc.case.replications for lc in cases]
    per = [lc.scenario.expected_referrals() for lc in cases]
    total = sum(r * n * k for r, n, k in zip(runs, reps, per))
    shown = f"{reps[0]:,}" if len(set(reps)) == 1 else f"{min(reps):,} to {max(reps):,}"
    check_large(total, f"{sum(runs):,} run{'s' if sum(runs) != 1 else ''} of {len(cases)} "
                f"case{'s' if len(cases) != 1 else ''} x {shown} replications x about "
                f"{total / sum(r * n for r, n in zip(runs, reps)):,.0f} referrals per replication "
                "on average", allow_large)


def _fill(tmp: Path, done: list[CaseResult], table: pd.DataFrame, sens: pd.DataFrame,
          figures: bool, wall: float) -> dict[str, Any]:
    from ..outputs.results_dir import provenance, sha256_file, write_json
    from ..scenario import scenario_to_yaml

    table.to_csv(tmp / "validation.csv", index=False)
    sens.to_csv(tmp / "sensitivity.csv", index=False)
    write_json(tmp / "validation.json", table.astype(object).where(table.notna(), None).to_dict(orient="records"))
    cases_dir = tmp / "cases"
    cases_dir.mkdir()
    for result in done:
        lc = result.loaded
        (cases_dir / f"{lc.case.name}.yaml").write_bytes(lc.file.read_bytes())
        (cases_dir / f"{lc.case.name}_scenario_source.yaml").write_bytes(lc.source.path.read_bytes())
        (cases_dir / f"{lc.case.name}_scenario.yaml").write_text(
            scenario_to_yaml(lc.scenario, seed=result.results.seed,
                             replications=result.results.n_replications), encoding="utf-8")
    if figures:
        from ..outputs.figures.validation import sensitivity_figure, validation_figure
        from ..outputs.results_dir import guard_figures

        with guard_figures("validation", tmp / "figures"):
            validation_figure(table, tmp / "figures")
        with guard_figures("sensitivity", tmp / "figures"):
            sensitivity_figure(sens, tmp / "figures")
    return {
        **provenance("validation", ["v2vsim", *sys.argv[1:]]),
        "cases": [{
            "name": r.loaded.case.name, "title": r.loaded.case.title,
            "case_file": str(r.loaded.file), "case_sha256": sha256_file(r.loaded.file),
            "scenario_file": str(r.loaded.source.path),
            "scenario_sha256": sha256_file(r.loaded.source.path),
            "trial_size": r.loaded.case.trial.size, "replications": r.results.n_replications,
            "seed": r.results.seed, "engines": dict(r.results.extra.get("engines", {})),
        } for r in done],
        "outcomes": len(table),
        "inside": int((table["verdict"] == "inside").sum()),
        "wall_seconds": round(wall, 3),
    }
