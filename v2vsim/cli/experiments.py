"""The ``sweep``, ``sensitivity`` and ``capacity`` commands: thin Typer wrappers over
:mod:`v2vsim.experiments`.

Exit status as for ``run``: 2 for bad input, 130 (Ctrl-C) or 143 (SIGTERM) when interrupted, and
``capacity`` exits 1 when no slot count in the range meets every target.

One piece over 500 lines: the three commands share their options, the handling of interruption
(SIGTERM like Ctrl-C, finished points kept for ``--resume``), the output directory and manifest of
an experiment, and the checks of fixed overrides and total size; split apart, those would move
to a module that only these commands use.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from .common import (
    Engine,
    Jobs,
    Seed,
    check_engine_cli,
    check_target_cli,
    write_or_fail,
    check_large,
    _fail,
    _precision,
    _problems,
    _progress,
    _slug,
    _source,
    err,
    out,
    print_table,
    result_name,
    stop_signal,
    workers_lost,
)

if TYPE_CHECKING:  # the library is imported in the commands that use it (see .common)
    import pandas as pd

    from .. import experiments as ex
    from ..scenario import Scenario

__all__ = ["ParamCommand", "capacity", "sensitivity", "sweep"]

# --------------------------------------------------------------------------- shared by the experiment commands


class _Stopped:
    @property
    def signum(self) -> int:
        return stop_signal()


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[_Stopped]:
    """The signal a stopped command stopped on: SIGTERM raises KeyboardInterrupt like Ctrl-C
    (:mod:`.stopping`), so a batch system's kill stops the run as cleanly
    (finished points are kept) and exits 143."""
    yield _Stopped()


def _manifest(kind: str, source: ex.ScenarioSource, seed: int, started: float, **extra: Any) -> dict[str, Any]:
    from ..outputs.results_dir import provenance, sha256_file

    return {
        **provenance(kind, ["v2vsim", *sys.argv[1:]]),
        "scenario_name": source.base.name,
        "scenario_file": str(source.path),
        "scenario_sha256": sha256_file(source.path),
        "seed": seed,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "platform": f"{platform.system()} {platform.machine()}",
        **extra,
    }


def _save(fig: Any, directory: Path, stem: str) -> None:
    from ..outputs.figures import save_figure

    save_figure(fig, directory, stem)
    fig.clear()


def _fixed_and_check(source: ex.ScenarioSource, sets: Sequence[str]) -> list[tuple[str, Any]]:
    from .. import experiments as ex
    from ..scenario import ScenarioError

    try:
        fixed = ex.parse_sets(sets)
        source.variant(fixed)
    except ScenarioError as exc:
        _problems(exc)
        raise
    return fixed


def _check_total(points: Sequence[ex.Point], precision: ex.Precision | None, allow_large: bool) -> None:
    """Every point's replications (with --precision, the most it may run) x its referrals."""
    per = [p.scenario.expected_referrals() for p in points]
    reps = [precision.max_replications if precision else p.replications for p in points]
    total = sum(r * k for r, k in zip(per, reps))
    shown = (f"up to {max(reps):,}" if precision else f"{reps[0]:,}" if len(set(reps)) == 1
             else f"{min(reps):,} to {max(reps):,}")
    check_large(total, f"{len(points):,} point{'s' if len(points) != 1 else ''} x {shown} replications "
                f"x about {sum(per) / max(len(per), 1):,.0f} referrals per replication on average",
                allow_large)


def _target_dir(out_dir: Path | None, scenario_file: Path, suffix: str, force: bool, *,
                kind: str | None = None, figures: bool | None = None, replications: int = 0) -> Path:
    """``--out``, or ``results/<file stem>-<suffix>`` (``results/local-sweep``); exit 2 if it
    cannot or must not be written (:func:`.common.check_target_cli`: ``kind`` is the command,
    ``replications`` in all size the free-space check); its lock is then held."""
    from ..outputs.results_dir import estimated_bytes

    target = out_dir or Path("results") / result_name([scenario_file], suffix=f"-{suffix}")
    check_target_cli(target, force, kind=kind, scenarios=[scenario_file] if kind else None,
                     figures=figures, need_bytes=estimated_bytes(0, 2 * replications, figures=bool(figures)))
    return target


def _interrupted(stopped: _Stopped, store: ex.PointStore | None) -> None:
    code = 128 + int(stopped.signum)
    if store is not None and store.dir.exists():
        kept = len(store.finished())
        _fail(f"interrupted: {kept} finished point{'s' if kept != 1 else ''} kept in {store.dir}; "
              "run the same command with --resume to continue", code)
    _fail("interrupted: nothing was written", code)


def _mean_ci(row: pd.Series, metric: str, currency: str) -> str:
    from ..metrics import format_value, metric_label

    _, unit = metric_label(metric, currency)
    return (f"{format_value(row['mean'], unit)} ({format_value(row['ci_low'], unit)} – "
            f"{format_value(row['ci_high'], unit)})")


Replications = Annotated[Optional[int], typer.Option(
    "--replications", "-n", min=2,
    help="Replications per point (default: the scenario's); with --precision, the most to run (default 1000).")]
Precision = Annotated[Optional[float], typer.Option(
    "--precision", min=0.0001, max=0.9999,
    help="Add replications in batches of 10 (from 10) until the 95% CI half-width of "
         "infused_fraction, vein_to_vein_median and queue_wait_mean is within this fraction of the mean.")]
Cluster = Annotated[Optional[str], typer.Option(
    "--cluster", metavar="tcp://HOST:PORT", help="Run on this Dask scheduler's workers (same results).")]
Sets = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="PATH=VALUE", help="Override a scenario value, e.g. --set sites.hkib.slots=2 (repeatable).")]
Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="Results directory (default: results/<file name without .yaml>-<command>, e.g. results/local-sweep, results/local-sensitivity-oat, results/local-capacity-hkib).")]
Force = Annotated[bool, typer.Option("--force", help="Replace an output directory that v2vsim did not write, or that holds other results (another command's or scenario's, or figures a --no-figures run would delete).")]
NoFigures = Annotated[bool, typer.Option("--no-figures", help="Skip the figures.")]
AllowLarge = Annotated[bool, typer.Option("--allow-large", help="Allow runs larger than run's limit on referrals in all.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from DIR.partial without recomputing its finished points.")]

_KEY_METRICS = ("infused_fraction", "queue_wait_mean", "vein_to_vein_median", "died_per_100_referred",
                "cost_per_infused")


def _sweep_metrics(scenario: Scenario) -> list[str]:
    return list(_KEY_METRICS[:4]) + [f"utilization_{s}" for s in list(scenario.sites)[:1]] + ["cost_per_infused"]


# --------------------------------------------------------------------------- sweep


def sweep(
    scenario_file: Annotated[Path, typer.Argument(metavar="SCENARIO", help="Scenario YAML file.")],
    sets: Annotated[list[str], typer.Option(
        "--set", metavar="PATH=V1,V2,...",
        help="A parameter and its values (grid) or PATH=LOW:HIGH (--design lhs); a single value "
             "is a fixed override for every point. Repeatable.")],
    design: Annotated[str, typer.Option("--design", help="grid (every combination) or lhs (Latin hypercube).")] = "grid",
    samples: Annotated[int, typer.Option("--samples", min=1, help="Points of the lhs design.")] = 20,
    replications: Replications = None,
    seed: Seed = None,
    precision: Precision = None,
    jobs: Jobs = None,
    cluster: Cluster = None,
    out_dir: Out = None,
    resume: Resume = False,
    force: Force = False,
    no_figures: NoFigures = False,
    allow_large: AllowLarge = False,
    engine: Engine = "auto",
) -> None:
    """Run SCENARIO at every point of a grid (or Latin hypercube) of parameter values, with
    the same seeds at every point, and write a tidy table of every metric with its CI.

    Examples:

    \b
      v2vsim sweep scenarios/local.yaml --set sites.hkib.slots=1,2,3 -n 50
      v2vsim sweep scenarios/local.yaml --set sites.hkib.slots=1,2 --set arrivals.rate_per_year=20,30,40
      v2vsim sweep scenarios/local.yaml --design lhs --samples 40 --set arrivals.rate_per_year=20:40
    """
    import pandas as pd

    from .._version import __version__
    from .. import experiments as ex
    from ..engine.distributed import ClusterError
    from ..outputs.results_dir import guard_figures, write_json, write_results_dir
    from ..scenario import ScenarioError, scenario_to_yaml

    started = time.perf_counter()
    if design not in ("grid", "lhs"):
        _fail(f"error: --design must be grid or lhs, not {design!r}")
    source = _source(scenario_file)
    engine = check_engine_cli(engine, [source.base])
    base_seed = source.base.seed if seed is None else seed
    fixed_text: list[str] = []
    parameters: list[tuple[str, list[Any]]] = []
    ranges: list[tuple[str, Any, Any]] = []
    try:
        for text in sets:
            path, raw = ex.parse_assignment(text)
            if path in [p for p, _ in parameters] + [p for p, _, _ in ranges]:
                _fail(f"error: --set {path} is given twice")
            if design == "lhs":
                bounds = ex.parse_range(path, raw)
                if bounds is None:
                    fixed_text.append(text)
                else:
                    ranges.append((path, *bounds))
                continue
            values = ex.split_values(raw)
            if len(values) == 1:
                fixed_text.append(text)
            else:
                parameters.append((path, [ex.parse_value(v, path) for v in values]))
    except ScenarioError as exc:
        _problems(exc)
    if not parameters and not ranges:
        _fail("error: nothing to sweep: give at least one --set PATH=V1,V2,... "
              "(or PATH=LOW:HIGH with --design lhs)")
    fixed = _fixed_and_check(source, fixed_text)
    if design == "grid":
        names = [p for p, _ in parameters]
        design_points = ex.grid_points(parameters)
    else:
        names = [p for p, _, _ in ranges]
        design_points = ex.lhs_points(ranges, samples, base_seed)
    prec = _precision(precision, replications)
    try:
        points = ex.make_points(source, design_points, fixed, seed=seed,
                                replications=None if prec else replications, engine=engine)
    except ScenarioError as exc:
        _problems(exc)
        raise
    _check_total(points, prec, allow_large)
    base = points[0].scenario
    total_reps = sum(prec.max_replications if prec else p.replications for p in points)
    target = _target_dir(out_dir, scenario_file, "sweep", force, kind="sweep", figures=not no_figures,
                         replications=total_reps)
    fingerprint = {
        "kind": "sweep", "scenario_sha256": source.sha256(), "fixed": [[p, ex.display_value(v)] for p, v in fixed],
        "parameters": names, "design": design, "samples": samples if design == "lhs" else None,
        "points": [[ex.display_value(p.values[n]) for n in names] for p in points],
        "seeds": sorted({p.seed for p in points}), "replications": [p.replications for p in points],
        "precision": prec.as_dict() if prec else None, "v2vsim": __version__,
    }
    store = ex.PointStore(target, fingerprint)
    err.print(f"sweep: {len(points)} points x "
              + (f"replications to {100 * prec.relative:g}% precision" if prec
                 else f"{points[0].replications} replications")
              + f", seed {base_seed}", markup=False, highlight=False)
    with _stop_on_sigterm() as stopped:
        try:
            if resume and store.dir.is_dir():  # every saved point checked before anything runs
                kept = store.open(resume, {p.index: ex.point_identity(p) for p in points})
                err.print(f"resuming: {len(kept)} of {len(points)} points already finished in {store.dir}",
                          markup=False, highlight=False)
            with ex.executor_for(jobs, cluster) as (executor, workers), _progress("sweep", len(points)) as bars:
                done = ex.run_stored(points, store, resume=resume, executor=executor, workers=workers,
                                     precision=prec, progress=bars)
        except ex.StoreError as exc:
            _fail(f"error: {exc}")
            raise
        except ClusterError as exc:
            _fail(f"error: {exc}")
            raise
        except BrokenExecutor as exc:  # a worker died, a Dask cluster was lost
            workers_lost(exc, store)
            raise
        except KeyboardInterrupt:
            _interrupted(stopped, store)
            raise
        tables = {i: t for i, (t, _) in done.items()}
        table = ex.sweep_table(points, names, tables)
        long = ex.replications_long(points, names, tables)
        point_rows = pd.DataFrame([{"point": p.index, **{n: ex.display_value(p.values[n]) for n in names},
                                    "seed": done[p.index][1]["seed"],
                                    "replications": done[p.index][1]["replications"],
                                    **({"precision_reached": (done[p.index][1]["precision"] or {}).get("reached")}
                                       if prec else {})} for p in points])

        def fill(tmp: Path) -> dict[str, Any]:
            table.to_csv(tmp / "sweep.csv", index=False)
            table.to_parquet(tmp / "sweep.parquet", index=False, engine="pyarrow")
            long.to_parquet(tmp / "replications.parquet", index=False, engine="pyarrow")
            point_rows.to_csv(tmp / "points.csv", index=False)
            (tmp / "scenario.yaml").write_text(scenario_to_yaml(source.variant(fixed), seed=base_seed),
                                               encoding="utf-8")
            write_json(tmp / "sweep.json", {**fingerprint, "scenario_file": str(scenario_file)})
            if not no_figures:
                with guard_figures("sweep figures", tmp / "figures"):
                    _sweep_figures(table, names, design, base, tmp / "figures", base_seed)
            return _manifest("sweep", source, base_seed, started, points=len(points))

        written = write_or_fail(lambda: write_results_dir(
            target, fill, force=force, kind="sweep", scenarios=[scenario_file], figures=not no_figures),
            on_interrupt=lambda: _interrupted(stopped, store), on_written=store.remove)
    store.remove()
    _print_sweep(table, names, base)
    out.print(f"Wrote {written}/ in {time.perf_counter() - started:.1f} s.", markup=False, highlight=False)


def _sweep_figures(table: pd.DataFrame, names: list[str], design: str, scenario: Scenario,
                   directory: Path, seed: int) -> None:
    import pandas as pd

    from .._version import __version__
    from ..outputs.figures import experiments as px
    from ..outputs.figures.display import scenario_display

    n = int(table["n"].max()) if len(table) else 0
    footer = f"{scenario.name} · up to {n} replications per point · seed {seed} · v2vsim {__version__}"
    kw = {"scenario_name": scenario.name, "footer": footer, "currency": scenario.currency,
          "display": scenario_display(scenario)}
    if design == "lhs":
        for metric in ("infused_fraction", "queue_wait_mean"):
            _save(px.sweep_scatter_figure(table, names, metric, **kw), directory, f"scatter_{metric}")
        return
    numeric = [n for n in names if pd.api.types.is_numeric_dtype(table[n])]
    x = numeric[0] if numeric else names[0]
    group = [n for n in names if n != x]
    _save(px.sweep_curves_figure(table, x, _sweep_metrics(scenario), group=group, **kw), directory, "sweep_curves")
    if len(names) == 2:
        for metric in ("infused_fraction", "queue_wait_mean"):
            _save(px.sweep_heatmap_figure(table, x, group[0], metric, **kw), directory, f"heatmap_{metric}")


def _print_sweep(table: pd.DataFrame, names: list[str], scenario: Scenario) -> None:
    from rich.table import Table

    from ..metrics import metric_label

    shown = [m for m in ("infused_fraction", "queue_wait_mean", "vein_to_vein_median") if (table["metric"] == m).any()]
    grid = Table(title=f"{scenario.name} — sweep (mean and 95% CI)", title_justify="left")
    grid.add_column("Point", justify="right")
    for name in names:
        grid.add_column(name)
    for metric in shown:
        grid.add_column(metric_label(metric, scenario.currency)[0])
    rows = table.set_index(["point", "metric"])
    values = table.drop_duplicates("point").set_index("point")[names]
    for point in list(values.index)[:200]:
        cells = [str(point)] + [str(values.at[point, n]) for n in names]
        cells += [_mean_ci(rows.loc[(point, m)], m, scenario.currency) for m in shown]
        grid.add_row(*cells)
    print_table(grid)


# --------------------------------------------------------------------------- sensitivity


class ParamCommand(TyperCommand):
    """Lets ``--param PATH LOW HIGH`` (three words) through Typer, which has no repeatable
    three-value options: the three words are joined into one before parsing."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        joined: list[str] = []
        i = 0
        while i < len(args):
            if args[i] == "--param" and i + 3 < len(args) and not any(a.startswith("--") for a in args[i + 1:i + 4]):
                joined += ["--param", "\x1f".join(args[i + 1:i + 4])]
                i += 4
                continue
            joined.append(args[i])
            i += 1
        return super().parse_args(ctx, joined)


def _split_param(text: str) -> tuple[str, str, str]:
    parts = text.split("\x1f")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    path, sep, raw = text.partition("=")
    low, sep2, high = raw.partition(":")
    if sep and sep2:
        return path, low, high
    _fail(f"error: --param {text.replace(chr(31), ' ')}: expected --param PATH LOW HIGH")
    raise AssertionError


def sensitivity(
    scenario_file: Annotated[Path, typer.Argument(metavar="SCENARIO", help="Scenario YAML file.")],
    params: Annotated[list[str], typer.Option(
        "--param", metavar="PATH LOW HIGH",
        help="A parameter and its range (repeatable); integer bounds give integer values.")],
    method: Annotated[str, typer.Option("--method", help="oat (one at a time, tornado), morris or sobol.")] = "oat",
    metric: Annotated[str, typer.Option("--metric", help="The metric analysed.")] = "infused_fraction",
    replications: Annotated[int, typer.Option("--replications", "-n", min=2, help="Replications per point (same seeds at every point).")] = 50,
    trajectories: Annotated[int, typer.Option("--trajectories", min=2, help="Morris: trajectories (points: trajectories x (parameters + 1)).")] = 10,
    levels: Annotated[int, typer.Option("--levels", min=2, help="Morris: grid levels.")] = 4,
    samples: Annotated[int, typer.Option("--samples", min=2, help="Sobol: base samples N, a power of 2 (points: N x (parameters + 2)).")] = 64,
    sets: Sets = None,
    seed: Seed = None,
    jobs: Jobs = None,
    cluster: Cluster = None,
    out_dir: Out = None,
    resume: Resume = False,
    force: Force = False,
    no_figures: NoFigures = False,
    allow_large: AllowLarge = False,
    engine: Engine = "auto",
) -> None:
    """How much METRIC depends on each --param: one at a time (tornado), Morris screening or
    Sobol indices (SALib), every point with the same seeds.

    Examples:

    \b
      v2vsim sensitivity scenarios/local.yaml --param sites.hkib.slots 1 3 --param arrivals.rate_per_year 20 40
      v2vsim sensitivity scenarios/local.yaml --method morris --metric queue_wait_mean --param arrivals.rate_per_year 20 40 --param sites.hkib.slots 1 3
    """
    from .._version import __version__
    from .. import experiments as ex
    from ..engine.distributed import ClusterError
    from ..outputs.results_dir import guard_figures, write_json, write_results_dir
    from ..scenario import ScenarioError, scenario_to_yaml

    started = time.perf_counter()
    if method not in ("oat", "morris", "sobol"):
        _fail(f"error: --method must be oat, morris or sobol, not {method!r}")
    if method == "sobol" and samples & (samples - 1):
        _fail(f"error: --samples must be a power of 2 for Sobol (e.g. {2 ** round(math.log2(samples))})")
    source = _source(scenario_file)
    engine = check_engine_cli(engine, [source.base])
    known = ex.known_metrics(source.base)
    if metric not in known:
        _fail(f"error: --metric: no such metric '{metric}'{ex._did_you_mean(metric, known)}")
    fixed = _fixed_and_check(source, sets or [])
    base_seed = source.base.seed if seed is None else seed
    try:
        ranges = [ex.parse_param(*_split_param(text)) for text in params]
        if len({p for p, _, _ in ranges}) < len(ranges):
            _fail("error: a --param is given twice")
        for path, low, high in ranges:  # each bound must make a valid scenario
            for value in (low, high):
                source.variant(list(fixed) + [(path, value)])
    except ScenarioError as exc:
        _problems(exc)
        raise
    names = [p for p, _, _ in ranges]
    n_points = {"oat": 1 + 2 * len(ranges), "morris": trajectories * (len(ranges) + 1),
                "sobol": samples * (len(ranges) + 2)}[method]
    # Referrals per replication at the base (with --set) and at each --param bound alone: OAT
    # runs exactly these points; Morris and Sobol points are counted at the largest of them.
    at_bounds = [source.variant(list(fixed) + [(path, value)]).expected_referrals()
                 for path, low, high in ranges for value in (low, high)]
    at_base = source.variant(fixed).expected_referrals()
    if method == "oat":
        total = replications * (at_base + sum(at_bounds))
        how = (f"{n_points} points x {replications:,} replications x about "
               f"{total / (n_points * replications):,.0f} referrals per replication on average")
    else:
        most = max([at_base, *at_bounds])
        total = n_points * replications * most
        how = (f"{n_points:,} points x {replications:,} replications x about {most:,.0f} referrals "
               "per replication, the most at the base or at any one --param bound")
    check_large(total, how, allow_large)
    target = _target_dir(out_dir, scenario_file, f"sensitivity-{method}", force, kind="sensitivity",
                         figures=not no_figures)
    fingerprint = {"kind": "sensitivity", "method": method, "scenario_sha256": source.sha256(),
                   "fixed": [[p, ex.display_value(v)] for p, v in fixed], "params": [list(r) for r in ranges],
                   "replications": replications, "seed": base_seed, "trajectories": trajectories,
                   "levels": levels, "samples": samples, "v2vsim": __version__}
    store = ex.PointStore(target, fingerprint)
    err.print(f"sensitivity ({method}): {n_points} points x {replications} replications, seed {base_seed}",
              markup=False, highlight=False)
    with _stop_on_sigterm() as stopped:
        try:
            with _progress(f"sensitivity ({method})", n_points) as bars:
                result, points, tables = ex.sensitivity_analysis(
                    source, ranges, method, metric, fixed=fixed, replications=replications, seed=base_seed,
                    trajectories=trajectories, levels=levels, samples=samples, jobs=jobs, cluster=cluster,
                    progress=bars, store=store, resume=resume, engine=engine)
        except ex.StoreError as exc:
            _fail(f"error: {exc}")
            raise
        except (ClusterError, ValueError) as exc:
            _fail(f"error: {exc}")
            raise
        except ScenarioError as exc:
            _problems(exc)
            raise
        except BrokenExecutor as exc:  # a worker died, a Dask cluster was lost
            workers_lost(exc, store)
            raise
        except KeyboardInterrupt:
            _interrupted(stopped, store)
            raise
        table = ex.sweep_table(points, names, tables)
        # Sobol indices from too few base samples can be impossible (below 0, S1 above ST):
        # said on the figure and on the console, with the base samples that would do.
        sobol_warnings: list[str] = []
        if method == "sobol":
            from ..experiments.sensitivity import sobol_diagnostics

            sobol_warnings = sobol_diagnostics(result.indices, samples).lines()

        def fill(tmp: Path) -> dict[str, Any]:
            result.indices.to_csv(tmp / "indices.csv", index=False)
            result.points.to_csv(tmp / "points.csv", index=False)
            table.to_parquet(tmp / "summary.parquet", index=False, engine="pyarrow")
            (tmp / "scenario.yaml").write_text(scenario_to_yaml(source.variant(fixed), seed=base_seed,
                                                                replications=replications), encoding="utf-8")
            write_json(tmp / "sensitivity.json", {**fingerprint, "metric": metric, "scenario_file": str(scenario_file),
                                                  "indices": result.indices.to_dict(orient="records")})
            if not no_figures:
                from ..outputs.figures import experiments as px
                from ..outputs.figures.display import scenario_display

                footer = (f"{source.base.name} · {replications} replications per point · seed {base_seed} · "
                          f"v2vsim {__version__}")
                kw = {"scenario_name": source.base.name, "footer": footer, "currency": source.base.currency,
                      "display": scenario_display(source.base)}
                draw = {"oat": (px.tornado_figure, "tornado"), "morris": (px.morris_figure, "morris"),
                        "sobol": (px.sobol_figure, "sobol")}[method]
                notes = {"warnings": sobol_warnings} if sobol_warnings else {}
                with guard_figures(draw[1], tmp / "figures"):
                    _save(draw[0](result.indices, metric, **kw, **notes), tmp / "figures", draw[1])
            return _manifest("sensitivity", source, base_seed, started, method=method, metric=metric,
                             points=len(points), replications=replications)

        written = write_or_fail(lambda: write_results_dir(
            target, fill, force=force, kind="sensitivity", scenarios=[scenario_file], figures=not no_figures),
            on_interrupt=lambda: _interrupted(stopped, store), on_written=store.remove)
    store.remove()
    _print_indices(result, source.base)
    for line in sobol_warnings:
        err.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"Wrote {written}/ in {time.perf_counter() - started:.1f} s.", markup=False, highlight=False)


def _print_indices(result: ex.SensitivityResult, scenario: Scenario) -> None:
    from rich.table import Table

    grid = Table(title=f"{scenario.name} — sensitivity of {result.metric} ({result.method})", title_justify="left")
    data = result.indices
    columns = {"oat": ["parameter", "low", "high", "low_mean", "base_mean", "high_mean", "swing"],
               "morris": ["parameter", "mu_star", "mu_star_conf", "sigma", "mu"],
               "sobol": ["parameter", "S1", "S1_conf", "ST", "ST_conf"]}[result.method]
    for column in columns:
        grid.add_column(column, justify="left" if column == "parameter" else "right")
    for row in data.itertuples(index=False):
        grid.add_row(*[str(getattr(row, c)) if c == "parameter" else f"{getattr(row, c):.4g}" for c in columns])
    print_table(grid)


# --------------------------------------------------------------------------- capacity


def capacity(
    scenario_file: Annotated[Path, typer.Argument(metavar="SCENARIO", help="Scenario YAML file.")],
    site: Annotated[str, typer.Option("--site", help="The site whose slots are searched (a key of sites).")],
    targets: Annotated[list[str], typer.Option(
        "--target", metavar="METRIC<=VALUE",
        help="A target met with 95% confidence (for <=, the CI's upper bound; for >=, its lower bound). Repeatable.")],
    min_slots: Annotated[int, typer.Option("--min-slots", min=1, help="Smallest slot count tried.")] = 1,
    max_slots: Annotated[int, typer.Option("--max-slots", min=1, help="Largest slot count tried.")] = 50,
    search: Annotated[str, typer.Option(
        "--search", help="linear (1, 2, 3, ...: no assumption) or bisect (doubling then bisection: "
                         "assumes more slots never make a target worse).")] = "linear",
    beyond: Annotated[int, typer.Option("--beyond", min=0, help="Slot counts run past the answer to show the curve.")] = 1,
    replications: Replications = None,
    precision: Precision = None,
    sets: Sets = None,
    seed: Seed = None,
    jobs: Jobs = None,
    cluster: Cluster = None,
    out_dir: Out = None,
    force: Force = False,
    no_figures: NoFigures = False,
    allow_large: AllowLarge = False,
    engine: Engine = "auto",
) -> None:
    """The smallest slot count at SITE that meets every --target with 95% confidence.

    Examples:

    \b
      v2vsim capacity scenarios/local.yaml --site hkib --target "queue_wait_mean<=7"
      v2vsim capacity scenarios/local.yaml --site hkib --target "queue_wait_mean<=7" --target "infused_fraction>=0.85" --search bisect
    """
    from .._version import __version__
    from .. import experiments as ex
    from ..engine.distributed import ClusterError
    from ..outputs.results_dir import guard_figures, write_json, write_results_dir
    from ..scenario import ScenarioError, scenario_to_yaml

    started = time.perf_counter()
    if search not in ("linear", "bisect"):
        _fail(f"error: --search must be linear or bisect, not {search!r}")
    if max_slots < min_slots:
        _fail("error: --max-slots must be at least --min-slots")
    source = _source(scenario_file)
    engine = check_engine_cli(engine, [source.base])
    fixed = _fixed_and_check(source, sets or [])
    base = source.variant(fixed)
    if site not in base.sites:
        _fail(f"error: --site: no such site '{site}'{ex._did_you_mean(site, list(base.sites))}")
    try:
        parsed = [ex.parse_target(t, ex.known_metrics(base)) for t in targets]
    except ValueError as exc:
        _fail(f"error: {exc}")
        raise
    prec = _precision(precision, replications)
    base_seed = base.seed if seed is None else seed
    from ..experiments.capacity import most_counts_searched

    counts = most_counts_searched(min_slots, max_slots, search, beyond)
    per_count = prec.max_replications if prec else replications or base.replications
    per = base.expected_referrals()  # the slot count does not change the referrals
    check_large(counts * per_count * per,
                f"at most {counts:,} slot count{'s' if counts != 1 else ''} of {min_slots} to "
                f"{max_slots} by {search} search x {'up to ' if prec else ''}{per_count:,} replications "
                f"x about {per:,.0f} referrals per replication", allow_large)
    target = _target_dir(out_dir, scenario_file, f"capacity-{_slug(site, 40)}", force, kind="capacity",
                         figures=not no_figures)
    err.print(f"capacity of {site}: {', '.join(map(str, parsed))} with 95% confidence; {search} search from "
              f"{min_slots}, " + (f"replications to {100 * prec.relative:g}% precision" if prec
                                   else f"{replications or base.replications} replications per count"),
              markup=False, highlight=False)
    with _stop_on_sigterm() as stopped:
        try:
            with _progress(f"capacity of {site}", 1) as bars:
                result = ex.capacity_search(source, site, parsed, fixed=fixed, min_slots=min_slots,
                                            max_slots=max_slots, search=search, beyond=beyond,
                                            replications=None if prec else replications, seed=base_seed,
                                            precision=prec, jobs=jobs, cluster=cluster, progress=bars,
                                            engine=engine)
        except ClusterError as exc:
            _fail(f"error: {exc}")
            raise
        except ScenarioError as exc:
            _problems(exc)
            raise
        except KeyboardInterrupt:
            _interrupted(stopped, None)
            raise
        answer = result.answer

        def fill(tmp: Path) -> dict[str, Any]:
            result.table.to_csv(tmp / "capacity.csv", index=False)
            result.checks.to_csv(tmp / "search.csv", index=False)
            write_json(tmp / "capacity.json", {
                "site": site, "targets": [str(t) for t in parsed], "answer": answer, "search": search,
                "assumption": ("none: every count from min_slots up to the answer was run" if search == "linear"
                               else "more slots never make a target worse (monotone), so bisection finds the smallest"),
                "confidence": 0.95, "min_slots": min_slots, "max_slots": max_slots, "seed": base_seed,
                "replications": replications if not prec else None,
                "precision": prec.as_dict() if prec else None, "scenario_file": str(scenario_file),
            })
            (tmp / "scenario.yaml").write_text(scenario_to_yaml(base, seed=base_seed), encoding="utf-8")
            if not no_figures:
                from ..outputs.figures import experiments as px
                from ..outputs.figures.display import scenario_display

                reps = (f"replications to {100 * prec.relative:g}% precision" if prec
                        else f"{replications or base.replications} replications per count")
                footer = f"{base.name} · {reps} · seed {base_seed} · 95% confidence · v2vsim {__version__}"
                with guard_figures(f"capacity_{_slug(site)}", tmp / "figures"):
                    _save(px.capacity_figure(result.table, parsed, site, answer, scenario_name=base.name,
                                             footer=footer, currency=base.currency,
                                             display=scenario_display(base)), tmp / "figures",
                          f"capacity_{_slug(site)}")
            return _manifest("capacity", source, base_seed, started, site=site, answer=answer)

        written = write_or_fail(lambda: write_results_dir(
            target, fill, force=force, kind="capacity", scenarios=[scenario_file], figures=not no_figures),
            on_interrupt=lambda: _interrupted(stopped, None))
    _print_capacity(result, base)
    if answer is None:
        out.print(f"No slot count from {min_slots} to {max_slots} meets every target with 95% confidence.",
                  markup=False, highlight=False)
    else:
        out.print(f"Answer: {answer} slot{'s' if answer != 1 else ''} at {site} meet{'s' if answer == 1 else ''} "
                  f"every target with 95% confidence ({search} search).", markup=False, highlight=False)
    out.print(f"Wrote {written}/ in {time.perf_counter() - started:.1f} s.", markup=False, highlight=False)
    if answer is None:
        raise typer.Exit(1)


def _print_capacity(result: ex.CapacityResult, scenario: Scenario) -> None:
    from rich.table import Table

    from ..metrics import metric_label

    grid = Table(title=f"{scenario.name} — capacity of {result.site} (mean and 95% CI)", title_justify="left")
    grid.add_column("Slots", justify="right")
    shown = list(dict.fromkeys([t.metric for t in result.targets] + [f"utilization_{result.site}"]))
    for metric in shown:
        grid.add_column(metric_label(metric, scenario.currency)[0])
    grid.add_column("Meets every target")
    rows = result.table.set_index(["slots", "metric"])
    for check in result.checks.itertuples(index=False):
        cells = [str(check.slots)] + [_mean_ci(rows.loc[(check.slots, m)], m, scenario.currency) for m in shown]
        grid.add_row(*cells, "yes" if check.meets_all else "no")
    print_table(grid)
