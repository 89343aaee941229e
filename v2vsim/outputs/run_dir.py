"""A run's results directory: what ``v2vsim run`` writes and ``Results.save`` writes.

The contract's tables (:func:`~.results_dir.write_tables`), the figures, the budget impact of a
scenario with economics and the manifest, written atomically by
:func:`~.results_dir.write_results_dir`. Like the rest of :mod:`v2vsim.outputs` it reads the
result frames (typed by shape, ``Any``) and never imports the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .._version import __version__
from .comparison_files import write_budget
from .results_dir import guard_figures, manifest_fields, write_results_dir, write_tables

__all__ = ["run_footer", "write_budget_files", "write_run_dir", "write_warmup_figure"]


def run_footer(results: Any) -> str:
    """The footer of a run's figures: scenario, replications, seed and version."""
    return (f"{results.scenario.name} · {results.n_replications} replications · "
            f"seed {results.seed} · v2vsim {__version__}")


def write_run_dir(results: Any, out_dir: Path, *, command: Iterable[str], csv: bool = False,
                  figures: bool = True, force: bool = False, scenario_file: Path | None = None,
                  jobs: int = 1, need_bytes: int = 0, warmup_figure: bool = False) -> Path:
    """Write ``results`` into ``out_dir`` atomically and return it; ``command`` is recorded in
    the manifest, ``scenario_file`` (the file as written, comments and all) is copied to
    ``scenario_source.yaml``. Raises :class:`~.results_dir.OutputError` for a target that
    v2vsim did not write, the results of another command or scenario, or (without figures)
    a directory with figures, unless ``force``; figures that fail leave the data files written
    and raise :class:`~.results_dir.FiguresFailed` (see :func:`~.results_dir.write_results_dir`).

    With figures, ``figures/warmup`` (:func:`write_warmup_figure`) is drawn too when asked for
    (``warmup_figure``) or when the scenario has a warm-up; its suggestion goes to the manifest
    (``warmup``) and to ``results.extra["warmup"]``."""
    command = list(command)
    draw_warmup = figures and (warmup_figure or results.scenario.warmup_days > 0)

    def fill(tmp: Path) -> dict[str, Any]:
        write_tables(results, tmp, csv=csv, source=scenario_file)
        if figures:
            from .figures import run_figures

            with guard_figures(f"the figures of {results.scenario.name}", tmp / "figures"):
                run_figures(results.patients, results.site_profile, results.events,
                            results.scenario.name, tmp / "figures", footer=run_footer(results),
                            jobs=jobs, guard=lambda stem: guard_figures(stem, tmp / "figures"),
                            scenario=results.scenario, budget=getattr(results, "budget", None))
        budget = getattr(results, "budget", None)
        if budget is not None and len(budget):
            write_budget_files(results, budget, tmp, figures)
        fields = manifest_fields(results, command, scenario_file)
        if draw_warmup:
            with guard_figures("warmup", tmp / "figures"):
                fields["warmup"] = write_warmup_figure(results, tmp / "figures")
        return fields

    return write_results_dir(Path(out_dir), fill, force=force, kind="run",
                             scenarios=[scenario_file] if scenario_file else None,
                             figures=figures, need_bytes=need_bytes)


def write_warmup_figure(results: Any, directory: Path) -> dict[str, Any]:
    """``warmup`` (:func:`.figures.warmup.warmup_figure`, from every patient, warm-up included)
    in ``directory``; returns its suggestion (also put in ``results.extra["warmup"]``)."""
    from .figures.style import save_figure
    from .figures.warmup import warmup_figure

    sc = results.scenario
    fig, found = warmup_figure(results.patients, sc.name, sc.horizon_days,
                               warmup_days=sc.warmup_days, footer=run_footer(results))
    save_figure(fig, directory, "warmup")
    fig.clear()
    record = {"warmup_days": sc.warmup_days, **found.record(), "text": found.text()}
    results.extra["warmup"] = record
    return record


def write_budget_files(results: Any, budget: pd.DataFrame, directory: Path, figures: bool) -> None:
    """A run's budget impact: ``budget.csv`` (mean cost per calendar year and category, with
    its interval across replications) and, with figures, ``figures/budget_impact``."""
    from ..metrics.budget import budget_summary

    summary = budget_summary(budget, results.replications["replication"].tolist())
    write_budget(summary, directory)
    if figures:
        from .figures.economics import budget_figure
        from .figures.style import save_figure

        with guard_figures("budget_impact", directory / "figures"):
            fig = budget_figure(summary.assign(scenario=results.scenario.name),
                                results.scenario.currency, footer=run_footer(results))
            save_figure(fig, directory / "figures", "budget_impact")
            fig.clear()
