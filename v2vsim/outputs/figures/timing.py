"""How long patients take: the vein-to-vein distribution of one scenario and of several side by
side (quantiles averaged over replications, so that curves and legends give the summary tables'
median and P90), and the swimlanes of individual patient journeys (steps, waits before steps,
how each journey ended)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.font_manager import FontProperties
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Patch
from matplotlib.path import Path
from matplotlib.transforms import Affine2D
from matplotlib.textpath import TextToPath

from ...metrics import t_interval, t_quantile
from ...scenario import OUTCOME_BY_KIND
from .display import ScenarioDisplay, day_axis
from .paired import _legend_name
from .style import (
    _FOOTER_COLOR,
    KIND_COLORS,
    _empty_message,
    _fmt_tail,
    _ordered_outcomes,
    band_label,
    house_style,
    kind_color,
    new_figure,
    outcome_color,
    outcome_label,
    scenario_colors,
    side_legend,
    tail_limit,
)

__all__ = [
    "QUANTILE_GRID",
    "compare_vein_to_vein_figure",
    "day_limits",
    "journey_figure",
    "quantile_average",
    "quantile_summary",
    "replication_quantiles",
    "vein_to_vein_figure",
]

# --------------------------------------------------------------------------------------------
# Vein-to-vein time
# --------------------------------------------------------------------------------------------


#: Probabilities of the quantile-averaged curves: steps of 0.5%, 0.5 and 0.9 exactly.
QUANTILE_GRID: Final[np.ndarray] = np.arange(201) / 200.0


def replication_quantiles(patients: pd.DataFrame, column: str,
                          probs: np.ndarray | Sequence[float]) -> np.ndarray:
    """``replications x probs``: each replication's quantiles of ``column`` among its infused
    patients (linear interpolation, as ``numpy.quantile`` and pandas' ``quantile`` default).

    Replications without an infused patient are left out, as the replication table leaves
    their ``vein_to_vein_median`` and ``vein_to_vein_p90`` missing: the mean of a column of
    this table is the mean the summary tables give for the same quantile."""
    probs = np.asarray(probs, dtype=float)
    infused = patients.loc[patients["outcome"] == "infused", ["replication", column]].dropna()
    if not len(infused):
        return np.empty((0, probs.size))
    infused = infused.sort_values(["replication", column], kind="stable")
    reps = infused["replication"].to_numpy()
    values = infused[column].to_numpy(dtype=float)
    bounds = np.flatnonzero(np.r_[True, reps[1:] != reps[:-1], True])
    return np.stack([np.quantile(values[a:b], probs) for a, b in zip(bounds[:-1], bounds[1:])])


def quantile_summary(patients: pd.DataFrame, column: str, q: float,
                     level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean and ``level`` t-interval across replications of each replication's ``q`` quantile
    of ``column`` (infused patients): the statistic of the summary tables (for
    ``vein_to_vein_days``, the ``vein_to_vein_median`` and ``vein_to_vein_p90`` rows)."""
    return t_interval(replication_quantiles(patients, column, [q])[:, 0], level)


def quantile_average(patients: pd.DataFrame, column: str, level: float = 0.95,
                     probs: np.ndarray | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The quantile-averaged ("Vincent") cumulative curve of ``column`` over replications.

    For each probability ``p`` of ``probs`` (default :data:`QUANTILE_GRID`), ``x(p)`` is the mean
    over replications of the replication's ``p`` quantile, with a ``level`` t-interval of that
    mean. Its 50% and 90% crossings are therefore the summary tables' median and P90 (each the
    mean of the replications' own). Returns ``probs, mean, low, high`` and the number of
    replications; with one replication the interval is the mean itself.
    """
    probs = QUANTILE_GRID if probs is None else np.asarray(probs, dtype=float)
    table = replication_quantiles(patients, column, probs)
    n = table.shape[0]
    if n == 0:
        empty = np.full(probs.size, math.nan)
        return probs, empty, empty, empty, 0
    mean = table.mean(axis=0)
    if n == 1:
        return probs, mean, mean, mean, 1
    half = t_quantile(0.5 + level / 2, n - 1) * table.std(axis=0, ddof=1) / math.sqrt(n)
    return probs, mean, mean - half, mean + half, n


def _fmt_days_ci(stat: tuple[float, float, float, int]) -> str:
    mean, low, high, _n = stat
    if math.isfinite(low) and math.isfinite(high):
        return f"{mean:.1f} d ({low:.1f}–{high:.1f})"
    return f"{mean:.1f} d"


def _beyond_note(values: np.ndarray, limit: float) -> str | None:
    """Legend text for the values cut off at ``limit`` (None if nothing is cut)."""
    beyond = int((values > limit).sum())
    if beyond == 0:
        return None
    return (f"Not shown: {_fmt_tail(100.0 * beyond / values.size)} beyond "
            f"{limit:.0f} days\n(longest {values.max():.0f} days)")


def day_limits(values: np.ndarray, quantile: float = 97.5) -> tuple[float, float]:
    """x limits of a distribution of days: a day below the smallest value (never below 0
    unless values are) to :func:`tail_limit` at ``quantile``."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low = max(min(0.0, float(values.min())), math.floor(float(values.min())) - 1.0)
    return low, max(tail_limit(values, quantile), low + 1.0)


def _histogram_panel(ax: Axes, values: np.ndarray, title: str, xlabel: str,
                     median: tuple[float, float, float, int],
                     p90: tuple[float, float, float, int]) -> None:
    """1-day-bin histogram of ``values`` (all replications pooled, in % of values) with the
    summary tables' median and P90 (means of the replications' own, :func:`quantile_summary`)
    marked and given with their CIs in the legend, below the panel's data.

    The x axis runs from a day before the shortest time to near the 97.5th percentile
    (:func:`day_limits`); the legend says how many values lie beyond it.
    """
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Share of infused patients (%),\nall replications pooled")
    if values.size == 0:
        _empty_message(ax, "No infused patients")
        return
    ax.set_title(
        f"n = {values.size:,} infused", loc="right", fontsize=11.5, color=_FOOTER_COLOR
    )
    lo, limit = day_limits(values)
    edges = np.arange(math.floor(lo), limit + 1.0, dtype=float)
    counts, _ = np.histogram(values, bins=edges)
    share = 100.0 * counts / values.size
    ax.bar(
        edges[:-1], share, width=1.0, align="edge", color=outcome_color("infused"),
        edgecolor="white", linewidth=0.3 if edges.size < 150 else 0.0,
    )
    ax.set_ylim(0, share.max() * 1.08)
    ax.set_xlim(lo, limit)
    ax.axvline(median[0], color="black", linestyle="-", linewidth=1.6,
               label=f"Median {_fmt_days_ci(median)}")
    ax.axvline(p90[0], color="black", linestyle="--", linewidth=1.6,
               label=f"90th percentile {_fmt_days_ci(p90)}")
    handles, labels = ax.get_legend_handles_labels()
    note = _beyond_note(values, limit)
    if note:
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(note)
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
              handlelength=1.8, title="Mean of replications (95% CI)", fontsize=11)


def vein_to_vein_figure(
    patients: pd.DataFrame, scenario_name: str, *, footer: str = ""
) -> Figure:
    """Distribution of vein-to-vein and referral-to-infusion days among infused patients.

    Bars: patients of all replications pooled, 1-day bins as a share of infused patients.
    Lines and legend: the median and 90th percentile as the summary tables give them (the mean
    across replications of each replication's own, with a 95% CI; :func:`quantile_summary`).
    Each x axis ends near the 97.5th percentile (the long tail of re-manufactured patients would
    squash the main mass); the legend says what share lies beyond.
    """
    with house_style():
        fig, axes = new_figure(
            1, 2, figsize=(13, 5.8), title=f"Time to infusion — {scenario_name}", footer=footer
        )
        for ax, column, title, xlabel in (
            (axes[0, 0], "vein_to_vein_days", "Apheresis → infusion (vein-to-vein)",
             "Vein-to-vein time (days)"),
            (axes[0, 1], "referral_to_infusion_days", "Referral → infusion",
             "Referral to infusion (days)"),
        ):
            values = patients.loc[patients["outcome"] == "infused", column].dropna(
                ).to_numpy(dtype=float)
            _histogram_panel(ax, values, title, xlabel, quantile_summary(patients, column, 0.5),
                             quantile_summary(patients, column, 0.9))
    return fig



def compare_vein_to_vein_figure(
    patients: Mapping[str, pd.DataFrame],
    *,
    column: str = "vein_to_vein_days",
    footer: str = "",
    level: float = 0.95,
) -> Figure:
    """Days of infused patients per scenario: the quantile-averaged cumulative curve and the
    pooled 1-day histogram.

    Left: for each share ``p`` infused, the mean over replications of each replication's ``p``
    quantile (:func:`.timing.quantile_average`), with a ``level`` CI of that mean as a band: the
    curve crosses 50% and 90% at the summary tables' median and P90, which the legend gives
    with their CIs. Right: patients of all replications pooled per scenario. The x axis runs
    from a day before the shortest time to near the largest 97.5th percentile of the
    scenarios (:func:`.timing.day_limits`); the legend gives the share beyond.
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
        ax_cdf.set_title("Share infused within x days\n(quantiles averaged over replications)")
        ax_cdf.set_ylabel("Infused patients (%)")
        ax_hist.set_title("Distribution, 1-day bins\n(all replications pooled)")
        ax_hist.set_ylabel("Share of infused patients (%)")
        for ax in axes[0]:
            ax.set_xlabel(xlabel)
        if not any(v.size for v in values.values()):
            for ax in axes[0]:
                _empty_message(ax, "No infused patients")
            return fig
        bounds = [day_limits(v) for v in values.values() if v.size]
        low = min(b[0] for b in bounds)
        limit = max(b[1] for b in bounds)
        edges = np.arange(math.floor(low), limit + 1.0, dtype=float)
        handles: list[Any] = []
        labels: list[str] = []
        any_cut = False
        top = 0.0
        for name, colour in zip(names, colours):
            v = values[name]
            handles.append(Line2D([], [], color=colour, linewidth=2.5))
            if v.size == 0:
                labels.append(f"{_legend_name(name)}\nno infused patients")
                continue
            probs, mean, ci_low, ci_high, n_reps = quantile_average(patients[name], column, level)
            ax_cdf.fill_betweenx(100.0 * probs, ci_low, ci_high, color=colour, alpha=0.2,
                                 linewidth=0)
            ax_cdf.plot(mean, 100.0 * probs, color=colour)
            share = 100.0 * np.histogram(v, bins=edges)[0] / v.size
            top = max(top, float(share.max()))
            ax_hist.stairs(share, edges, fill=True, color=colour, alpha=0.25, linewidth=0)
            ax_hist.stairs(share, edges, color=colour, linewidth=1.8)
            median = quantile_summary(patients[name], column, 0.5, level)
            p90 = quantile_summary(patients[name], column, 0.9, level)
            label = (f"{_legend_name(name)}\nmedian {_fmt_days_ci(median)}\n"
                     f"P90 {_fmt_days_ci(p90)}")
            beyond = 100.0 * float((v > limit).mean())
            if beyond > 0:
                any_cut = True
                label += f"\n{_fmt_tail(beyond)} beyond {limit:.0f} d"
            labels.append(label)
        for share_level in (50, 90):
            ax_cdf.axhline(share_level, color="#777777", linestyle=":", linewidth=1.2, zorder=1)
        ax_cdf.set_yticks([0, 25, 50, 75, 90, 100])
        ax_cdf.set_ylim(0, 101)
        ax_cdf.set_xlim(low, limit)
        ax_hist.set_ylim(0, max(top, 1e-9) * 1.08)
        handles.append(Patch(color="#999999", alpha=0.35, linewidth=0))
        labels.append(band_label(level))
        if any_cut:
            handles.append(Line2D([], [], linestyle="none"))
            labels.append(f"Axis cut at {limit:.0f} days (near the\n97.5th percentile); the "
                          "rare longer\ntimes are mostly repeat\nmanufacturing")
        side_legend(ax_hist, handles, labels,
                    title=f"Scenario: mean of replications\n({level:.0%} CI), days")
    return fig


# --------------------------------------------------------------------------------------------
# Patient journeys
# --------------------------------------------------------------------------------------------

@functools.cache
def _check_mark() -> MarkerStyle:
    """The mathtext check mark as a plain path, centred and scaled as matplotlib draws a
    ``$...$`` marker (the house style turns mathtext off for all text)."""
    verts, codes = TextToPath().get_text_path(FontProperties(), r"$\checkmark$", ismath=True)
    box = Path(verts, codes).get_extents()
    centre = np.array([box.x0 + box.width / 2, box.y0 + box.height / 2])
    path = Path((np.asarray(verts, dtype=float) - centre) / max(box.width, box.height), codes)
    # A path marker is scaled by its farthest vertex (a curve's control point here), a
    # mathtext one by its extent: undo the first so the mark keeps its size.
    return MarkerStyle(path, transform=Affine2D().scale(2 * np.abs(path.vertices).max()))


_END_MARKERS: Final[Mapping[str, Any]] = {
    "died": "X",
    "ineligible": "D",
    "unresolved": ">",
}


def _end_marker(outcome: str) -> Any:
    return _check_mark() if outcome == "infused" else _END_MARKERS.get(outcome, "s")


def _final_outcome(last: pd.Series) -> str:
    """What the patient's last traced event says about how the journey ended."""
    status = str(last["status"])
    kind = str(last["kind"])
    if status == "done":
        return "infused" if kind == "infusion" else "unresolved"
    if status == "failed":
        return OUTCOME_BY_KIND.get(kind, "step_failed")
    return status


def journey_figure(
    events: pd.DataFrame,
    scenario_name: str,
    max_patients: int = 25,
    *,
    relative: bool = False,
    footer: str = "",
    display: ScenarioDisplay | None = None,
) -> Figure:
    """Swimlanes of individual patient journeys: steps, waits before steps and how each ended.

    One lane per patient (the first ``max_patients`` by referral day); bars are steps coloured
    by kind, hatched bars are waits (ready to start), failed attempts end with a small x and
    each journey ends with a marker for its outcome. Only the first replication in ``events``
    is drawn. The x axis is the simulation day, which shows patients competing for the same
    slots; ``relative=True`` starts every lane at its referral instead, to compare journeys.
    Cohorts are named with ``display`` (their labels), and with its start date the simulation
    days are shown as dates.
    """
    display = display or ScenarioDisplay()
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
        if relative:
            ax.set_xlabel("Days since referral")
        else:
            day_axis(ax, display.start_date)
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
            labels.append(f"Patient {patient} ({display.cohort(str(trace['cohort'].iloc[0]))})")
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
            ax.plot(end_x + max(span, 1.0) * 0.012, lane, marker=_end_marker(outcome),
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
            handles.append(Line2D([], [], marker=_end_marker(outcome),
                                  color=outcome_color(outcome), linestyle="none", markersize=10,
                                  markeredgecolor="black" if outcome != "infused" else None,
                                  markeredgewidth=0.6, label=label))
        side_legend(ax, handles, title="Steps and outcomes")
    return fig
