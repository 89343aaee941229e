"""Figures of simulation results: DataFrames in, matplotlib Figures out.

This module reads the result frames (``patients``, ``site_days``, ``events``) and never imports the
model, so it can run on saved results, in notebooks and in worker processes. Figures are built
from :class:`matplotlib.figure.Figure` directly rather than through ``pyplot``: there is no global
figure registry to leak memory or to clash between threads, and no display backend is needed.

Every figure uses one house style (:data:`STYLE`, applied with :func:`house_style`), the
Okabe–Ito colour-blind-safe palette, a fixed colour per outcome (:data:`OUTCOME_COLORS`) and an
optional footer line supplied by the caller (see :func:`footer_text`). The helpers
:func:`new_figure`, :func:`draw_band`, :func:`side_legend` and :func:`scenario_colors` are public
so that comparison figures between scenarios look the same as the single-scenario ones.

Comparison figures (section 6, written by :func:`comparison_figures`) take frames keyed by
scenario name, baseline first; every scenario keeps its colour in every figure, and
differences from the baseline ("Δ") are paired by replication (common random numbers).
"""

from __future__ import annotations

import contextlib
import math
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter
from scipy.stats import t as student_t

from ..metrics import paired_difference, t_interval
from ..scenario import OUTCOMES

__all__ = [
    "COMPARISON_FIGURES",
    "FUNNEL_STAGES",
    "KIND_COLORS",
    "OKABE_ITO",
    "OUTCOMES",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "STYLE",
    "add_footer",
    "attrition_funnel_figure",
    "compare_attrition_figure",
    "compare_cost_figure",
    "compare_cumulative_incidence_figure",
    "compare_outcomes_figure",
    "compare_vein_to_vein_figure",
    "comparison_figures",
    "cumulative_incidence",
    "cumulative_incidence_figure",
    "draw_band",
    "footer_text",
    "funnel_counts",
    "funnel_losses",
    "house_style",
    "journey_figure",
    "kind_color",
    "new_figure",
    "outcome_color",
    "outcome_groups",
    "outcome_label",
    "per_100_referred",
    "side_legend",
    "run_figures",
    "save_figure",
    "scenario_colors",
    "site_mean_band",
    "site_timeline_figure",
    "tail_limit",
    "vein_to_vein_figure",
]

# --------------------------------------------------------------------------------------------
# House style
# --------------------------------------------------------------------------------------------

#: The eight Okabe–Ito colours (Okabe & Ito 2008, "Color Universal Design"), safe for the common
#: forms of colour-vision deficiency and in greyscale print when paired with line styles.
OKABE_ITO: Final[Mapping[str, str]] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

# Scenario order: strongest contrasts first; yellow last because it is faint on white.
_SCENARIO_ORDER: Final[tuple[str, ...]] = (
    OKABE_ITO["blue"],
    OKABE_ITO["orange"],
    OKABE_ITO["bluish_green"],
    OKABE_ITO["vermillion"],
    OKABE_ITO["reddish_purple"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["black"],
    OKABE_ITO["yellow"],
)


#: One fixed colour per outcome, identical in every figure. Okabe–Ito has eight colours for
#: twelve outcomes, so the four rarest/least specific use a dark wine and an indigo (from Paul
#: Tol's colour-blind-safe "muted" scheme) and greys; "unresolved" is the palest because it is not an
#: outcome but the end of the run.
OUTCOME_COLORS: Final[Mapping[str, str]] = {
    "infused": OKABE_ITO["bluish_green"],
    "died": OKABE_ITO["vermillion"],
    "ineligible": OKABE_ITO["orange"],
    "screen_failed": OKABE_ITO["yellow"],
    "collection_failed": OKABE_ITO["reddish_purple"],
    "lost_in_transit": OKABE_ITO["black"],
    "manufacturing_failed": OKABE_ITO["blue"],
    "out_of_specification": OKABE_ITO["sky_blue"],
    "product_expired": "#882255",
    "infusion_failed": "#332288",
    "step_failed": "#999999",
    "unresolved": "#D4D4D4",
}

#: Human-readable outcome names for legends.
OUTCOME_LABELS: Final[Mapping[str, str]] = {
    "infused": "Infused",
    "died": "Died",
    "ineligible": "Became ineligible",
    "screen_failed": "Failed screening",
    "collection_failed": "Collection failed",
    "lost_in_transit": "Lost in transit",
    "manufacturing_failed": "Manufacturing failed",
    "out_of_specification": "Out of specification",
    "product_expired": "Product expired",
    "infusion_failed": "Infusion failed",
    "step_failed": "Step failed",
    "unresolved": "Unresolved at end of run",
}

#: One colour per step kind for journey swimlanes.
KIND_COLORS: Final[Mapping[str, str]] = {
    "screen": "#8C8C8C",
    "apheresis": OKABE_ITO["reddish_purple"],
    "cryopreserve": OKABE_ITO["sky_blue"],
    "transport": OKABE_ITO["yellow"],
    "manufacture": OKABE_ITO["blue"],
    "release": OKABE_ITO["orange"],
    "conditioning": OKABE_ITO["vermillion"],
    "delay": "#4D4D4D",
    "infusion": OKABE_ITO["bluish_green"],
}

_OTHER_LOSSES_COLOR: Final = "#4D4D4D"
_NEUTRAL_COLOR: Final = "#56606B"  # bars that are "patients", not a cause
_FOOTER_COLOR: Final = "#555555"
_FOOTER_HEIGHT_INCHES: Final = 0.32

#: Matplotlib rc settings of the house style; apply with :func:`house_style`. Sizes are chosen to
#: stay readable when a 12-inch-wide figure is shown on a slide.
STYLE: Final[dict[str, Any]] = {
    "font.size": 12.5,
    "axes.titlesize": 14,
    "axes.titlelocation": "left",
    "axes.titlepad": 8.0,
    "axes.labelsize": 12.5,
    "xtick.labelsize": 11.5,
    "ytick.labelsize": 11.5,
    "legend.fontsize": 11.5,
    "legend.title_fontsize": 12,
    "legend.frameon": False,
    "figure.titlesize": 16,
    "figure.titleweight": "bold",
    "axes.prop_cycle": cycler(color=list(_SCENARIO_ORDER)),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#333333",
    "axes.linewidth": 0.9,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#E3E3E3",
    "grid.linewidth": 0.8,
    "lines.linewidth": 2.0,
    "patch.linewidth": 0.6,
    "hatch.linewidth": 0.8,
    "figure.facecolor": "white",
    "figure.constrained_layout.use": True,
    "savefig.facecolor": "white",
    "savefig.dpi": 200,
    # Fixed SVG ids so that the same figure gives the same bytes (hashable in a manifest).
    "svg.hashsalt": "v2vsim",
}


@contextlib.contextmanager
def house_style() -> Iterator[None]:
    """Apply :data:`STYLE` for the duration of a ``with`` block.

    Font sizes and grids are fixed when artists are created, so build the whole figure inside
    the block; saving needs only :func:`save_figure`.
    """
    with matplotlib.rc_context(STYLE):
        yield


def scenario_colors(n: int) -> list[str]:
    """``n`` distinct colours for scenarios in comparison figures (Okabe–Ito order).

    Beyond eight scenarios the colours repeat; pair them with line styles in that case.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [_SCENARIO_ORDER[i % len(_SCENARIO_ORDER)] for i in range(n)]


def outcome_color(outcome: str) -> str:
    """The fixed colour of an outcome; unknown outcomes get neutral grey."""
    return OUTCOME_COLORS.get(outcome, "#999999")


def outcome_label(outcome: str) -> str:
    """Legend text for an outcome ("manufacturing_failed" -> "Manufacturing failed")."""
    return OUTCOME_LABELS.get(outcome, outcome.replace("_", " ").capitalize())


def kind_color(kind: str) -> str:
    """The fixed colour of a step kind; unknown kinds get neutral grey."""
    return KIND_COLORS.get(kind, "#BBBBBB")


def footer_text(
    scenario: str | None = None,
    replications: int | None = None,
    seed: int | None = None,
    extra: Iterable[str] = (),
) -> str:
    """Build the conventional footer, e.g. ``"Scenario: base · 200 replications · seed 1"``."""
    parts: list[str] = []
    if scenario is not None:
        parts.append(f"Scenario: {scenario}")
    if replications is not None:
        parts.append(f"{replications:,} replication{'s' if replications != 1 else ''}")
    if seed is not None:
        parts.append(f"seed {seed}")
    parts.extend(extra)
    return " · ".join(parts)


def add_footer(fig: Figure, footer: str) -> None:
    """Write ``footer`` in small grey text along the bottom edge of ``fig``.

    The constrained-layout area is shrunk so that axes, tick labels and legends never overlap
    the footer.
    """
    if not footer:
        return
    frac = _FOOTER_HEIGHT_INCHES / fig.get_figheight()
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0.0, frac, 1.0, 1.0 - frac))
    fig.text(
        0.008, frac / 2, footer, ha="left", va="center", fontsize=10, color=_FOOTER_COLOR
    )


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    figsize: tuple[float, float],
    title: str = "",
    footer: str = "",
    **subplots_kw: Any,
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Figure with a 2-D array of axes, a title and a footer.

    Call inside :func:`house_style` so that the axes pick up the house fonts and grid.
    """
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplots_kw)
    if title:
        # Wrap long titles (long scenario names) instead of letting them run off the figure.
        chars_per_line = max(int(figsize[0] * 7.0), 20)
        fig.suptitle(textwrap.fill(title, chars_per_line), x=0.008, ha="left")
    add_footer(fig, footer)
    return fig, axes


def draw_band(
    ax: Axes,
    x: np.ndarray,
    low: np.ndarray,
    mid: np.ndarray,
    high: np.ndarray,
    *,
    color: str,
    label: str | None = None,
    band_label: str | None = None,
    steps: bool = False,
    **line_kw: Any,
) -> None:
    """Draw a median line with a translucent interval band (the house look for uncertainty).

    ``steps=True`` draws both as post-steps, for quantities that change at whole days.
    """
    ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0, label=band_label,
                    step="post" if steps else None)
    ax.plot(x, mid, color=color, label=label, drawstyle="steps-post" if steps else "default",
            **line_kw)


def side_legend(
    ax: Axes,
    handles: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> None:
    """Legend to the right of ``ax``, top-aligned with it: the house place for legends.

    Attached to the axes rather than the figure so constrained layout makes room for it below
    the figure title (a figure legend would overlap a long title, a bottom one the footer).
    """
    kw: dict[str, Any] = {"title": title, "loc": "upper left", "bbox_to_anchor": (1.02, 1.0),
                          "borderaxespad": 0.0, "alignment": "left"}
    if labels is None:
        ax.legend(handles=list(handles), **kw)
    else:
        ax.legend(list(handles), list(labels), **kw)


def _empty_message(ax: Axes, message: str) -> None:
    """Show ``message`` in place of a plot, so a figure is still produced from empty data."""
    ax.text(
        0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=_FOOTER_COLOR
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _fmt_count(x: float) -> str:
    """Counts per replication: integers when exact (one replication), else one decimal."""
    if math.isfinite(x) and abs(x - round(x)) < 1e-9:
        return f"{round(x):,}"
    return f"{x:,.1f}"


def _fmt_percent(x: float) -> str:
    """Whole percents, but one decimal below 1% so that rare outcomes do not read as 0%."""
    return f"{x:.1f}%" if 0 < x < 1 else f"{x:.0f}%"


def _fmt_tail(x: float) -> str:
    """A small share of values in percent: "<0.1%" rather than a misleading "0.0%"."""
    return "<0.1%" if 0 < x < 0.05 else _fmt_percent(x)


def _n_replications(frame: pd.DataFrame) -> int:
    return int(frame["replication"].nunique()) if len(frame) else 0


def _ordered_outcomes(values: Iterable[str]) -> list[str]:
    """Known outcomes in house order, then any unknown ones alphabetically."""
    present = set(values)
    return [o for o in OUTCOMES if o in present] + sorted(present - set(OUTCOMES))


# --------------------------------------------------------------------------------------------
# 1. Vein-to-vein time
# --------------------------------------------------------------------------------------------


def tail_limit(values: np.ndarray, quantile: float = 99.0) -> float:
    """Upper x limit that shows the main mass and the near tail: the ``quantile`` percentile
    plus a margin of 10% of the range below it (at least two days), rounded up to 5 days.

    Rare long delays (a re-manufactured product, a long wait) would otherwise stretch the
    axis and squash the bulk of the distribution into a few pixels; callers say what is cut.
    """
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 1.0
    low = min(0.0, float(values.min()))
    top = float(np.percentile(values, quantile))
    top += max(2.0, 0.1 * (top - low))
    return float(min(math.ceil(top / 5.0) * 5.0, math.floor(values.max()) + 1.0))


def _beyond_note(values: np.ndarray, limit: float) -> str | None:
    """Legend text for the values cut off at ``limit`` (None if nothing is cut)."""
    beyond = int((values > limit).sum())
    if beyond == 0:
        return None
    return (f"Not shown: {_fmt_tail(100.0 * beyond / values.size)} beyond "
            f"{limit:.0f} days\n(longest {values.max():.0f} days)")


def _histogram_panel(ax: Axes, values: np.ndarray, title: str, xlabel: str) -> None:
    """1-day-bin histogram of ``values`` (in % of values) with the median and P90 marked.

    The x axis stops near the 99th percentile (:func:`tail_limit`); the legend gives the median
    and P90 (of all values) and says how many values lie beyond the axis. Values go in the
    legend rather than next to the lines, where they collided with the tick labels and with
    each other when the median and P90 are close.
    """
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Share of infused patients (%)")
    if values.size == 0:
        _empty_message(ax, "No infused patients")
        return
    ax.set_title(
        f"n = {values.size:,} infused", loc="right", fontsize=11.5, color=_FOOTER_COLOR
    )
    limit = tail_limit(values)
    lo = math.floor(values.min())
    edges = np.arange(lo, max(limit, lo + 1.0) + 1.0, dtype=float)
    counts, _ = np.histogram(values, bins=edges)
    share = 100.0 * counts / values.size
    ax.bar(
        edges[:-1], share, width=1.0, align="edge", color=outcome_color("infused"),
        edgecolor="white", linewidth=0.3 if edges.size < 150 else 0.0,
    )
    # Headroom for the legend above the bars; the marker lines stop just above the tallest
    # bar so that the legend never hides them.
    top = share.max() * 1.6
    ax.set_ylim(0, top)
    ax.set_xlim(min(0.0, lo), limit)
    median, p90 = np.percentile(values, [50, 90])
    line_top = 1.06 * share.max() / top
    ax.axvline(median, ymax=line_top, color="black", linestyle="-", linewidth=1.6,
               label=f"Median: {median:.1f} days")
    ax.axvline(p90, ymax=line_top, color="black", linestyle="--", linewidth=1.6,
               label=f"90th percentile: {p90:.1f} days")
    handles, labels = ax.get_legend_handles_labels()
    note = _beyond_note(values, limit)
    if note:
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(note)
    # "best" keeps the legend off the bars and lines; the white box keeps grid lines out of it.
    ax.legend(handles, labels, loc="best", frameon=True, facecolor="white", edgecolor="none",
              framealpha=0.9, handlelength=1.8)


def vein_to_vein_figure(
    patients: pd.DataFrame, scenario_name: str, *, footer: str = ""
) -> Figure:
    """Distribution of vein-to-vein and referral-to-infusion days among infused patients.

    Patients from all replications are pooled; bars are 1-day bins as a share of infused
    patients; median and 90th percentile are marked and given in the legend. Each x axis ends
    near the 99th percentile (the long tail of re-manufactured patients would squash the main
    mass); the legend says what share lies beyond.
    """
    with house_style():
        fig, axes = new_figure(
            1, 2, figsize=(13, 5.2), title=f"Time to infusion — {scenario_name}", footer=footer
        )
        infused = patients[patients["outcome"] == "infused"]
        for ax, column, title, xlabel in (
            (axes[0, 0], "vein_to_vein_days", "Apheresis → infusion (vein-to-vein)",
             "Vein-to-vein time (days)"),
            (axes[0, 1], "referral_to_infusion_days", "Referral → infusion",
             "Referral to infusion (days)"),
        ):
            values = infused[column].dropna().to_numpy(dtype=float)
            _histogram_panel(ax, values, title, xlabel)
    return fig


# --------------------------------------------------------------------------------------------
# 2. Attrition funnel
# --------------------------------------------------------------------------------------------

#: Stages of the attrition funnel, in order.
FUNNEL_STAGES: Final[tuple[str, ...]] = (
    "referred",
    "apheresed",
    "manufactured",
    "released",
    "infused",
)

_STAGE_LABELS: Final[Mapping[str, str]] = {
    "referred": "Referred",
    "apheresed": "Apheresed",
    "manufactured": "Manufactured",
    "released": "Released",
    "infused": "Infused",
}


def _deepest_stage(patients: pd.DataFrame) -> np.ndarray:
    """Index into FUNNEL_STAGES of the last stage each patient reached.

    apheresed = apheresis_day known; manufactured = manufacture started and the outcome is not
    manufacturing_failed (a patient who died during manufacturing counts as manufactured);
    released = release_day known; infused = outcome "infused". A patient counts as reaching a
    stage if they reached it or any later one, so the funnel never widens even if a pathway
    skips a step (e.g. no recorded release).
    """
    infused = (patients["outcome"] == "infused").to_numpy()
    released = patients["release_day"].notna().to_numpy() | infused
    manufactured = (
        patients["manufacture_start_day"].notna()
        & (patients["outcome"] != "manufacturing_failed")
    ).to_numpy() | released
    apheresed = patients["apheresis_day"].notna().to_numpy() | manufactured
    return (
        apheresed.astype(int) + manufactured.astype(int) + released.astype(int) + infused
    ).astype(int)


def funnel_counts(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients reaching each funnel stage, as the mean per replication.

    Returns a frame indexed by stage (:data:`FUNNEL_STAGES`) with columns ``patients`` (mean
    number per replication), ``percent_of_referred`` and ``lost_after`` (mean number who
    reached this stage but not the next). Stage definitions: see ``_deepest_stage``.
    """
    n_reps = _n_replications(patients)
    deepest = _deepest_stage(patients)
    reached = np.array(
        [(deepest >= k).sum() for k in range(len(FUNNEL_STAGES))], dtype=float
    )
    mean = reached / n_reps if n_reps else np.zeros(len(FUNNEL_STAGES))
    percent = 100.0 * mean / mean[0] if mean[0] > 0 else np.full(len(FUNNEL_STAGES), np.nan)
    lost = mean - np.append(mean[1:], mean[-1])
    return pd.DataFrame(
        {"patients": mean, "percent_of_referred": percent, "lost_after": lost},
        index=pd.Index(FUNNEL_STAGES, name="stage"),
    )


def funnel_losses(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients lost after each funnel stage, by outcome, as the mean per replication.

    Rows are the last stage reached (all stages but "infused"), columns are the outcomes that
    occur (house order), values are mean patients per replication. Row sums equal
    ``funnel_counts(patients)["lost_after"]``; unresolved patients appear as "unresolved".
    """
    stages = list(FUNNEL_STAGES[:-1])
    n_reps = _n_replications(patients)
    deepest = _deepest_stage(patients)
    lost = pd.DataFrame(
        {
            "stage": np.asarray(FUNNEL_STAGES, dtype=object)[deepest],
            "outcome": patients["outcome"].astype(str).to_numpy(),
        }
    )
    lost = lost[deepest < len(FUNNEL_STAGES) - 1]
    counts = lost.groupby(["stage", "outcome"]).size().unstack("outcome", fill_value=0)
    columns = _ordered_outcomes(counts.columns)
    counts = counts.reindex(index=stages, columns=columns, fill_value=0).astype(float)
    if n_reps:
        counts = counts / n_reps
    counts.index.name = "stage"
    counts.columns.name = "outcome"
    return counts


def attrition_funnel_figure(
    patients: pd.DataFrame, scenario_name: str, *, footer: str = ""
) -> Figure:
    """Attrition funnel: patients reaching each stage and, beside each bar, who was lost why.

    Each row's total length equals the previous stage: the solid bar is the patients who
    reached the stage, the coloured segments the patients lost on the way, by outcome.
    """
    counts = funnel_counts(patients)
    losses = funnel_losses(patients)
    n_reps = _n_replications(patients)
    with house_style():
        fig, axes = new_figure(
            1, 1, figsize=(13, 5.6),
            title=f"Attrition from referral to infusion — {scenario_name}", footer=footer,
        )
        ax = axes[0, 0]
        ax.set_title("Patients reaching each stage, and losses on the way by cause")
        if n_reps == 0:
            _empty_message(ax, "No patients")
            return fig
        referred = float(counts["patients"].iloc[0])
        y = np.arange(len(FUNNEL_STAGES))
        reached = counts["patients"].to_numpy()
        colours = [_NEUTRAL_COLOR] * (len(FUNNEL_STAGES) - 1) + [outcome_color("infused")]
        ax.barh(y, reached, height=0.62, color=colours, edgecolor="white", linewidth=1.0)
        # Losses between stage k-1 and k are drawn on row k, after the patients who got through.
        causes_seen: list[str] = []
        for k in range(1, len(FUNNEL_STAGES)):
            left = reached[k]
            for cause, value in losses.iloc[k - 1].items():
                if value <= 0:
                    continue
                ax.barh(
                    y[k], value, left=left, height=0.62, color=outcome_color(str(cause)),
                    edgecolor="white", linewidth=1.0,
                )
                left += value
                if cause not in causes_seen:
                    causes_seen.append(str(cause))
        pad = 0.008 * referred
        for k in range(len(FUNNEL_STAGES)):
            label = f"{_fmt_count(reached[k])} ({counts['percent_of_referred'].iloc[k]:.0f}%)"
            lost = float(losses.iloc[k - 1].sum()) if k > 0 else 0.0
            lost_text = f"−{_fmt_count(lost)} lost" if lost > 0 else ""
            if reached[k] >= 0.22 * referred:
                ax.text(reached[k] - pad, y[k], label, ha="right", va="center", color="white",
                        fontweight="bold")
                end_text = lost_text
            else:
                end_text = "   ".join(t for t in (label, lost_text) if t)
            if end_text:
                row_end = reached[k] + lost
                ax.text(row_end + pad, y[k], end_text, ha="left", va="center",
                        color="#333333")
        ax.set_yticks(y, [_STAGE_LABELS[s] for s in FUNNEL_STAGES])
        ax.invert_yaxis()
        ax.set_xlim(0, referred * 1.2)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(
            "Patients per replication (mean)" if n_reps > 1 else "Patients (one replication)"
        )
        handles = [
            Patch(color=outcome_color(c), label=outcome_label(c))
            for c in _ordered_outcomes(causes_seen)
        ]
        if handles:
            side_legend(ax, handles, title="Lost because")
    return fig


# --------------------------------------------------------------------------------------------
# 3. Cumulative incidence of outcomes
# --------------------------------------------------------------------------------------------


def cumulative_incidence(
    patients: pd.DataFrame,
    days: Sequence[float] | np.ndarray,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Share of referred patients with each outcome by each day since referral, per replication.

    ``t = outcome_day - referral_day``; the share for a group at day ``d`` is the number of the
    replication's patients with an outcome in the group and ``t <= d``, divided by all patients
    referred in that replication. Every patient has one outcome, so this is the empirical
    cumulative incidence under competing risks; unresolved patients (no outcome day) stay in
    the denominator and are never counted. ``groups`` maps a group name to outcomes; by default
    each outcome that occurs (except "unresolved") is its own group.

    Returns a long frame with columns ``replication``, ``outcome`` (group name), ``day`` and
    ``share`` (0–1).
    """
    days_arr = np.asarray(days, dtype=float)
    if groups is None:
        groups = {
            o: [o] for o in _ordered_outcomes(patients["outcome"].astype(str)) if o != "unresolved"
        }
    elapsed = (patients["outcome_day"] - patients["referral_day"]).to_numpy(dtype=float)
    outcome = patients["outcome"].astype(str).to_numpy()
    replication = patients["replication"].to_numpy()
    reps: list[np.ndarray] = []
    names: list[np.ndarray] = []
    day_cols: list[np.ndarray] = []
    shares: list[np.ndarray] = []
    for rep in np.unique(replication):
        in_rep = replication == rep
        n = int(in_rep.sum())
        for name, members in groups.items():
            t = elapsed[in_rep & np.isin(outcome, list(members))]
            t = np.sort(t[~np.isnan(t)])
            shares.append(np.searchsorted(t, days_arr, side="right") / n)
            reps.append(np.full(days_arr.size, rep))
            names.append(np.full(days_arr.size, name, dtype=object))
            day_cols.append(days_arr)
    if not shares:
        return pd.DataFrame(
            {
                "replication": pd.Series(dtype="int64"),
                "outcome": pd.Series(dtype=object),
                "day": pd.Series(dtype=float),
                "share": pd.Series(dtype=float),
            }
        )
    return pd.DataFrame(
        {
            "replication": np.concatenate(reps),
            "outcome": np.concatenate(names),
            "day": np.concatenate(day_cols),
            "share": np.concatenate(shares),
        }
    )


def _incidence_groups(patients: pd.DataFrame) -> dict[str, list[str]]:
    """infused, died, ineligible separately; every other loss combined (legend names them)."""
    present = _ordered_outcomes(patients["outcome"].astype(str))
    groups: dict[str, list[str]] = {}
    for main in ("infused", "died", "ineligible"):
        if main in present:
            groups[main] = [main]
    other = [o for o in present if o not in groups and o != "unresolved"]
    if other:
        groups["other_losses"] = other
    return groups


def cumulative_incidence_figure(
    patients: pd.DataFrame,
    scenario_name: str,
    max_day: float | None = None,
    *,
    footer: str = "",
) -> Figure:
    """Cumulative incidence of infusion, death, ineligibility and other losses since referral.

    Lines are the mean across replications of each replication's cumulative share; bands
    span the 2.5th–97.5th percentiles across replications.
    """
    groups = _incidence_groups(patients)
    n_reps = _n_replications(patients)
    elapsed = (patients["outcome_day"] - patients["referral_day"]).dropna()
    if max_day is None:
        max_day = float(math.ceil(elapsed.max())) if len(elapsed) else 1.0
    days = np.arange(0.0, max(max_day, 1.0) + 1.0)
    incidence = cumulative_incidence(patients, days, groups)
    with house_style():
        fig, axes = new_figure(
            1, 1, figsize=(12, 6), title=f"Outcomes over time since referral — {scenario_name}",
            footer=footer,
        )
        ax = axes[0, 0]
        ax.set_title("Cumulative share of referred patients by outcome")
        ax.set_xlabel("Days since referral")
        ax.set_ylabel("Share of referred patients (%)")
        if incidence.empty:
            _empty_message(ax, "No patients with an outcome")
            return fig
        for name, members in groups.items():
            wide = (
                incidence[incidence["outcome"] == name]
                .pivot(index="day", columns="replication", values="share")
                .to_numpy()
            )
            # The mean is the expected cumulative incidence; the median of a share of ~100
            # patients jumps in steps and reads 0% for rare outcomes that do happen.
            low, high = 100.0 * np.percentile(wide, [2.5, 97.5], axis=1)
            mid = 100.0 * wide.mean(axis=1)
            if name == "other_losses":
                colour = _OTHER_LOSSES_COLOR
                names = ", ".join(outcome_label(m).lower() for m in members)
                # Name the combined causes, wrapped to keep the legend narrow.
                label = f"Other losses: {_fmt_percent(mid[-1])}\n" + "\n".join(
                    textwrap.wrap(f"({names})", width=32)
                )
            else:
                colour = outcome_color(name)
                label = f"{outcome_label(name)}: {_fmt_percent(mid[-1])}"
            draw_band(ax, days, low, mid, high, color=colour, label=label)
        handles, labels = ax.get_legend_handles_labels()
        if n_reps > 1:
            handles.append(Patch(color="#999999", alpha=0.35, linewidth=0))
            labels.append("Band: middle 95% of replications")
        unresolved = float((patients["outcome"] == "unresolved").mean() * 100.0)
        if unresolved > 0:
            handles.append(Line2D([], [], linestyle="none"))
            labels.append(f"Unresolved at end of run:\n{unresolved:.1f}% (not shown)")
        ax.set_xlim(0, days[-1])
        ax.set_ylim(0, 100)
        title = f"Share by day {days[-1]:.0f}"
        if n_reps > 1:
            title += "\n(mean of replications)"
        side_legend(ax, handles, labels, title=title)
    return fig


# --------------------------------------------------------------------------------------------
# 4. Site utilisation over time
# --------------------------------------------------------------------------------------------


def site_mean_band(
    frame: pd.DataFrame, column: str, smooth_days: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Days, 2.5th percentile, mean and 97.5th percentile across replications of a daily
    series (each replication's series smoothed first by a centred ``smooth_days`` rolling mean).

    The mean, not the median: with one or two slots a replication's slots-in-use is mostly a
    whole number, so the median jumps between 0 and 1 and says nothing about utilisation,
    while the mean is the expected number in use (or waiting) on that day.
    """
    wide = frame.pivot_table(index="day", columns="replication", values=column, aggfunc="mean")
    wide = wide.sort_index()
    if smooth_days > 1:
        # Centred so the smoothed curve is not shifted later in time.
        wide = wide.rolling(smooth_days, center=True, min_periods=1).mean()
    values = wide.to_numpy(dtype=float)
    low, high = np.nanpercentile(values, [2.5, 97.5], axis=1)
    return wide.index.to_numpy(dtype=float), low, np.nanmean(values, axis=1), high


def site_timeline_figure(
    site_days: pd.DataFrame,
    scenario_name: str,
    *,
    smooth_days: int = 7,
    footer: str = "",
) -> Figure:
    """Per site, slots in use against capacity and the queue of waiting patients over time.

    Curves are the mean across replications (the expected slots in use and queue length) of
    a ``smooth_days``-day centred rolling mean (1 = no smoothing), with the 2.5th–97.5th
    percentile band across replications (:func:`site_mean_band`); capacity is not smoothed.
    Panel titles give the mean utilisation and queue length over the days shown.
    """
    data = site_days.dropna(subset=["in_use", "queue"])
    sites = list(pd.unique(site_days["site"].astype(str))) if len(site_days) else []
    n_reps = _n_replications(site_days)
    n_rows = max(len(sites), 1)
    with house_style():
        fig, axes = new_figure(
            n_rows, 2, figsize=(13, 1.4 + 2.7 * n_rows), sharex=True,
            title=f"Manufacturing site use over time — {scenario_name}", footer=footer,
        )
        if not sites:
            for ax in axes[0]:
                _empty_message(ax, "No site data")
            return fig
        smooth_note = f"\n({smooth_days}-day rolling mean)" if smooth_days > 1 else ""
        spread = "Middle 95% of\nreplications" if n_reps > 1 else None
        colour_use, colour_queue = OKABE_ITO["blue"], OKABE_ITO["vermillion"]
        for row, site in enumerate(sites):
            ax_use, ax_queue = axes[row]
            frame = data[data["site"].astype(str) == site]
            capacity = (
                site_days[site_days["site"].astype(str) == site]
                .groupby("day")["slots"].median().sort_index()
            )
            # Means over the days shown and the replications: the expected utilisation and
            # queue length (second title line, so long site names do not collide).
            total_slots = float(frame["slots"].sum()) if len(frame) else 0.0
            use_note = queue_note = ""
            if total_slots > 0:
                use_note = f"\nmean utilisation {100.0 * float(frame['in_use'].sum()) / total_slots:.0f}%"
                queue_note = f"\nmean {float(frame['queue'].mean()):.2f} waiting"
            ax_use.set_title(f"{site}: manufacturing slots in use{use_note}")
            ax_queue.set_title(f"{site}: patients waiting for a slot{queue_note}")
            ax_use.set_ylabel("Slots")
            ax_queue.set_ylabel("Patients")
            top_use = float(capacity.max()) if len(capacity) else 0.0
            top_queue = 0.0
            if len(frame):
                x, low, mid, high = site_mean_band(frame, "in_use", smooth_days)
                draw_band(ax_use, x, low, mid, high, color=colour_use)
                top_use = max(top_use, float(np.nanmax(high)))
                x, low, mid, high = site_mean_band(frame, "queue", smooth_days)
                draw_band(ax_queue, x, low, mid, high, color=colour_queue)
                top_queue = float(np.nanmax(high))
            if len(capacity):
                ax_use.plot(capacity.index.to_numpy(dtype=float), capacity.to_numpy(dtype=float),
                            color="black", linestyle="--", linewidth=1.5,
                            drawstyle="steps-post")
            ax_use.set_ylim(0, max(top_use, 1.0) * 1.12)
            ax_queue.set_ylim(0, max(top_queue, 1.0) * 1.12)
        for ax in axes[-1]:
            ax.set_xlabel("Simulation day")
        # One legend for the figure, in neutral colours: the encodings repeat on every panel
        # (blue = slots, vermillion = queue) and a legend inside a panel would hide data.
        handles: list[Any] = [
            Line2D([], [], color="#333333", label=f"Mean across\nreplications{smooth_note}"),
        ]
        if spread:
            handles.append(Patch(color="#999999", alpha=0.35, linewidth=0, label=spread))
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1.5,
                              label="Capacity (slots)"))
        side_legend(axes[0, -1], handles)
        first_day = float(site_days["day"].min())
        last_day = float(site_days["day"].max()) + 1.0
        axes[0, 0].set_xlim(first_day, last_day)
    return fig


# --------------------------------------------------------------------------------------------
# 5. Patient journeys
# --------------------------------------------------------------------------------------------

_END_MARKERS: Final[Mapping[str, str]] = {
    "infused": r"$\checkmark$",
    "died": "X",
    "ineligible": "D",
    "unresolved": ">",
}
# The outcome of a journey whose last step failed for good, by step kind (mirrors the model's
# rule; repeated here because plots must not import the model or the scenario schema).
_FAILURE_OUTCOME_BY_KIND: Final[Mapping[str, str]] = {
    "screen": "screen_failed",
    "apheresis": "collection_failed",
    "transport": "lost_in_transit",
    "manufacture": "manufacturing_failed",
    "release": "out_of_specification",
    "infusion": "infusion_failed",
}


def _final_outcome(last: pd.Series) -> str:
    """What the patient's last traced event says about how the journey ended."""
    status = str(last["status"])
    kind = str(last["kind"])
    if status == "done":
        return "infused" if kind == "infusion" else "unresolved"
    if status == "failed":
        return _FAILURE_OUTCOME_BY_KIND.get(kind, "step_failed")
    return status


def journey_figure(
    events: pd.DataFrame,
    scenario_name: str,
    max_patients: int = 25,
    *,
    relative: bool = False,
    footer: str = "",
) -> Figure:
    """Swimlanes of individual patient journeys: steps, waits before steps and how each ended.

    One lane per patient (the first ``max_patients`` by referral day); bars are steps coloured
    by kind, hatched bars are waits (ready to start), failed attempts end with a small x and
    each journey ends with a marker for its outcome. Only the first replication in ``events``
    is drawn. The x axis is the simulation day, which shows patients competing for the same
    slots; ``relative=True`` starts every lane at its referral instead, to compare journeys.
    """
    frame = events
    replications = sorted(pd.unique(events["replication"])) if len(events) else []
    if len(replications) > 1:
        frame = events[events["replication"] == replications[0]]
    first_ready = frame.groupby("patient")["ready_day"].min().sort_values(kind="stable")
    if relative and len(frame):
        # The first step's ready day is the referral day (or later), so lanes start at 0.
        shift = frame["patient"].map(first_ready).to_numpy(dtype=float)
        frame = frame.assign(**{
            column: frame[column].to_numpy(dtype=float) - shift
            for column in ("ready_day", "start_day", "end_day")
        })
    patients = list(first_ready.index[:max_patients])
    n_lanes = max(len(patients), 1)
    with house_style():
        fig, axes = new_figure(
            1, 1, figsize=(13, 1.9 + 0.36 * n_lanes),
            title=f"Patient journeys — {scenario_name}", footer=footer,
        )
        ax = axes[0, 0]
        subtitle = f"{len(patients)} of {len(first_ready)} traced patients"
        if replications:
            subtitle += f", replication {replications[0]}"
        ax.set_title(subtitle)
        ax.set_xlabel("Days since referral" if relative else "Day")
        if not patients:
            _empty_message(ax, "No traced patients")
            return fig
        lanes = frame[frame["patient"].isin(patients)]
        span = float(np.nanmax(lanes[["ready_day", "start_day", "end_day"]].to_numpy()) -
                     np.nanmin(lanes[["ready_day", "start_day", "end_day"]].to_numpy()))
        # Instantaneous steps (an infusion) would be invisible; give them a sliver of width.
        min_width = max(span, 1.0) * 0.003
        kinds_seen: list[str] = []
        outcomes_seen: list[str] = []
        any_wait = any_failed = False
        labels: list[str] = []
        for lane, patient in enumerate(patients):
            trace = lanes[lanes["patient"] == patient].sort_values(
                ["ready_day", "end_day"], kind="stable"
            )
            labels.append(f"Patient {patient} ({trace['cohort'].iloc[0]})")
            # The last event is the latest to end; on ties (an instantaneous infusion right
            # after conditioning) the one that started later.
            ends = trace["end_day"].to_numpy(dtype=float)
            last_index = (
                trace.index[np.flatnonzero(ends == np.nanmax(ends))[-1]]
                if np.isfinite(ends).any() else None
            )
            for index, ev in trace.iterrows():
                ready, start, end = ev["ready_day"], ev["start_day"], ev["end_day"]
                # A patient who left while waiting has no start: the wait runs to the end.
                wait_end = start if pd.notna(start) else end
                if pd.notna(ready) and pd.notna(wait_end) and wait_end > ready:
                    ax.barh(lane, wait_end - ready, left=ready, height=0.5, color="white",
                            edgecolor="#9A9A9A", hatch="////", linewidth=0.6)
                    any_wait = True
                if pd.notna(start) and pd.notna(end):
                    kind = str(ev["kind"])
                    ax.barh(lane, max(end - start, min_width), left=start, height=0.6,
                            color=kind_color(kind), edgecolor="white", linewidth=0.4)
                    if kind not in kinds_seen:
                        kinds_seen.append(kind)
                # The final failure is shown by the end marker instead.
                if str(ev["status"]) == "failed" and pd.notna(end) and index != last_index:
                    ax.plot(end, lane, marker="x", color="black", markersize=7,
                            markeredgewidth=1.8, linestyle="none")
                    any_failed = True
            last = trace.loc[last_index] if last_index is not None else trace.iloc[-1]
            outcome = _final_outcome(last)
            if outcome not in outcomes_seen:
                outcomes_seen.append(outcome)
            end_x = last["end_day"] if pd.notna(last["end_day"]) else last["ready_day"]
            ax.plot(end_x + max(span, 1.0) * 0.012, lane, marker=_END_MARKERS.get(outcome, "s"),
                    color=outcome_color(outcome), markersize=11, linestyle="none",
                    markeredgecolor="black" if outcome not in ("infused",) else None,
                    markeredgewidth=0.6)
        ax.set_yticks(range(len(patients)), labels)
        ax.set_ylim(len(patients) - 0.4, -0.6)
        ax.grid(axis="y", visible=False)
        order = {k: i for i, k in enumerate(KIND_COLORS)}
        kinds_seen.sort(key=lambda k: order.get(k, len(order)))
        handles: list[Any] = [
            Patch(color=kind_color(k), label=k.replace("_", " ").capitalize()) for k in kinds_seen
        ]
        if any_wait:
            handles.append(Patch(facecolor="white", edgecolor="#9A9A9A", hatch="////",
                                 label="Waiting"))
        if any_failed:
            handles.append(Line2D([], [], marker="x", color="black", linestyle="none",
                                  markersize=7, markeredgewidth=1.8, label="Attempt failed"))
        for outcome in _ordered_outcomes(outcomes_seen):
            label = "Still in progress" if outcome == "unresolved" else outcome_label(outcome)
            handles.append(Line2D([], [], marker=_END_MARKERS.get(outcome, "s"),
                                  color=outcome_color(outcome), linestyle="none", markersize=10,
                                  markeredgecolor="black" if outcome != "infused" else None,
                                  markeredgewidth=0.6, label=label))
        side_legend(ax, handles, title="Steps and outcomes")
    return fig


# --------------------------------------------------------------------------------------------
# 6. Comparisons between scenarios
# --------------------------------------------------------------------------------------------
#
# Every comparison figure takes frames keyed by scenario name, in the order given (baseline
# first): ``patients`` and/or ``replications`` tables as :func:`v2vsim.simulate` returns them.
# Scenario i is drawn in ``scenario_colors(n)[i]`` in every figure; legends name the scenarios.
# Differences ("Δ") are paired by replication against the first scenario (common random
# numbers: replication r of every scenario has the same patients).

#: Outcome groups of the "out of 100 referred patients" figure; every other outcome except
#: "unresolved" is an "other loss".
_MAIN_OUTCOMES: Final[tuple[str, ...]] = ("infused", "died", "ineligible")


def _legend_name(name: str, width: int = 30) -> str:
    """Scenario names wrap in legends and tick labels instead of widening the figure."""
    return "\n".join(textwrap.wrap(name, width)) or name


def _scenario_handles(names: Sequence[str]) -> list[Any]:
    return [Patch(color=c, label=_legend_name(n)) for n, c in zip(names, scenario_colors(len(names)))]


def _delta_handle(baseline: str, level: float) -> tuple[Any, str]:
    """Legend entry explaining the "Δ" annotations."""
    return (Line2D([], [], linestyle="none"),
            f"Δ: paired difference from\n{_legend_name(baseline)}\n(same patients; {level:.0%} CI)")


def outcome_groups(replications: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Outcome groups for a comparison: infused, died, ineligible, other losses (those that
    occur in any scenario) and unresolved (only if any patient is)."""
    def occurs(outcome: str) -> bool:
        return any(outcome in t and float(t[outcome].sum()) > 0 for t in replications.values())

    groups: dict[str, list[str]] = {o: [o] for o in _MAIN_OUTCOMES}
    other = [o for o in OUTCOMES if o not in groups and o != "unresolved" and occurs(o)]
    if other:
        groups["other_losses"] = other
    if occurs("unresolved"):
        groups["unresolved"] = ["unresolved"]
    return groups


def _per_100(table: pd.DataFrame, members: Sequence[str]) -> np.ndarray:
    """Per replication: patients with any of ``members`` outcomes per 100 referred."""
    referred = table["referred"].to_numpy(dtype=float)
    count = sum((table[m].to_numpy(dtype=float) for m in members if m in table),
                np.zeros(len(table)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(referred > 0, 100.0 * count / np.maximum(referred, 1.0), np.nan)


def per_100_referred(
    replications: pd.DataFrame, groups: Mapping[str, Sequence[str]], level: float = 0.95
) -> pd.DataFrame:
    """Mean patients per 100 referred in each group, with a t-interval across replications.

    Each replication's count (summed over the group's outcomes; outcomes absent from the
    table count 0) is divided by its referrals; returns a frame indexed by group with
    ``mean``, ``ci_low``, ``ci_high`` and ``n``.
    """
    rows = {name: dict(zip(("mean", "ci_low", "ci_high", "n"),
                           t_interval(_per_100(replications, members), level)))
            for name, members in groups.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "ci_low", "ci_high", "n"])
    frame.index.name = "group"
    return frame


def _paired(
    replications: Mapping[str, pd.DataFrame],
    values: Callable[[pd.DataFrame], np.ndarray],
    level: float,
) -> dict[str, tuple[float, float, float, int]]:
    """Paired difference of ``values(table)`` of every scenario but the first against the
    first, matching replications by number."""
    names = list(replications)
    base = replications[names[0]].set_index("replication", drop=False).sort_index()
    out = {}
    for name in names[1:]:
        other = replications[name].set_index("replication", drop=False).reindex(base.index)
        out[name] = paired_difference(values(base), values(other), level)
    return out


def _fmt_small(x: float) -> str:
    """Per-100 values: one decimal, two below 1 so rare outcomes do not read as 0.0."""
    return f"{x:.2f}" if abs(x) < 1 else f"{x:.1f}"


def _text_color(color: str) -> str:
    """``color`` darkened until text in it is readable on white (WCAG contrast >= 4.5:1);
    the pale Okabe–Ito colours (orange, sky blue, yellow) are too light for text."""
    rgb = np.array(matplotlib.colors.to_rgb(color))

    def luminance(c: np.ndarray) -> float:
        linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(linear @ np.array([0.2126, 0.7152, 0.0722]))

    while 1.05 / (luminance(rgb) + 0.05) < 4.5:
        rgb = rgb * 0.9
    return matplotlib.colors.to_hex(rgb)


def _fmt_delta(diff: tuple[float, float, float, int], fmt: Callable[[float, int], str],
               sep: str = "\n") -> str:
    """"Δ +1.7 (+1.4 to +2.0)" with one number of decimals for all three numbers (two if
    they are all below 1) and true minus signs; ``fmt(value, decimals)`` formats a number."""
    mean, low, high, _ = diff
    if not np.isfinite(mean):
        return "Δ –"
    finite = [abs(v) for v in (mean, low, high) if np.isfinite(v)]
    decimals = 2 if max(finite) < 1 else 1

    def number(value: float) -> str:
        text = fmt(value, decimals)
        if not any(ch in "123456789" for ch in text):
            text = text.lstrip("+-")  # no sign on a value that rounds to zero
        return text.replace("-", "\N{MINUS SIGN}")

    ci = (f"{sep}({number(low)} to {number(high)})"
          if np.isfinite(low) and np.isfinite(high) else "")
    return f"Δ {number(mean)}{ci}"


def _signed(value: float, decimals: int) -> str:
    return f"{value:+.{decimals}f}"


def _group_label(name: str, members: Sequence[str]) -> str:
    if name == "other_losses":
        causes = ", ".join(outcome_label(m).lower() for m in members)
        return "Other losses\n" + "\n".join(textwrap.wrap(f"({causes})", 24))
    return "Unresolved at\nend of run" if name == "unresolved" else outcome_label(name)


def _error_bar(mean: float, low: float, high: float) -> tuple[float, float]:
    """Asymmetric error-bar lengths; a t-interval below zero is cut at zero (counts)."""
    if not (np.isfinite(mean) and np.isfinite(low) and np.isfinite(high)):
        return 0.0, 0.0
    return max(mean - max(low, 0.0), 0.0), max(high - mean, 0.0)


def compare_vein_to_vein_figure(
    patients: Mapping[str, pd.DataFrame],
    *,
    column: str = "vein_to_vein_days",
    footer: str = "",
) -> Figure:
    """Vein-to-vein days of infused patients per scenario: ECDF and 1-day histogram, overlaid.

    Patients of all replications are pooled per scenario. The x axis ends near the largest
    99th percentile of the scenarios (:func:`tail_limit`); the legend gives each scenario's
    median and P90 (of all values) and the share beyond the axis.
    """
    names = list(patients)
    colours = scenario_colors(len(names))
    values = {
        name: frame.loc[frame["outcome"] == "infused", column].dropna().to_numpy(dtype=float)
        for name, frame in patients.items()
    }
    if column == "vein_to_vein_days":
        xlabel = "Vein-to-vein time, apheresis to infusion (days)"
        title = "Vein-to-vein time of infused patients, by scenario"
    else:
        xlabel = f"{column.removesuffix('_days').replace('_', ' ').capitalize()} (days)"
        title = f"{xlabel.removesuffix(' (days)')} of infused patients, by scenario"
    with house_style():
        fig, axes = new_figure(1, 2, figsize=(13.5, 5.8), sharex=True, footer=footer, title=title)
        ax_cdf, ax_hist = axes[0]
        ax_cdf.set_title("Cumulative share infused within x days")
        ax_cdf.set_ylabel("Infused patients (%)")
        ax_hist.set_title("Distribution, 1-day bins")
        ax_hist.set_ylabel("Share of infused patients (%)")
        for ax in axes[0]:
            ax.set_xlabel(xlabel)
        if not any(v.size for v in values.values()):
            for ax in axes[0]:
                _empty_message(ax, "No infused patients")
            return fig
        limit = max(tail_limit(v) for v in values.values() if v.size)
        low = min(0.0, min(math.floor(v.min()) for v in values.values() if v.size))
        edges = np.arange(low, limit + 1.0, dtype=float)
        handles: list[Any] = []
        labels: list[str] = []
        any_cut = False
        for name, colour in zip(names, colours):
            v = np.sort(values[name])
            handles.append(Line2D([], [], color=colour, linewidth=2.5))
            if v.size == 0:
                labels.append(f"{_legend_name(name)}\nno infused patients")
                continue
            ax_cdf.step(np.concatenate(([low], v)), 100.0 * np.arange(v.size + 1) / v.size,
                        where="post", color=colour)
            share = 100.0 * np.histogram(v, bins=edges)[0] / v.size
            ax_hist.stairs(share, edges, fill=True, color=colour, alpha=0.25, linewidth=0)
            ax_hist.stairs(share, edges, color=colour, linewidth=1.8)
            median, p90 = np.percentile(v, [50, 90])
            label = f"{_legend_name(name)}\nmedian {median:.1f} d, P90 {p90:.1f} d"
            beyond = 100.0 * float((v > limit).mean())
            if beyond > 0:
                any_cut = True
                label += f"\n{_fmt_tail(beyond)} beyond {limit:.0f} d"
            labels.append(label)
        for level in (50, 90):
            ax_cdf.axhline(level, color="#777777", linestyle=":", linewidth=1.2, zorder=1)
        ax_cdf.set_yticks([0, 25, 50, 75, 90, 100])
        ax_cdf.set_ylim(0, 101)
        ax_cdf.set_xlim(low, limit)
        ax_hist.set_ylim(0, None)
        if any_cut:
            handles.append(Line2D([], [], linestyle="none"))
            labels.append(f"Axis cut at {limit:.0f} days (near the\n99th percentile); the rare "
                          "longer\ntimes are mostly repeat\nmanufacturing")
        side_legend(ax_hist, handles, labels, title="Scenario")
    return fig


def compare_attrition_figure(
    replications: Mapping[str, pd.DataFrame], *, footer: str = "", level: float = 0.95
) -> Figure:
    """Patients lost before infusion per 100 referred, one small panel per cause.

    Bars are each scenario's mean across replications with ``level`` t-interval error bars;
    under every other scenario's bar, its paired difference from the first scenario. Each
    panel has its own y scale, so rare causes stay readable next to death. Causes that never
    happen in any scenario are left out.
    """
    names = list(replications)
    colours = scenario_colors(len(names))
    groups = outcome_groups(replications)
    present = {m for members in groups.values() for m in members}
    causes = [c for c in OUTCOMES if c != "infused" and c in present]
    n_s = max(len(names), 1)
    # The "Δ (low to high)" tick labels need about 1.5 inches per bar.
    ncols = max(1, min(len(causes), 4 if n_s <= 2 else 2 if n_s <= 3 else 1))
    nrows = max(1, math.ceil(len(causes) / ncols))
    with house_style():
        fig, axes = new_figure(
            nrows, ncols, figsize=(13.5, 1.2 + 3.6 * nrows), footer=footer,
            title="Patients lost before infusion per 100 referred, by cause and scenario",
        )
        if not causes or not names:
            _empty_message(axes[0, 0], "No losses")
            return fig
        x = np.arange(n_s)
        for k, cause in enumerate(causes):
            ax = axes[k // ncols, k % ncols]
            ax.set_title(outcome_label(cause))
            rows = [t_interval(_per_100(replications[n], [cause]), level) for n in names]
            means = np.array([r[0] for r in rows], dtype=float)
            err = np.array([_error_bar(*r[:3]) for r in rows]).T
            ax.bar(x, means, width=0.7, color=colours)
            ax.errorbar(x, means, yerr=err, fmt="none", ecolor="#222222", elinewidth=1.2,
                        capsize=4)
            for xx, end, mean in zip(x, means + err[1], means):
                ax.annotate(_fmt_small(mean), (xx, end), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", fontsize=11)
            diffs = _paired(replications, lambda t, c=cause: _per_100(t, [c]), level)
            ticks = ["baseline"] + [_fmt_delta(diffs[n], _signed) for n in names[1:]]
            ax.set_xticks(x, ticks, fontsize=10.5)
            for tick, colour in zip(ax.get_xticklabels(), colours):
                tick.set_color(_text_color(colour))
            ax.tick_params(axis="x", length=0)
            ax.grid(axis="x", visible=False)
            ax.set_xlim(-0.6, n_s - 0.4)
            top = float(np.nanmax(means + err[1])) if np.isfinite(means).any() else 0.0
            ax.set_ylim(0, max(top, 0.05) * 1.2)
            if k % ncols == 0:
                ax.set_ylabel(f"Per 100 referred\n(mean, {level:.0%} CI)")
        for k in range(len(causes), nrows * ncols):
            axes[k // ncols, k % ncols].set_visible(False)
        handles = _scenario_handles(names)
        labels = [h.get_label() for h in handles]
        if n_s > 1:
            handle, label = _delta_handle(names[0], level)
            handles.append(handle)
            labels.append(label)
        side_legend(axes[0, ncols - 1] if len(causes) >= ncols else axes[0, len(causes) - 1],
                    handles, labels, title="Scenario")
    return fig


def compare_cumulative_incidence_figure(
    patients: Mapping[str, pd.DataFrame],
    *,
    max_day: float | None = None,
    footer: str = "",
    level: float = 0.95,
) -> Figure:
    """Cumulative incidence of infusion and of death before infusion since referral, per
    scenario: the mean across replications with a ``level`` t-interval band of that mean.

    By default the x axis ends near the 99th percentile of the days to an outcome over all
    scenarios (:func:`tail_limit`); curves are flat or nearly so beyond it.
    """
    names = list(patients)
    colours = scenario_colors(len(names))
    elapsed = [
        (f["outcome_day"] - f["referral_day"]).dropna().to_numpy(dtype=float)
        for f in patients.values()
    ]
    pooled = np.concatenate(elapsed) if elapsed else np.empty(0)
    if max_day is None:
        max_day = tail_limit(pooled) if pooled.size else 1.0
    days = np.arange(0.0, max(max_day, 1.0) + 1.0)
    panels = (("infused", "Infused"), ("died", "Died before infusion"))
    with house_style():
        fig, axes = new_figure(
            1, 2, figsize=(13.5, 5.6), sharex=True, footer=footer,
            title="Infusion and death over time since referral, by scenario",
        )
        for ax, (_, title) in zip(axes[0], panels):
            ax.set_title(title)
            ax.set_xlabel("Days since referral")
            ax.set_ylabel("Share of referred patients (%)")
        if not pooled.size:
            for ax in axes[0]:
                _empty_message(ax, "No patients with an outcome")
            return fig
        for name, colour in zip(names, colours):
            incidence = cumulative_incidence(
                patients[name], days, {o: [o] for o, _ in panels})
            for ax, (outcome, _) in zip(axes[0], panels):
                wide = (incidence[incidence["outcome"] == outcome]
                        .pivot(index="day", columns="replication", values="share")
                        .to_numpy(dtype=float) * 100.0)
                mean = wide.mean(axis=1)
                n = wide.shape[1]
                half = (float(student_t.ppf(0.5 + level / 2, n - 1)) * wide.std(axis=1, ddof=1)
                        / math.sqrt(n)) if n > 1 else np.zeros_like(mean)
                draw_band(ax, days, mean - half, mean, mean + half, color=colour)
        for ax in axes[0]:
            ax.set_xlim(0, days[-1])
            ax.set_ylim(0, None)
        handles = _scenario_handles(names)
        labels = [h.get_label() for h in handles]
        handles.append(Patch(color="#999999", alpha=0.35, linewidth=0))
        labels.append(f"Band: {level:.0%} CI of the mean\nacross replications")
        later = float((pooled > days[-1]).mean() * 100.0)
        if later > 0:
            handles.append(Line2D([], [], linestyle="none"))
            labels.append(f"{_fmt_tail(later)} of outcomes "
                          f"happen\nafter day {days[-1]:.0f} (not shown)")
        side_legend(axes[0, -1], handles, labels, title="Scenario")
    return fig


def compare_outcomes_figure(
    replications: Mapping[str, pd.DataFrame], *, footer: str = "", level: float = 0.95
) -> Figure:
    """Out of 100 referred patients: how many are infused, die, become ineligible or are lost
    otherwise, per scenario (means across replications, ``level`` t-interval error bars), with
    each scenario's paired difference from the first above each group."""
    names = list(replications)
    colours = scenario_colors(len(names))
    groups = outcome_groups(replications)
    stats = {n: per_100_referred(t, groups, level) for n, t in replications.items()}
    n_s = max(len(names), 1)
    with house_style():
        fig, axes = new_figure(
            1, 1, figsize=(13.5, 6.4), footer=footer,
            title="Outcomes out of 100 referred patients, by scenario",
        )
        ax = axes[0, 0]
        ax.set_ylabel(f"Patients per 100 referred\n(mean; error bars: {level:.0%} CI)")
        if not names:
            _empty_message(ax, "No scenarios")
            return fig
        x = np.arange(len(groups))
        width = 0.8 / n_s
        group_top = np.zeros(len(groups))
        for i, (name, colour) in enumerate(zip(names, colours)):
            frame = stats[name]
            xs = x - 0.4 + width * (i + 0.5)
            means = frame["mean"].to_numpy(dtype=float)
            err = np.array([_error_bar(*frame.loc[g, ["mean", "ci_low", "ci_high"]])
                            for g in groups]).T
            ax.bar(xs, means, width=width * 0.92, color=colour)
            ax.errorbar(xs, means, yerr=err, fmt="none", ecolor="#222222", elinewidth=1.2,
                        capsize=3)
            for xx, end, mean in zip(xs, means + err[1], means):
                ax.annotate(_fmt_small(mean), (xx, end), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", fontsize=11)
            group_top = np.fmax(group_top, means + err[1])
        # Paired differences above each group, one line per scenario in its colour.
        for k, (group, members) in enumerate(groups.items()):
            diffs = _paired(replications, lambda t, m=members: _per_100(t, m), level)
            for j, name in enumerate(names[1:]):
                ax.annotate(_fmt_delta(diffs[name], _signed, sep=" "), (x[k], group_top[k]),
                            xytext=(0, 22 + 16 * (n_s - 2 - j)), textcoords="offset points",
                            ha="center", va="bottom", fontsize=11,
                            color=_text_color(colours[j + 1]))
        ax.set_xticks(x, [_group_label(g, m) for g, m in groups.items()])
        ax.grid(axis="x", visible=False)
        top = float(np.nanmax(group_top)) if len(group_top) else 1.0
        ax.set_ylim(0, max(top, 1.0) * (1.18 + 0.06 * max(n_s - 2, 0)))
        handles = _scenario_handles(names)
        labels = [h.get_label() for h in handles]
        if n_s > 1:
            handle, label = _delta_handle(names[0], level)
            handles.append(handle)
            labels.append(label)
        side_legend(ax, handles, labels, title="Scenario")
    return fig


def _money_scale(top: float) -> tuple[float, str, str]:
    """Divisor, axis word and value suffix for amounts up to about ``top``: thousands keep
    three or more significant digits for amounts from tens of thousands to millions."""
    if top >= 1e4:
        return 1e3, " thousand", "k"
    return 1.0, "", ""


def compare_cost_figure(
    replications: Mapping[str, pd.DataFrame],
    currency: str = "",
    *,
    footer: str = "",
    level: float = 0.95,
) -> Figure:
    """Cost per infused patient and per referred patient per scenario (means across
    replications with ``level`` t-interval error bars) in ``currency``, with each scenario's
    paired difference from the first."""
    names = list(replications)
    colours = scenario_colors(len(names))
    shown = (("cost_per_infused", "Cost per infused patient"),
             ("cost_per_referred",
              "Cost per referred patient (all referrals, including those never infused)"))
    nan_row = (math.nan, math.nan, math.nan, 0)
    intervals = {
        metric: [t_interval(t[metric].to_numpy(dtype=float), level) if metric in t else nan_row
                 for t in replications.values()]
        for metric, _ in shown
    }
    finite = [v for rows in intervals.values() for r in rows for v in r[:3] if np.isfinite(v)]
    scale, scale_word, suffix = _money_scale(max(finite) if finite else 0.0)

    def money(value: float, sign: str = "") -> str:
        return f"{value / scale:{sign},.0f}{suffix}"

    unit = f"{currency} " if currency else ""
    y = np.arange(len(names))
    with house_style():
        fig, axes = new_figure(
            2, 1, figsize=(13.5, 2.8 + 1.7 * max(len(names), 1)), footer=footer, sharex=True,
            title=f"Cost per patient by scenario{f' ({currency})' if currency else ''}",
        )
        right = 0.0
        for ax, (metric, title) in zip(axes[:, 0], shown):
            ax.set_title(title)
            rows = intervals[metric]
            means = np.array([r[0] for r in rows], dtype=float)
            if not np.isfinite(means).any():
                _empty_message(ax, "No cost data")
                continue
            err = np.array([_error_bar(*r[:3]) for r in rows]).T
            ax.barh(y, np.nan_to_num(means) / scale, height=0.62, color=colours)
            ax.errorbar(means / scale, y, xerr=err / scale, fmt="none", ecolor="#222222",
                        elinewidth=1.2, capsize=4)
            diffs = (_paired(replications, lambda t, m=metric: t[m].to_numpy(dtype=float), level)
                     if all(metric in t for t in replications.values()) else {})
            for i, (yy, (mean, low, high, _n)) in enumerate(zip(y, rows)):
                if not np.isfinite(mean):
                    continue
                text = f"{unit}{money(mean)}"
                if np.isfinite(low) and np.isfinite(high):
                    text += f"  ({money(low)} to {money(high)})"
                if i > 0 and names[i] in diffs:
                    text += "\n" + _fmt_delta(diffs[names[i]], lambda v, _d: money(v, "+"),
                                              sep=" ")
                end = mean + err[1][i]
                right = max(right, end)
                ax.annotate(text, (end / scale, yy), xytext=(6, 0), textcoords="offset points",
                            va="center", ha="left", fontsize=11.5)
            ax.set_yticks(y, [_legend_name(n, 34) for n in names])
            for tick, colour in zip(ax.get_yticklabels(), colours):
                tick.set_color(_text_color(colour))
            ax.invert_yaxis()
            ax.grid(axis="y", visible=False)
        axes[-1, 0].set_xlabel(f"{currency or 'Cost'}{scale_word} per patient "
                               f"(mean; error bars: {level:.0%} CI)")
        axes[0, 0].set_xlim(0, max(right, 1.0) / scale * 1.9)
        axes[-1, 0].xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        if len(names) > 1:
            handle, label = _delta_handle(names[0], level)
            side_legend(axes[0, 0], [handle], [label])
    return fig


#: Comparison figures written by :func:`comparison_figures`, by file stem.
COMPARISON_FIGURES: Final[tuple[str, ...]] = (
    "outcomes_per_100",
    "vein_to_vein",
    "cumulative_incidence",
    "attrition_by_cause",
    "cost_per_patient",
)


def _draw_and_save_comparison(
    stem: str,
    patients: Mapping[str, pd.DataFrame],
    replications: Mapping[str, pd.DataFrame],
    currency: str,
    out_dir: Path,
    footer: str,
    formats: Sequence[str],
    dpi: int,
) -> list[Path]:
    """Build one comparison figure, save it and free it (runs in a worker process too)."""
    if stem == "outcomes_per_100":
        fig = compare_outcomes_figure(replications, footer=footer)
    elif stem == "vein_to_vein":
        fig = compare_vein_to_vein_figure(patients, footer=footer)
    elif stem == "cumulative_incidence":
        fig = compare_cumulative_incidence_figure(patients, footer=footer)
    elif stem == "attrition_by_cause":
        fig = compare_attrition_figure(replications, footer=footer)
    else:
        fig = compare_cost_figure(replications, currency, footer=footer)
    paths = save_figure(fig, out_dir, stem, formats=formats, dpi=dpi)
    fig.clear()
    return paths


def comparison_figures(
    patients: Mapping[str, pd.DataFrame],
    replications: Mapping[str, pd.DataFrame],
    out_dir: Path,
    *,
    currency: str = "",
    footer: str = "",
    formats: Sequence[str] = ("png", "svg", "pdf"),
    dpi: int = 300,
    jobs: int = 1,
) -> list[Path]:
    """Draw and save every comparison figure (:data:`COMPARISON_FIGURES`); returns the paths.

    ``patients`` and ``replications`` map scenario names (baseline first) to their frames;
    the replications of all scenarios must share replication numbers (one seed) for the
    paired differences. PNG at ``dpi`` (300 by default), SVG and PDF; ``jobs > 1`` draws in
    worker processes (same files).
    """
    out_dir = Path(out_dir)
    args = (dict(patients), dict(replications), currency, out_dir, footer, tuple(formats), dpi)
    if jobs <= 1:
        results = [_draw_and_save_comparison(stem, *args) for stem in COMPARISON_FIGURES]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(jobs, len(COMPARISON_FIGURES))) as pool:
            futures = [pool.submit(_draw_and_save_comparison, stem, *args)
                       for stem in COMPARISON_FIGURES]
            results = [f.result() for f in futures]
    return [p for paths in results for p in paths]


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def save_figure(
    fig: Figure,
    out_dir: Path,
    stem: str,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 200,
) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.<format>`` for each format; returns the paths.

    The figure is left open (the caller may save it again); :func:`run_figures` clears it.
    Metadata dates are omitted so that the same figure gives the same file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with house_style():
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            # The PDF backend names its date "CreationDate" (and ignores "Date").
            metadata: dict[str, Any] | None = (
                {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf"
                else None)
            fig.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
            paths.append(path)
    return paths


def _draw_and_save(stem: str, frame: pd.DataFrame, scenario_name: str, out_dir: Path,
                   footer: str, journey_relative: bool) -> list[Path]:
    """Build one standard figure, save it and free it (runs in a worker process too)."""
    if stem == "vein_to_vein":
        fig = vein_to_vein_figure(frame, scenario_name, footer=footer)
    elif stem == "attrition_funnel":
        fig = attrition_funnel_figure(frame, scenario_name, footer=footer)
    elif stem == "cumulative_incidence":
        fig = cumulative_incidence_figure(frame, scenario_name, footer=footer)
    elif stem == "site_utilisation":
        fig = site_timeline_figure(frame, scenario_name, footer=footer)
    else:
        fig = journey_figure(frame, scenario_name, relative=journey_relative, footer=footer)
    paths = save_figure(fig, out_dir, stem)
    # Figures made without pyplot are freed once unreferenced; clearing releases the
    # artists now, which matters when many scenarios are drawn in one process.
    fig.clear()
    return paths


def run_figures(
    patients: pd.DataFrame,
    site_days: pd.DataFrame,
    events: pd.DataFrame,
    scenario_name: str,
    out_dir: Path,
    footer: str = "",
    *,
    journey_relative: bool = True,
    jobs: int = 1,
) -> list[Path]:
    """Draw and save all standard figures of one scenario (PNG at 200 dpi and SVG).

    Writes ``vein_to_vein``, ``attrition_funnel``, ``cumulative_incidence``,
    ``site_utilisation`` and ``journey``; returns the written paths. The journey figure is
    drawn in days since referral by default: traced patients are referred over months or
    years, so on the simulation-day axis each month-long journey would be a sliver (slot
    contention over calendar time is what ``site_utilisation`` shows). With ``jobs > 1``
    the figures are drawn in that many worker processes (same files).
    """
    work = (
        ("journey", events),
        ("vein_to_vein", patients),
        ("site_utilisation", site_days),
        ("attrition_funnel", patients),
        ("cumulative_incidence", patients),
    )
    out_dir = Path(out_dir)
    if jobs <= 1:
        results = [_draw_and_save(stem, frame, scenario_name, out_dir, footer, journey_relative)
                   for stem, frame in work]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
            futures = [pool.submit(_draw_and_save, stem, frame, scenario_name, out_dir, footer,
                                   journey_relative) for stem, frame in work]
            results = [f.result() for f in futures]
    order = ["vein_to_vein", "attrition_funnel", "cumulative_incidence", "site_utilisation",
             "journey"]
    return sorted((p for paths in results for p in paths),
                  key=lambda p: (order.index(p.stem), p.suffix))
