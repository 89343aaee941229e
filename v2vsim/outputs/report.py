"""One self-contained HTML report of results directories, for a funding-proposal appendix.

``write_report([DIR, ...], "report.html")`` reads run directories (``v2vsim run``) and comparison
directories (``v2vsim compare``) and writes a single HTML file: key numbers with 95% confidence
intervals (paired differences for comparisons), a results table, the figures (embedded as
base64 PNG, or SVG when there is no PNG) with captions, an assumptions table pairing every
scenario parameter with the comment written next to it in the scenario file, and a method
section in the order of the STRESS-DES reporting checklist (Monks et al. 2019).

The page needs no network and no JavaScript: CSS is inline, images are ``data:`` URIs, and a
Content-Security-Policy forbids scripts and remote loads. Everything users wrote (scenario
names, descriptions, comments, cohort, site and step names) is HTML-escaped by the template
engine (Jinja2 with autoescaping on), never pasted into markup.

This module reads results; it never imports the model.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import os
import shlex
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, StrictUndefined
from pydantic import TypeAdapter, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.tokens import CommentToken

from .._version import __version__
from ..scenario.distributions import Distribution
from ..metrics import LOSS_CAUSES, format_value, metric_label, t_interval
from .results_dir import MANIFEST, verify_dir
from ..scenario import to_plain

__all__ = [
    "ReportError",
    "RunDir",
    "CompareDir",
    "Parameter",
    "load_results",
    "source_parameters",
    "paired_comparison",
    "render_report",
    "write_report",
    "KEY_METRICS",
]

#: The numbers shown first, in this order.
KEY_METRICS = ("infused_fraction", "died", "vein_to_vein_median", "cost_per_infused")

#: Keys whose values are names or references, not quantities: they need no source comment.
LABEL_KEYS = frozenset({"name", "description", "kind", "currency", "pathway", "site"})

#: Captions of the standard figures (``plots.run_figures``) and of comparison figures.
FIGURE_CAPTIONS: dict[str, tuple[str, str]] = {
    "vein_to_vein": (
        "Time to infusion",
        "Distribution of vein-to-vein time (start of the first apheresis to infusion) and of "
        "referral-to-infusion time among infused patients, pooled over all replications, in "
        "1-day bins as a share of infused patients. Solid line: median; dashed line: 90th "
        "percentile."),
    "attrition_funnel": (
        "Attrition from referral to infusion",
        "Mean number of patients per replication reaching each stage of the pathway, and the "
        "patients lost between stages coloured by cause."),
    "cumulative_incidence": (
        "Outcomes over time since referral",
        "Cumulative share of referred patients who have been infused, died, become ineligible "
        "or been lost otherwise, by days since referral. Lines: median across replications; "
        "bands: middle 95% of replications."),
    "site_utilisation": (
        "Capacity-limited sites over time",
        "Slots in use and patients waiting for a slot at each site by simulation day "
        "(7-day rolling mean; line: median across replications; band: middle 95% of "
        "replications; dashed: capacity)."),
    "journey": (
        "Patient journeys",
        "Step-by-step journeys of the traced patients of the first replication, in days since "
        "referral: hatched bars are waits for a slot or a start day, coloured bars the steps; "
        "the marker at the end is the patient's outcome."),
}

#: Captions of the figures of a comparison directory (``plots.comparison_figures``).
COMPARISON_CAPTIONS: dict[str, tuple[str, str]] = {
    "outcomes_per_100": (
        "Outcomes per 100 referred patients",
        "Out of 100 referred patients: how many are infused, die, become ineligible or are lost "
        "otherwise, per scenario. Means across replications with 95% t-interval error bars."),
    "vein_to_vein": (
        "Vein-to-vein time by scenario",
        "Vein-to-vein days of infused patients per scenario, pooled over replications: "
        "empirical cumulative distribution and 1-day histogram overlaid; the legend gives each "
        "scenario's median and 90th percentile."),
    "cumulative_incidence": (
        "Infusion and death since referral",
        "Cumulative incidence of infusion and of death before infusion by days since referral, "
        "per scenario: mean across replications, with the 95% t-interval of that mean as a band."),
    "attrition_by_cause": (
        "Losses before infusion by cause",
        "Patients lost before infusion per 100 referred, by cause, side by side per scenario. "
        "Means across replications with 95% t-interval error bars."),
    "cost_per_patient": (
        "Cost per patient",
        "Cost per infused patient and per referred patient per scenario. Means across "
        "replications with 95% t-interval error bars."),
}

#: Order of the figures in the report; other figures follow alphabetically.
FIGURE_ORDER = ("outcomes_per_100", "vein_to_vein", "attrition_funnel", "attrition_by_cause",
                "cumulative_incidence", "cost_per_patient", "site_utilisation", "journey")

_COMPARISON_COLUMNS = ["metric", "label", "unit", "scenario", "mean", "ci_low", "ci_high", "n",
                       "diff", "diff_ci_low", "diff_ci_high"]
_MINUS = "\u2212"


class ReportError(ValueError):
    """A directory cannot be reported on (the message says which and why)."""


# --------------------------------------------------------------------------------------------
# Reading results directories
# --------------------------------------------------------------------------------------------


@dataclass
class RunDir:
    """One scenario's run directory (``v2vsim run``)."""

    path: Path
    manifest: dict[str, Any]
    scenario: dict[str, Any]
    source_text: str | None
    summary: pd.DataFrame
    replications: pd.DataFrame | None
    figures: list[Path]
    label: str = ""

    @property
    def name(self) -> str:
        return str(self.scenario.get("name") or self.manifest.get("scenario_name") or self.path.name)

    @property
    def currency(self) -> str:
        return str(self.scenario.get("currency", ""))

    @property
    def seed(self) -> Any:
        return self.manifest.get("seed", self.scenario.get("seed"))

    @property
    def n_replications(self) -> Any:
        return self.manifest.get("replications", self.scenario.get("replications"))


@dataclass
class CompareDir:
    """A comparison directory (``v2vsim compare``): one run directory per scenario."""

    path: Path
    manifest: dict[str, Any]
    info: dict[str, Any]
    runs: list[RunDir]
    comparison: pd.DataFrame
    figures: list[Path]


def _not_results(path: Path, why: str) -> ReportError:
    return ReportError(f"{path}: not a v2vsim results directory ({why}); give a directory "
                       "written by `v2vsim run` or `v2vsim compare`")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read JSON ({exc})") from None


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read CSV ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ReportError(f"{path}: no such directory")
    if not path.is_dir():
        raise _not_results(path, "it is not a directory")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise _not_results(path, f"no {MANIFEST}")
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict) or "v2vsim_version" not in manifest:
        raise _not_results(path, f"{MANIFEST} was not written by v2vsim")
    return manifest


def _figures(directory: Path) -> list[Path]:
    """One file per figure: the PNG when there is one, else the SVG; in report order."""
    folder = directory / "figures"
    if not folder.is_dir():
        return []
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in (".png", ".svg"):
            continue
        if path.stem not in by_stem or suffix == ".png":
            by_stem[path.stem] = path
    rank = {stem: i for i, stem in enumerate(FIGURE_ORDER)}
    return [by_stem[s] for s in sorted(by_stem, key=lambda s: (rank.get(s, len(rank)), s))]


def _safe_yaml(path: Path) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise ReportError(f"{path}: cannot read YAML ({str(exc).splitlines()[0]})") from None


def _load_run(path: Path, manifest: dict[str, Any] | None = None) -> RunDir:
    manifest = _read_manifest(path) if manifest is None else manifest
    kind = manifest.get("kind", "run")
    if kind != "run":
        raise _not_results(path, f"expected a run directory, its manifest says kind {kind!r}")
    for name in ("scenario.yaml", "summary.csv"):
        if not (path / name).is_file():
            raise _not_results(path, f"no {name}")
    scenario = _safe_yaml(path / "scenario.yaml")
    if not isinstance(scenario, dict):
        raise ReportError(f"{path / 'scenario.yaml'}: not a scenario mapping")
    source = path / "scenario_source.yaml"
    source_text = source.read_text(encoding="utf-8", errors="replace") if source.is_file() else None
    summary = _read_csv(path / "summary.csv", ["metric", "mean", "ci_low", "ci_high", "n"])
    reps_path = path / "replications.csv"
    replications = _read_csv(reps_path, ["replication"]) if reps_path.is_file() else None
    return RunDir(path=path, manifest=manifest, scenario=scenario, source_text=source_text,
                  summary=summary, replications=replications, figures=_figures(path))


def _load_compare(path: Path, manifest: dict[str, Any]) -> CompareDir:
    csv_path = path / "comparison.csv"
    if not csv_path.is_file():
        raise _not_results(path, "a comparison manifest but no comparison.csv")
    comparison = _read_csv(csv_path, _COMPARISON_COLUMNS)
    info_path = path / "comparison.json"
    info = _read_json(info_path) if info_path.is_file() else {}
    if not isinstance(info, dict):
        info = {}
    entries = manifest.get("scenarios")
    if not isinstance(entries, list) or not entries:
        raise ReportError(f"{path / MANIFEST}: no 'scenarios' list")
    runs = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not entry.get("dir"):
            raise ReportError(f"{path / MANIFEST}: each scenario needs a 'dir'")
        sub = Path(str(entry["dir"]))
        sub = sub if sub.is_absolute() else path / sub
        run = _load_run(sub)
        run.label = str(entry.get("name") or run.name)
        runs.append(run)
    return CompareDir(path=path, manifest=manifest, info=info, runs=runs,
                      comparison=comparison, figures=_figures(path))


def load_results(path: str | Path) -> RunDir | CompareDir:
    """Read a run or comparison directory; :class:`ReportError` if it is neither."""
    path = Path(path)
    manifest = _read_manifest(path)
    kind = manifest.get("kind", "run")
    if kind == "compare":
        return _load_compare(path, manifest)
    if kind == "run":
        return _load_run(path, manifest)
    raise _not_results(path, f"unknown kind {kind!r} in {MANIFEST}")


# --------------------------------------------------------------------------------------------
# Parameters and their source comments
# --------------------------------------------------------------------------------------------


@dataclass
class Parameter:
    """One scenario parameter as written (or defaulted) and the comment next to it."""

    path: str
    value: str
    comment: str = ""
    status: str = "missing"  # sourced | inherited | missing | label | default
    line: int | None = None  # 1-based line in the scenario file
    run_value: str = ""  # the value the run used, when it differs (command-line overrides)
    hint: str = ""  # the name of the cohort or step the path points into
    keys: tuple[Any, ...] = ()


def _comment_lines(tree: Any, lines: Sequence[str]) -> dict[int, tuple[int, str]]:
    """Every comment ruamel found: 0-based line -> (column of '#', text without '#').

    ruamel.yaml's scanner decides what is a comment (not a '#' in a quoted value or a block
    scalar); its tokens carry a start line that may be off by the newline they begin with,
    so each comment line is anchored on the source line that ends with its text.
    """
    found: dict[int, tuple[int, str]] = {}
    seen: set[int] = set()

    def anchor(token: CommentToken) -> None:
        start = token.start_mark.line if token.start_mark is not None else 0
        pieces = [p.strip() for p in token.value.split("\n") if p.strip().startswith("#")]
        number = max(0, start - 3)
        for text in pieces:
            while number < len(lines) and not (lines[number].rstrip().endswith(text)
                                               and number not in found):
                number += 1
            if number >= len(lines):
                return
            column = lines[number].rstrip().rfind(text)
            found[number] = (column, text[1:].strip())
            number += 1

    def tokens(obj: Any) -> None:
        if isinstance(obj, CommentToken):
            if id(obj) not in seen:
                seen.add(id(obj))
                anchor(obj)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                tokens(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                tokens(item)

    stack = [tree]
    visited: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        ca = getattr(node, "ca", None)
        if ca is not None:
            tokens(ca.comment)
            tokens(ca.items)
            tokens(ca.end)
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _is_flow(node: Any) -> bool:
    fa = getattr(node, "fa", None)
    return bool(fa is not None and fa.flow_style())


def _is_leaf(node: Any) -> bool:
    if isinstance(node, Mapping):
        return "dist" in node or _is_flow(node)
    if isinstance(node, list):
        return _is_flow(node) or all(not isinstance(v, (Mapping, list)) for v in node)
    return True


def _plain(node: Any) -> Any:
    """Plain data for display: as the loader sees it, with dates written as text."""

    def text_dates(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): text_dates(v) for k, v in value.items()}
        if isinstance(value, list):
            return [text_dates(v) for v in value]
        if isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    return text_dates(to_plain(node))


def format_yaml_value(value: Any) -> str:
    """A compact, YAML-like rendering of a parameter's value."""
    value = _plain(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(format_yaml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def _path_text(keys: Sequence[Any]) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else ("." if text else "") + str(key)
    return text


def _hint(root: Any, keys: Sequence[Any]) -> str:
    """Name of the innermost named list item along ``keys`` (a cohort or a step)."""
    node, hint = root, ""
    for key in keys[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(key, int) and isinstance(node, Mapping) and isinstance(node.get("name"), str):
            hint = node["name"]
    return hint


def _flatten_plain(node: Any, keys: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Leaves of the resolved scenario, with the same leaf rule as the source file."""
    if keys and (not isinstance(node, (dict, list)) or (isinstance(node, dict) and "dist" in node)
                 or (isinstance(node, list) and all(not isinstance(v, (dict, list)) for v in node))):
        return [(keys, node)]
    items = node.items() if isinstance(node, dict) else enumerate(node)
    out = []
    for key, value in items:
        out.extend(_flatten_plain(value, (*keys, key)))
    return out


def _header_notes(lines: Sequence[str], comments: Mapping[int, tuple[int, str]],
                  first_key_line: int) -> str:
    """The comment block at the top of the file (the author's notes on the scenario)."""
    kept = []
    for number in range(first_key_line):
        if number in comments and not lines[number][: comments[number][0]].strip():
            text = comments[number][1]
            if text and set(text) <= set("=-#~*_ "):
                continue  # underlines of a heading
            kept.append(text)
        elif number < len(lines) and not lines[number].strip():
            kept.append("")
    return "\n".join(kept).strip("\n")


def source_parameters(text: str, resolved: Mapping[str, Any] | None = None
                      ) -> tuple[list[Parameter], str]:
    """Every parameter of a scenario file with the comment written next to it.

    The comment of a parameter is its end-of-line comment, else the block of comment lines
    directly above its key, else (marked ``inherited``) the comment on the key of the mapping
    that holds it. Parameters of ``resolved`` (the scenario as run) that the file does not set
    are added as ``default``. Returns the parameters in file order and the file's header notes.
    Comments are read from ruamel.yaml's round-trip tokens, so a ``#`` inside a quoted value or
    a block scalar is never taken for a comment.
    """
    yaml = YAML(typ="rt", pure=True)
    try:
        tree = yaml.load(io.StringIO(text))
    except (YAMLError, ValueError) as exc:
        raise ReportError(f"cannot read the scenario file ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, CommentedMap):
        raise ReportError("the scenario file is not a mapping")
    lines = text.splitlines()
    comments = _comment_lines(tree, lines)
    first_key_line = tree.lc.key(next(iter(tree)))[0] if len(tree) else len(lines)
    header = _header_notes(lines, comments, first_key_line)

    def full_line(number: int) -> bool:
        return number in comments and number < len(lines) \
            and not lines[number][: comments[number][0]].strip()

    def comment_at(line: int) -> str:
        if line in comments and not full_line(line):
            return comments[line][1]
        above = []
        number = line - 1
        # The notes at the top of the file belong to the whole scenario, not to its first key.
        while number >= first_key_line and full_line(number):
            above.append(comments[number][1])
            number -= 1
        return "\n".join(reversed(above)).strip()


    params: list[Parameter] = []

    def walk(node: Any, keys: tuple[Any, ...], parent_comment: str) -> None:
        if isinstance(node, CommentedMap):
            entries = [(k, node.lc.key(k)[0]) for k in node]
        else:
            entries = [(i, node.lc.item(i)[0]) for i in range(len(node))]
        for key, line in entries:
            child = node[key]
            path = (*keys, key)
            own = comment_at(line)
            if _is_leaf(child):
                last = next((k for k in reversed(path) if isinstance(k, str)), "")
                if last in LABEL_KEYS:
                    status, comment = "label", own
                elif own:
                    status, comment = "sourced", own
                elif parent_comment and isinstance(node, CommentedMap):
                    status, comment = "inherited", parent_comment
                else:
                    status, comment = "missing", ""
                params.append(Parameter(_path_text(path), format_yaml_value(child), comment,
                                        status, line + 1, hint=_hint(tree, path), keys=path))
            else:
                walk(child, path, own if isinstance(node, CommentedMap) else "")

    walk(tree, (), "")
    if resolved:
        _merge_resolved(params, resolved, tree)
    return params, header


def _merge_resolved(params: list[Parameter], resolved: Mapping[str, Any], tree: Any) -> None:
    """Mark values changed at run time and add parameters left at their defaults."""
    written = {p.keys: p for p in params}

    def covered(keys: tuple[Any, ...]) -> bool:
        return any(keys[: len(k)] == k or k[: len(keys)] == keys for k in written)

    for keys, value in _flatten_plain(dict(resolved)):
        param = written.get(keys)
        if param is not None:
            written_value = _plain(_node(tree, keys))
            numeric = (int, float)
            if isinstance(value, numeric) and isinstance(written_value, numeric) \
                    and not isinstance(value, bool) and not isinstance(written_value, bool) \
                    and value != written_value:
                param.run_value = format_yaml_value(value)
            continue
        if covered(keys):
            continue
        row = Parameter(_path_text(keys), format_yaml_value(value), "", "default",
                        hint=_hint(resolved, keys), keys=keys)
        # Next to the written parameters it belongs with (same step, cohort or site).
        best, best_len = len(params), 0
        for i, p in enumerate(params):
            common = 0
            for a, b in zip(p.keys, keys):
                if a != b:
                    break
                common += 1
            if common >= best_len and common > 0:
                best, best_len = i + 1, common
        params.insert(best, row)
        written[keys] = row


def _node(tree: Any, keys: Sequence[Any]) -> Any:
    node = tree
    for key in keys:
        node = node[key]
    return node


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


def _unique_labels(runs: Sequence[RunDir]) -> None:
    names = [r.label or r.name for r in runs]
    for run, name in zip(runs, names):
        run.label = name if names.count(name) == 1 else f"{name} ({run.path.name})"


def _metric_order(metrics: Iterable[str], means: Mapping[str, float]) -> tuple[list[str], int]:
    """Headline metrics first (as in the terminal summary), then the rest; and how many lead.

    ``means`` holds the largest mean of each metric across scenarios: a loss cause is a
    headline metric when it happens in some scenario.
    """
    present = list(dict.fromkeys(metrics))
    head = ["referred", "infused_fraction"]
    head += [c for c in LOSS_CAUSES
             if c in ("died", "ineligible") or (_finite(means.get(c)) and float(means[c]) > 0)]
    head += ["vein_to_vein_median", "vein_to_vein_p90", "referral_to_infusion_median",
             "queue_wait_mean"]
    head += [m for m in present if m.startswith("utilization_")]
    head += ["cost_per_infused", "cost_per_referred"]
    ordered = [m for m in head if m in present]
    return ordered + [m for m in present if m not in ordered], len(ordered)


def paired_comparison(runs: Sequence[RunDir]) -> tuple[pd.DataFrame, str]:
    """The comparison table (``comparison.csv`` columns) of run directories.

    Differences are paired by replication (scenario minus the first scenario, t-interval of
    the per-replication differences) when every run used the same seed and the same
    replications, so that common random numbers pair them; otherwise they are left empty and
    the returned note says why.
    """
    base = runs[0]
    note = ""
    paired = len(runs) > 1 and all(r.replications is not None for r in runs) \
        and len({str(r.seed) for r in runs}) == 1
    if paired:
        rep_sets = {tuple(sorted(r.replications["replication"].tolist())) for r in runs}  # type: ignore[index]
        paired = len(rep_sets) == 1
    if len(runs) > 1 and not paired:
        note = ("The runs do not share a seed and replication numbers (or lack replications.csv), "
                "so they are not paired by common random numbers: differences are not shown.")
    rows = []
    for run in runs:
        summary = run.summary.set_index("metric")
        for metric in summary.index:
            label, unit = metric_label(str(metric), run.currency)
            row = {"metric": metric, "label": label, "unit": unit, "scenario": run.label,
                   "mean": summary.loc[metric, "mean"], "ci_low": summary.loc[metric, "ci_low"],
                   "ci_high": summary.loc[metric, "ci_high"], "n": summary.loc[metric, "n"],
                   "diff": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan}
            if paired and run is not base:
                a = base.replications.set_index("replication")  # type: ignore[union-attr]
                b = run.replications.set_index("replication")  # type: ignore[union-attr]
                if metric in a.columns and metric in b.columns \
                        and pd.api.types.is_numeric_dtype(b[metric]):
                    diff = (b[metric] - a[metric].reindex(b.index)).to_numpy(dtype=float)
                    mean, low, high, _n = t_interval(diff)
                    row.update(diff=mean, diff_ci_low=low, diff_ci_high=high)
            rows.append(row)
    return pd.DataFrame(rows, columns=_COMPARISON_COLUMNS), note


def _as_fractions(table: pd.DataFrame, summaries: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Percent metrics as fractions (as in ``summary.csv``), whichever scale the table uses.

    A comparison table may give ``%`` metrics in percent (differences in percentage points);
    the scale of each metric is told by the scenario's own ``summary.csv`` when it has the
    metric, else by magnitude (a fraction never exceeds 1.5 in absolute value).
    """
    table = table.copy()
    values = ["mean", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high"]
    for metric, rows in table[table["unit"] == "%"].groupby("metric"):
        percent = None
        for _, row in rows.iterrows():
            summary = summaries.get(str(row["scenario"]))
            if summary is None or not _finite(row["mean"]):
                continue
            own = summary.loc[summary["metric"] == metric, "mean"]
            if len(own) and _finite(own.iloc[0]):
                percent = abs(float(row["mean"]) - 100 * float(own.iloc[0])) < \
                    abs(float(row["mean"]) - float(own.iloc[0]))
                break
        if percent is None:
            percent = bool((rows["mean"].abs() > 1.5).any())
        if percent:
            table.loc[rows.index, values] = table.loc[rows.index, values].astype(float) / 100.0
    return table


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt_value(value: Any, unit: str) -> str:
    """A value for the report (``metrics.format_value`` with the currency named)."""
    if not _finite(value):
        return "–"
    text = format_value(float(value), unit)
    return text.replace("-", _MINUS)


def fmt_ci(low: Any, high: Any, unit: str) -> str:
    if not (_finite(low) and _finite(high)):
        return ""
    return f"{fmt_value(low, unit)} to {fmt_value(high, unit)}"


def fmt_diff(value: Any, unit: str) -> str:
    """A signed difference: percentage points for percentages."""
    if not _finite(value):
        return "–"
    value = float(value)
    sign = "+" if value > 0 else (_MINUS if value < 0 else "±")
    if unit == "%":
        return f"{sign}{abs(100 * value):.1f} pp"
    return sign + format_value(abs(value), unit)


def fmt_unit(unit: str) -> str:
    if unit == "%":
        return ""
    if unit == "count":
        return "per replication"
    return unit


# --------------------------------------------------------------------------------------------
# Scenario description (STRESS-DES section 2)
# --------------------------------------------------------------------------------------------

_DIST_WORDS = {"fixed": "fixed", "uniform": "uniform", "triangular": "triangular",
               "exponential": "exponential", "lognormal": "lognormal", "gamma": "gamma",
               "weibull": "Weibull", "empirical": "empirical"}
_DIST_ADAPTER: TypeAdapter[Any] = TypeAdapter(Distribution)


def describe_dist(spec: Any, unit: str = "d") -> str:
    """``Weibull (shape 0.56, median 365); mean 586 d`` for a distribution spec."""
    if spec is None:
        return "–"
    if spec == "never":
        return "never"
    if isinstance(spec, bool) or not isinstance(spec, (int, float, dict)):
        return str(spec)
    if isinstance(spec, (int, float)):
        return f"{spec:g} {unit}"
    kind = str(spec.get("dist", "?"))
    if kind == "fixed":
        return f"{float(spec.get('value', 0)):g} {unit}"
    params = ", ".join(f"{k} {format_yaml_value(v)}" for k, v in spec.items() if k != "dist")
    text = f"{_DIST_WORDS.get(kind, kind)} ({params})"
    try:
        mean = float(_DIST_ADAPTER.validate_python(spec).mean())
    except (ValidationError, ValueError, TypeError, ArithmeticError, AttributeError):
        mean = math.nan
    if math.isfinite(mean):
        text += f"; mean {_num(mean)} {unit}"
    return text


def _num(value: float) -> str:
    """Three significant figures without exponents: 0.188, 12.5, 586, 1,160."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = int(math.floor(math.log10(abs(value))))
    decimals = max(0, 2 - magnitude)
    text = f"{round(value, 2 - magnitude):,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


def _pct(value: Any) -> str:
    return f"{100 * float(value):.3g}%" if _finite(value) else "–"


def _money(value: Any, currency: str) -> str:
    return f"{currency} {float(value):,.0f}".strip() if _finite(value) else "–"


def _days_list(days: Any) -> str:
    """``Mon–Fri`` for runs of three or more consecutive weekdays, else ``Mon, Wed``."""
    if not days:
        return "any day"
    order = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    index = sorted({order.index(d) for d in days if d in order})
    runs: list[list[int]] = []
    for i in index:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = []
    for run in runs:
        names = [order[i].capitalize() for i in run]
        parts.append(f"{names[0]}–{names[-1]}" if len(run) >= 3 else ", ".join(names))
    return ", ".join(parts)


def scenario_logic(scenario: Mapping[str, Any]) -> dict[str, Any]:
    """Cohorts, sites and pathways of a resolved scenario as table rows (plain strings)."""
    currency = str(scenario.get("currency", ""))
    cohorts = [c for c in scenario.get("cohorts") or [] if isinstance(c, Mapping)]
    total = sum(float(c.get("share", 1.0)) for c in cohorts) or 1.0
    cohort_rows = []
    for c in cohorts:
        after = c.get("after_infusion") or {}
        cohort_rows.append({
            "name": str(c.get("name", "")),
            "share": _pct(float(c.get("share", 1.0)) / total),
            "pathway": str(c.get("pathway", "")),
            "priority": str(c.get("priority", 0)),
            "death": describe_dist(c.get("time_to_death", "never")),
            "ineligible": describe_dist(c.get("time_to_ineligible", "never")),
            "response": _pct(after.get("response_probability", 0)),
            "icu": _pct(after.get("icu_probability", 0)),
        })
    site_rows = []
    for name, s in (scenario.get("sites") or {}).items():
        if not isinstance(s, Mapping):
            continue
        site_rows.append({
            "name": str(name), "slots": str(s.get("slots", "")),
            "starts_on": _days_list(s.get("starts_on")),
            "cost_per_use": _money(s.get("cost_per_use", 0), currency),
            "fixed_cost": _money(s.get("fixed_cost_per_year", 0), currency),
        })
    pathways = []
    for pname, pathway in (scenario.get("pathways") or {}).items():
        steps = []
        for i, s in enumerate((pathway or {}).get("steps") or []):
            if not isinstance(s, Mapping):
                continue
            failure = float(s.get("failure_probability", 0) or 0)
            on_failure = s.get("on_failure")
            if failure > 0 and isinstance(on_failure, Mapping):
                fail_text = (f"{_pct(failure)}; retry from {on_failure.get('retry_from')} "
                             f"(at most {on_failure.get('max_attempts')} attempts)")
            elif failure > 0:
                fail_text = f"{_pct(failure)}; the patient drops out"
            else:
                fail_text = "–"
            extra = []
            if s.get("shelf_life") is not None:
                extra.append(f"shelf life {float(s['shelf_life']):g} d")
                if isinstance(on_failure, Mapping) and failure == 0:
                    fail_text = (f"expiry: retry from {on_failure.get('retry_from')} "
                                 f"(at most {on_failure.get('max_attempts')} attempts)")
            if s.get("starts_on"):
                extra.append(f"starts {_days_list(s['starts_on'])}")
            site = str(s.get("site") or "")
            if site and s.get("reserve_from"):
                site += f" (booked before {s['reserve_from']})"
            steps.append({
                "number": str(i + 1), "name": str(s.get("name", "")), "kind": str(s.get("kind", "")),
                "duration": describe_dist(s.get("duration", 0)), "site": site or "–",
                "failure": fail_text, "cost": _money(s.get("cost", 0), currency),
                "notes": "; ".join(extra) or "–",
            })
        pathways.append({"name": str(pname), "steps": steps})
    arrivals = scenario.get("arrivals") or {}
    if arrivals.get("rate_per_year") is not None:
        arrival_text = f"Poisson referrals, {float(arrivals['rate_per_year']):g} a year"
    elif arrivals.get("interarrival") is not None:
        arrival_text = f"referrals with interarrival times {describe_dist(arrivals['interarrival'])}"
    elif arrivals.get("schedule") is not None:
        arrival_text = f"{len(arrivals['schedule'])} referrals on fixed days (the same in every replication)"
    else:
        arrival_text = "–"
    return {"cohorts": cohort_rows, "sites": site_rows, "pathways": pathways,
            "arrivals": arrival_text}


# --------------------------------------------------------------------------------------------
# Building the page
# --------------------------------------------------------------------------------------------


def _data_uri(path: Path) -> str:
    mime = "image/png" if path.suffix.lower() == ".png" else "image/svg+xml"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


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
    note = {"%": "of referred patients",
            "count": "patients per replication"
                     + (f" ({float(horizon_days):,.0f} days of referrals)" if _finite(horizon_days) else ""),
            "days": "days, among infused patients (mean of replication medians)"}.get(
        unit, f"{unit}, total cost / infused patients" if metric == "cost_per_infused" else unit)
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


def _finite_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _results_table(table: pd.DataFrame, scenarios: Sequence[str], paired: bool) -> dict[str, Any]:
    largest = table.groupby("metric")["mean"].max().to_dict() if len(table) else {}
    order, head_count = _metric_order(table["metric"].tolist(), largest)
    rows = []
    for i, metric in enumerate(order):
        sub = table[table["metric"] == metric]
        unit = str(sub["unit"].iloc[0]) if _finite_str(sub["unit"].iloc[0]) else ""
        label = str(sub["label"].iloc[0])
        unit_text = fmt_unit(unit)
        cells, diff_cells = [], []
        for j, name in enumerate(scenarios):
            row = sub[sub["scenario"] == name]
            if row.empty:
                cells.append({"value": "–", "ci": ""})
                if j > 0 and paired:
                    diff_cells.append({"value": "–", "ci": "", "excludes_zero": False})
                continue
            r = row.iloc[0]
            cells.append({"value": fmt_value(r["mean"], unit),
                          "ci": fmt_ci(r["ci_low"], r["ci_high"], unit)})
            if j > 0 and paired:
                clear = _finite(r["diff_ci_low"]) and _finite(r["diff_ci_high"]) and (
                    float(r["diff_ci_low"]) > 0 or float(r["diff_ci_high"]) < 0)
                diff_cells.append({
                    "value": fmt_diff(r["diff"], unit),
                    "ci": (f"{fmt_diff(r['diff_ci_low'], unit)} to {fmt_diff(r['diff_ci_high'], unit)}"
                           if _finite(r["diff_ci_low"]) else ""),
                    "excludes_zero": clear})
        n = sub["n"].dropna()
        rows.append({"label": label, "unit": unit_text, "cells": cells, "diffs": diff_cells,
                     "n": f"{int(n.max())}" if len(n) else "–", "first_other": i == head_count})
    return {"rows": rows, "scenarios": list(scenarios), "paired": paired,
            "diff_columns": list(scenarios[1:]) if paired else []}


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
        columns.append((label, [str(packages.get(n, "–")) for n in names]))
    same = all(col[1] == columns[0][1] for col in columns)
    if same and columns:
        columns = [("all runs", columns[0][1])]
    rows = [{"name": n, "cells": [col[1][i] for col in columns]} for i, n in enumerate(names)]
    return {"columns": [c[0] for c in columns], "rows": rows,
            "platforms": sorted({str(m.get("platform", "–")) for _, m in manifests})}


def _build_context(inputs: Sequence[RunDir | CompareDir], report_command: str) -> dict[str, Any]:
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
    horizon = first.scenario.get("horizon_days")
    cards = [c for c in (_describe_key_card(m, table, names, horizon) for m in KEY_METRICS) if c]
    results_table = _results_table(table, names, paired)

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
        needing = [p for p in params if p.status in ("sourced", "inherited", "missing")]
        missing = [p for p in params if p.status == "missing"]
        defaults = [p for p in params if p.status == "default"]
        assumption_words = [p for p in params if p.status in ("sourced", "inherited")
                            and "assum" in p.comment.lower()]
        files = run.manifest.get("files") or {}
        scenarios.append({
            "index": i, "label": run.label, "name": run.name,
            "description": str(run.scenario.get("description") or ""),
            "dir": str(run.path), "notes": notes, "params": params,
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

    seeds = sorted({str(r.seed) for r in runs})
    reps = sorted({str(r.n_replications) for r in runs})
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
        "table": results_table,
        "figure_groups": figure_groups,
        "scenarios": scenarios,
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
        "report_command": report_command,
        "v2vsim_version": __version__,
        "inputs": [str(i.path) for i in inputs],
    }


class _Environment(Environment):
    """Jinja with ``d.key`` meaning the dict's item even when dicts have a method of that name
    (``d.values``, ``d.clear``), and every value HTML-escaped."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _template() -> Environment:
    return _Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                        lstrip_blocks=True, keep_trailing_newline=True)


def render_report(inputs: Sequence[RunDir | CompareDir], report_command: str = "") -> str:
    """The report's HTML text for loaded results directories."""
    if not inputs:
        raise ReportError("no results directory given")
    text = resources.files("v2vsim.outputs").joinpath("templates", "report.html.j2").read_text(encoding="utf-8")
    template = _template().from_string(text)
    return template.render(**_build_context(inputs, report_command))


def write_report(directories: Sequence[str | Path], output: str | Path = "report.html") -> Path:
    """Write the report of ``directories`` (run or comparison directories) to ``output``.

    Raises :class:`ReportError` (nothing is written) for a directory that is not a v2vsim
    results directory. The file is written atomically.
    """
    output = Path(output)
    if output.is_dir():
        raise ReportError(f"{output} is a directory; give the HTML file to write with -o")
    inputs = [load_results(d) for d in directories]
    command = shlex.join(["v2vsim", "report", *[str(d) for d in directories], "-o", str(output)])
    html = render_report(inputs, command)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a report is for sharing
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return output
