"""Reading results directories: a run directory (``v2vsim run``) or a comparison directory
(``v2vsim compare``, one run directory per scenario), checked to be v2vsim's own; and the
validation results directory (``v2vsim validation``) that ``report --validation`` reads."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ...scenario.yaml_io import UnreadableFile, read_text_file
from ..results_dir import MANIFEST

__all__ = ["CompareDir", "ExperimentDir", "FIGURE_ORDER", "ReportError", "RunDir", "ValidationDir", "load_results",
           "load_validation"]

#: Order of the figures in the report; other figures follow alphabetically.
FIGURE_ORDER = ("outcomes_per_100", "vein_to_vein", "attrition_funnel", "attrition_by_cause",
                "cumulative_incidence", "cost_per_patient", "cost_breakdown", "budget_impact",
                "site_utilisation", "waitlist",
                "journey", "validation", "validation_sensitivity")

#: Columns of a budget table (``budget.csv``); a comparison's also has ``scenario`` and ``diff*``.
_BUDGET_COLUMNS = ["year", "category", "mean", "ci_low", "ci_high", "n"]

_COMPARISON_COLUMNS = ["metric", "label", "unit", "scenario", "mean", "ci_low", "ci_high", "n",
                       "diff", "diff_ci_low", "diff_ci_high"]


#: Columns of ``validation.csv`` the report reads (``observed_k``, ``observed_n``,
#: ``observed_source`` and ``mechanism`` are shown when present).
_VALIDATION_COLUMNS = ["case", "trial", "metric", "label", "unit", "trial_size", "replications",
                       "predicted_mean", "predicted_ci_low", "predicted_ci_high", "trial_low",
                       "trial_high", "observed", "observed_ci_low", "observed_ci_high", "error",
                       "verdict"]
#: Columns of ``sensitivity.csv`` the report reads.
_SENSITIVITY_COLUMNS = ["case", "trial", "metric", "label", "unit", "path", "input_label", "value",
                        "baseline", "predicted_mean", "trial_low", "trial_high", "observed"]


class ReportError(ValueError):
    """A directory cannot be reported on (the message says which and why)."""


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
    #: ``budget.csv`` (a run with an economics section), else None.
    budget: pd.DataFrame | None = None

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
    #: ``budget.csv`` of the comparison (scenarios with economics sections), else None.
    budget: pd.DataFrame | None = None

    @property
    def economics(self) -> dict[str, Any] | None:
        """The ``economics`` part of ``comparison.json`` (incremental analysis), if any."""
        value = self.info.get("economics")
        return value if isinstance(value, dict) else None


@dataclass
class ValidationDir:
    """A validation results directory (``v2vsim validation``): published trials run as cases."""

    path: Path
    manifest: dict[str, Any]
    #: ``validation.csv``: one row per case and metric.
    table: pd.DataFrame
    #: ``sensitivity.csv`` (one row per case, metric and input value), else None.
    sensitivity: pd.DataFrame | None
    figures: list[Path]


def is_validation_manifest(manifest: Mapping[str, Any]) -> bool:
    """Whether a manifest is the one ``v2vsim validation`` writes (``kind`` or ``command``)."""
    return manifest.get("kind") == "validation" or manifest.get("command") == "validation"


def _budget(path: Path) -> pd.DataFrame | None:
    return _read_csv(path / "budget.csv", _BUDGET_COLUMNS) if (path / "budget.csv").is_file() else None


def _not_results(path: Path, why: str) -> ReportError:
    return ReportError(f"{path}: not a v2vsim results directory ({why}); give a directory "
                       "written by `v2vsim run`, `compare`, `sweep`, `sensitivity`, `capacity` or `psa`")


#: Largest JSON or YAML file of a results directory read (a manifest lists every file: tens of kB).
TEXT_LIMIT_BYTES = 50_000_000
#: Largest CSV read (a table per replication of a very long run).
CSV_LIMIT_BYTES = 2_000_000_000


def _read_text(path: Path, limit: int = TEXT_LIMIT_BYTES, errors: str = "strict") -> str:
    """A regular file's text, at most ``limit`` bytes (a FIFO or a device is refused at once)."""
    try:
        return read_text_file(path, limit, what="a file of a results directory")
    except UnreadableFile as exc:
        if errors == "replace" and str(exc).startswith("not UTF-8"):
            return path.read_bytes()[:limit].decode("utf-8", errors="replace")
        raise ReportError(f"{path}: {exc}") from None


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ReportError(f"{path}: cannot read JSON ({exc})") from None


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    text = _read_text(path, CSV_LIMIT_BYTES)
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read CSV ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def _read_manifest(path: Path, refuse: Callable[[Path, str], ReportError] | None = None) -> dict[str, Any]:
    """The manifest of a directory v2vsim wrote; ``refuse(path, why)`` words the error."""
    refuse = refuse or _not_results
    if not path.exists():
        raise ReportError(f"{path}: no such directory")
    if not path.is_dir():
        raise refuse(path, "it is not a directory")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise refuse(path, f"no {MANIFEST}")
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict) or "v2vsim_version" not in manifest:
        raise refuse(path, f"{MANIFEST} was not written by v2vsim")
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
        return YAML(typ="safe", pure=True).load(_read_text(path))
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
    source_text = _read_text(source, errors="replace") if source.is_file() else None
    summary = _read_csv(path / "summary.csv", ["metric", "mean", "ci_low", "ci_high", "n"])
    reps_path = path / "replications.csv"
    replications = _read_csv(reps_path, ["replication"]) if reps_path.is_file() else None
    return RunDir(path=path, manifest=manifest, scenario=scenario, source_text=source_text,
                  summary=summary, replications=replications, figures=_figures(path),
                  budget=_budget(path))


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
                      comparison=comparison, figures=_figures(path), budget=_budget(path))


@dataclass
class ExperimentDir:
    """A sweep, sensitivity, capacity or PSA directory (``v2vsim sweep``, ``sensitivity``,
    ``capacity``, ``psa``): its manifest, its JSON record, its CSV tables by file stem, the base
    scenario it varied (``scenario.yaml``; a PSA has none) and its figures."""

    path: Path
    manifest: dict[str, Any]
    kind: str
    info: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    scenario: dict[str, Any] | None
    figures: list[Path]


#: Per experiment kind: its JSON record and its CSV tables, each with the columns it must have
#: (None: optional table).
EXPERIMENT_FILES: dict[str, tuple[str, dict[str, Sequence[str] | None]]] = {
    "sweep": ("sweep.json", {"sweep": ["point", "metric", "mean", "ci_low", "ci_high", "n"],
                             "points": None}),
    "sensitivity": ("sensitivity.json", {"indices": ["parameter"], "points": None}),
    "capacity": ("capacity.json", {"capacity": ["slots", "metric", "mean", "ci_low", "ci_high", "n"],
                                   "search": ["slots", "meets_all"]}),
    "psa": ("psa.json", {"psa_summary": ["scenario"], "ceac": ["wtp", "scenario",
                                                              "probability_cost_effective"],
                         "evpi": None, "evppi": None, "psa_parameters": None}),
}


def _load_experiment(path: Path, manifest: dict[str, Any], kind: str) -> ExperimentDir:
    record, csvs = EXPERIMENT_FILES[kind]
    if not (path / record).is_file():
        raise _not_results(path, f"a {kind} manifest but no {record}")
    info = _read_json(path / record)
    tables = {}
    for stem, required in csvs.items():
        csv_path = path / f"{stem}.csv"
        if csv_path.is_file():
            tables[stem] = _read_csv(csv_path, required or [])
        elif required is not None:
            raise _not_results(path, f"a {kind} manifest but no {stem}.csv")
    scenario = _safe_yaml(path / "scenario.yaml") if (path / "scenario.yaml").is_file() else None
    return ExperimentDir(path=path, manifest=manifest, kind=kind,
                         info=info if isinstance(info, dict) else {}, tables=tables,
                         scenario=scenario if isinstance(scenario, dict) else None,
                         figures=_figures(path))


def load_results(path: str | Path) -> RunDir | CompareDir | ExperimentDir:
    """Read a run, comparison, sweep, sensitivity, capacity or PSA directory;
    :class:`ReportError` if it is none of them."""
    path = Path(path)
    manifest = _read_manifest(path)
    if is_validation_manifest(manifest):
        raise ReportError(f"{path}: a validation results directory (`v2vsim validation`), not a "
                          "run or comparison; pass it with --validation")
    kind = manifest.get("kind", "run")
    if kind == "compare":
        return _load_compare(path, manifest)
    if kind == "run":
        return _load_run(path, manifest)
    if kind in EXPERIMENT_FILES:
        return _load_experiment(path, manifest, str(kind))
    raise _not_results(path, f"unknown kind {kind!r} in {MANIFEST}")


def _not_validation(path: Path, why: str) -> ReportError:
    return ReportError(f"{path}: not a validation results directory ({why}); give --validation a "
                       "directory written by `v2vsim validation`")


def load_validation(path: str | Path) -> ValidationDir:
    """Read a validation results directory; :class:`ReportError` if it is not one.

    It is recognised by its manifest (``"kind": "validation"``, or ``"command": "validation"``)
    and must hold ``validation.csv``; ``sensitivity.csv`` and ``figures/`` are read when present.
    """
    path = Path(path)
    manifest = _read_manifest(path, _not_validation)
    if not is_validation_manifest(manifest):
        kind = manifest.get("kind", "run")
        raise _not_validation(path, f"its {MANIFEST} says kind {kind!r}")
    csv_path = path / "validation.csv"
    if not csv_path.is_file():
        raise _not_validation(path, "no validation.csv")
    table = _read_csv(csv_path, _VALIDATION_COLUMNS)
    sens_path = path / "sensitivity.csv"
    sensitivity = _read_csv(sens_path, _SENSITIVITY_COLUMNS) if sens_path.is_file() else None
    return ValidationDir(path=path, manifest=manifest, table=table, sensitivity=sensitivity,
                         figures=_figures(path))
