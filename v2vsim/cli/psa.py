"""The ``psa`` command: probabilistic sensitivity analysis of one or more scenarios, a thin Typer
wrapper over :func:`v2vsim.experiments.psa.run_psa`.

Exit status as for ``sweep``: 2 for bad input, 130 (Ctrl-C) or 143 (SIGTERM) when interrupted
(finished parameter sets are kept for ``--resume``).
"""

from __future__ import annotations

import platform
import sys
import time
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .common import (
    Engine,
    Jobs,
    Seed,
    _fail,
    _problems,
    _progress,
    _source,
    check_engine_cli,
    check_target_cli,
    check_large,
    err,
    out,
    print_table,
    result_name,
    stop_signal,
    write_or_fail,
    workers_lost,
)

if TYPE_CHECKING:
    from ..experiments.psa import PsaResult

__all__ = ["parse_wtp", "psa"]


def parse_wtp(text: str) -> list[float]:
    """``LOW:HIGH:STEP`` (both ends included) or ``V1,V2,...``; raises ValueError."""
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"--wtp {text}: expected LOW:HIGH:STEP, e.g. 0:200000:5000")
        low, high, step = (float(p) for p in parts)
        if step <= 0 or high < low or low < 0:
            raise ValueError(f"--wtp {text}: need 0 <= LOW <= HIGH and STEP > 0")
        count = int(round((high - low) / step)) + 1
        if count > 10_000:
            raise ValueError(f"--wtp {text}: {count} thresholds; at most 10,000")
        values = [low + i * step for i in range(count)]
        return [v for v in values if v <= high + 1e-9 * max(1.0, high)]
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 0 for v in values):
        raise ValueError(f"--wtp {text}: thresholds must be numbers >= 0")
    return values


def psa(
    scenario_files: Annotated[list[Path], typer.Argument(metavar="SCENARIO...", help="Scenario YAML files; the first is the comparator.")],
    sets: Annotated[int, typer.Option("--sets", min=1, help="Parameter sets drawn.")] = 1000,
    replications: Annotated[int, typer.Option("--replications", "-n", min=2, help="Replications per set (the same seeds for every set and scenario).")] = 50,
    seed: Seed = None,
    wtp: Annotated[Optional[str], typer.Option(
        "--wtp", metavar="LOW:HIGH:STEP|V1,V2",
        help="Willingness-to-pay grid per QALY (the scenarios' currency); default 0 to twice the "
             "largest of the first scenario's economics.wtp, in 100 steps.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="PATH=VALUE", help="Override a value of every scenario (repeatable).")] = None,
    jobs: Jobs = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results directory (default: results/psa-<first>-vs-<second>..., from the files' names).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted PSA from DIR.partial (also with more --sets).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an output directory that v2vsim did not write, or that holds other results (another command's or scenarios', or figures a --no-figures run would delete).")] = False,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the figures.")] = False,
    allow_large: Annotated[bool, typer.Option("--allow-large", help="Allow runs larger than run's limit on referrals in all.")] = False,
    engine: Engine = "auto",
) -> None:
    """Probabilistic sensitivity analysis: draw --sets parameter sets from the scenarios'
    uncertain inputs, run every set of every scenario with common random numbers, and write
    the sets, the cost-effectiveness plane, the acceptability curve, the EVPI and the EVPPI.

    Examples:

    \b
      v2vsim psa scenarios/economics_local.yaml scenarios/economics_overseas.yaml --sets 200 -n 20
      v2vsim psa scenarios/economics_local.yaml scenarios/economics_overseas.yaml --sets 1000 --wtp 0:2000000:20000 -o results/psa
    """
    from .._version import __version__
    from ..engine.distributed import ClusterError
    from ..experiments import PointStore, StoreError, executor_for, parse_sets
    from ..experiments import psa as ps
    from ..outputs.results_dir import estimated_bytes, guard_figures, write_results_dir
    from ..scenario import ScenarioError

    started = time.perf_counter()
    sources = [_source(path) for path in scenario_files]
    names = [s.base.name for s in sources]
    if len(set(names)) < len(names):
        _fail("error: two scenarios have the same name; the PSA's tables tell them apart by name")
    check_engine_cli(engine, [s.base for s in sources])
    try:
        fixed = parse_sets(overrides or [])
        for source in sources:
            source.variant(fixed)
    except ScenarioError as exc:
        _problems(exc)
        raise
    first = sources[0].base
    base_seed = first.seed if seed is None else seed
    economic = all(s.base.economics is not None for s in sources)
    if len(sources) > 1 and not economic:
        missing = [str(s.path) for s in sources if s.base.economics is None]
        _fail([f"{m}: economics: a PSA of several scenarios compares costs and QALYs; this scenario "
               "has no economics section" for m in missing])
    try:
        grid = parse_wtp(wtp) if wtp else _default_wtp(first)
    except ValueError as exc:
        _fail(f"error: {exc}")
        raise
    if economic and len(sources) > 1 and not grid:
        _fail("error: --wtp: give thresholds (the first scenario's economics.wtp is empty)")
    varying = [any(not u.is_fixed for u in s.base.uncertain) for s in sources]
    points = sum(sets if v else 1 for v in varying)
    total = sum((sets if v else 1) * replications * s.variant(fixed).expected_referrals()
                for v, s in zip(varying, sources))
    check_large(total, f"{points:,} runs, {sets:,} per scenario with uncertain inputs and 1 per "
                f"other scenario, x {replications:,} replications x about "
                f"{total / (points * replications):,.0f} referrals per replication on average",
                allow_large)
    target = out_dir or Path("results") / result_name(scenario_files, prefix="psa-")
    check_target_cli(target, force, kind="psa", scenarios=scenario_files, figures=not no_figures,
                     need_bytes=estimated_bytes(0, 2 * points * replications, figures=not no_figures))
    store = PointStore(target, ps.fingerprint(sources, replications=replications, seed=base_seed,
                                              fixed=fixed, version=__version__))
    parameters = ps.psa_parameters(sources)
    err.print(f"psa: {sets} parameter sets x {len(sources)} scenario{'s' if len(sources) > 1 else ''} x "
              f"{replications} replications, {len(parameters)} uncertain input{'s' if len(parameters) != 1 else ''}, "
              f"seed {base_seed}", markup=False, highlight=False)

    def told(to_run: int, finished: int) -> None:
        if finished:
            err.print(f"resuming: {finished} of {to_run + finished} runs already finished in {store.dir}",
                      markup=False, highlight=False)

    try:
        with executor_for(jobs) as (executor, workers), _progress("psa", points) as bars:
            result = ps.run_psa(sources, sets, replications=replications, seed=base_seed, wtp=grid,
                                fixed=fixed, store=store, resume=resume, executor=executor,
                                workers=workers, progress=bars, engine=engine, on_points=told)
    except StoreError as exc:
        _fail(f"error: {exc}")
        raise
    except ClusterError as exc:
        _fail(f"error: {exc}")
        raise
    except ScenarioError as exc:
        _problems(exc)
        raise
    except BrokenExecutor as exc:  # a worker died, a Dask cluster was lost
        workers_lost(exc, store, "run")
        raise
    except KeyboardInterrupt:
        _interrupted(stop_signal(), store)
        raise

    def fill(tmp: Path) -> dict[str, Any]:
        _write_tables(result, tmp)
        if not no_figures:
            with guard_figures("psa figures", tmp / "figures"):
                _figures(result, tmp / "figures", __version__)
        return _manifest(sources, result, started, points)

    written = write_or_fail(lambda: write_results_dir(
        target, fill, force=force, kind="psa", scenarios=scenario_files, figures=not no_figures),
        on_interrupt=lambda: _interrupted(stop_signal(), store),
        on_written=store.remove)
    store.remove()
    _print(result)
    out.print(f"Wrote {written}/ in {time.perf_counter() - started:.1f} s.", markup=False, highlight=False)


def _default_wtp(scenario: Any) -> list[float]:
    eco = scenario.economics
    if eco is None or not eco.wtp:
        return []
    top = 2.0 * max(eco.wtp)
    return sorted({top * i / 100 for i in range(101)} | {float(w) for w in eco.wtp})


def _interrupted(signum: int, store: Any) -> None:
    code = 128 + signum
    if store is not None and store.dir.exists():
        kept = len(store.finished())
        _fail(f"interrupted: {kept} finished run{'s' if kept != 1 else ''} kept in {store.dir}; "
              "run the same command with --resume to continue", code)
    _fail("interrupted: nothing was written", code)


def _write_tables(result: PsaResult, tmp: Path) -> None:
    import pandas as pd

    from ..outputs.results_dir import write_json

    keys = [p.key for p in result.parameters]
    from ..experiments.psa import EXTRA_OUTCOMES, OUTCOMES

    outcome_cols = [c for c in [*OUTCOMES.values(), *EXTRA_OUTCOMES] if c in result.sets]
    table = result.sets[["set", "scenario", *keys, *outcome_cols, "replications"]].copy()
    if result.economic and len(result.names) > 1:
        for label, column in (("cost", OUTCOMES["cost"]), ("qalys", OUTCOMES["qalys"])):
            ref = table[table["scenario"] == result.names[0]].set_index("set")[column]
            table[f"incremental_{label}"] = table[column].to_numpy() - ref.reindex(table["set"]).to_numpy()
    table.to_csv(tmp / "psa_sets.csv", index=False)
    rows = []
    for p in result.parameters:
        for s, item in sorted(p.items.items()):
            drawn = result.sets.loc[result.sets["scenario_index"] == s, p.key].to_numpy(dtype=float)
            rows.append({"parameter": p.key, "scenario": result.names[s], "path": item.path,
                         "distribution": item.distribution.describe(),
                         "bounds": "" if item.bounds is None else f"[{item.bounds[0]:g}, {item.bounds[1]:g}]",
                         "mean": item.distribution.mean(), "sd": item.distribution.sd(),
                         "drawn_mean": float(drawn.mean()), "drawn_sd": float(drawn.std(ddof=1)) if len(drawn) > 1 else 0.0})
    pd.DataFrame(rows, columns=["parameter", "scenario", "path", "distribution", "bounds", "mean", "sd",
                                "drawn_mean", "drawn_sd"]).to_csv(tmp / "psa_parameters.csv", index=False)
    if result.summary is not None:
        result.summary.to_csv(tmp / "psa_summary.csv", index=False)
    if result.ceac is not None:
        result.ceac.to_csv(tmp / "ceac.csv", index=False)
    if result.evpi is not None:
        result.evpi.to_csv(tmp / "evpi.csv", index=False)
    if result.evppi is not None:
        result.evppi.to_csv(tmp / "evppi.csv", index=False)
    write_json(tmp / "psa.json", {
        "scenarios": result.names, "comparator": result.names[0], "sets": result.n_sets,
        "replications": result.replications, "seed": result.seed, "wtp": [float(w) for w in result.wtp],
        "parameters": [p.key for p in result.parameters], "engines": result.extra.get("engines", {}),
        "outcomes": {k: v for k, v in OUTCOMES.items()},
        "evppi_method": "Strong & Oakley 2014 single-parameter regression: penalised cubic regression "
                        "spline (up to 10 knots at quantiles, ridge penalty chosen by GCV) of the "
                        "incremental cost and QALYs on each parameter",
        "population": "EVPI per year = EVPI per patient x expected referrals a year of the first "
                      "scenario's arrivals (undiscounted, one year's patients)",
    })


def _figure_wtp(result: PsaResult) -> list[float]:
    eco = result.scenarios[0].economics
    chosen = [float(w) for w in (eco.wtp if eco is not None else [])]
    if not chosen and len(result.wtp):
        evpi = result.evpi
        chosen = [float(evpi["wtp"].iloc[int(evpi["evpi_per_year"].to_numpy().argmax())])] if evpi is not None else []
    return [w for w in chosen if len(result.wtp) == 0 or w <= float(result.wtp.max())][:3]


def _figures(result: PsaResult, directory: Path, version: str) -> None:
    import numpy as np

    from ..outputs.figures import save_figure
    from ..outputs.figures import psa as pf

    names = result.names
    currency = result.scenarios[0].currency
    # The scenarios are named in the figures themselves; the footer says how they were run.
    footer = (f"{result.n_sets:,} parameter sets x {result.replications} replications per scenario "
              f"· seed {result.seed}: the same virtual patients in every set and scenario · v2vsim {version}")

    def save(fig: Any, stem: str) -> None:
        save_figure(fig, directory, stem)
        fig.clear()

    if not result.economic or len(names) < 2 or result.ceac is None:
        return
    chosen = _figure_wtp(result)
    save(pf.ce_plane_figure(result.sets, names, currency=currency, wtp=chosen, footer=footer), "ce_plane")
    save(pf.ceac_figure(result.ceac, names, currency=currency, footer=footer), "ceac")
    if result.evpi is not None:
        save(pf.evpi_figure(result.evpi, currency=currency, footer=footer), "evpi")
    if result.evppi is not None and len(result.evppi):
        evppi_wtp = [w for w in chosen if np.isclose(result.wtp, w).any()] if chosen else []
        save(pf.evppi_figure(result.evppi, currency=currency, wtp=evppi_wtp, evpi=result.evpi, footer=footer), "evppi")


def _manifest(sources: list[Any], result: PsaResult, started: float, points: int) -> dict[str, Any]:
    from ..outputs.results_dir import provenance, sha256_file

    return {
        **provenance("psa", ["v2vsim", *sys.argv[1:]]),
        "scenario_names": result.names,
        "scenario_files": [str(s.path) for s in sources],
        "scenario_sha256": [sha256_file(s.path) for s in sources],
        "seed": result.seed,
        "sets": result.n_sets,
        "replications": result.replications,
        "runs": points,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def _print(result: PsaResult) -> None:
    import numpy as np
    from rich.table import Table

    currency = result.scenarios[0].currency
    if result.summary is None:
        grid = Table(title=f"PSA of {result.names[0]} — {result.n_sets} parameter sets (means over sets)",
                     title_justify="left")
        grid.add_column("Outcome")
        grid.add_column("Mean", justify="right")
        grid.add_column("2.5% – 97.5%", justify="right")
        for column in ("infused_fraction", "died", "cost_per_referred", "life_years_per_referred"):
            if column in result.sets:
                v = result.sets[column].to_numpy(dtype=float)
                grid.add_row(column, f"{np.nanmean(v):,.4g}",
                             f"{np.nanpercentile(v, 2.5):,.4g} – {np.nanpercentile(v, 97.5):,.4g}")
        print_table(grid)
        return
    grid = Table(title=f"PSA — {result.n_sets} parameter sets x {result.replications} replications, "
                       f"against {result.names[0]} (per referred patient, discounted; 2.5–97.5% of sets)",
                 title_justify="left")
    for column in ("Scenario", f"Cost ({currency})", "QALYs", f"Incr. cost ({currency})", "Incr. QALYs", "Verdict"):
        grid.add_column(column, justify="left" if column in ("Scenario", "Verdict") else "right")
    for row in result.summary.to_dict(orient="records"):
        first = row["scenario"] == result.names[0]
        grid.add_row(
            row["scenario"], f"{row['cost_mean']:,.0f}", f"{row['qalys_mean']:.3f}",
            "" if first else f"{row['incremental_cost_mean']:,.0f} ({row['incremental_cost_p2_5']:,.0f} – "
                             f"{row['incremental_cost_p97_5']:,.0f})",
            "" if first else f"{row['incremental_qalys_mean']:.3f} ({row['incremental_qalys_p2_5']:.3f} – "
                             f"{row['incremental_qalys_p97_5']:.3f})",
            "comparator" if first else str(row["dominance"]))
    print_table(grid)
    if result.ceac is not None and result.evpi is not None:
        chosen = _figure_wtp(result) or [float(result.wtp[len(result.wtp) // 2])]
        table = Table(title="At the thresholds", title_justify="left")
        table.add_column(f"WTP ({currency}/QALY)", justify="right")
        for name in result.names:
            table.add_column(f"P(CE) {name}", justify="right")
        table.add_column("Best (expected NMB)")
        table.add_column(f"EVPI/patient ({currency})", justify="right")
        table.add_column(f"EVPI/year ({currency})", justify="right")
        for w in chosen:
            rows = result.ceac[np.isclose(result.ceac["wtp"], w)]
            ev = result.evpi[np.isclose(result.evpi["wtp"], w)]
            if not len(rows) or not len(ev):
                continue
            best = rows.loc[rows["on_frontier"], "scenario"]
            table.add_row(f"{w:,.0f}", *[f"{100 * p:.1f}%" for p in rows["probability_cost_effective"]],
                          str(best.iloc[0]) if len(best) else "", f"{ev['evpi_per_patient'].iloc[0]:,.0f}",
                          f"{ev['evpi_per_year'].iloc[0]:,.0f}")
        print_table(table)

