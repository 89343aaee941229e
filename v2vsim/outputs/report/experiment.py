"""The report of an experiment directory (``v2vsim sweep``, ``sensitivity``, ``capacity``,
``psa``): what was varied, the results table from its CSV, its figures with captions (each
worded from what the figure function draws) and the method, as plain data for the template
``experiment.html.j2``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from ..._version import __version__, git_commit
from ...metrics import is_fraction, metric_label
from .load import ExperimentDir
from .table import _finite, fmt_ci, fmt_value

__all__ = ["experiment_context"]

_KIND_TEXT = {"sweep": "Parameter sweep", "sensitivity": "Sensitivity analysis",
              "capacity": "Capacity search", "psa": "Probabilistic sensitivity analysis"}
#: Metrics of a sweep's table, in this order, when the sweep has them.
_SWEEP_METRICS = ("infused_fraction", "died", "queue_wait_mean", "vein_to_vein_median", "cost_per_infused")


def _label(metric: str, currency: str) -> tuple[str, str]:
    return metric_label(metric, currency)


def _cell(row: Mapping[str, Any] | None, unit: str) -> dict[str, str]:
    if row is None:
        return {"value": "–", "ci": ""}
    return {"value": fmt_value(row.get("mean"), unit), "ci": fmt_ci(row.get("ci_low"), row.get("ci_high"), unit)}


def _display(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def _captions(kind: str, metric_text: str, x: str = "") -> dict[str, tuple[str, str]]:
    """Captions by figure stem (prefix match for ``heatmap_``, ``scatter_``, ``capacity_``)."""
    return {
        "sweep_curves": ("Metrics across the sweep",
                         f"Each metric against {x or 'the first parameter'}: the mean across "
                         "replications at each point with its 95% t-interval as a band; one line per "
                         "combination of the other parameters."),
        "heatmap_": ("Metric over the grid",
                     "The mean across replications of the metric over the grid of the two parameters, "
                     "each cell labelled with its value."),
        "scatter_": ("Metric against each parameter",
                     "A Latin-hypercube sweep: the metric at each point (mean and 95% t-interval across "
                     "replications) against each parameter."),
        "tornado": ("One-at-a-time sensitivity",
                    f"{metric_text} with each parameter at its low and at its high value, the others at "
                    "base; bars sorted by swing (high minus low), the base value as a vertical line."),
        "morris": ("Morris screening",
                   "mu* (the mean absolute elementary effect, with its 95% bootstrap interval) per "
                   f"parameter on {metric_text}, and mu* against sigma (spread: interactions and "
                   "non-linearity)."),
        "sobol": ("Sobol indices",
                  f"First-order (S1) and total (ST) Sobol indices of {metric_text} per parameter, "
                  "with 95% bootstrap intervals."),
        "capacity_": ("Capacity curve",
                      "Each target's metric against the slot count (mean and 95% t-interval across "
                      "replications), the target as a dashed line and the answer marked; and the "
                      "site's utilisation."),
        "ce_plane": ("Cost-effectiveness plane",
                     "Incremental cost against incremental QALYs per referred patient of each option "
                     "against the comparator, one point per parameter set and the mean as a large "
                     "marker; the thresholds are lines through the origin (below a line: "
                     "cost-effective at that threshold)."),
        "ceac": ("Cost-effectiveness acceptability curve",
                 "The share of parameter sets in which each option has the highest net monetary "
                 "benefit, by willingness to pay; the frontier (the option with the highest expected "
                 "net monetary benefit) drawn over it in black."),
        "evpi": ("Expected value of perfect information",
                 "The EVPI by willingness to pay: per year of referrals (left axis) and per patient "
                 "(right axis)."),
        "evppi": ("Expected value of partial perfect information",
                  "The EVPPI per year of each uncertain parameter at up to three thresholds, largest "
                  "first; the EVPI at each threshold in its legend entry."),
    }


def _figure_entries(exp: ExperimentDir, captions: Mapping[str, tuple[str, str]], currency: str,
                    data_uri: Any, first_number: int) -> list[dict[str, Any]]:
    out = []
    for k, path in enumerate(exp.figures):
        stem = path.stem
        key = stem if stem in captions else next((c for c in captions if c.endswith("_")
                                                  and stem.startswith(c)), "")
        title, caption = captions.get(key, (stem.replace("_", " ").capitalize(), ""))
        if key in ("heatmap_", "scatter_"):
            title = f"{title}: {_label(stem.removeprefix(key), currency)[0]}"
        if key == "capacity_":
            title = f"{title} of {stem.removeprefix(key)}"
        out.append({"number": first_number + k, "title": title, "caption": caption, "file": path.name,
                    "src": data_uri(path), "alt": title, "scenario": ""})
    return out


def _sweep(exp: ExperimentDir, currency: str) -> dict[str, Any]:
    info = exp.info
    names = [str(n) for n in info.get("parameters") or []]
    table = exp.tables["sweep"]
    metrics = [m for m in _SWEEP_METRICS if (table["metric"] == m).any()]
    metrics += [m for m in dict.fromkeys(table["metric"].astype(str)) if m.startswith("utilization_")]
    points = table.drop_duplicates("point").set_index("point")
    rows_by = {(int(r["point"]), str(r["metric"])): r for _, r in table.iterrows()}
    header = ["Point", *names] + [_label(m, currency)[0] for m in metrics]
    rows = []
    for point in points.index:
        cells = [{"value": str(point), "ci": ""}] + [
            {"value": _display(points.at[point, n]) if n in points.columns else "–", "ci": ""} for n in names]
        for m in metrics:
            unit = _label(m, currency)[1]
            r = rows_by.get((int(point), m))
            cells.append(_cell(None if r is None else r.to_dict(), unit))
        rows.append(cells)
    design = str(info.get("design") or "grid")
    values = {n: list(dict.fromkeys(_display(v) for v in points[n])) for n in names if n in points.columns}
    varied = [{"path": n, "values": ", ".join(values.get(n, []))} for n in names]
    fixed = [f"{p} = {v}" for p, v in info.get("fixed") or []]
    seeds = [str(s) for s in info.get("seeds") or []]
    reps = sorted({int(r) for r in info.get("replications") or [] if _finite(r)})
    n_points = len(points)
    method = [
        (f"A {'full grid: every combination of the values below' if design == 'grid' else f'Latin hypercube of {n_points} points over the ranges below'}; "
         f"{n_points} points. Each point is the base scenario with the varied parameters set to the point's values"
         + (f" and, at every point, {'; '.join(fixed)}" if fixed else "") + "."),
        (f"Each point is run for {' to '.join(map(str, reps)) if reps else 'its'} replications"
         + (f" with seed {seeds[0]}: every point simulates the same referrals, disease clocks and "
            "step draws (common random numbers), so differences between points come from the "
            "parameters, not from different patients." if len(seeds) == 1 else
            f" with seeds {', '.join(seeds)}.")),
        "Each metric is computed per replication; the table gives the mean across replications with "
        "its two-sided 95% t-interval.",
    ]
    if info.get("precision"):
        prec = info["precision"]
        method.append(f"Replications were added until the 95% half-width of "
                      f"{', '.join(prec.get('metrics', []))} was within {100 * float(prec.get('relative', 0)):g}% "
                      f"of the mean, at most {prec.get('max_replications')} per point.")
    warnings = []
    pts = exp.tables.get("points")
    if pts is not None and "precision_reached" in pts:
        missed = pts[pts["precision_reached"].astype(str).str.lower() == "false"]
        if len(missed):
            warnings.append(f"the precision target was not reached at {len(missed)} of {len(pts)} points "
                            f"(points {', '.join(str(p) for p in missed['point'])}): their intervals are "
                            "wider than asked")
    x = names[0] if names else ""
    return {"varied": varied, "header": header, "rows": rows, "method": method, "warnings": warnings,
            "captions": _captions("sweep", "", x),
            "lede": f"{n_points} points of {len(names)} parameter{'s' if len(names) != 1 else ''}; "
                    "mean across replications and 95% CI of each metric at each point.",
            "answer": ""}


def _sensitivity(exp: ExperimentDir, currency: str) -> dict[str, Any]:
    info = exp.info
    method_name = str(info.get("method") or exp.manifest.get("method") or "oat")
    metric = str(info.get("metric") or exp.manifest.get("metric") or "")
    label, unit = _label(metric, currency) if metric else ("the metric", "")
    indices = exp.tables["indices"]
    varied = [{"path": str(p[0]), "values": f"{_display(p[1])} to {_display(p[2])}"}
              for p in info.get("params") or [] if isinstance(p, list) and len(p) == 3]
    if method_name == "oat":
        header = ["Parameter", "Base", "Low", "High", f"{label} at low", "at base", "at high", "Swing"]
        rows = []
        for _, r in indices.sort_values("swing", ascending=False, key=lambda c: c.abs()).iterrows():
            rows.append([{"value": str(r["parameter"]), "ci": ""},
                         *[{"value": _display(r[c]), "ci": ""} for c in ("base_value", "low", "high")],
                         {"value": fmt_value(r["low_mean"], unit),
                          "ci": fmt_ci(r.get("low_ci_low"), r.get("low_ci_high"), unit)},
                         {"value": fmt_value(r["base_mean"], unit), "ci": ""},
                         {"value": fmt_value(r["high_mean"], unit),
                          "ci": fmt_ci(r.get("high_ci_low"), r.get("high_ci_high"), unit)},
                         {"value": fmt_value(r["swing"], unit) if not is_fraction(unit) else f"{100 * float(r['swing']):.1f} pp",
                          "ci": ""}])
        how = ("One at a time (OAT): each parameter is set to its low and to its high value with the "
               "others at the base scenario's values; the swing is the metric at high minus at low. "
               "OAT shows each parameter's effect alone and misses interactions.")
    else:
        columns = {"morris": ["mu_star", "mu_star_conf", "sigma", "mu"],
                   "sobol": ["S1", "S1_conf", "ST", "ST_conf"]}.get(method_name, [])
        columns = [c for c in columns if c in indices.columns]
        header = ["Parameter", *columns]
        rows = [[{"value": str(r["parameter"]), "ci": ""},
                 *[{"value": f"{float(r[c]):.4g}" if _finite(r[c]) else "–", "ci": ""} for c in columns]]
                for _, r in indices.iterrows()]
        how = {"morris": (f"Morris elementary effects ({info.get('trajectories')} trajectories on a "
                          f"{info.get('levels')}-level grid): mu* is the mean absolute effect of moving "
                          "one parameter by one step (its importance), sigma the spread of those effects "
                          "(interactions and non-linearity); _conf is the 95% bootstrap half-width."),
               "sobol": (f"Sobol variance-based indices from a Saltelli design ({info.get('samples')} base "
                         "samples): S1 is the share of the metric's variance due to the parameter alone, ST "
                         "the share including its interactions; _conf is the 95% bootstrap half-width.")
               }.get(method_name, method_name)
    reps = info.get("replications") or exp.manifest.get("replications")
    method = [how, f"Every point is run for {reps} replications with seed {info.get('seed', exp.manifest.get('seed'))} "
              "(common random numbers: every point simulates the same patients); the metric at a point is "
              "the mean across its replications."]
    fixed = [f"{p} = {v}" for p, v in info.get("fixed") or []]
    if fixed:
        method.append("Held fixed at every point: " + "; ".join(fixed) + ".")
    return {"varied": varied, "header": header, "rows": rows, "method": method, "warnings": [],
            "captions": _captions("sensitivity", label),
            "lede": f"Sensitivity of {label} ({method_name}) to {len(varied)} parameters.",
            "answer": ""}


def _capacity(exp: ExperimentDir, currency: str) -> dict[str, Any]:
    info = exp.info
    site = str(info.get("site") or exp.manifest.get("site") or "")
    targets = [str(t) for t in info.get("targets") or []]
    table = exp.tables["capacity"]
    checks = exp.tables["search"]
    target_metrics = []
    for t in targets:
        for op in ("<=", ">="):
            if op in t:
                target_metrics.append(t.split(op)[0].strip())
    metrics = list(dict.fromkeys(target_metrics + [f"utilization_{site}"] +
                                 [m for m in ("infused_fraction", "died") if (table["metric"] == m).any()]))
    metrics = [m for m in metrics if (table["metric"] == m).any()]
    rows_by = {(int(r["slots"]), str(r["metric"])): r for _, r in table.iterrows()}
    header = ["Slots", *[_label(m, currency)[0] for m in metrics], "Meets every target"]
    rows = []
    for _, check in checks.sort_values("slots").iterrows():
        slots = int(check["slots"])
        cells = [{"value": str(slots), "ci": ""}]
        for m in metrics:
            r = rows_by.get((slots, m))
            cells.append(_cell(None if r is None else r.to_dict(), _label(m, currency)[1]))
        meets = str(check["meets_all"]).lower() == "true"
        cells.append({"value": "yes" if meets else "no", "ci": ""})
        rows.append(cells)
    answer = info.get("answer", exp.manifest.get("answer"))
    answer_text = (f"{answer} slot{'s' if answer != 1 else ''} at {site} meet{'s' if answer == 1 else ''} "
                   f"every target ({'; '.join(targets)}) with 95% confidence"
                   if answer is not None else
                   f"No slot count from {info.get('min_slots')} to {info.get('max_slots')} at {site} meets "
                   f"every target ({'; '.join(targets)}) with 95% confidence")
    reps = info.get("replications")
    method = [
        "A target METRIC<=VALUE is met when the upper bound of the metric's 95% t-interval across "
        "replications is at most VALUE; METRIC>=VALUE when the lower bound is at least VALUE. The "
        "answer is the smallest slot count that meets every target.",
        f"Search: {info.get('search', 'linear')} from {info.get('min_slots')} to at most "
        f"{info.get('max_slots')} slots; assumption: {info.get('assumption', '–')}.",
        (f"Each slot count is run for {reps} replications" if reps else "Each slot count is run to the precision asked")
        + f" with seed {info.get('seed')} (common random numbers: every count simulates the same patients).",
    ]
    warnings = [] if answer is not None else [answer_text.replace("No slot", "no slot")]
    return {"varied": [{"path": f"sites.{site}.slots", "values": ", ".join(str(int(s)) for s in checks["slots"])}],
            "header": header, "rows": rows, "method": method, "warnings": warnings,
            "captions": _captions("capacity", ""), "answer": answer_text + ".",
            "lede": f"The slot counts of {site} that were run, each with the targets' metrics (mean and 95% CI)."}


def _psa(exp: ExperimentDir, currency: str) -> dict[str, Any]:
    info = exp.info
    summary = exp.tables["psa_summary"]
    names = [str(n) for n in info.get("scenarios") or summary["scenario"].tolist()]
    comparator = str(info.get("comparator") or (names[0] if names else ""))

    def interval(r: Mapping[str, Any], stem: str, money: bool) -> dict[str, str]:
        mean, low, high = r.get(f"{stem}_mean"), r.get(f"{stem}_p2_5"), r.get(f"{stem}_p97_5")
        fmt = (lambda v: f"{float(v):,.0f}") if money else (lambda v: f"{float(v):.3f}")
        if not _finite(mean):
            return {"value": "–", "ci": ""}
        return {"value": fmt(mean), "ci": f"{fmt(low)} to {fmt(high)}" if _finite(low) and _finite(high) else ""}

    header = ["Scenario", "Cost per referred (discounted)", "QALYs per referred (discounted)",
              f"Incremental cost vs {comparator}", "Incremental QALYs", "ICER / dominance"]
    rows = []
    for _, r in summary.iterrows():
        d = r.to_dict()
        dominance = str(d.get("dominance") or "") if isinstance(d.get("dominance"), str) else ""
        icer = f"{float(d['icer']):,.0f}" if _finite(d.get("icer")) else ""
        rows.append([{"value": str(d["scenario"]), "ci": ""}, interval(d, "cost", True), interval(d, "qalys", False),
                     interval(d, "incremental_cost", True), interval(d, "incremental_qalys", False),
                     {"value": icer or ("–" if not dominance else ""), "ci": dominance}])
    sets, reps = info.get("sets"), info.get("replications")
    params = exp.tables.get("psa_parameters")
    varied = []
    if params is not None and {"parameter", "distribution"} <= set(params.columns):
        for _, r in params.drop_duplicates("parameter").iterrows():
            varied.append({"path": f"{r['parameter']} ({r.get('path', '')})", "values": str(r["distribution"])})
    ceac = exp.tables["ceac"]
    wtps = sorted({float(w) for w in ceac["wtp"]})
    step = wtps[1] - wtps[0] if len(wtps) > 1 else 0.0
    chosen = [w for w in wtps if step and abs(((w - wtps[0]) / step) - round((w - wtps[0]) / step)) > 1e-6]
    if not chosen:
        chosen = [wtps[int(i * (len(wtps) - 1) / 4)] for i in range(5)] if wtps else []
    ceac_rows = []
    for w in chosen:
        at = ceac[ceac["wtp"].astype(float) == w]
        cells = [{"value": f"{w:,.0f}", "ci": ""}]
        for name in names:
            row = at[at["scenario"].astype(str) == name]
            p = float(row["probability_cost_effective"].iloc[0]) if len(row) else math.nan
            frontier = len(row) and str(row["on_frontier"].iloc[0]).lower() == "true" if "on_frontier" in row else False
            cells.append({"value": f"{100 * p:.0f}%" if _finite(p) else "–", "ci": "on the frontier" if frontier else ""})
        ceac_rows.append(cells)
    method = [
        f"{sets} parameter sets: each draws every uncertain input once from its distribution (the table "
        "of inputs below), then runs every scenario with those values for "
        f"{reps} replications with seed {info.get('seed')} (the same patients in every scenario and set).",
        f"Incremental results are against {comparator} (the comparator). Intervals are the 2.5th to 97.5th "
        "percentiles across parameter sets (the uncertainty of the inputs), not confidence intervals.",
        f"EVPPI: {info.get('evppi_method', '–')}. Population: {info.get('population', '–')}.",
    ]
    return {"varied": varied, "header": header, "rows": rows, "method": method, "warnings": [],
            "captions": _captions("psa", ""), "answer": "",
            "ceac": {"header": ["Willingness to pay per QALY", *names], "rows": ceac_rows},
            "lede": f"Per referred patient, discounted, over {sets} parameter sets{f' ({currency})' if currency else ''}: "
                    "mean and 2.5th to 97.5th percentile across sets."}


def experiment_context(exp: ExperimentDir, report_command: str, data_uri: Any,
                       integrity: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the experiment page shows."""
    currency = str((exp.scenario or {}).get("currency", ""))
    if exp.kind == "psa" and not currency:
        currency = str(exp.info.get("currency", ""))
    part = {"sweep": _sweep, "sensitivity": _sensitivity, "capacity": _capacity, "psa": _psa}[exp.kind](exp, currency)
    names = exp.manifest.get("scenario_names") or [exp.manifest.get("scenario_name") or exp.path.name]
    warnings = list(part["warnings"])
    if integrity.get("problems"):
        warnings.append(f"{len(integrity['problems'])} file(s) of {exp.path} do not match the sha256 in its "
                        "manifest: the results may have been changed since the run")
    command = exp.manifest.get("command")
    return {
        "kind": exp.kind, "kind_text": _KIND_TEXT[exp.kind], "title": " vs ".join(str(n) for n in names),
        "scenario_names": [str(n) for n in names],
        "description": str((exp.scenario or {}).get("description") or ""),
        **part,
        "warnings": warnings,
        "figures": _figure_entries(exp, part["captions"], currency, data_uri, 1),
        "command": " ".join(str(c) for c in command) if isinstance(command, list) else str(command or "–"),
        "wall_seconds": (f"{float(exp.manifest['wall_seconds']):.1f} s" if _finite(exp.manifest.get("wall_seconds")) else "–"),
        "seed": str(exp.manifest.get("seed", "–")),
        "scenario_file": ", ".join(str(f) for f in (exp.manifest.get("scenario_files")
                                                    or [exp.manifest.get("scenario_file") or "–"])),
        "integrity": integrity,
        "dir": str(exp.path),
        "report_command": report_command,
        "v2vsim_version": __version__, "run_version": str(exp.manifest.get("v2vsim_version", "–")),
        "git_commit": git_commit(), "run_git_commit": str(exp.manifest.get("git_commit") or "–"),
        "inputs": [str(exp.path)], "sep": os.sep,
    }
