"""Resumable runs: finished points saved as they complete, so an interrupted run can continue.

:class:`PointStore` keeps them in ``DIR.partial/`` next to the results directory, with a
fingerprint of everything that determines the results, so a run is resumed only with the same
settings; :func:`run_stored` runs the points not yet saved and reads every point back.

Nothing saved is trusted: each point's sidecar holds the SHA-256 of its data file, its row
count and what the point is (parameter values, seed, replications); on resume every saved point
is checked against the point it is saved as before anything is computed, and one that fails
(missing, empty, corrupt, altered, swapped, not a plain file) is discarded, with one line saying
which and why, and computed again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine.runner import Results
from .parallel import Point, Progress, run_points
from .precision import Precision

__all__ = ["PointStore", "StoreError", "point_identity", "run_stored"]

#: Version of a point's sidecar layout (a sidecar of another layout is not trusted).
SIDECAR_FORMAT = 2
_POINT_FILE = re.compile(r"(\d{6,})\.(parquet|json)")


def point_identity(point: Point) -> dict[str, Any]:
    """What a saved point must be to stand for ``point``: its parameter values, seed and
    replications (as JSON gives them back)."""
    return _plain({"values": point.values, "seed": point.seed, "replications": point.replications})


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PointStore:
    """Finished points of a long run, saved as they complete, to resume after an interruption.

    ``DIR.partial/state.json`` holds a fingerprint of everything that determines the results;
    ``points/NNNNNN.parquet`` each point's per-replication metrics and ``NNNNNN.json`` its
    sidecar: how it was run, what it is, the data file's SHA-256 and rows, and a checksum of
    the sidecar itself. Files are written under a temporary name and renamed, data file first,
    so a point is either complete or fails the check. ``report`` receives one line per point
    discarded on resume (default: standard error).
    """

    def __init__(self, out_dir: Path, fingerprint: Mapping[str, Any],
                 report: Callable[[str], None] | None = None) -> None:
        self.dir = Path(out_dir).parent / f"{Path(out_dir).name}.partial"
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.key = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()
        self.report = report or _stderr
        #: ``(index, reason)`` of every saved point discarded by :meth:`open`.
        self.discarded: list[tuple[int, str]] = []
        self._opened: set[int] | None = None

    @property
    def points_dir(self) -> Path:
        return self.dir / "points"

    def open(self, resume: bool, expected: Mapping[int, Mapping[str, Any]] | None = None) -> set[int]:
        """Prepare the directory; the indices of points already finished (resume only), each
        checked against ``expected[index]`` (see :func:`point_identity`) if given. A saved point
        that fails a check is deleted and left out; a store of other settings is refused
        (:class:`StoreError`). A second call returns the first call's answer."""
        if self._opened is not None:
            return set(self._opened)
        state = self.dir / "state.json"
        if self.dir.exists() or self.dir.is_symlink():
            if not resume:
                raise StoreError(f"{self.dir} holds an interrupted run ({len(self.finished())} points "
                                 "finished): pass --resume to continue it, or delete it to start over")
            if not self.dir.is_dir() or self.dir.is_symlink():
                raise StoreError(f"{self.dir} is not a directory of saved points; delete it to start over")
            try:
                saved = json.loads(state.read_text(encoding="utf-8"))
                if not isinstance(saved, dict):
                    raise ValueError
            except (OSError, ValueError):
                raise StoreError(f"{state}: unreadable; delete {self.dir} to start over") from None
            if saved.get("key") != self.key:
                before = saved.get("fingerprint")
                before = before if isinstance(before, dict) else {}
                changed = sorted(k for k in set(before) | set(self.fingerprint)
                                 if before.get(k) != self.fingerprint.get(k))
                raise StoreError(f"{self.dir} was started with different settings "
                                 f"({', '.join(changed) or 'version'}); run with the same ones, or delete it")
            self._opened = self._check_all(expected)
            return set(self._opened)
        self.points_dir.mkdir(parents=True)
        _write_atomic(state, json.dumps({"key": self.key, "fingerprint": self.fingerprint},
                                        indent=2, sort_keys=True) + "\n")
        self._opened = set()
        return set()

    def finished(self) -> set[int]:
        """Indices with both files present (not checked: see :meth:`open`)."""
        found = set()
        for path in self.points_dir.glob("*.json"):
            if path.stem.isdigit() and path.with_suffix(".parquet").is_file():
                found.add(int(path.stem))
        return found

    def _check_all(self, expected: Mapping[int, Mapping[str, Any]] | None) -> set[int]:
        points = self.points_dir
        if points.is_symlink() or (points.exists() and not points.is_dir()):
            self.report(f"resume: {points} is not a directory; every point will be computed again")
            _remove(points)
        points.mkdir(exist_ok=True)
        indices: set[int] = set()
        for path in sorted(points.iterdir()):
            match = _POINT_FILE.fullmatch(path.name)
            if match:
                indices.add(int(match.group(1)))
            elif path.name.endswith(".tmp"):
                _remove(path)  # a write cut short
            else:
                self.report(f"resume: ignoring {path.name} in {points} (not a saved point)")
        wanted = {int(i): _plain(dict(v)) for i, v in expected.items()} if expected is not None else None
        valid = set()
        for index in sorted(indices):
            if wanted is not None and index not in wanted:
                continue  # saved by a larger run of the same settings (a PSA with more sets)
            reason = self._problem(index, None if wanted is None else wanted[index])
            if reason is None:
                valid.add(index)
                continue
            self.discarded.append((index, reason))
            self.report(f"resume: saved point {index} discarded ({reason}); it will be computed again")
            for suffix in (".parquet", ".json"):
                _remove(self._base(index).with_suffix(suffix))
        return valid

    def _base(self, index: int) -> Path:
        return self.points_dir / f"{index:06d}"

    def _problem(self, index: int, identity: Mapping[str, Any] | None) -> str | None:
        """Why saved point ``index`` cannot be used (None: it can)."""
        base = self._base(index)
        data, side = base.with_suffix(".parquet"), base.with_suffix(".json")
        for path in (data, side):
            if path.is_symlink():
                return f"{path.name} is a symbolic link, not a file"
            if not path.exists():
                return f"{path.name} is missing"
            if not path.is_file():
                return f"{path.name} is not a regular file"
            if path.stat().st_size == 0:
                return f"{path.name} is empty"
        try:
            record = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return f"{side.name} is not readable JSON"
        if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
            return f"{side.name} is not a point sidecar of this version"
        check = record.pop("check", None)
        if check != _digest(record):
            return f"{side.name} was altered (its checksum does not match its content)"
        if record.get("store") != self.key:
            return f"{side.name} belongs to another run"
        if record.get("point") != index:
            return f"it holds point {record.get('point')}, not point {index}"
        if identity is not None and record.get("identity") != identity:
            saved = record.get("identity") or {}
            differ = [k for k in sorted(set(saved) | set(identity)) if saved.get(k) != identity.get(k)]
            return f"it was saved with other {', '.join(differ) or 'settings'} than this run's point {index}"
        try:
            raw = data.read_bytes()
        except OSError as exc:
            return f"{data.name} is unreadable ({exc.strerror})"
        if hashlib.sha256(raw).hexdigest() != record.get("sha256"):
            return f"{data.name} does not match its checksum (corrupt or replaced)"
        try:
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(io.BytesIO(raw)).metadata.num_rows
        except Exception:  # noqa: BLE001 - any failure to read it is a reason to recompute
            return f"{data.name} is not a readable table"
        if rows != record.get("rows"):
            return f"{data.name} has {rows} rows, its sidecar says {record.get('rows')}"
        return None

    def save(self, index: int, table: pd.DataFrame, info: Mapping[str, Any],
             identity: Mapping[str, Any] | None = None, engine: str | None = None) -> None:
        """Save one finished point: its table, ``info`` (given back by :meth:`load`) and what
        it is (``identity``, see :func:`point_identity`)."""
        base = self._base(index)
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False, engine="pyarrow")
        raw = buffer.getvalue()
        tmp = base.with_name(base.name + ".parquet.tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, base.with_suffix(".parquet"))
        record: dict[str, Any] = {
            "format": SIDECAR_FORMAT, "store": self.key, "point": index,
            "identity": _plain(dict(identity)) if identity is not None else None,
            "engine": engine, "rows": len(table), "sha256": hashlib.sha256(raw).hexdigest(),
            "info": _plain(dict(info)),
        }
        record["check"] = _digest(record)
        _write_atomic(base.with_suffix(".json"), json.dumps(record, sort_keys=True) + "\n")

    def load(self, index: int) -> tuple[pd.DataFrame, dict[str, Any]]:
        """A saved point's ``(table, info)``, its checksum checked again (:class:`StoreError`
        if it changed since it was saved or checked)."""
        base = self._base(index)
        try:
            record = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
            raw = base.with_suffix(".parquet").read_bytes()
        except (OSError, ValueError) as exc:
            raise StoreError(f"saved point {index} in {self.points_dir} became unreadable ({exc}); "
                             "run again with --resume to compute it again") from None
        if not isinstance(record, dict) or hashlib.sha256(raw).hexdigest() != record.get("sha256"):
            raise StoreError(f"saved point {index} in {self.points_dir} changed while the run went on; "
                             "run again with --resume to compute it again")
        return pd.read_parquet(io.BytesIO(raw), engine="pyarrow"), dict(record.get("info") or {})

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class StoreError(RuntimeError):
    """The saved partial state cannot be used as asked (message says why)."""


def _remove(path: Path) -> None:
    """Delete a file, a link (not what it points to) or a directory, if there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


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
    an uninterrupted one give the same bytes. Every saved point is checked before anything
    runs; one that fails the check is computed again."""
    progress = progress or Progress()
    done: dict[int, tuple[pd.DataFrame, dict[str, Any]]] = {}
    finished = (store.open(resume, {p.index: point_identity(p) for p in points})
                if store is not None else set())
    todo = [p for p in points if p.index not in finished]
    for p in points:
        if p.index in finished:
            progress.point_done()

    def save(point: Point, results: Results) -> None:
        info = {"point": point.index, "seed": point.seed, "replications": results.n_replications,
                "precision": results.extra.get("precision")}
        table = results.replications
        if store is not None:
            store.save(point.index, table, info, point_identity(point), point.engine)
        else:
            done[point.index] = (table, info)

    run_points(todo, save, executor=executor, workers=workers, precision=precision, progress=progress)
    if store is not None:
        for p in points:
            done[p.index] = store.load(p.index)
    return {p.index: done[p.index] for p in points}
