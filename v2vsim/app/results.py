"""What the web app shows of a results directory, read from the files the command line wrote
(``comparison.csv``, ``capacity.json``, ``capacity.csv``, the figures): formatted tables and
the figures in the order a reader needs them. Nothing here knows Streamlit."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["KEY_METRICS", "CapacityAnswer", "Card", "capacity_answer", "comparison_table",
           "figures", "format_value", "screen_copy", "unit_of", "key_cards", "read_comparison", "warnings_of"]

#: The key numbers shown as cards, in order, when the comparison has them.
KEY_METRICS = ["infused_fraction", "died", "vein_to_vein_median", "referral_to_infusion_median",
               "queue_wait_mean", "rerouted", "cost_per_infused", "life_years_per_referred"]

#: Units of ``comparison.csv``: a fraction of 0..1 (``%`` in older files) and a rate.
FRACTION = "fraction"
PER_100 = "per 100 referred"
#: The suffix of a count's rate per 100 referred patients in ``comparison.csv``.
RATE_SUFFIX = "_per_100_referred"


def is_fraction(unit: str) -> bool:
    return unit in (FRACTION, "%")


#: Figures of a comparison in reading order, with what each shows.
FIGURE_CAPTIONS = {
    "outcomes_per_100": "What happens to 100 referred patients in each scenario",
    "vein_to_vein": "Vein-to-vein time of the patients infused",
    "cumulative_incidence": "Infusion and loss over time since referral",
    "attrition_by_cause": "Patients lost, by cause",
    "cost_per_patient": "Cost per patient",
    "budget_impact": "Budget impact per calendar year",
}


def format_value(value: float, unit: str, diff: bool = False) -> str:
    """A value in its unit: fractions as percentages (differences in percentage points), days
    with one decimal, counts with two, money with thousands separators."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    sign = "+" if diff else ""
    if is_fraction(unit):
        return f"{100 * value:{sign}.1f}" + (" pp" if diff else "%")
    if unit == "days":
        return f"{value:{sign}.1f} d"
    if unit in ("count", PER_100):
        return f"{value:{sign}.3f}" if 0 < abs(value) < 0.1 else f"{value:{sign},.2f}"
    if unit in ("years", "QALYs"):
        return f"{value:{sign}.3f}"
    return f"{value:{sign},.0f}"


def read_comparison(results: Path) -> pd.DataFrame:
    """``comparison.csv`` of a comparison's results directory."""
    return pd.read_csv(results / "comparison.csv")


def _interval(row: Any, mean: str, low: str, high: str, diff: bool) -> str:
    unit = str(row["unit"])
    return (f"{format_value(row[mean], unit, diff)} ({format_value(row[low], unit, diff)} to "
            f"{format_value(row[high], unit, diff)})")


def _shown_metric(metric: str, present: Any) -> str | None:
    """The metric a table row shows: a count's rate per 100 referred in its place when the
    file has it (None for the rate itself, already shown there)."""
    if metric.endswith(RATE_SUFFIX) and metric[: -len(RATE_SUFFIX)] in present:
        return None
    if metric + RATE_SUFFIX in present:
        return metric + RATE_SUFFIX
    return metric


def _unit_suffix(unit: str) -> str:
    return ("" if is_fraction(unit) or unit in ("days", PER_100)
            else " (per replication)" if unit == "count" else f" ({unit})")


def comparison_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per metric: each scenario's mean (95% CI) and each later scenario's paired
    difference from the first (95% CI); metrics that are zero in every scenario are left out,
    and counts of patients are shown per 100 referred when the file has the rate."""
    names = list(dict.fromkeys(frame["scenario"]))
    groups = dict(tuple(frame.groupby("metric", sort=False)))
    rows = []
    for metric in groups:
        shown = _shown_metric(str(metric), groups)
        if shown is None:
            continue
        by = groups[shown].set_index("scenario")
        if (by["mean"].fillna(0) == 0).all() and metric not in ("died", "ineligible"):
            continue
        unit = str(by["unit"].iloc[0])
        label = str(by["label"].iloc[0]) + _unit_suffix(unit)
        row = {"Metric": label}
        for i, name in enumerate(names):
            letter = chr(ord("A") + i)
            row[f"{letter}: mean (95% CI)"] = (_interval(by.loc[name], "mean", "ci_low", "ci_high", False)
                                               if name in by.index else "–")
        for i, name in enumerate(names[1:], start=1):
            letter = chr(ord("A") + i)
            row[f"{letter} − A: paired difference (95% CI)"] = (
                _interval(by.loc[name], "diff", "diff_ci_low", "diff_ci_high", True)
                if name in by.index else "–")
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Card:
    """A key number: its label, each scenario's value and the paired difference from the first
    (None for the first), all formatted."""

    metric: str
    label: str
    values: list[str]
    differences: list[str | None]
    #: What the label needs to say the unit (`` (per replication)``, `` (HKD)``), or "".
    unit: str = ""


def key_cards(frame: pd.DataFrame) -> list[Card]:
    """The :data:`KEY_METRICS` the comparison has (and that are not zero everywhere)."""
    names = list(dict.fromkeys(frame["scenario"]))
    cards = []
    present = set(frame["metric"])
    for metric in KEY_METRICS:
        metric = _shown_metric(metric, present) or metric
        group = frame[frame["metric"] == metric]
        if group.empty or (group["mean"].fillna(0) == 0).all():
            continue
        by = group.set_index("scenario")
        values = [_interval(by.loc[n], "mean", "ci_low", "ci_high", False) if n in by.index else "–"
                  for n in names]
        differences: list[str | None] = [None] + [
            _interval(by.loc[n], "diff", "diff_ci_low", "diff_ci_high", True) if n in by.index else "–"
            for n in names[1:]]
        unit = str(by["unit"].iloc[0])
        cards.append(Card(metric, str(by["label"].iloc[0]), values, differences,
                          _unit_suffix(unit)))
    return cards


def screen_copy(png: Path, folder: Path, width: int = 1400) -> Path:
    """A copy of a figure at most ``width`` pixels wide, for the screen (made once, in
    ``folder``): the saved figures are 300 dpi, several times what a page shows."""
    from PIL import Image

    target = folder / png.name
    if target.is_file() and target.stat().st_mtime >= png.stat().st_mtime:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(png) as image:
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        tmp = folder / f".{png.name}.tmp"
        image.save(tmp, format="PNG", optimize=False)
    tmp.replace(target)
    return target


def figures(results: Path) -> list[tuple[Path, str]]:
    """The comparison's figures (PNG) with captions, in reading order, then any others."""
    found = {p.stem: p for p in sorted((results / "figures").glob("*.png"))}
    ordered = [(found.pop(stem), caption) for stem, caption in FIGURE_CAPTIONS.items() if stem in found]
    return ordered + [(path, stem.replace("_", " ")) for stem, path in found.items()]


def warnings_of(log: str) -> list[str]:
    """The warnings a command printed (``warning: ...`` lines)."""
    return [line.strip() for line in log.splitlines() if line.strip().startswith("warning")]


def unit_of(metric: str) -> str:
    """The unit of a metric by its name (for files without a unit column)."""
    if metric.endswith("_fraction") or metric.startswith("utilization_"):
        return FRACTION
    if metric.endswith(RATE_SUFFIX):
        return PER_100
    if any(word in metric for word in ("wait", "vein_to_vein", "referral_to_infusion")):
        return "days"
    if metric.startswith("cost"):
        return "currency"
    return "count"


@dataclass(frozen=True)
class CapacityAnswer:
    """A capacity search: the answer (None if no count in the range met the targets), the
    targets, and per count tried whether it met them with the metric's mean and 95% CI."""

    site: str
    targets: list[str]
    answer: int | None
    max_slots: int
    table: pd.DataFrame
    figure: Path | None


def capacity_answer(results: Path) -> CapacityAnswer:
    """What ``v2vsim capacity`` wrote in ``results``."""
    document = json.loads((results / "capacity.json").read_text(encoding="utf-8"))
    site = str(document["site"])
    targets = [str(t) for t in document["targets"]]
    metrics = {t.split("<")[0].split(">")[0] for t in targets}
    table = pd.read_csv(results / "capacity.csv")
    checks = pd.read_csv(results / "search.csv") if (results / "search.csv").is_file() else None
    rows = []
    for slots, group in table[table["metric"].isin(metrics)].groupby("slots"):
        row: dict[str, Any] = {"Slots": int(slots)}
        for _, r in group.iterrows():
            unit = str(r["unit"]) if "unit" in r else unit_of(str(r["metric"]))
            row[str(r["metric"])] = (f"{format_value(r['mean'], unit)} ({format_value(r['ci_low'], unit)}"
                                     f" to {format_value(r['ci_high'], unit)})")
        if checks is not None and "meets_all" in checks:
            met = checks.loc[checks["slots"] == slots, "meets_all"]
            row["Meets the targets"] = "yes" if len(met) and bool(met.iloc[0]) else "no"
        rows.append(row)
    pngs = sorted((results / "figures").glob("*.png")) if (results / "figures").is_dir() else []
    answer = document.get("answer")
    return CapacityAnswer(site, targets, None if answer is None else int(answer),
                          int(document.get("max_slots", 0)), pd.DataFrame(rows),
                          pngs[0] if pngs else None)
