"""The standard figures of one scenario's run, drawn and saved together (``v2vsim run``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd

from ...metrics import SiteDays, counted
from .economics import cost_breakdown_figure
from .outcomes import attrition_funnel_figure, cumulative_incidence_figure
from .sites import site_timeline_figure
from .display import ScenarioDisplay, scenario_display
from .style import draw_figures, save_figure
from .timing import journey_figure, vein_to_vein_figure
from .waitlist import has_waitlist, waitlist_figure

__all__ = ["run_figures"]

#: The patient columns each figure reads: only these go to it (and to a worker drawing it).
PATIENT_COLUMNS = {
    "vein_to_vein": ("replication", "outcome", "vein_to_vein_days", "referral_to_infusion_days"),
    "attrition_funnel": ("replication", "outcome", "apheresis_day", "manufacture_start_day",
                         "release_day"),
    "cumulative_incidence": ("replication", "outcome", "referral_day", "outcome_day"),
    "waitlist": ("replication", "outcome", "outcome_day", "listed_day", "slot_day"),
}


def _draw_and_save(stem: str, frame: Any, scenario_name: str, out_dir: Path,
                   footer: str, journey_relative: bool, display: ScenarioDisplay) -> list[Path]:
    """Build one standard figure, save it and free it (runs in a worker process too)."""
    if stem == "cost_breakdown":
        budget, referred, currency = frame
        fig = cost_breakdown_figure({scenario_name: budget}, {scenario_name: referred}, currency,
                                    footer=footer)
    elif stem == "vein_to_vein":
        fig = vein_to_vein_figure(frame, scenario_name, footer=footer)
    elif stem == "attrition_funnel":
        fig = attrition_funnel_figure(frame, scenario_name, footer=footer)
    elif stem == "cumulative_incidence":
        fig = cumulative_incidence_figure(frame, scenario_name, footer=footer)
    elif stem == "waitlist":
        listed, site_days = frame
        fig = waitlist_figure(listed, site_days, scenario_name, footer=footer, display=display)
    elif stem == "site_utilisation":
        fig = site_timeline_figure(frame, scenario_name, footer=footer, display=display)
    else:
        fig = journey_figure(frame, scenario_name, relative=journey_relative, footer=footer,
                             display=display)
    paths = save_figure(fig, out_dir, stem)
    # Figures made without pyplot are freed once unreferenced; clearing releases the
    # artists now, which matters when many scenarios are drawn in one process.
    fig.clear()
    return paths


def run_figures(
    patients: pd.DataFrame,
    site_days: pd.DataFrame | SiteDays,
    events: pd.DataFrame,
    scenario_name: str,
    out_dir: Path,
    footer: str = "",
    *,
    journey_relative: bool = True,
    jobs: int = 1,
    guard: Callable[[str], AbstractContextManager[None]] | None = None,
    scenario: Any | None = None,
    budget: pd.DataFrame | None = None,
) -> list[Path]:
    """Draw and save all standard figures of one scenario (PNG at 200 dpi and SVG).

    Writes ``vein_to_vein``, ``attrition_funnel``, ``cumulative_incidence``,
    ``site_utilisation`` and ``journey``; returns the written paths. The journey figure is
    drawn in days since referral by default: traced patients are referred over months or
    years, so on the simulation-day axis each month-long journey would be a sliver (slot
    contention over calendar time is what ``site_utilisation`` shows). With ``jobs > 1``
    the figures are drawn in that many worker processes (same files). ``site_days`` is
    ``Results.site_days`` or the arrays it is built from (``Results.site_profile``). With
    ``guard`` (see :func:`.style.draw_figures`) a figure that fails leaves the others drawn.
    With ``scenario`` (the :class:`~v2vsim.scenario.Scenario` run), sites and cohorts are
    named by their ``label`` and simulation days are shown as dates from its ``start_date``
    (:func:`.style.scenario_display`); without it, by their keys and in days. With a
    ``budget`` that has rows (``Results.budget``: a scenario with an economics section),
    ``cost_breakdown`` is drawn too: the cost per referred patient by category
    (:func:`.economics.cost_breakdown_figure`, in the scenario's currency). Where a waitlist
    forms (:func:`.waitlist.has_waitlist`: a counted patient listed for a slot waited for it or
    never got one), ``waitlist`` is drawn too (:func:`.waitlist.waitlist_figure`).
    """
    display = scenario_display(scenario)

    shown = counted(patients)  # not the warm-up's patients

    def columns(stem: str) -> pd.DataFrame:
        return shown[[c for c in PATIENT_COLUMNS[stem] if c in shown.columns]]

    work: list[tuple[str, Any]] = [
        ("journey", events),
        ("vein_to_vein", columns("vein_to_vein")),
        ("site_utilisation", site_days),
        ("attrition_funnel", columns("attrition_funnel")),
        ("cumulative_incidence", columns("cumulative_incidence")),
    ]
    if has_waitlist(shown):
        work.append(("waitlist", (columns("waitlist"), site_days)))
    if budget is not None and len(budget):
        referred = patients.groupby("replication").size()  # every patient, as the budget
        work.append(("cost_breakdown", (budget, referred, getattr(scenario, "currency", ""))))
    results = draw_figures(_draw_and_save, [(stem, (frame, scenario_name, Path(out_dir), footer,
                                                     journey_relative, display))
                                            for stem, frame in work],
                           out_dir, jobs=jobs, guard=guard)
    order = ["vein_to_vein", "attrition_funnel", "cumulative_incidence", "site_utilisation",
             "waitlist", "journey", "cost_breakdown"]
    return sorted((p for paths in results for p in paths),
                  key=lambda p: (order.index(p.stem), p.suffix))
