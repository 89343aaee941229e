"""Writing a run's results directory atomically, with a manifest of hashes.

A run is written into a temporary directory next to the target and renamed into place only
when every file is complete, so an interrupted run never leaves a directory that looks
finished and never destroys earlier results. A directory that v2vsim did not write (no
manifest) is never replaced unless the caller forces it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .._version import package_versions
from ..scenario import scenario_to_yaml

__all__ = ["OutputError", "sha256_file", "write_results_dir", "package_versions", "verify_dir",
           "MANIFEST"]

MANIFEST = "manifest.json"

class OutputError(RuntimeError):
    """The results directory cannot be written as asked (message says why)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _clean(value: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_clean(data), indent=2, default=_json_default, allow_nan=False) + "\n",
                    encoding="utf-8")


def is_v2vsim_dir(path: Path) -> bool:
    manifest = path / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return "v2vsim_version" in json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def check_target(out_dir: Path, force: bool = False) -> None:
    """Refuse early (before a long run) to overwrite something v2vsim did not write."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_v2vsim_dir(out_dir) and not force:
        raise OutputError(
            f"{out_dir} exists and was not written by v2vsim (no {MANIFEST}); "
            "choose another --out or pass --force to replace it")


def write_results_dir(
    out_dir: Path,
    fill: Callable[[Path], dict[str, Any]],
    *,
    force: bool = False,
) -> Path:
    """Create ``out_dir`` atomically: ``fill(tmp)`` writes the files and returns manifest fields.

    The manifest gets the sha256 of every file written. The previous directory, if any, is
    removed only after the new one is complete and in place.
    """
    out_dir = Path(out_dir)
    check_target(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        manifest = fill(tmp)
        manifest["files"] = {
            str(p.relative_to(tmp)): sha256_file(p)
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        write_json(tmp / MANIFEST, manifest)
        _fsync_tree(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def verify_dir(out_dir: Path) -> list[str]:
    """Problems found when checking every file against the manifest's sha256 (empty: all good)."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST
    if not manifest_path.is_file():
        return [f"{out_dir}: no {MANIFEST}: not a v2vsim results directory"]
    try:
        files = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{manifest_path}: unreadable manifest"]
    problems = []
    for name, digest in sorted(files.items()):
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{path}: changed since the run (sha256 differs)")
    listed = set(files) | {MANIFEST}
    for path in sorted(out_dir.rglob("*")):
        if path.is_file() and str(path.relative_to(out_dir)) not in listed:
            problems.append(f"{path}: not listed in the manifest")
    return problems


def write_tables(results: Any, directory: Path, *, csv: bool, source: Path | None = None) -> None:
    """The contract's files: scenario.yaml, patients.parquet (+csv), replications and summary.

    ``source`` (the scenario file as written, comments and all) is copied to
    ``scenario_source.yaml`` so reports can show each parameter's source comment.
    """
    sc = results.scenario
    if source is not None and Path(source).is_file():
        shutil.copyfile(source, directory / "scenario_source.yaml")
    (directory / "scenario.yaml").write_text(
        scenario_to_yaml(sc, seed=results.seed, replications=results.n_replications),
        encoding="utf-8")
    patients: pd.DataFrame = results.patients
    patients.to_parquet(directory / "patients.parquet", index=False, engine="pyarrow")
    if csv:
        patients.to_csv(directory / "patients.csv", index=False)
    results.replications.to_csv(directory / "replications.csv", index=False)
    summary = results.summary()
    summary.to_csv(directory / "summary.csv", index=False)
    write_json(directory / "summary.json", summary.to_dict(orient="records"))


def provenance(kind: str, command: Iterable[str]) -> dict[str, Any]:
    """The first fields of every manifest: what wrote it, with which versions, by which command."""
    versions = package_versions()
    return {"kind": kind, "v2vsim_version": versions["v2vsim"], "python": versions["python"],
            "packages": versions, "command": list(command)}


def manifest_fields(results: Any, command: Iterable[str], scenario_file: Path | None) -> dict[str, Any]:
    return {
        **provenance("run", command),
        "scenario_name": results.scenario.name,
        "scenario_file": str(scenario_file) if scenario_file else None,
        "scenario_sha256": sha256_file(scenario_file) if scenario_file and scenario_file.is_file() else None,
        "seed": results.seed,
        "replications": results.n_replications,
        "wall_seconds": round(results.wall_seconds, 3),
        # Replications computed by each engine (every engine gives the same results).
        "engines": dict(results.extra.get("engines", {})),
        "platform": f"{platform.system()} {platform.machine()}",
        "argv0": Path(sys.argv[0]).name if sys.argv else "",
    }
