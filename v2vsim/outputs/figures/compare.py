"""Comparison figures between scenarios (``v2vsim compare``), drawn and saved by
:func:`comparison_figures`.

Frames are keyed by scenario name, baseline first; every scenario keeps its colour in every
figure, and differences from the baseline ("Δ") are paired by replication (common random
numbers; see :mod:`.paired`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter

from ...metrics import WARMUP_COLUMN, counted, t_interval
from ...scenario import OUTCOMES
from .economics import cost_breakdown_figure
from .outcomes import _incidence_shares
from .paired import (
    _delta_handle,
    _error_bar,
    _fmt_delta,
    _fmt_small,
    _group_label,
    _legend_name,
    _paired,
    _per_100,
    _scenario_handles,
    _signed,
    _text_color,
    outcome_groups,
    per_100_referred,
)
from .timing import compare_vein_to_vein_figure
from .style import (
    _empty_message,
    band_label,
    mean_band,
    _fmt_tail,
    draw_band,
    draw_figures,
    house_style,
    new_figure,
    outcome_label,
    percent_limit,
    save_figure,
    scenario_colors,
    side_legend,
    tail_limit,
)

__all__ = [
    "COMPARISON_FIGURES",
    "compare_attrition_figure",
    "compare_cost_figure",
    "compare_cumulative_incidence_figure",
    "compare_outcomes_figure",
    "compare_vein_to_vein_figure",
    "comparison_figures",
]


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
        tops = {outcome: 0.0 for outcome, _ in panels}
        for name, colour in zip(names, colours):
            # Each outcome's days x replications shares: the array the pivot of
            # cumulative_incidence() gives, without the long table of every replication's days.
            _reps, incidence = _incidence_shares(patients[name], days, {o: [o] for o, _ in panels})
            for ax, (outcome, _) in zip(axes[0], panels):
                mean, low, high = mean_band(incidence[outcome] * 100.0, level)
                draw_band(ax, days, low, mean, high, color=colour)
                tops[outcome] = max(tops[outcome], float(np.nanmax(high)))
        for ax in axes[0]:
            ax.set_xlim(0, days[-1])
        for ax, (outcome, _) in zip(axes[0], panels):
            ax.set_ylim(0, percent_limit(tops[outcome]))
        handles = _scenario_handles(names)
        labels = [h.get_label() for h in handles]
        handles.append(Patch(color="#999999", alpha=0.35, linewidth=0))
        labels.append(band_label(level))
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
                # Past the axis end if need be: constrained layout makes room for the text in
                # the margin, so the axis itself stops near the data.
                ax.annotate(text, (end / scale, yy), xytext=(6, 0), textcoords="offset points",
                            va="center", ha="left", fontsize=11.5, annotation_clip=False)
            ax.set_yticks(y, [_legend_name(n, 34) for n in names])
            for tick, colour in zip(ax.get_yticklabels(), colours):
                tick.set_color(_text_color(colour))
            ax.invert_yaxis()
            ax.grid(axis="y", visible=False)
        axes[-1, 0].set_xlabel(f"{currency or 'Cost'}{scale_word} per patient "
                               f"(mean; error bars: {level:.0%} CI)")
        axes[0, 0].set_xlim(0, max(right, 1.0) / scale * 1.05)
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
    budgets: Mapping[str, pd.DataFrame] | None = None,
    everyone: Mapping[str, pd.Series] | None = None,
) -> list[Path]:
    """Build one comparison figure, save it and free it (runs in a worker process too).
    ``everyone``: with a warm-up, each replication's referrals warm-up included (the budget's)."""
    if stem == "cost_breakdown":
        referred = dict(everyone) if everyone else {
            n: t.set_index("replication")["referred"] for n, t in replications.items()}
        fig = cost_breakdown_figure(dict(budgets or {}), referred, currency, footer=footer)
    elif stem == "outcomes_per_100":
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
    guard: Callable[[str], AbstractContextManager[None]] | None = None,
    budgets: Mapping[str, pd.DataFrame] | None = None,
) -> list[Path]:
    """Draw and save every comparison figure (:data:`COMPARISON_FIGURES`); returns the paths.

    With ``budgets`` (each scenario's ``Results.budget``, by name) and every scenario's having
    rows (economics sections), ``cost_breakdown`` is drawn too: each scenario's cost per
    referred patient stacked by category (:func:`.economics.cost_breakdown_figure`).

    ``patients`` and ``replications`` map scenario names (baseline first) to their frames;
    the replications of all scenarios must share replication numbers (one seed) for the
    paired differences. PNG at ``dpi`` (300 by default), SVG and PDF; ``jobs > 1`` draws in
    worker processes (same files); with ``guard`` (see :func:`.style.draw_figures`) a figure that
    fails leaves the others drawn. Patients of a warm-up are not drawn (:func:`~v2vsim.metrics.counted`),
    except in the cost breakdown, whose budget counts every patient.
    """
    out_dir = Path(out_dir)
    everyone = ({n: p.groupby("replication").size() for n, p in patients.items()}
                if any(WARMUP_COLUMN in p for p in patients.values()) else None)
    patients = {n: counted(p) for n, p in patients.items()}
    stems = list(COMPARISON_FIGURES)
    costed = (budgets is not None and set(budgets) >= set(patients)
              and all(len(budgets[n]) for n in patients))
    if costed:
        stems.append("cost_breakdown")
    args = (dict(patients), dict(replications), currency, out_dir, footer, tuple(formats), dpi,
            {n: budgets[n] for n in patients} if costed and budgets is not None else None, everyone)
    results = draw_figures(_draw_and_save_comparison, [(stem, args) for stem in stems],
                           out_dir, jobs=jobs, guard=guard)
    return [p for paths in results for p in paths]
