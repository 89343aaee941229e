"""The house style of every figure, and saving figures.

The Okabe–Ito colour-blind-safe palette, one fixed colour and label per outcome and per step
kind, the matplotlib rc settings (:data:`STYLE`, applied with :func:`house_style`), figure
scaffolding (:func:`new_figure` with a wrapped title and a footer, :func:`draw_band`,
:func:`side_legend`), the number formats figures share, the axis limit that keeps long tails
from squashing a distribution (:func:`tail_limit`), and :func:`save_figure`, which writes the same
bytes for the same figure.
"""

from __future__ import annotations

import contextlib
import math
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Final

import matplotlib
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

from ...scenario import OUTCOMES

__all__ = [
    "FOOTER_FONTSIZE",
    "KIND_COLORS",
    "OKABE_ITO",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "STYLE",
    "add_footer",
    "band_label",
    "draw_figures",
    "draw_band",
    "footer_text",
    "house_style",
    "kind_color",
    "mean_band",
    "new_figure",
    "outcome_color",
    "outcome_label",
    "percent_limit",
    "save_figure",
    "scenario_colors",
    "side_legend",
    "tail_limit",
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

#: One colour per step kind for journey swimlanes: pale tints (mostly Paul Tol's colour-blind-
#: safe "light" scheme) kept apart from every outcome colour (CIE76 distance of 15 or more, a
#: test checks it), so that a step bar never reads as an outcome marker (a release bar had the
#: orange of "became ineligible", a conditioning bar the vermillion of "died").
KIND_COLORS: Final[Mapping[str, str]] = {
    "screen": "#D9C7A7",
    "apheresis": "#FFAABB",
    "cryopreserve": "#99DDFF",
    "transport": "#EEDD88",
    "manufacture": "#8899CC",
    "release": "#BBCC33",
    "conditioning": "#EE8866",
    "delay": "#707070",
    "infusion": "#88CCAA",
}

_OTHER_LOSSES_COLOR: Final = "#4D4D4D"
_NEUTRAL_COLOR: Final = "#56606B"  # bars that are "patients", not a cause
_FOOTER_COLOR: Final = "#555555"
_FOOTER_HEIGHT_INCHES: Final = 0.36
#: Footer text size in points at the figure's size: a 13-inch figure shown 10 inches wide on a
#: slide still sets it above 8 points.
FOOTER_FONTSIZE: Final = 11.0

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
    # Names and labels come from scenario files: "$5-$10" or "$\badcommand$" must be drawn as
    # written, never parsed as mathtext (which would fail the whole figure, or typeset it).
    "text.parse_math": False,
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
        0.008, frac / 2, footer, ha="left", va="center", fontsize=FOOTER_FONTSIZE,
        color=_FOOTER_COLOR
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


def mean_band(wide: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and ``level`` t-interval of the mean across the columns (replications) of
    ``wide``, row by row: ``mean, low, high``. The band of every figure drawn over replications
    (one replication: the band is the line)."""
    from ...metrics import t_quantile

    wide = np.asarray(wide, dtype=float)
    mean = wide.mean(axis=1)
    n = wide.shape[1]
    if n < 2:
        return mean, mean, mean
    half = t_quantile(0.5 + level / 2, n - 1) * wide.std(axis=1, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def band_label(level: float = 0.95) -> str:
    """Legend text of the band of :func:`mean_band`."""
    return f"Band: {level:.0%} CI of the mean\nacross replications"


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
# Axis limits
# --------------------------------------------------------------------------------------------


def percent_limit(top: float) -> float:
    """Upper limit of a percent axis: the data's top plus 8%, rounded up to 5, at most 100."""
    if not math.isfinite(top) or top <= 0:
        return 100.0
    return float(min(100.0, math.ceil(top * 1.08 / 5.0) * 5.0))


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


def draw_figures(
    draw: Callable[..., list[Path]],
    work: Sequence[tuple[str, tuple[Any, ...]]],
    out_dir: Path,
    *,
    jobs: int = 1,
    guard: Callable[[str], AbstractContextManager[None]] | None = None,
) -> list[list[Path]]:
    """``draw(stem, *args)`` for each ``(stem, args)`` of ``work``, in this process or in
    ``jobs`` worker processes; returns each call's paths, in order.

    With ``guard``, each figure is drawn inside ``guard(stem)`` (e.g.
    :func:`v2vsim.outputs.results_dir.guard_figures`): a figure that fails is the guard's to
    record, its files are removed and the other figures are still drawn. Without it the first
    failure propagates."""
    out_dir = Path(out_dir)

    def one(stem: str, result: Callable[[], list[Path]]) -> list[Path]:
        if guard is None:
            return result()
        with guard(stem):
            try:
                return result()
            except BaseException:
                for path in out_dir.glob(f"{stem}.*"):  # a figure saved in some formats only
                    path.unlink(missing_ok=True)
                raise
        return []

    if jobs <= 1:
        return [one(stem, lambda stem=stem, args=args: draw(stem, *args)) for stem, args in work]
    from ..._workers import WorkerPool

    with WorkerPool(max_workers=min(jobs, len(work))) as pool:
        futures = [(stem, pool.submit(draw, stem, *args)) for stem, args in work]
        return [one(stem, future.result) for stem, future in futures]

