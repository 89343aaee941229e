"""Figures of simulation results: DataFrames in, matplotlib Figures out.

This package reads the result frames (``patients``, ``site_days``, ``events``, ``replications``
and the tables of sweeps, sensitivity analyses and capacity searches) and never imports the
model, so it can run on saved results, in notebooks and in worker processes. Figures are built
from :class:`matplotlib.figure.Figure` directly rather than through ``pyplot``: there is no global
figure registry to leak memory or to clash between threads, and no display backend is needed.

Every figure uses one house style (:mod:`.style`: :data:`STYLE`, applied with
:func:`house_style`), the Okabe–Ito colour-blind-safe palette, a fixed colour per outcome
(:data:`OUTCOME_COLORS`) and an optional footer line supplied by the caller (see
:func:`footer_text`). The helpers :func:`new_figure`, :func:`draw_band`, :func:`side_legend` and
:func:`scenario_colors` are public so that comparison figures between scenarios look the same as
the single-scenario ones.

Modules, one kind of figure each:

- :mod:`.style`: palette, rc settings, footers, figure scaffolding, bands, saving.
- :mod:`.display`: display labels of sites, steps and cohorts (from the scenario's ``label``
  fields), simulation days as dates from its start date, thousands separators.
- :mod:`.timing`, :mod:`.outcomes`, :mod:`.sites`: the figures of one scenario (vein-to-vein
  time and patient journeys; attrition funnel and cumulative incidence; site use month by
  month), drawn and saved together by :func:`run_figures` (:mod:`.run`). Vein-to-vein curves
  average each replication's quantiles, so they and their legends give the summary tables'
  median and P90; bands over replications are the 95% CI of the mean.
- :mod:`.paired`, :mod:`.compare`: comparison figures between scenarios, baseline first, with
  differences paired by replication (common random numbers), saved by
  :func:`comparison_figures`.
- :mod:`.economics`: the budget impact by calendar year and the cost breakdown by category.
- :mod:`.experiments`: figures of sweeps, sensitivity analyses and capacity searches.
- :mod:`.validation`: external validation (``v2vsim validation``): predicted against observed
  in published trials, and how the predictions move with the inputs the trials do not report.
"""

from ...scenario import OUTCOMES
from .compare import (
    COMPARISON_FIGURES,
    compare_attrition_figure,
    compare_cost_figure,
    compare_cumulative_incidence_figure,
    compare_outcomes_figure,
    compare_vein_to_vein_figure,
    comparison_figures,
)
from .experiments import (
    capacity_figure,
    morris_figure,
    sobol_figure,
    sweep_curves_figure,
    sweep_heatmap_figure,
    sweep_scatter_figure,
    tornado_figure,
)
from .display import ScenarioDisplay, day_axis, scenario_display, thousands
from .economics import budget_figure, cost_breakdown, cost_breakdown_figure
from .outcomes import (
    FUNNEL_STAGES,
    attrition_funnel_figure,
    cumulative_incidence,
    cumulative_incidence_figure,
    funnel_counts,
    funnel_losses,
)
from .paired import outcome_groups, per_100_referred
from .run import run_figures
from .sites import month_starts, monthly_site_use, site_mean_band, site_timeline_figure
from .style import (
    FOOTER_FONTSIZE,
    KIND_COLORS,
    OKABE_ITO,
    OUTCOME_COLORS,
    OUTCOME_LABELS,
    STYLE,
    add_footer,
    band_label,
    draw_band,
    footer_text,
    house_style,
    kind_color,
    mean_band,
    new_figure,
    outcome_color,
    outcome_label,
    percent_limit,
    save_figure,
    scenario_colors,
    side_legend,
    tail_limit,
)
from .timing import (
    QUANTILE_GRID,
    journey_figure,
    quantile_average,
    quantile_summary,
    replication_quantiles,
    vein_to_vein_figure,
)
from .validation import sensitivity_figure, sensitivity_plot, validation_figure, validation_plot

__all__ = [
    "COMPARISON_FIGURES",
    "FOOTER_FONTSIZE",
    "FUNNEL_STAGES",
    "KIND_COLORS",
    "OKABE_ITO",
    "OUTCOMES",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "QUANTILE_GRID",
    "STYLE",
    "ScenarioDisplay",
    "add_footer",
    "attrition_funnel_figure",
    "band_label",
    "budget_figure",
    "capacity_figure",
    "compare_attrition_figure",
    "compare_cost_figure",
    "compare_cumulative_incidence_figure",
    "compare_outcomes_figure",
    "compare_vein_to_vein_figure",
    "cost_breakdown",
    "cost_breakdown_figure",
    "comparison_figures",
    "cumulative_incidence",
    "cumulative_incidence_figure",
    "day_axis",
    "draw_band",
    "footer_text",
    "funnel_counts",
    "funnel_losses",
    "house_style",
    "journey_figure",
    "kind_color",
    "mean_band",
    "month_starts",
    "monthly_site_use",
    "morris_figure",
    "new_figure",
    "outcome_color",
    "outcome_groups",
    "outcome_label",
    "per_100_referred",
    "percent_limit",
    "quantile_average",
    "quantile_summary",
    "replication_quantiles",
    "run_figures",
    "save_figure",
    "scenario_colors",
    "scenario_display",
    "sensitivity_figure",
    "sensitivity_plot",
    "side_legend",
    "site_mean_band",
    "site_timeline_figure",
    "sobol_figure",
    "sweep_curves_figure",
    "sweep_heatmap_figure",
    "sweep_scatter_figure",
    "tail_limit",
    "thousands",
    "tornado_figure",
    "validation_figure",
    "validation_plot",
    "vein_to_vein_figure",
]
