"""What the comparison figures share: outcome groups, patients per 100 referred, differences
paired by replication against the baseline, and how they are labelled.

Every comparison figure takes frames keyed by scenario name, in the order given (baseline
first): ``patients`` and/or ``replications`` tables as :func:`v2vsim.simulate` returns them.
Scenario i is drawn in ``scenario_colors(n)[i]`` in every figure; legends name the scenarios.
Differences ("Δ") are paired by replication against the first scenario (common random
numbers: replication r of every scenario has the same patients).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...metrics import paired_difference, t_interval
from ...scenario import OUTCOMES
from .style import outcome_label, scenario_colors

__all__ = ["outcome_groups", "per_100_referred"]

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
