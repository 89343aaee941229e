"""Resumable runs: finished points saved as they complete, so an interrupted run can continue.

:class:`PointStore` keeps them in ``DIR.partial/`` next to the results directory, with a
fingerprint of everything that determines the results, so a run is resumed only with the same
settings; :func:`run_stored` runs the points not yet saved and reads every point back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine.runner import Results
from .parallel import Point, Progress, run_points
from .precision import Precision

__all__ = ["PointStore", "StoreError", "run_stored"]


class PointStore:
    """Finished points of a long run, saved as they complete, to resume after an interruption.

    ``DIR.partial/state.json`` holds a fingerprint of everything that determines the results;
    ``points/NNNNNN.parquet`` each point's per-replication metrics and ``NNNNNN.json`` how it
    was run. Files are written under a temporary name and renamed, so a point is either
    complete or absent.
    """

    def __init__(self, out_dir: Path, fingerprint: Mapping[str, Any]) -> None:
        self.dir = Path(out_dir).parent / f"{Path(out_dir).name}.partial"
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.key = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()

    def open(self, resume: bool) -> set[int]:
        """Prepare the directory; the indices of points already finished (resume only)."""
        state = self.dir / "state.json"
        if self.dir.exists():
            if not resume:
                raise StoreError(f"{self.dir} holds an interrupted run ({len(self.finished())} points "
                                 "finished): pass --resume to continue it, or delete it to start over")
            try:
                saved = json.loads(state.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise StoreError(f"{state}: unreadable; delete {self.dir} to start over") from None
            if saved.get("key") != self.key:
                changed = sorted(k for k in set(saved.get("fingerprint", {})) | set(self.fingerprint)
                                 if saved.get("fingerprint", {}).get(k) != self.fingerprint.get(k))
                raise StoreError(f"{self.dir} was started with different settings "
                                 f"({', '.join(changed) or 'version'}); run with the same ones, or delete it")
            return self.finished()
        (self.dir / "points").mkdir(parents=True)
        _write_atomic(state, json.dumps({"key": self.key, "fingerprint": self.fingerprint},
                                        indent=2, sort_keys=True) + "\n")
        return set()

    def finished(self) -> set[int]:
        found = set()
        for path in (self.dir / "points").glob("*.json"):
            if path.stem.isdigit() and path.with_suffix(".parquet").is_file():
                found.add(int(path.stem))
        return found

    def save(self, index: int, table: pd.DataFrame, info: Mapping[str, Any]) -> None:
        base = self.dir / "points" / f"{index:06d}"
        tmp = base.with_name(base.name + ".parquet.tmp")
        table.to_parquet(tmp, index=False, engine="pyarrow")
        os.replace(tmp, base.with_suffix(".parquet"))
        _write_atomic(base.with_suffix(".json"), json.dumps(info, default=str, sort_keys=True) + "\n")

    def load(self, index: int) -> tuple[pd.DataFrame, dict[str, Any]]:
        base = self.dir / "points" / f"{index:06d}"
        return (pd.read_parquet(base.with_suffix(".parquet"), engine="pyarrow"),
                json.loads(base.with_suffix(".json").read_text(encoding="utf-8")))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class StoreError(RuntimeError):
    """The saved partial state cannot be used as asked (message says why)."""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run_stored(
    points: Sequence[Point],
    store: PointStore | None,
    *,
    resume: bool = False,
    executor: Executor | None = None,
    workers: int = 1,
    precision: Precision | None = None,
    progress: Progress | None = None,
) -> dict[int, tuple[pd.DataFrame, dict[str, Any]]]:
    """Run the points not yet in ``store`` and return every point's
    ``(per-replication metrics, info)``, read back from the store so that a resumed run and
    an uninterrupted one give the same bytes."""
    progress = progress or Progress()
    done: dict[int, tuple[pd.DataFrame, dict[str, Any]]] = {}
    finished = store.open(resume) if store is not None else set()
    todo = [p for p in points if p.index not in finished]
    for p in points:
        if p.index in finished:
            progress.point_done()

    def save(point: Point, results: Results) -> None:
        info = {"point": point.index, "seed": point.seed, "replications": results.n_replications,
                "precision": results.extra.get("precision")}
        table = results.replications
        if store is not None:
            store.save(point.index, table, info)
        else:
            done[point.index] = (table, info)

    run_points(todo, save, executor=executor, workers=workers, precision=precision, progress=progress)
    if store is not None:
        for p in points:
            done[p.index] = store.load(p.index)
    return {p.index: done[p.index] for p in points}
