"""Figures of external validation (``v2vsim validation``): predicted against observed.

Both read the tables a validation results directory holds, so they run on saved results:

- ``validation.csv``, one row per case and metric: the predicted mean with its Monte-Carlo
  95% CI, the 95% range of one virtual trial of the trial's size (``trial_low``/``trial_high``,
  the replications' 2.5th and 97.5th percentiles), the observed value with its exact binomial
  CI and the verdict (observed inside or outside that range). Fractions are 0–1.
- ``sensitivity.csv``, one row per case, metric and value of one input: the same predictions
  as the input moves, the case's own value marked ``baseline``.

A trial's observed value is one draw of a trial of its size, so the question a row answers is
whether it falls where such trials fall (the trial range), not whether it lies in the narrow
CI of the model's mean.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from .style import OKABE_ITO, house_style, new_figure, save_figure

__all__ = ["sensitivity_figure", "sensitivity_plot", "validation_figure", "validation_plot"]

_PREDICTED: Final = OKABE_ITO["blue"]
_RANGE: Final = OKABE_ITO["sky_blue"]
_OBSERVED: Final = OKABE_ITO["black"]
_OBSERVED_BAND: Final = "#9A9A9A"
_OUTSIDE: Final = OKABE_ITO["vermillion"]
_INSIDE: Final = OKABE_ITO["bluish_green"]
_GREY: Final = "#555555"
_MINUS: Final = "\u2212"
# The figure title's height (its pad, and each line at 16 pt), where a legend below it starts.
_TITLE_PAD_INCHES: Final = 0.2
_TITLE_LINE_INCHES: Final = 0.27

#: Panel order and names of the units; other units follow in order of appearance.
_UNITS: Final = {"fraction": ("Proportions", "Percent of the patients named in each row"),
                 "days": ("Times", "Days")}

_LEGEND_RANGE: Final = ("95% range of one trial of the trial's size\n"
                        "(2.5th–97.5th percentile of the virtual trials)")
_LEGEND_PREDICTED: Final = "Predicted mean with its\n95% Monte-Carlo CI"
_LEGEND_OBSERVED: Final = "Observed in the trial with its\nexact binomial 95% CI"
_LEGEND_OBSERVED_ONLY: Final = "Observed in the trial"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _num(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _trial_name(row: Any) -> str:
    """The trial's short name for labels: its title up to the bracket ("ZUMA-1"), else the case."""
    title = _text(row.get("trial")).strip()
    short = title.split(" (")[0].strip() if title else ""
    return short or _text(row.get("case"))


def _is_fraction(unit: str) -> bool:
    return unit in ("fraction", "%")


def _scale(unit: str) -> float:
    """Fractions are drawn in percent."""
    return 100.0 if _is_fraction(unit) else 1.0


def _fmt_axis(unit: str) -> FuncFormatter:
    if _is_fraction(unit):
        return FuncFormatter(lambda x, _pos: f"{x:,.0f}%" if abs(x - round(x)) < 1e-9 else f"{x:,.1f}%")
    return FuncFormatter(lambda x, _pos: f"{x:,.0f}" if abs(x - round(x)) < 1e-9 else f"{x:,.1f}")


def _fmt_error(error: float, unit: str) -> str:
    """The error as the table gives it: percentage points for fractions, days for times."""
    if not math.isfinite(error):
        return ""
    sign = "+" if error > 0 else _MINUS if error < 0 else "±"
    return f"{sign}{abs(error):,.1f} {'pp' if _is_fraction(unit) else 'days' if unit == 'days' else unit}"


def _limits(values: Sequence[float], unit: str) -> tuple[float, float]:
    """Axis limits that fit the finite ``values`` with a margin (percentages kept in 0–100)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return (0.0, 100.0) if _is_fraction(unit) else (0.0, 1.0)
    lo, hi = min(finite), max(finite)
    pad = max(0.07 * (hi - lo), 1.0 if _is_fraction(unit) else 0.5)
    lo, hi = lo - pad, hi + pad
    if lo < 0 <= min(finite):
        lo = 0.0
    if _is_fraction(unit) and hi > 100 >= max(finite):
        hi = 100.0
    return lo, hi


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    try:
        return bool(value) and not (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def _legend_below_title(fig: Figure, handles: Sequence[Any], ncols: int,
                        band_inches: float = 0.62) -> None:
    """A legend across the figure between its title and its panels.

    A legend attached to one axes is confined to that axes' width (too narrow for three
    entries beside long row labels), and a figure legend placed "outside" overlaps the title or
    the footer; so the layout is given a band under the title and the legend sits in it.
    """
    engine = fig.get_layout_engine()
    fig_inches = fig.get_figheight()
    title = fig.get_suptitle()
    title_inches = _TITLE_PAD_INCHES + (title.count("\n") + 1) * _TITLE_LINE_INCHES if title else 0.1
    if isinstance(engine, ConstrainedLayoutEngine):
        # The layout's rectangle is (left, bottom, width, height) in figure fractions; the footer
        # already raised its bottom. A lower top leaves the band free (the title stays on top).
        left, bottom, width, height = engine.get()["rect"]
        engine.set(rect=(left, bottom, width, height - band_inches / fig_inches))
    legend = fig.legend(handles=list(handles), loc="upper left", ncols=ncols, handlelength=2.2,
                        columnspacing=1.8, fontsize=11, borderaxespad=0.0,
                        bbox_to_anchor=(0.008, 1.0 - title_inches / fig_inches))
    legend.set_in_layout(False)


def _any_interval(frame: pd.DataFrame) -> bool:
    """Whether any row has an observed interval (times usually have none)."""
    if not {"observed_ci_low", "observed_ci_high"} <= set(frame.columns):
        return False
    low = pd.to_numeric(frame["observed_ci_low"], errors="coerce")
    high = pd.to_numeric(frame["observed_ci_high"], errors="coerce")
    return bool((np.isfinite(low) & np.isfinite(high)).any())


def _units(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame["unit"].astype(str)))
    known = [u for u in _UNITS if u in present]
    return known + [u for u in present if u not in _UNITS]


# --------------------------------------------------------------------------------------------
# Predicted against observed
# --------------------------------------------------------------------------------------------


def _default_footer(table: pd.DataFrame) -> str:
    sizes = []
    for case, rows in table.groupby("case", sort=False):
        size = _num(rows["trial_size"].iloc[0]) if "trial_size" in rows else math.nan
        if math.isfinite(size):
            sizes.append(f"{_trial_name(rows.iloc[0])} {size:,.0f}")
    reps = pd.to_numeric(table.get("replications", pd.Series(dtype=float)), errors="coerce").dropna()
    parts = []
    if len(reps):
        n = int(reps.min())
        parts.append(f"{n:,} virtual trial{'s' if n != 1 else ''} per case"
                     + (" (at least)" if reps.nunique() > 1 else ""))
    if sizes:
        parts.append("patients per trial: " + ", ".join(sizes))
    return " · ".join(parts)


def _row_panel(ax: Axes, rows: pd.DataFrame, unit: str) -> None:
    """One panel of the predicted-against-observed figure: one row per case and metric."""
    factor = _scale(unit)
    n = len(rows)
    y = np.arange(n, dtype=float)
    cases = rows["case"].astype(str).tolist()
    # Alternate a light background by case, so that a trial's rows read as one group.
    shade, start = False, 0
    for i in range(1, n + 1):
        if i == n or cases[i] != cases[start]:
            if shade:
                ax.axhspan(start - 0.5, i - 0.5, color="#F3F4F6", zorder=0, linewidth=0)
            if i < n:
                ax.axhline(i - 0.5, color="#C9CDD3", linewidth=0.8, zorder=1)
            shade, start = not shade, i
    xs: list[float] = []
    verdicts: list[tuple[str, str]] = []
    for i, (_, row) in enumerate(rows.iterrows()):
        mean, ci_lo, ci_hi = (_num(row.get(c)) * factor for c in ("predicted_mean", "predicted_ci_low",
                                                                  "predicted_ci_high"))
        t_lo, t_hi = (_num(row.get(c)) * factor for c in ("trial_low", "trial_high"))
        obs, o_lo, o_hi = (_num(row.get(c)) * factor for c in ("observed", "observed_ci_low",
                                                              "observed_ci_high"))
        xs += [mean, ci_lo, ci_hi, t_lo, t_hi, obs, o_lo, o_hi]
        if math.isfinite(t_lo) and math.isfinite(t_hi):
            ax.barh(i, t_hi - t_lo, left=t_lo, height=0.74, color=_RANGE, alpha=0.45, linewidth=0,
                    zorder=2)
        if math.isfinite(ci_lo) and math.isfinite(ci_hi):
            ax.plot([ci_lo, ci_hi], [i - 0.14] * 2, color=_PREDICTED, linewidth=6.5, zorder=4,
                    solid_capstyle="butt")
        if math.isfinite(mean):
            ax.plot([mean], [i - 0.14], marker="o", markersize=8, color=_PREDICTED,
                    markeredgecolor="white", markeredgewidth=1.2, linestyle="none", zorder=5)
        if math.isfinite(obs):
            if math.isfinite(o_lo) and math.isfinite(o_hi):
                ax.errorbar([obs], [i + 0.17], xerr=[[max(obs - o_lo, 0)], [max(o_hi - obs, 0)]],
                            fmt="none", ecolor=_OBSERVED, elinewidth=1.4, capsize=4, zorder=5)
            ax.plot([obs], [i + 0.17], marker="D", markersize=8, color=_OBSERVED,
                    markeredgecolor="white", markeredgewidth=1.0, linestyle="none", zorder=6)
        verdict = _text(row.get("verdict")).strip().lower()
        error = _fmt_error(_num(row.get("error")), unit)
        verdicts.append((verdict, f"{verdict}  {error}".strip() if verdict else error))
    lo, hi = _limits(xs, unit)
    ax.set_xlim(lo, hi)
    ax.set_ylim(n - 0.5, -0.5)
    labels = [f"{_trial_name(row)} · {_text(row.get('label')) or _text(row.get('metric'))}"
              for _, row in rows.iterrows()]
    ax.set_yticks(y, ["\n".join(textwrap.wrap(t, 44)) for t in labels])
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="y", visible=False)
    ax.xaxis.set_major_formatter(_fmt_axis(unit))
    title, xlabel = _UNITS.get(unit, (unit.capitalize(), unit))
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=13)
    # Verdicts on the right: "outside" stands out, "inside" stays quiet.
    right = ax.secondary_yaxis("right")
    right.set_yticks(y, [text for _, text in verdicts])
    right.tick_params(axis="y", length=0, labelsize=11.5)
    right.spines["right"].set_visible(False)
    for label, (verdict, _) in zip(right.get_yticklabels(), verdicts):
        if verdict == "outside":
            label.set_color(_OUTSIDE)
            label.set_fontweight("bold")
        elif verdict == "inside":
            label.set_color(_INSIDE)


def validation_plot(table: pd.DataFrame, *, footer: str | None = None) -> Figure:
    """Predicted against observed, one row per case and metric grouped by case, one panel per
    unit (percentages, days); the verdict and the error on the right of each row.

    ``footer`` defaults to the number of virtual trials and the trials' sizes.
    """
    frame = table.reset_index(drop=True).copy()
    frame["unit"] = frame["unit"].fillna("").astype(str)
    frame["case"] = frame["case"].fillna("").astype(str)
    # Rows grouped by case in order of appearance, metrics in their order within a case.
    order = {c: i for i, c in enumerate(dict.fromkeys(frame["case"]))}
    frame = frame.assign(_case=frame["case"].map(order), _row=np.arange(len(frame)))
    frame = frame.sort_values(["_case", "_row"], kind="stable")
    units = _units(frame)
    counts = [int((frame["unit"] == u).sum()) for u in units]
    height = 1.9 + sum(0.56 * c + 1.15 for c in counts)
    with house_style():
        fig, axes = new_figure(
            len(units), 1, figsize=(12.0, height),
            title="External validation: the model's predictions against published trials",
            footer=_default_footer(frame) if footer is None else footer,
            gridspec_kw={"height_ratios": [c + 1.4 for c in counts]})
        for k, unit in enumerate(units):
            _row_panel(axes[k, 0], frame[frame["unit"] == unit], unit)
        handles = [Patch(color=_RANGE, alpha=0.5, label=_LEGEND_RANGE),
                   Line2D([], [], color=_PREDICTED, linewidth=6.5, marker="o", markersize=8,
                          markeredgecolor="white", label=_LEGEND_PREDICTED),
                   Line2D([], [], color=_OBSERVED, linewidth=1.4 if _any_interval(frame) else 0,
                          marker="D", markersize=7, markeredgecolor="white",
                          label=_LEGEND_OBSERVED if _any_interval(frame) else _LEGEND_OBSERVED_ONLY)]
        _legend_below_title(fig, handles, ncols=3)
    return fig


def validation_figure(table: pd.DataFrame, out_dir: Path, *, footer: str | None = None,
                      formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Draw :func:`validation_plot` of ``validation.csv`` and save it as
    ``out_dir/validation.<format>``; returns the paths (none for an empty table)."""
    if table is None or len(table) == 0:
        return []
    fig = validation_plot(table, footer=footer)
    paths = save_figure(fig, Path(out_dir), "validation", formats)
    fig.clear()
    return paths


# --------------------------------------------------------------------------------------------
# Sensitivity of the predictions to one input
# --------------------------------------------------------------------------------------------


def _sensitivity_panel(ax: Axes, rows: pd.DataFrame, wrap: int) -> None:
    """One input of one case and metric; titles and labels wrap at ``wrap`` characters."""
    first = rows.iloc[0]
    unit = _text(first.get("unit"))
    factor = _scale(unit)
    values = rows["value"].tolist()
    numeric = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)
    is_numeric = bool(np.isfinite(numeric).all())
    if is_numeric:
        order = np.argsort(numeric, kind="stable")
        x = numeric[order]
    else:
        order = np.arange(len(rows))
        x = np.arange(len(rows), dtype=float)
    data = rows.iloc[order]

    def col(name: str) -> np.ndarray:
        if name not in data:
            return np.full(len(data), math.nan)
        return pd.to_numeric(data[name], errors="coerce").to_numpy(dtype=float) * factor

    mean, ci_lo, ci_hi = col("predicted_mean"), col("predicted_ci_low"), col("predicted_ci_high")
    t_lo, t_hi = col("trial_low"), col("trial_high")
    obs, o_lo, o_hi = col("observed"), col("observed_ci_low"), col("observed_ci_high")
    ys = list(mean) + list(ci_lo) + list(ci_hi) + list(t_lo) + list(t_hi)
    # The observed value does not depend on the input: its first finite value is the case's.
    observed = next((v for v in obs if math.isfinite(v)), math.nan)
    observed_lo = next((v for v in o_lo if math.isfinite(v)), math.nan)
    observed_hi = next((v for v in o_hi if math.isfinite(v)), math.nan)
    if math.isfinite(observed_lo) and math.isfinite(observed_hi):
        ax.axhspan(observed_lo, observed_hi, color=_OBSERVED_BAND, alpha=0.22, linewidth=0, zorder=1)
    if math.isfinite(observed):
        ax.axhline(observed, color=_OBSERVED, linewidth=1.6, linestyle="--", zorder=2)
    ys += [observed, observed_lo, observed_hi]
    if len(x) > 1:
        ax.fill_between(x, t_lo, t_hi, color=_RANGE, alpha=0.32, linewidth=0, zorder=2)
        ax.fill_between(x, ci_lo, ci_hi, color=_PREDICTED, alpha=0.35, linewidth=0, zorder=3)
        ax.plot(x, mean, color=_PREDICTED, linewidth=2.2, marker="o", markersize=5, zorder=4)
    else:
        if math.isfinite(t_lo[0]) and math.isfinite(t_hi[0]):
            ax.plot([x[0], x[0]], [t_lo[0], t_hi[0]], color=_RANGE, linewidth=10, alpha=0.6,
                    solid_capstyle="butt", zorder=2)
        if math.isfinite(ci_lo[0]) and math.isfinite(ci_hi[0]):
            ax.plot([x[0], x[0]], [ci_lo[0], ci_hi[0]], color=_PREDICTED, linewidth=4,
                    solid_capstyle="butt", zorder=3)
        ax.plot(x, mean, color=_PREDICTED, marker="o", markersize=6, linestyle="none", zorder=4)
    baseline = np.array([_as_bool(b) for b in data["baseline"]]) if "baseline" in data else \
        np.zeros(len(data), dtype=bool)
    for xb, mb in zip(x[baseline], mean[baseline]):
        ax.axvline(xb, color=_GREY, linewidth=1.1, linestyle=":", zorder=1)
        if math.isfinite(mb):
            ax.plot([xb], [mb], marker="o", markersize=13, markerfacecolor="none",
                    markeredgecolor=_OUTSIDE, markeredgewidth=2.0, linestyle="none", zorder=5,
                    clip_on=False)
    lo, hi = _limits(ys, unit)
    ax.set_ylim(lo, hi)
    ax.yaxis.set_major_formatter(_fmt_axis(unit))
    if is_numeric:
        if len(x) > 1 and x[-1] > x[0]:
            span = float(x[-1] - x[0])
            ax.set_xlim(float(x[0]) - 0.04 * span, float(x[-1]) + 0.04 * span)
        else:
            ax.set_xticks(x[:1])
        ax.xaxis.set_major_formatter(_fmt_axis(""))
    else:
        ax.set_xticks(x, ["\n".join(textwrap.wrap(str(v), 14)) for v in data["value"]])
        ax.set_xlim(-0.5, len(x) - 0.5)
    label = _text(first.get("label")) or _text(first.get("metric"))
    ax.set_title("\n".join(textwrap.wrap(f"{_trial_name(first)} · {label}", wrap)), fontsize=12.5)
    ax.set_xlabel("\n".join(textwrap.wrap(_text(first.get("input_label")) or _text(first.get("path")),
                                          wrap + 4)))
    ax.set_ylabel("Percent" if _is_fraction(unit) else "Days" if unit == "days" else unit)


def sensitivity_plot(sens: pd.DataFrame, *, footer: str = "") -> Figure:
    """Small multiples, one panel per case, metric and input: the predicted mean (line, with
    its Monte-Carlo 95% CI as a band) and the 95% range of one trial of the trial's size
    against the input's value; the observed value and its CI as a horizontal line and band;
    the case's own value ringed, with a dotted line."""
    frame = sens.reset_index(drop=True).copy()
    keys = ["case", "metric", "path"]
    for key in keys:
        frame[key] = frame[key].fillna("").astype(str)
    groups = [rows for _, rows in frame.groupby(keys, sort=False)]
    n = len(groups)
    ncols = 1 if n == 1 else 2 if n in (2, 4) else 3
    nrows = math.ceil(n / ncols)
    width = 12.0 if ncols > 1 else 10.0
    with house_style():
        fig, axes = new_figure(
            nrows, ncols, figsize=(width, 1.9 + (4.0 if nrows <= 2 else 3.2) * nrows), footer=footer,
            title="How the predictions move with the inputs the trials do not report")
        for k, rows in enumerate(groups):
            # Titles are not moved by the layout: wrap them to the panel's width (~9 characters
            # an inch at 12.5 pt).
            _sensitivity_panel(axes[k // ncols, k % ncols], rows, wrap=int(width / ncols * 8.4))
        for k in range(n, nrows * ncols):
            axes[k // ncols, k % ncols].set_visible(False)
        # Listed column by column: the prediction, the observation, the range and the case.
        handles = [Line2D([], [], color=_PREDICTED, linewidth=2.2, marker="o", markersize=5,
                          label="Predicted mean"),
                   Patch(color=_PREDICTED, alpha=0.35, label="Its 95% Monte-Carlo CI"),
                   Line2D([], [], color=_OBSERVED, linewidth=1.6, linestyle="--",
                          label="Observed in the trial"),
                   *([Patch(color=_OBSERVED_BAND, alpha=0.35, label="Its exact binomial 95% CI")]
                     if _any_interval(frame) else []),
                   Patch(color=_RANGE, alpha=0.45, label="95% range of one trial of its size"),
                   Line2D([], [], marker="o", markersize=11, markerfacecolor="none",
                          markeredgecolor=_OUTSIDE, markeredgewidth=2.0, linestyle=":",
                          color=_GREY, label="The case's own value")]
        _legend_below_title(fig, handles, ncols=3, band_inches=0.7)
    return fig


def sensitivity_figure(sens: pd.DataFrame, out_dir: Path, *, footer: str = "",
                       formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Draw :func:`sensitivity_plot` of ``sensitivity.csv`` and save it as
    ``out_dir/validation_sensitivity.<format>``; returns the paths (none for an empty table)."""
    if sens is None or len(sens) == 0:
        return []
    fig = sensitivity_plot(sens, footer=footer)
    paths = save_figure(fig, Path(out_dir), "validation_sensitivity", formats)
    fig.clear()
    return paths
