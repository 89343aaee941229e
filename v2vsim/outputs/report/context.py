"""What the report shows, as plain data for the template: key-number cards, the results
table, figures with captions, each scenario's assumptions and logic, versions and integrity, and
the validation section (:mod:`.validity`)."""

from __future__ import annotations

import base64
import math
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..._version import __version__, git_commit
from ...metrics import CLIPPED_NOTE, count_of_rate, counted_window, is_fraction, rate_metric
from ..results_dir import verify_dir
from .captions import COMPARISON_CAPTIONS, FIGURE_CAPTIONS
from .describe import scenario_logic
from .economics import budget_context, drop_economic_rows, economics_context
from .load import CompareDir, ReportError, RunDir, ValidationDir
from .run_warnings import run_warnings
from .scope import scope_context
from .summary import executive_summary, referred_means
from .sources import Parameter, _flatten_plain, _hint, _path_text, format_yaml_value, source_parameters
from .table import (
    _as_fractions,
    count_a_year,
    _finite,
    _metric_order,
    _unique_labels,
    fmt_ci,
    fmt_diff,
    fmt_unit,
    fmt_value,
    paired_comparison,
)
from .validity import validation_context

__all__ = ["COMPARISON_CAPTIONS", "FIGURE_CAPTIONS", "KEY_METRICS", "build_context"]

#: The numbers shown first, in this order.
KEY_METRICS = ("infused_fraction", "died", "vein_to_vein_median", "cost_per_infused")
#: Key numbers of scenarios with an economics section (shown when present).
ECONOMIC_CARDS = ("qalys_discounted_per_referred", "cost_discounted_per_referred")
#: Key numbers shown after the vein-to-vein time when some scenario has them and they are not
#: zero everywhere: the wait for a slot, rerouting (a routing rule), life-years (survival).
OPTIONAL_CARDS = ("queue_wait_mean", "rerouted", "life_years_per_referred")
#: Notes under a card's label, by metric (else by unit).
_CARD_NOTES = {
    "queue_wait_mean": "days per patient waiting for a slot or a start day (mean)",
    "rerouted": "patients per replication routed to the fallback pathway",
    "rerouted_per_100_referred": "patients per 100 referred routed to the fallback pathway",
    "life_years_per_referred": "years per referred patient, within the follow-up",
}

#: Width in pixels a figure is embedded at: sharp on a 1,000-pixel-wide page at double density and
#: on A4 at about 200 dpi; the figures are drawn at several times this for slides.
EMBED_WIDTH_PX = 1800


def _data_uri(path: Path) -> str:
    if path.suffix.lower() != ".png":
        return "data:image/svg+xml;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return "data:image/png;base64," + base64.b64encode(_embedded_png(path)).decode("ascii")


def _embedded_png(path: Path) -> bytes:
    """The PNG at :data:`EMBED_WIDTH_PX` wide at most, in a 256-colour palette (plots have few
    colours), unless that is not smaller than the file."""
    import io

    from PIL import Image

    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.width > EMBED_WIDTH_PX:
                height = max(1, round(image.height * EMBED_WIDTH_PX / image.width))
                image = image.resize((EMBED_WIDTH_PX, height), Image.Resampling.LANCZOS)
            image = image.convert("RGBA").quantize(256, method=Image.Quantize.FASTOCTREE,
                                                   dither=Image.Dither.NONE)
            out = io.BytesIO()
            image.save(out, format="PNG", optimize=True)
    except (OSError, ValueError):  # not a PNG Pillow can read: embed it as it is
        return data
    small = out.getvalue()
    return small if len(small) < len(data) else data


def _figure_entry(path: Path, scenario: str, comparison: bool = False) -> dict[str, str]:
    captions = COMPARISON_CAPTIONS if comparison else FIGURE_CAPTIONS
    title, caption = captions.get(path.stem, (path.stem.replace("_", " ").capitalize(), ""))
    return {"title": title, "caption": caption, "scenario": scenario, "src": _data_uri(path),
            "alt": f"{title} — {scenario}" if scenario else title, "file": path.name}


def _integrity(path: Path, manifest: Mapping[str, Any], skip: Sequence[Path] = ()) -> dict[str, Any]:
    problems = [p for p in verify_dir(path)
                if not (p.endswith("not listed in the manifest")
                        and any(p.startswith(str(s) + os.sep) for s in skip))]
    return {"dir": str(path), "files": len(manifest.get("files") or {}), "problems": problems}


def _command_text(command: Any) -> str:
    if isinstance(command, list):
        return shlex.join(str(c) for c in command)
    return str(command or "–")


def _describe_key_card(metric: str, table: pd.DataFrame, scenarios: Sequence[str],
                       horizon_days: Any) -> dict[str, Any] | None:
    rows = table[table["metric"] == metric]
    if rows.empty:
        return None
    unit = str(rows["unit"].iloc[0]) if _finite_str(rows["unit"].iloc[0]) else ""
    label = str(rows["label"].iloc[0])
    note = _CARD_NOTES.get(metric) or ("of referred patients" if is_fraction(unit) else None) or {
            "per 100 referred": "patients per 100 referred"
                     + (f" ({float(horizon_days):,.0f} days of referrals)" if _finite(horizon_days) else ""),
            "count": "patients per replication"
                     + (f" ({float(horizon_days):,.0f} days of referrals)" if _finite(horizon_days) else ""),
            "days": "days, among infused patients (mean of replication medians)"}.get(
        unit, f"{unit}, total cost / infused patients" if metric == "cost_per_infused"
        else "mean over replications, within the follow-up" if metric in ECONOMIC_CARDS else unit)
    values, diffs = [], []
    for i, name in enumerate(scenarios):
        row = rows[rows["scenario"] == name]
        if row.empty:
            continue
        r = row.iloc[0]
        values.append({"scenario": name, "index": i, "value": fmt_value(r["mean"], unit),
                       "ci": fmt_ci(r["ci_low"], r["ci_high"], unit)})
        if i > 0 and _finite(r["diff"]):
            excludes_zero = _finite(r["diff_ci_low"]) and _finite(r["diff_ci_high"]) and (
                float(r["diff_ci_low"]) > 0 or float(r["diff_ci_high"]) < 0)
            diffs.append({"scenario": name, "index": i, "value": fmt_diff(r["diff"], unit),
                          "ci": (f"{fmt_diff(r['diff_ci_low'], unit)} to "
                                 f"{fmt_diff(r['diff_ci_high'], unit)}")
                          if _finite(r["diff_ci_low"]) else "",
                          "excludes_zero": excludes_zero})
    return {"metric": metric, "label": label, "note": note, "entries": values, "diffs": diffs}


def _nonzero(table: pd.DataFrame, metric: str) -> bool:
    means = table.loc[table["metric"] == metric, "mean"]
    return any(_finite(v) and float(v) != 0 for v in means)


def _finite_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _yearly(table: pd.DataFrame, metric: str, name: str, column: str, horizon: Any) -> str:
    """A rate per 100 referred's count a year over the referral window ("2.28 a year",
    "+0.35 a year" for a difference); empty for other metrics."""
    value = count_a_year(table, metric, name, column, horizon)
    if value is None:
        return ""
    shown = fmt_diff(value, "count") if column == "diff" else fmt_value(value, "count")
    return f"{shown} a year"


def _results_table(table: pd.DataFrame, scenarios: Sequence[str], paired: bool,
                   horizons: Mapping[str, Any] | None = None) -> dict[str, Any]:
    horizons = horizons or {}
    largest = table.groupby("metric")["mean"].max().to_dict() if len(table) else {}
    order, head_count = _metric_order(table["metric"].tolist(), largest)
    rows: list[dict[str, Any]] = []
    zero_rows: list[dict[str, Any]] = []
    for i, metric in enumerate(order):
        sub = table[table["metric"] == metric]
        unit = str(sub["unit"].iloc[0]) if _finite_str(sub["unit"].iloc[0]) else ""
        label = str(sub["label"].iloc[0])
        unit_text = fmt_unit(unit)
        cells, diff_cells = [], []
        for j, name in enumerate(scenarios):
            row = sub[sub["scenario"] == name]
            if row.empty:
                cells.append({"value": "–", "ci": "", "yearly": ""})
                if j > 0 and paired:
                    diff_cells.append({"value": "–", "ci": "", "yearly": "", "excludes_zero": False})
                continue
            r = row.iloc[0]
            cells.append({"value": fmt_value(r["mean"], unit),
                          "ci": fmt_ci(r["ci_low"], r["ci_high"], unit),
                          "yearly": _yearly(table, str(metric), name, "mean", horizons.get(name))})
            if j > 0 and paired:
                clear = _finite(r["diff_ci_low"]) and _finite(r["diff_ci_high"]) and (
                    float(r["diff_ci_low"]) > 0 or float(r["diff_ci_high"]) < 0)
                diff_cells.append({
                    "value": fmt_diff(r["diff"], unit),
                    "ci": (f"{fmt_diff(r['diff_ci_low'], unit)} to {fmt_diff(r['diff_ci_high'], unit)}"
                           if _finite(r["diff_ci_low"]) else ""),
                    "yearly": _yearly(table, str(metric), name, "diff", horizons.get(name)),
                    "excludes_zero": clear})
        n = sub["n"].dropna()
        row_data = {"label": label, "unit": unit_text, "cells": cells, "diffs": diff_cells,
                    "n": f"{int(n.max())}" if len(n) else "–", "first_other": False}
        if _all_zero(sub):
            if count_of_rate(str(metric)) not in order:  # else its count says it once
                zero_rows.append(row_data)
            continue
        if i >= head_count and not any(r["first_other"] for r in rows) and rows:
            row_data["first_other"] = True
        rows.append(row_data)
    return {"rows": rows, "scenarios": list(scenarios), "paired": paired,
            "diff_columns": list(scenarios[1:]) if paired else [], "zero_rows": zero_rows}


def _all_zero(rows: pd.DataFrame) -> bool:
    """Whether a metric is exactly zero in every scenario (its differences too): a loss cause
    that never happens, a step that cannot fail."""
    values = [rows[c] for c in ("mean", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high")]
    means = rows["mean"]
    return bool(len(means)) and all(_finite(v) and float(v) == 0 for v in means) and all(
        not _finite(v) or float(v) == 0 for col in values for v in col)


def _run_length(run: RunDir) -> dict[str, str]:
    sc = run.scenario
    out = {"horizon": f"{float(sc.get('horizon_days', math.nan)):,.0f}",
           "drain": f"{float(sc.get('drain_days', 3650)):,.0f}", "end": "–", "unresolved": "–"}
    reps = run.replications
    if reps is not None and "end_day" in reps:
        end = reps["end_day"].to_numpy(dtype=float)
        out["end"] = f"{np.nanmean(end):,.0f} (longest {np.nanmax(end):,.0f})"
    if reps is not None and "unresolved" in reps:
        out["unresolved"] = f"{int(reps['unresolved'].sum()):,}"
    return out


def _versions(runs: Sequence[RunDir], compare: CompareDir | None) -> dict[str, Any]:
    manifests = [(r.label, r.manifest) for r in runs]
    if compare is not None:
        manifests.insert(0, ("comparison", compare.manifest))
    names: list[str] = []
    for _, m in manifests:
        for name in (m.get("packages") or {}):
            if name not in names:
                names.append(name)
    columns = []
    for label, m in manifests:
        packages = m.get("packages") or {}
        cells = [str(packages.get(n, "–")) for n in names]
        if any(mm.get("git_commit") for _, mm in manifests):
            cells.append(str(m.get("git_commit") or "–"))
        columns.append((label, cells))
    if any(m.get("git_commit") for _, m in manifests):
        names.append("v2vsim git commit")
    same = all(col[1] == columns[0][1] for col in columns)
    if same and columns:
        columns = [("all runs", columns[0][1])]
    rows = [{"name": n, "cells": [col[1][i] for col in columns]} for i, n in enumerate(names)]
    return {"columns": [c[0] for c in columns], "rows": rows,
            "platforms": sorted({str(m.get("platform", "–")) for _, m in manifests})}


def build_context(inputs: Sequence[RunDir | CompareDir], report_command: str,
                  validation: ValidationDir | None = None) -> dict[str, Any]:
    compares = [i for i in inputs if isinstance(i, CompareDir)]
    runs: list[RunDir] = []
    for item in inputs:
        runs.extend(item.runs if isinstance(item, CompareDir) else [item])
    if len(compares) == 1 and len(inputs) == 1:
        compare: CompareDir | None = compares[0]
        table = compare.comparison.copy()
        info_names = compare.info.get("scenarios") or []
        names = [str(n.get("name") if isinstance(n, Mapping) else n) for n in info_names]
        for name in table["scenario"].astype(str):
            if name not in names:
                names.append(name)
        baseline = str(compare.info.get("baseline") or (names[0] if names else ""))
        if baseline in names:
            names.remove(baseline)
            names.insert(0, baseline)
        table["scenario"] = table["scenario"].astype(str)
        table = _as_fractions(table, {str(e.get("name", "")): r.summary for e, r in
                                      zip(compare.manifest["scenarios"], runs)})
        # Run directories are labelled with the names the comparison uses.
        for run, name in zip(runs, [str(e.get("name", "")) for e in compare.manifest["scenarios"]]):
            run.label = name or run.label
        pair_note = ""
        paired = len(names) > 1
    else:
        compare = None
        _unique_labels(runs)
        table, pair_note = paired_comparison(runs)
        names = [r.label for r in runs]
        paired = len(runs) > 1 and not pair_note
    # Units of currency metrics: the scenario's currency.
    multi = len(names) > 1
    first = runs[0]
    horizon = counted_window(first.scenario)
    economics = economics_context(compare, names)
    budget = budget_context(compare, runs, names)
    table = drop_economic_rows(table)
    shown_cards = [*KEY_METRICS[:3], *[m for m in OPTIONAL_CARDS if _nonzero(table, m)],
                   *KEY_METRICS[3:], *ECONOMIC_CARDS]
    # A count of patients as its rate per 100 referred, when the results have it.
    present = set(table["metric"])
    shown_cards = [rate_metric(m) if rate_metric(m) in present else m for m in shown_cards]
    cards = [c for c in (_describe_key_card(m, table, names, horizon) for m in shown_cards) if c]
    horizons = {name: counted_window(run.scenario) for name, run in zip(names, runs)}
    results_table = _results_table(table, names, paired, horizons)

    figure_groups = []
    if compare is not None and compare.figures:
        figure_groups.append({"title": "Comparison", "scenario": "", "index": 0,
                              "figures": [_figure_entry(p, "", True) for p in compare.figures]})
    for index, run in enumerate(runs):
        if run.figures:
            figure_groups.append({"title": run.label, "scenario": run.label, "index": index,
                                  "figures": [_figure_entry(p, run.label) for p in run.figures]})
    number = 0
    for group in figure_groups:
        for fig in group["figures"]:
            number += 1
            fig["number"] = number

    scenarios = []
    for i, run in enumerate(runs):
        notes = ""
        params: list[Parameter] = []
        source_note = ""
        if run.source_text is not None:
            try:
                params, notes = source_parameters(run.source_text, run.scenario)
            except ReportError as exc:
                source_note = f"The scenario file could not be read for comments: {exc}."
        if not params:
            params = [Parameter(_path_text(k), format_yaml_value(v), "", "default", keys=k,
                                hint=_hint(run.scenario, k))
                      for k, v in _flatten_plain(dict(run.scenario))]
            source_note = source_note or ("This run directory has no scenario_source.yaml "
                                          "(the scenario as written), so no source comments "
                                          "can be shown; values are the resolved scenario.")
        appendix_params = [p for p in params if p.status == "default"]
        needing = [p for p in params if p.status in ("sourced", "inherited", "missing")]
        missing = [p for p in params if p.status == "missing"]
        defaults = [p for p in params if p.status == "default"]
        assumption_words = [p for p in params if p.status in ("sourced", "inherited")
                            and "assum" in p.comment.lower()]
        files = run.manifest.get("files") or {}
        scenarios.append({
            "index": i, "label": run.label, "name": run.name,
            "description": str(run.scenario.get("description") or ""),
            "dir": str(run.path), "notes": notes,
            "params": [p for p in params if p.status not in ("default", "label")],
            "default_params": appendix_params,
            "label_params": [p for p in params if p.status == "label"],
            "n_needing": len(needing), "n_missing": len(missing), "n_defaults": len(defaults),
            "n_assumption": len(assumption_words), "source_note": source_note,
            "logic": scenario_logic(run.scenario), "currency": run.currency,
            "start_date": str(run.scenario.get("start_date", "")),
            "seed": str(run.seed), "replications": str(run.n_replications),
            "run_length": _run_length(run),
            "command": _command_text(run.manifest.get("command")),
            "wall_seconds": (f"{float(run.manifest['wall_seconds']):.1f} s"
                             if _finite(run.manifest.get("wall_seconds")) else "–"),
            "scenario_file": str(run.manifest.get("scenario_file") or "–"),
            "scenario_sha256": str(run.manifest.get("scenario_sha256") or "–"),
            "input_hashes": [{"file": f, "sha256": files[f]} for f in
                             ("scenario_source.yaml", "scenario.yaml") if f in files],
            "version": str(run.manifest.get("v2vsim_version", "–")),
        })

    integrity = []
    for item in inputs:
        if isinstance(item, CompareDir):
            integrity.append(_integrity(item.path, item.manifest, [r.path for r in item.runs]))
            integrity.extend(_integrity(r.path, r.manifest) for r in item.runs)
        else:
            integrity.append(_integrity(item.path, item.manifest))
    if validation is not None:
        integrity.append(_integrity(validation.path, validation.manifest))

    seeds = sorted({str(r.seed) for r in runs})
    reps = sorted({str(r.n_replications) for r in runs})
    warnings = [{"scenario": run.label if multi else "", "index": i, "text": text}
                for i, run in enumerate(runs) for text in run_warnings(run)]
    warnings += [{"scenario": "", "index": 0,
                  "text": f"{len(check['problems'])} file(s) of {check['dir']} do not match the sha256 "
                          "in its manifest: the results may have been changed since the run "
                          "(section 4.6)"} for check in integrity if check["problems"]]
    summary = executive_summary(
        table, names, paired, replications=reps, seeds=seeds, horizon_days=horizon,
        start_date=str(first.scenario.get("start_date", "")), currency=first.currency,
        referred=referred_means(table), economics=economics, pair_note=pair_note)
    if len(names) == 1:
        title = runs[0].label
        kind_text = "Simulation results"
    else:
        title = " vs ".join(names)
        kind_text = "Scenario comparison"
    return {
        "title": title,
        "kind_text": kind_text,
        "multi": multi,
        "paired": paired,
        "pair_note": pair_note,
        "baseline": names[0],
        "names": names,
        "cards": cards,
        "clipped_note": CLIPPED_NOTE,
        "summary": summary,
        "warnings": warnings,
        "table": results_table,
        "economics": economics,
        "budget": budget,
        "figure_groups": figure_groups,
        "scenarios": scenarios,
        "model_scope": scope_context([(r.label, r.scenario) for r in runs]),
        "seeds": seeds,
        "replications": reps,
        "versions": _versions(runs, compare),
        "integrity": integrity,
        "compare": None if compare is None else {
            "dir": str(compare.path),
            "command": _command_text(compare.manifest.get("command")),
            "wall_seconds": (f"{float(compare.manifest['wall_seconds']):.1f} s"
                             if _finite(compare.manifest.get("wall_seconds")) else "–"),
        },
        "validation": validation_context(validation, _data_uri, first_figure=number + 1),
        "report_command": report_command,
        "v2vsim_version": __version__,
        "git_commit": git_commit(),
        "inputs": [str(i.path) for i in inputs] + ([str(validation.path)] if validation else []),
    }
