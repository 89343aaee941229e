"""Where referred patients end up: the attrition funnel (who reaches each stage, who is lost
on the way and why) and the cumulative incidence of outcomes over time since referral."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .display import thousands
from .style import (
    _NEUTRAL_COLOR,
    _OTHER_LOSSES_COLOR,
    _empty_message,
    _fmt_count,
    _fmt_percent,
    _fmt_tail,
    _n_replications,
    _ordered_outcomes,
    band_label,
    draw_band,
    house_style,
    mean_band,
    new_figure,
    outcome_color,
    outcome_label,
    percent_limit,
    side_legend,
    tail_limit,
)

__all__ = [
    "FUNNEL_STAGES",
    "attrition_funnel_figure",
    "cumulative_incidence",
    "cumulative_incidence_figure",
    "funnel_counts",
    "funnel_losses",
]

# --------------------------------------------------------------------------------------------
# Attrition funnel
# --------------------------------------------------------------------------------------------

#: Stages of the attrition funnel, in order: each counts the patients for whom it happened
#: (or a later stage did): referred, apheresis done, manufacture started, product released
#: for infusion, infused.
FUNNEL_STAGES: Final[tuple[str, ...]] = (
    "referred",
    "apheresed",
    "manufacture_started",
    "released",
    "infused",
)

_STAGE_LABELS: Final[Mapping[str, str]] = {
    "referred": "Referred",
    "apheresed": "Apheresis done",
    "manufacture_started": "Manufacture started",
    "released": "Product released",
    "infused": "Infused",
}


def _deepest_stage(patients: pd.DataFrame) -> np.ndarray:
    """Index into FUNNEL_STAGES of the last stage each patient reached.

    apheresed = apheresis_day known; manufacture_started = manufacture_start_day known (a
    manufacture that then fails still started: the patient is lost after this stage, as
    "manufacturing failed"); released = release_day known; infused = outcome "infused". A
    patient counts as reaching a stage if they reached it or any later one, so the funnel
    never widens even if a pathway skips a step (e.g. no recorded release).
    """
    infused = (patients["outcome"] == "infused").to_numpy()
    released = patients["release_day"].notna().to_numpy() | infused
    started = patients["manufacture_start_day"].notna().to_numpy() | released
    apheresed = patients["apheresis_day"].notna().to_numpy() | started
    return (
        apheresed.astype(int) + started.astype(int) + released.astype(int) + infused
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
        thousands(ax.xaxis)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(
            "Patients in one replication's referral window (mean across replications)"
            if n_reps > 1 else "Patients (one replication)"
        )
        handles = [
            Patch(color=outcome_color(c), label=outcome_label(c))
            for c in _ordered_outcomes(causes_seen)
        ]
        if handles:
            side_legend(ax, handles, title="Lost because")
    return fig


# --------------------------------------------------------------------------------------------
# Cumulative incidence of outcomes
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
            o: [o] for o in _present_outcomes(patients["outcome"]) if o != "unresolved"
        }
    reps, shares = _incidence_shares(patients, days_arr, groups)
    if not shares or not reps.size:
        return pd.DataFrame(
            {
                "replication": pd.Series(dtype="int64"),
                "outcome": pd.Series(dtype=object),
                "day": pd.Series(dtype=float),
                "share": pd.Series(dtype=float),
            }
        )
    names = np.array(list(shares), dtype=object)
    return pd.DataFrame(
        {  # replication after replication, each group's days in turn
            "replication": np.repeat(reps, names.size * days_arr.size),
            "outcome": np.tile(np.repeat(names, days_arr.size), reps.size),
            "day": np.tile(days_arr, reps.size * names.size),
            "share": np.stack([shares[name].T for name in shares], axis=1).reshape(-1),
        }
    )


def _incidence_shares(
    patients: pd.DataFrame, days: np.ndarray, groups: Mapping[str, Sequence[str]]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The replications (sorted) and, per group, the share of each replication's referred
    patients with an outcome of the group by each day: an array ``days x replications``.

    Each patient's elapsed days fall between two days of the grid: counting the patients of
    each replication at each grid position (one ``bincount``) and summing them along the grid
    gives the patients with ``t <= day`` of every replication and day at once, in time linear
    in patients plus the table's size."""
    elapsed = (patients["outcome_day"] - patients["referral_day"]).to_numpy(dtype=float)
    codes, labels = pd.factorize(patients["outcome"], use_na_sentinel=False)
    names = np.array([str(label) for label in labels], dtype=object)  # as .astype(str) reads them
    reps, rep_index, referred = np.unique(
        patients["replication"].to_numpy(), return_inverse=True, return_counts=True
    )
    rep_index = rep_index.reshape(-1)
    grid_sorted = days.size < 2 or bool(np.all(days[1:] >= days[:-1]))
    shares: dict[str, np.ndarray] = {}
    for name, members in groups.items():
        wanted = np.flatnonzero(np.isin(names, list(members)))
        keep = np.isin(codes, wanted) & ~np.isnan(elapsed)
        r, t = rep_index[keep], elapsed[keep]
        if grid_sorted and not np.isnan(days).any():
            # t <= days[j] exactly when fewer than j + 1 grid days are below t.
            slot = np.searchsorted(days, t, side="left")
            cells = np.bincount(r * (days.size + 1) + slot, minlength=reps.size * (days.size + 1))
            counts = cells.reshape(reps.size, days.size + 1)[:, :days.size].cumsum(axis=1)
            share = np.ascontiguousarray((counts / referred[:, None]).T)
        else:  # an unsorted grid: each replication's sorted days, one search per replication
            order = np.lexsort((t, r))
            r, t = r[order], t[order]
            bounds = np.searchsorted(r, np.arange(reps.size + 1))
            share = np.empty((days.size, reps.size))
            for k in range(reps.size):
                share[:, k] = (np.searchsorted(t[bounds[k]:bounds[k + 1]], days, side="right")
                               / referred[k])
        shares[name] = share
    return reps, shares


def _present_outcomes(outcome: pd.Series) -> list[str]:
    """The outcomes that occur, in house order, read from the distinct values (not from a
    string per patient)."""
    return _ordered_outcomes(str(value) for value in pd.unique(outcome))


def _incidence_groups(patients: pd.DataFrame) -> dict[str, list[str]]:
    """infused, died, ineligible separately; every other loss combined (legend names them)."""
    present = _present_outcomes(patients["outcome"])
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
    level: float = 0.95,
) -> Figure:
    """Cumulative incidence of infusion, death, ineligibility and other losses since referral.

    Lines are the mean across replications of each replication's cumulative share; bands are
    the ``level`` t-interval of that mean (:func:`.style.mean_band`), as in the comparison
    figure.
    """
    groups = _incidence_groups(patients)
    n_reps = _n_replications(patients)
    elapsed = (patients["outcome_day"] - patients["referral_day"]).dropna()
    if max_day is None:
        # Near the 99th percentile of the days to an outcome: the curves are flat beyond it.
        max_day = tail_limit(elapsed.to_numpy(dtype=float)) if len(elapsed) else 1.0
    days = np.arange(0.0, max(max_day, 1.0) + 1.0)
    reps, incidence = _incidence_shares(patients, days, groups)
    with house_style():
        fig, axes = new_figure(
            1, 1, figsize=(12, 6), title=f"Outcomes over time since referral — {scenario_name}",
            footer=footer,
        )
        ax = axes[0, 0]
        ax.set_title("Cumulative share of referred patients by outcome")
        ax.set_xlabel("Days since referral")
        ax.set_ylabel("Share of referred patients (%)")
        if not incidence or not reps.size:
            _empty_message(ax, "No patients with an outcome")
            return fig
        top = 0.0
        for name, members in groups.items():
            wide = incidence[name]  # days x replications
            # The mean is the expected cumulative incidence; the median of a share of ~100
            # patients jumps in steps and reads 0% for rare outcomes that do happen.
            mid, low, high = mean_band(100.0 * wide, level)
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
            top = max(top, float(np.nanmax(high)))
        handles, labels = ax.get_legend_handles_labels()
        if n_reps > 1:
            handles.append(Patch(color="#999999", alpha=0.35, linewidth=0))
            labels.append(band_label(level))
        unresolved = float((patients["outcome"] == "unresolved").mean() * 100.0)
        if unresolved > 0:
            handles.append(Line2D([], [], linestyle="none"))
            labels.append(f"Unresolved at end of run:\n{unresolved:.1f}% (not shown)")
        later = float((elapsed > days[-1]).mean() * 100.0) if len(elapsed) else 0.0
        if later > 0:
            handles.append(Line2D([], [], linestyle="none"))
            labels.append(f"{_fmt_tail(later)} of outcomes happen\nafter day {days[-1]:.0f} "
                          "(not shown)")
        ax.set_xlim(0, days[-1])
        ax.set_ylim(0, percent_limit(top))
        thousands(ax.xaxis)
        title = f"Share by day {days[-1]:.0f}"
        if n_reps > 1:
            title += "\n(mean of replications)"
        side_legend(ax, handles, labels, title=title)
    return fig
