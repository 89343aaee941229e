"""The ``compare`` and ``report`` commands: scenarios on the same virtual patients, compared
with the first (paired), and the HTML report of results directories."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .common import (
    LARGE_REFERRALS,
    Engine,
    Jobs,
    check_engine_cli,
    check_large,
    check_target_cli,
    write_or_fail,
    _fail,
    _replication_bar,
    _scenario_files,
    _slug,
    err,
    load_scenarios_cli,
    out,
    overrides_for,
    print_table,
    result_name,
    scenario_stem,
    write_run_dir,
)

if TYPE_CHECKING:  # the library is imported in the commands that use it (see .common)
    from collections.abc import Sequence

    from rich.table import Table

    from ..experiments.compare import Comparison

__all__ = [
    "budget_table",
    "compare",
    "comparison_summary_table",
    "default_compare_dir",
    "economics_table",
    "parse_wtp",
    "report",
    "write_compare_dir",
]


def _scenario_dirs(scenario_files: Sequence[Path | str]) -> list[str]:
    """Distinct subdirectory names for the scenarios of a comparison: their files' stems
    (``local``), made unique (the same file twice: ``local``, ``local-2``)."""
    taken = {"figures", "comparison.csv", "comparison.json", "budget.csv", "manifest.json"}
    dirs = []
    for path in scenario_files:
        base = _slug(scenario_stem(path), 80)
        slug, k = base, 2
        while slug in taken:
            slug, k = f"{base}-{k}", k + 1
        taken.add(slug)
        dirs.append(slug)
    return dirs


def default_compare_dir(scenario_files: Sequence[Path | str]) -> Path:
    """``results/compare-<first>-vs-<second>...`` from the scenario files' stems
    (``results/compare-local-vs-overseas``), within 100 bytes."""
    return Path("results") / result_name(scenario_files, prefix="compare-")


def write_compare_dir(comparison: Comparison, out_dir: Path, *, scenario_files: list[Path],
                      figures: bool, force: bool, jobs: int = 1, sets: Sequence[str] = (),
                      own: Sequence[Sequence[str]] | None = None, need_bytes: int = 0) -> Path:
    """A comparison's results directory, written atomically: one subdirectory per scenario
    exactly as ``run`` writes it (with its own manifest), ``comparison.csv`` and ``.json``,
    the comparison figures and a top-level manifest of every file, which records each
    scenario's file and overrides (``sets`` of every scenario, then its ``own``)."""
    from .._version import __version__
    from ..outputs.comparison_files import write_comparison_files
    from ..outputs.results_dir import guard_figures, manifest_fields, write_results_dir

    dirs = _scenario_dirs(scenario_files)
    own = [list(o) for o in own] if own is not None else [[] for _ in scenario_files]

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
            with guard_figures("the comparison figures", tmp / "figures"):
                comparison_figures({r.scenario.name: r.patients for r in comparison.results},
                                   {r.scenario.name: r.replications for r in comparison.results},
                                   tmp / "figures", currency=comparison.currency, footer=footer,
                                   jobs=jobs, guard=lambda stem: guard_figures(f"{stem} (comparison)",
                                                                               tmp / "figures"),
                                   budgets={r.scenario.name: r.budget for r in comparison.results
                                            if getattr(r, "budget", None) is not None})
            economics = comparison.economics
            if economics is not None and len(economics.budget):
                from ..outputs.figures.economics import budget_figure
                from ..outputs.figures.style import save_figure

                with guard_figures("budget_impact (comparison)", tmp / "figures"):
                    save_figure(budget_figure(economics.budget, comparison.currency, footer=footer,
                                              level=comparison.level, names=comparison.names),
                                tmp / "figures", "budget_impact", formats=("png", "svg", "pdf"),
                                dpi=300)
        manifest = manifest_fields(comparison.results[0], ["v2vsim", *sys.argv[1:]], None)
        for key in ("scenario_name", "scenario_file", "scenario_sha256"):
            manifest.pop(key, None)
        manifest.update(
            kind="compare",
            baseline=comparison.baseline,
            # Each scenario's overrides in the order applied: --set (all), then its --set-for.
            scenarios=[{"name": name, "dir": sub, "file": str(path), "overrides": [*sets, *mine]}
                       for name, sub, path, mine in zip(comparison.names, dirs, scenario_files, own)],
            wall_seconds=round(sum(r.wall_seconds for r in comparison.results), 3),
        )
        return manifest

    return write_results_dir(out_dir, fill, force=force, kind="compare",
                             scenarios=_scenario_files(scenario_files), figures=figures,
                             need_bytes=need_bytes)


def _fmt_compare(value: float, unit: str, diff: bool = False, bare: bool = False) -> str:
    """A number of a comparison table in its unit (``%``: a fraction shown as a percentage,
    differences in percentage points); ``bare`` leaves out the unit (inside an interval)."""
    from ..metrics import PER_100, is_fraction
    from ..metrics import unsigned_zero as _unsigned

    if value is None or not math.isfinite(value):
        return "–"
    sign = "+" if diff else ""
    if is_fraction(unit):
        text = _unsigned(f"{100 * value:{sign}.1f}")
        return text if bare else text + (" pp" if diff else "%")
    if unit == "days":
        return _unsigned(f"{value:{sign}.1f}")
    if unit in ("count", PER_100):
        return _unsigned(f"{value:{sign}.3f}" if 0 < abs(value) < 0.1 else f"{value:{sign},.2f}")
    if unit in ("years", "QALYs"):
        return _unsigned(f"{value:{sign}.3f}")
    return _unsigned(f"{value:{sign},.0f}")


def comparison_summary_table(comparison: Comparison, title: str,
                             own: Sequence[Sequence[str]] | None = None) -> Table:
    """Key metrics per scenario (mean and CI) and the paired difference against the first;
    scenarios are lettered A, B, ... (named in the caption, with their own ``--set-for``
    overrides ``own``) to keep the table narrow."""
    from rich.table import Table

    from ..metrics import CLIPPED_NOTE, LOSS_CAUSES, RATE_COUNTS, counted_window, per_year, rate_metric

    by_metric = {m: frame.set_index("scenario")
                 for m, frame in comparison.table.groupby("metric", sort=False)}
    # Death and ineligibility always; other causes when they happen in any scenario.
    causes = [m for m in LOSS_CAUSES if m != "died" and m in by_metric
              and (m == "ineligible" or (by_metric[m]["mean"] > 0).any())]
    # Policy metrics (routing, bridging, survival after infusion, economics) are in the table
    # only when a scenario has the policy; a scenario without it shows "–".
    order = ["infused_fraction", "died", *causes, "vein_to_vein_median", "vein_to_vein_p90",
             "referral_to_infusion_median", "queue_wait_mean", "rerouted", "bridged",
             "bridging_toxicities", "cost_per_infused", "cost_per_referred",
             "cost_discounted_per_referred", "life_years_per_referred", "deaths_in_follow_up",
             "life_years_discounted_per_referred", "qalys_per_referred",
             "qalys_discounted_per_referred", "responders", "icu_admissions"]
    names = comparison.names
    letters = [chr(ord("A") + i) if i < 26 else f"S{i + 1}" for i in range(len(names))]
    own = own or [[] for _ in names]

    def changed(name: str, mine: Sequence[str]) -> str:
        text = ", ".join(mine)
        return f", with {text}" if mine and not name.endswith(f"({text})") else ""

    caption = "\n".join(f"{letter} = {name}" + (" (baseline)" if i == 0 else "")
                        + changed(name, mine)
                        for i, (letter, name, mine) in enumerate(zip(letters, names, own)))
    horizons = {n: counted_window(r.scenario) for n, r in zip(names, comparison.results)}
    caption += ("\nDifferences are paired by replication: the same virtual patients go through "
                "each pathway. Counts of patients are per 100 referred, with the mean number a "
                "year (\"a year\") over the referral window. " + CLIPPED_NOTE)
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left",
                  show_lines=True)
    table.add_column("Metric")
    for letter in letters:
        table.add_column(f"{letter}\nmean (95% CI)", justify="right")
    for letter in letters[1:]:
        table.add_column(f"{letter} − {letters[0]}\npaired (95% CI)", justify="right")

    def cell(row: Any, mean: str, low: str, high: str, diff: bool,
             count: Any = None, name: str = "") -> str:
        unit = str(row["unit"])
        text = (f"{_fmt_compare(row[mean], unit, diff)}\n({_fmt_compare(row[low], unit, diff, True)}"
                f" to {_fmt_compare(row[high], unit, diff, True)})")
        if count is not None and name in count.index:
            yearly = per_year(float(count.loc[name, mean]), horizons[name])
            text += f"\n{_fmt_compare(yearly, 'count', diff)} a year"
        return text

    for metric in order:
        count = None
        if metric in RATE_COUNTS and rate_metric(metric) in by_metric:
            count, metric = by_metric.get(metric), rate_metric(metric)
        if metric not in by_metric:
            continue
        frame = by_metric[metric]
        unit = str(frame["unit"].iloc[0])
        label = str(frame["label"].iloc[0])
        label += ("" if unit in ("fraction", "%", "per 100 referred")
                  else " (per replication)" if unit == "count" else f" ({unit})")
        cells = [label]
        cells += [cell(frame.loc[n], "mean", "ci_low", "ci_high", False, count, n)
                  if n in frame.index else "–" for n in names]
        cells += [cell(frame.loc[n], "diff", "diff_ci_low", "diff_ci_high", True, count, n)
                  if n in frame.index else "–" for n in names[1:]]
        table.add_row(*cells)
    return table


def parse_wtp(text: str | None) -> list[float] | None:
    """``--wtp 20000,50000``: the thresholds, or exit 2 naming the bad one."""
    if text is None:
        return None
    values = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            _fail(f"error: --wtp: '{part}' is not a positive number; give thresholds per QALY "
                  "separated by commas, e.g. --wtp 20000,50000")
        values.append(value)
    return values


def _interval(row: Any, unit: str) -> str:
    """An estimate and its interval for the console (an unbounded interval says so)."""
    estimate = _fmt_compare(row["estimate"], unit, diff=unit != "ratio")
    low, high = float(row["ci_low"]), float(row["ci_high"])
    if math.isinf(low) or math.isinf(high):
        return f"{estimate}\n(unbounded)"
    if not (math.isfinite(low) and math.isfinite(high)):
        return estimate
    diff = unit != "ratio"
    return (f"{estimate}\n({_fmt_compare(low, unit, diff, True)} to "
            f"{_fmt_compare(high, unit, diff, True)})")


def economics_table(comparison: Comparison) -> Table:
    """Incremental costs, life-years, QALYs, the ICERs and net monetary benefit of every
    scenario against the first, with paired 95% intervals (Fieller's for the ICERs)."""
    from rich.table import Table

    economics = comparison.economics
    assert economics is not None
    currency = economics.currency
    names = economics.scenarios
    table = Table(title=f"Cost-effectiveness against {economics.comparator} (per referred patient)",
                  title_justify="left", show_lines=True,
                  caption="Differences are paired by replication (the same patients). ICER "
                          "intervals: Fieller's method; unbounded when the interval of the "
                          "incremental effect includes 0.", caption_justify="left")
    table.add_column("Measure")
    for name in names:
        table.add_column(f"{name}\nvs {economics.comparator}\n{economics.level:.0%} CI",
                         justify="right")
    measures = [("incremental_cost_discounted", None, f"Δ cost, discounted ({currency})", "currency"),
                ("incremental_cost", None, f"Δ cost, undiscounted ({currency})", "currency"),
                ("incremental_life_years_discounted", None, "Δ life-years, discounted", "years"),
                ("incremental_life_years", None, "Δ life-years, undiscounted", "years"),
                ("incremental_qalys_discounted", None, "Δ QALYs, discounted", "QALYs"),
                ("incremental_qalys", None, "Δ QALYs, undiscounted", "QALYs"),
                ("icer_per_qaly", None, f"ICER ({currency} per QALY)", "ratio"),
                ("icer_per_life_year", None, f"ICER ({currency} per life-year)", "ratio")]
    measures += [("nmb", w, f"Net monetary benefit at {w:,.0f} {currency}/QALY", "currency")
                 for w in economics.wtp]
    for measure, wtp, label, unit in measures:
        cells = []
        for name in names:
            try:
                row = economics.value(name, measure, wtp)
            except KeyError:
                cells.append("–")
                continue
            text = _interval(row, unit)
            quadrant = economics.quadrant(name)
            if unit == "ratio" and quadrant in ("dominant", "dominated"):
                # A negative ICER does not rank options: say which way it goes instead.
                text = f"{quadrant}\n(ratio {text.replace(chr(10), ' ')})"
            cells.append(text)
        table.add_row(label, *cells)
    return table


def budget_table(comparison: Comparison) -> Table:
    """Budget impact: each scenario's mean cost charged per calendar year (all categories) with
    its 95% interval, and the paired difference from the first scenario."""
    from rich.table import Table

    economics = comparison.economics
    assert economics is not None
    budget = economics.budget
    total = budget[budget["category"] == "total"]
    names = comparison.names
    table = Table(title=f"Budget impact: cost charged per calendar year ({economics.currency}, "
                        "undiscounted, all patients)", title_justify="left")
    table.add_column("Year")
    for name in names:
        table.add_column(f"{name}\nmean (95% CI)", justify="right")
    for name in names[1:]:
        table.add_column(f"{name} − {names[0]}\npaired (95% CI)", justify="right")
    for year, rows in total.groupby("year", sort=True):
        by_name = rows.set_index("scenario")
        cells = [str(year)]
        for name in names:
            r = by_name.loc[name] if name in by_name.index else None
            cells.append("–" if r is None else
                         f"{_fmt_compare(r['mean'], 'currency')} ({_fmt_compare(r['ci_low'], 'currency', bare=True)}"
                         f" to {_fmt_compare(r['ci_high'], 'currency', bare=True)})")
        for name in names[1:]:
            r = by_name.loc[name] if name in by_name.index else None
            cells.append("–" if r is None else
                         f"{_fmt_compare(r['diff'], 'currency', True)} ({_fmt_compare(r['diff_ci_low'], 'currency', True, True)}"
                         f" to {_fmt_compare(r['diff_ci_high'], 'currency', True, True)})")
        table.add_row(*cells)
    return table


def compare(
    scenario_files: Annotated[list[Path], typer.Argument(metavar="A B [C...]", help="Scenario YAML files; the first is the baseline.")],
    replications: Annotated[Optional[int], typer.Option("--replications", "-n", min=1, help="Replications of every scenario (default: the first scenario's).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=2**63 - 1, help="Base seed of every scenario (default: the first scenario's).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results directory (default: results/compare-<first>-vs-<second>...).")] = None,
    jobs: Jobs = None,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the figures.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an output directory that v2vsim did not write, or that holds other results (another command's or scenarios', or figures a --no-figures run would delete).")] = False,
    allow_large: Annotated[bool, typer.Option("--allow-large", help=f"Allow runs of more than {LARGE_REFERRALS:,} referrals in all (every scenario's replications counted).")] = False,
    sets: Annotated[Optional[list[str]], typer.Option("--set", metavar="PATH=VALUE", help="Override a value in every scenario (repeatable), e.g. --set cohorts.adult_LBCL.priority=0.")] = None,
    set_for: Annotated[Optional[list[str]], typer.Option("--set-for", metavar="WHICH:PATH=VALUE", help="Override a value in one scenario only (repeatable; applied after --set). WHICH is the scenario's position 1..N among A B [C...] or its file's stem, e.g. --set-for 2:sites.hkib.slots=2 or --set-for local:sites.hkib.slots=2.")] = None,
    precision: Annotated[Optional[float], typer.Option("--precision", min=0.0001, max=0.9999, help="Replications until the 95% CI half-width of the key metrics is within this fraction of their mean in every scenario (the largest count is used for all); -n is then the cap (default 1000).")] = None,
    engine: Engine = "auto",
    wtp: Annotated[Optional[str], typer.Option("--wtp", metavar="W1,W2,...", help="Willingness-to-pay thresholds per QALY (the scenarios' currency), separated by commas, for net monetary benefit; every scenario needs an economics section (default: the thresholds of the scenarios' economics sections).")] = None,
) -> None:
    """Run scenarios on the same virtual patients and compare each with the first (paired).

    Examples:

    \b
      v2vsim compare scenarios/local.yaml scenarios/overseas.yaml -n 400
      v2vsim compare scenarios/economics_local.yaml scenarios/economics_overseas.yaml --wtp 500000,1000000

    Two devices at HKIB against overseas, without a copy of the YAML file (--set-for 2: the second scenario only):

    \b
      v2vsim compare scenarios/overseas.yaml scenarios/local.yaml --set-for 2:sites.hkib.slots=2
    """
    from ..engine.runner import default_jobs
    from ..experiments.compare import check_comparable
    from ..experiments.compare import compare as compare_scenarios
    from ..metrics import overload_warnings

    if len(scenario_files) < 2:
        _fail("error: compare needs at least two scenario files")
    own = overrides_for(set_for or [], scenario_files)
    scenarios = load_scenarios_cli(scenario_files, sets or [], own)
    try:
        check_comparable(scenarios)
    except ValueError as exc:
        _fail(f"error: {exc}")
    thresholds = parse_wtp(wtp)
    if thresholds is not None:
        without = [str(path) for path, s in zip(scenario_files, scenarios)
                   if getattr(s, "economics", None) is None]
        if without:
            _fail([f"error: --wtp needs an economics section in every scenario; {path} has none"
                   for path in without])
    engine = check_engine_cli(engine, scenarios)
    first = scenarios[0]
    n = replications or first.replications
    base_seed = first.seed if seed is None else seed
    per = [s.expected_referrals() for s in scenarios]
    average = f"about {sum(per) / len(per):,.0f} referrals per replication on average"
    if precision is None:
        check_large(n * sum(per), f"{len(scenarios)} scenarios x {n:,} replications x {average}",
                    allow_large)
    else:  # the replications to reach the precision (at most the cap), then the comparison's
        cap = replications or 1000
        check_large(2 * cap * sum(per), f"{len(scenarios)} scenarios x up to {cap:,} replications "
                    f"to reach the precision and as many again to compare x {average}", allow_large)
    if any((seed is None and s.seed != first.seed)
           or (replications is None and s.replications != first.replications) for s in scenarios):
        err.print(f"note: every scenario runs with the first one's seed {base_seed} and {n} "
                  "replications (the pairing needs one seed)", markup=False, highlight=False)
    target = out_dir or default_compare_dir(scenario_files)
    from ..outputs.results_dir import estimated_bytes

    size = len(scenarios) * estimated_bytes(max(s.expected_referrals() for s in scenarios) * n, n,
                                            figures=not no_figures) + estimated_bytes(0, 0, figures=not no_figures)
    check_target_cli(target, force, kind="compare", scenarios=scenario_files,
                     figures=not no_figures, need_bytes=size)
    workers = jobs or default_jobs()
    started = time.perf_counter()
    if precision is not None:
        from ..experiments import Precision, replications_for_precision

        n = replications_for_precision(
            scenarios, Precision(precision, max_replications=replications or 1000), base_seed,
            jobs=workers, engine=engine)
        err.print(f"precision {precision:g}: {n} replications per scenario", markup=False,
                  highlight=False)
    try:
        with _replication_bar() as progress:
            task = progress.add_task(f"{len(scenarios)} scenarios", total=n * len(scenarios))
            comparison = compare_scenarios(
                scenarios, replications=n, seed=base_seed, jobs=workers, engine=engine,
                wtp=thresholds,
                progress=lambda done, total: progress.update(task, completed=done))
    except KeyboardInterrupt:
        _fail("interrupted: nothing was written", 130)
        raise
    print_table(comparison_summary_table(
        comparison, f"{len(scenarios)} scenarios — {n} replications each, seed {base_seed}, "
        "same patients in each", own))
    if comparison.economics is not None:
        print_table(economics_table(comparison))
        for name, sentence in comparison.economics.sentences().items():
            out.print(f"Against {comparison.baseline}: {sentence}.", markup=False, highlight=False,
                      soft_wrap=True)
        if len(comparison.economics.budget):
            print_table(budget_table(comparison))
    for results in comparison.results:
        sc = results.scenario
        for warning in overload_warnings(results.replications, results.site_profile,
                                         sc.horizon_days, sc.horizon_days + sc.drain_days):
            err.print(f"warning: {sc.name}: {warning}", markup=False, highlight=False,
                      soft_wrap=True)
    written = write_or_fail(lambda: write_compare_dir(comparison, target, scenario_files=scenario_files,
                                                      figures=not no_figures, force=force, jobs=workers,
                                                      sets=sets or [], own=own, need_bytes=size))
    out.print(f"Wrote {written}/ in {time.perf_counter() - started:.1f} s.", markup=False,
              highlight=False)


def report(
    directories: Annotated[list[Path], typer.Argument(metavar="RESULTS_DIR...", help="Results directories written by `v2vsim run` or `v2vsim compare`, or one sweep, sensitivity, capacity or psa directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write: HTML, or PDF when it ends in .pdf (printed by headless Chromium).")] = Path("report.html"),
    validation: Annotated[Optional[Path], typer.Option("--validation", metavar="DIR", help="A validation results directory written by `v2vsim validation`, for the report's external validation (predicted against observed in published trials).")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print the HTML report to a PDF beside it (same name, .pdf; needs Chromium).")] = False,
    paper: Annotated[str, typer.Option("--paper", help="Page size of the printed report: a4 or letter.")] = "a4",
) -> None:
    """Write one self-contained HTML report (key numbers, figures, assumptions, method, validation).

    Examples:

    \b
      v2vsim report results/local -o report.html
      v2vsim report results/compare-local-vs-overseas --validation results/validation -o report.html
      v2vsim report results/compare-local-vs-overseas -o report.pdf
      v2vsim report results/compare-local-vs-overseas -o report.pdf --paper letter
    """
    from ..outputs.report import PDFError, ReportError, write_report

    try:
        written = write_report(directories, output, validation=validation, pdf=pdf,
                               paper=paper.lower())
    except PDFError as exc:
        _fail(f"error: {exc}", 1)
        raise
    except ReportError as exc:
        _fail(f"error: {exc}")
        raise
    files = [written] + ([written.with_suffix(".pdf")] if pdf and written.suffix.lower() != ".pdf" else [])
    for file in files:
        out.print(f"Wrote {file} ({file.stat().st_size / 1e6:.1f} MB).", markup=False, highlight=False)
