"""The manifest of a results directory and the errors of writing one.

``manifest.json`` lists every file of a results directory with its sha256 and says what wrote
it (:mod:`.results_dir` writes it, :mod:`.targets` reads it to know what a directory holds).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST", "OutputError", "WriteError", "WrittenThenInterrupted", "FiguresFailed",
           "sha256_file", "write_json", "read_manifest", "is_v2vsim_dir"]

MANIFEST = "manifest.json"


class OutputError(RuntimeError):
    """The results directory cannot be written as asked (message says why)."""


class WriteError(OutputError):
    """The file system failed the write (full, read-only, not permitted): nothing was replaced
    and no temporary directory is left."""


class WrittenThenInterrupted(KeyboardInterrupt):
    """A signal arrived while the new directory was being put in place: it is in place."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


class FiguresFailed(RuntimeError):
    """Figures failed; the data files are written in ``path`` (``failures``: figure, error)."""

    def __init__(self, path: Path, failures: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name}: {error}" for name, error in failures))
        self.path = path
        self.failures = failures


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


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a v2vsim results directory, or None (none, unreadable, not v2vsim's)."""
    manifest = path / MANIFEST
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "v2vsim_version" in data else None


def is_v2vsim_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file() and read_manifest(path) is not None
