"""Writing a results directory atomically, with a manifest of hashes.

A command's results are written into a temporary directory next to the target
(``.NAME.tmp-PID-*``) and renamed into place only when every file is complete, so an
interrupted run never leaves a directory that looks finished and never destroys earlier
results. The rules, in the order they are checked (:func:`check_target`, before anything is
simulated, and again by :func:`write_results_dir`):

* **The target is a place a directory can be written**: not an existing file, not a dangling
  symbolic link, not under ``/proc`` or ``/sys``, not ``.``, the working directory's or the
  scenario files' ancestor; a name that leaves room for the temporary names (at most
  :data:`NAME_MAX_BYTES` bytes); a parent that exists or can be created and where a file can
  really be written; free space for the estimated size. A symbolic link to a directory is
  followed: the results replace the directory it points to and the link is kept.
* **One writer per target**: a lock (``fcntl.lockf`` on ``.NAME.lock`` beside the target, which
  records the holder's pid, removed when released) is held from the check until the new directory is in place; a
  second v2vsim on the same target is refused at once.
* **Debris of a dead process is cleaned**: under the lock, ``.NAME.tmp-PID-*`` directories of a
  process that is no longer alive are removed, and a ``.NAME.old-PID`` left by a process killed
  in the middle of the swap is restored as NAME when NAME is missing (removed when NAME is
  complete). :func:`verify_dir` does the same before checking.
* **Nothing is replaced silently**: a directory that v2vsim did not write (no manifest), results
  of another kind of command or of other scenarios, or a directory with figures replaced by a
  run without figures are refused unless the caller forces it. Two sets of results are of
  the same scenarios when, scenario by scenario, the files are the same path (resolved) or
  have the same content (sha256): editing a scenario and running it again replaces its
  results, and so does a moved checkout; another scenario's results are never replaced.
* **The swap cannot be cut in half**: SIGINT and SIGTERM are held back while the old directory
  is renamed aside (``.NAME.old-PID``) and the new one renamed into place, and delivered after
  (:class:`WrittenThenInterrupted` then says that the new results are in place).
* **A full disk or a read-only file system is an error, not a traceback**: ENOSPC, EROFS,
  EACCES, EDQUOT, EPERM during the write raise :class:`WriteError` with one line; the temporary
  directory is removed and the previous results are intact.
* **A figure that fails costs only that figure**: figure code run through :func:`guard_figures`
  that raises leaves the data files written; the manifest lists the failures and
  :class:`FiguresFailed` is raised once the directory is in place.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import errno
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock between processes
    fcntl = None  # type: ignore[assignment]

from .._version import package_versions
from ..scenario import scenario_to_yaml

__all__ = ["OutputError", "WriteError", "FiguresFailed", "WrittenThenInterrupted", "sha256_file",
           "write_results_dir", "package_versions", "verify_dir", "check_target", "guard_figures",
           "target_lock", "release_target", "recover", "scenario_identity", "estimated_bytes", "MANIFEST", "NAME_MAX_BYTES"]

MANIFEST = "manifest.json"

#: Longest results directory name in bytes: 255 (what file systems allow) less the longest
#: temporary name's additions (``.`` ``.tmp-`` a pid of up to 10 digits, ``-`` and 8 random
#: characters).
NAME_MAX_BYTES = 255 - len("..tmp--") - 10 - 8

#: Figure files are assumed to take at most this much per results directory (a run's five
#: figures in PNG and SVG take 2-4 MB).
FIGURE_BYTES = 16 << 20

#: Errors of the file system that end a write with one line (and exit status 1 in the CLI).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG,
                 errno.EIO}


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


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a v2vsim results directory, or None (none, unreadable, not v2vsim's)."""
    manifest = path / MANIFEST
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "v2vsim_version" in data else None


def is_v2vsim_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file() and _read_manifest(path) is not None


# --------------------------------------------------------------------------- what a directory holds

#: How each kind of command's results are named in a refusal.
_KIND_TEXT = {
    "run": "the results of a run", "compare": "a comparison", "validation": "validation results",
    "sweep": "a sweep", "sensitivity": "a sensitivity analysis", "capacity": "a capacity search",
    "psa": "a probabilistic sensitivity analysis",
}


def scenario_identity(paths: Iterable[Path | str]) -> list[dict[str, Any]]:
    """What identifies a command's scenarios (or validation cases) in its manifest: each file's
    resolved path and sha256."""
    identity = []
    for path in paths:
        path = Path(path)
        try:
            digest = sha256_file(path) if path.is_file() else None
        except OSError:
            digest = None
        identity.append({"file": str(path.resolve()), "sha256": digest})
    return identity


def _legacy_scenarios(manifest: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The scenarios of a manifest written before ``identity`` was recorded (None: unknown)."""
    def entry(file: Any, digest: Any = None) -> dict[str, Any]:
        return {"file": str(Path(str(file)).resolve()) if file else None,
                "sha256": digest if isinstance(digest, str) else None}

    kind = manifest.get("kind")
    try:
        if kind == "compare" and isinstance(manifest.get("scenarios"), list):
            return [entry(s.get("file")) for s in manifest["scenarios"]]
        if kind == "validation" and isinstance(manifest.get("cases"), list):
            return [entry(c.get("case_file"), c.get("case_sha256")) for c in manifest["cases"]]
        if isinstance(manifest.get("scenario_files"), list):
            digests = manifest.get("scenario_sha256") or [None] * len(manifest["scenario_files"])
            return [entry(f, d) for f, d in zip(manifest["scenario_files"], digests)]
        if manifest.get("scenario_file") or manifest.get("scenario_sha256"):
            return [entry(manifest.get("scenario_file"), manifest.get("scenario_sha256"))]
    except (AttributeError, TypeError):
        return None
    return None


def _holds(manifest: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    identity = manifest.get("identity")
    if isinstance(identity, dict) and isinstance(identity.get("scenarios"), list):
        return identity.get("kind"), [s for s in identity["scenarios"] if isinstance(s, dict)]
    kind = manifest.get("kind")
    return (kind if isinstance(kind, str) else None), _legacy_scenarios(manifest)


def _same_scenarios(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """Scenario by scenario (in any order), the same resolved file or the same content."""
    if len(old) != len(new):
        return False
    left = list(old)
    for scenario in new:
        match = next((i for i, o in enumerate(left)
                      if (o.get("file") and o.get("file") == scenario["file"])
                      or (o.get("sha256") and o.get("sha256") == scenario["sha256"])), None)
        if match is None:
            return False
        left.pop(match)
    return True


def _describe(kind: str | None, scenarios: list[dict[str, Any]] | None) -> str:
    what = _KIND_TEXT.get(kind or "", "results")
    names = [Path(s["file"]).name for s in scenarios or [] if s.get("file")]
    noun = "cases" if kind == "validation" else "scenarios"
    if kind == "compare" or len(names) > 1:
        what += f" of {len(names)} {noun} ({', '.join(names)})" if names else ""
    elif names:
        what += f" of {names[0]}"
    return what + (f" written by `v2vsim {kind}`" if kind else "")


def _has_figures(manifest: dict[str, Any]) -> bool:
    files = manifest.get("files")
    names = files if isinstance(files, dict) else {}
    return any(isinstance(n, str) and (n.startswith("figures/") or "/figures/" in n) for n in names)


# --------------------------------------------------------------------------- the target's place


def _real(out_dir: Path) -> Path:
    """The directory the results go to: ``out_dir``, or the directory a symbolic link points to
    (the link is kept)."""
    out_dir = Path(out_dir)
    return out_dir.resolve() if out_dir.is_symlink() else Path(os.path.abspath(out_dir))


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_place(out_dir: Path, *, inputs: Sequence[Path | str] = (), need_bytes: int = 0) -> Path:
    """Refuse a target where no results directory can be written; returns the real target."""
    if out_dir.is_symlink():
        real = out_dir.resolve()
        if not real.exists():
            raise OutputError(f"{out_dir} is a symbolic link to {real}, which does not exist; "
                              "remove the link or choose another --out")
        if not real.is_dir():
            raise OutputError(f"{out_dir} is a symbolic link to {real}, which is not a directory")
    real = _real(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a directory")
    resolved = real.resolve()  # the comparisons below see through links in the parents
    for system in ("/proc", "/sys", "/dev"):
        if resolved == Path(system) or Path(system) in resolved.parents:
            raise OutputError(f"{out_dir} is under {system}, which holds no results; choose another --out")
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise OutputError(f"{out_dir} is the working directory or contains it; replacing it would "
                          "delete it: choose a new directory for --out (--force does not change this)")
    for path in inputs:
        if Path(path).exists() and resolved in Path(path).resolve().parents:
            raise OutputError(f"{out_dir} contains {path}, which this command reads; replacing it "
                              "would delete it: choose another --out (--force does not change this)")
    size = len(real.name.encode("utf-8", "surrogateescape"))
    if size > NAME_MAX_BYTES:
        raise OutputError(f"{out_dir}: the name is {size} bytes; at most {NAME_MAX_BYTES} leave room for "
                          "the temporary name the atomic write needs (file systems allow 255)")
    existing = _nearest_existing(real.parent)
    if not existing.is_dir():
        raise OutputError(f"{out_dir}: {existing} is not a directory")
    try:  # a real file: root passes every mode check, and a mount can be read-only
        fd, probe = tempfile.mkstemp(prefix=f".{real.name[:40]}.probe-", dir=existing)
        try:
            os.write(fd, b"v2vsim")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write in {existing}: {exc.strerror or exc}") from exc
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{out_dir}: cannot write in {existing}: Permission denied")
    if need_bytes:
        free = shutil.disk_usage(existing).free
        if free < need_bytes:
            raise OutputError(f"{out_dir}: the results need about {_mb(need_bytes)} (estimated) and "
                              f"{existing} has {_mb(free)} free; free some space or choose another --out")
    return real


def _mb(n: float) -> str:
    return f"{n / (1 << 20):,.1f} MB"


#: Bytes per simulated patient assumed by :func:`estimated_bytes`: about 2.5 times what the
#: bundled scenarios take (``patients.parquet`` about 85 bytes a patient, ``patients.csv``
#: about 210), so that the free-space check errs on the side of refusing.
PARQUET_BYTES_PER_PATIENT = 200
CSV_BYTES_PER_PATIENT = 500


def estimated_bytes(patients: float, replications: int, *, csv: bool = False,
                    figures: bool = True) -> int:
    """A generous estimate of a results directory's size: ``patients`` simulated in all (every
    replication), 1 KB per replication of tables, 1 MB of small files and
    :data:`FIGURE_BYTES` with figures."""
    per_patient = PARQUET_BYTES_PER_PATIENT + (CSV_BYTES_PER_PATIENT if csv else 0)
    return int(patients * per_patient + 1024 * replications + (1 << 20)
               + (FIGURE_BYTES if figures else 0))


# --------------------------------------------------------------------------- the lock


#: The locks this process holds: real target -> [fd, lock file, depth]. A POSIX record lock
#: (``fcntl.lockf``), not ``flock``: it belongs to this process alone, so worker processes
#: forked while it is held do not keep it after the process that wrote is gone.
_HELD: dict[str, list[Any]] = {}
_HELD_GUARD = threading.Lock()


def _lock_path(real: Path) -> Path:
    return real.parent / f".{real.name}.lock"


def _acquire(out_dir: Path, real: Path) -> None:
    key = str(real)
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key][2] += 1
            return
        real.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock_path(real)
        if fcntl is None:  # pragma: no cover - not POSIX
            _HELD[key] = [None, lock, 1]
            return
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise WriteError(f"cannot write {out_dir}: {exc.strerror or exc} ({lock})") from exc
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    os.close(fd)
                    raise WriteError(f"cannot lock {lock}: {exc.strerror or exc}") from exc
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise OutputError(f"another v2vsim is writing {out_dir} (pid {holder}); wait for it "
                                  "to finish or choose another --out") from None
            try:  # the last holder removes the file when done: lock the file that is there
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = [fd, lock, 1]


def _release(real: Path, *, all_holds: bool = False) -> None:
    key = str(real)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is None:
            return
        held[2] -= 1
        if held[2] > 0 and not all_holds:
            return
        del _HELD[key]
        fd, lock, _ = held
        if fd is None:  # pragma: no cover - not POSIX
            return
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


@atexit.register
def _release_everything() -> None:
    for key in list(_HELD):
        _release(Path(key), all_holds=True)


def release_target(out_dir: Path) -> None:
    """Give up every hold this process has on ``out_dir``'s lock (``check_target(hold=True)``)."""
    _release(_real(Path(out_dir)), all_holds=True)


@contextlib.contextmanager
def target_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the target's lock (re-entrant in one process); yields the real target."""
    real = _real(Path(out_dir))
    _acquire(Path(out_dir), real)
    try:
        yield real
    finally:
        _release(real)


# --------------------------------------------------------------------------- recovery


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(real: Path) -> list[str]:
    """Clean what a killed writer of ``real`` left (call with the lock held): restore a
    ``.NAME.old-PID`` of a dead process when NAME is missing, remove it when NAME is a complete
    results directory; remove ``.NAME.tmp-PID-*`` of dead processes. Returns what was done."""
    parent, name = real.parent, real.name
    if not parent.is_dir():
        return []
    old_re = re.compile(rf"\.{re.escape(name)}\.old-(\d+)")
    tmp_re = re.compile(rf"\.{re.escape(name)}\.tmp-(\d+)-.*", re.S)
    done = []
    try:
        entries = sorted(parent.iterdir(), key=lambda p: p.lstat().st_mtime, reverse=True)
    except OSError:
        return []
    for entry in entries:
        match = old_re.fullmatch(entry.name)
        if not match or _alive(int(match.group(1))) or not entry.is_dir() or entry.is_symlink():
            continue
        if not real.exists():
            os.replace(entry, real)
            done.append(f"restored {real} from {entry.name}, left by an interrupted replace")
        elif is_v2vsim_dir(real):
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed {entry}, left by an interrupted replace")
    for entry in entries:
        match = tmp_re.fullmatch(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed {entry}, left by a process that was stopped while writing")
    return done


# --------------------------------------------------------------------------- checking the target


def _check_content(out_dir: Path, real: Path, force: bool, kind: str | None,
                   scenarios: list[dict[str, Any]] | None, figures: bool | None) -> None:
    if not real.is_dir() or force:
        return
    try:
        empty = not any(real.iterdir())
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot read it: {exc.strerror or exc}") from exc
    if empty:
        return
    manifest = _read_manifest(real)
    if manifest is None:
        raise OutputError(
            f"{out_dir} exists and was not written by v2vsim (no {MANIFEST}); "
            "choose another --out or pass --force to replace it")
    old_kind, old_scenarios = _holds(manifest)
    if kind is not None and old_kind is not None:
        same = old_kind == kind and (scenarios is None or old_scenarios is None
                                     or _same_scenarios(old_scenarios, scenarios))
        if not same:
            raise OutputError(
                f"{out_dir} holds {_describe(old_kind, old_scenarios)}; this `v2vsim {kind}` "
                f"{'of other scenarios ' if old_kind == kind else ''}would replace it: choose another "
                "--out or pass --force to replace it")
    if figures is False and _has_figures(manifest):
        raise OutputError(f"{out_dir} has figures, which a run with --no-figures would delete; "
                          "run with figures, choose another --out or pass --force to replace it")


def check_target(out_dir: Path, force: bool = False, *, kind: str | None = None,
                 scenarios: Sequence[Path | str] | None = None, figures: bool | None = None,
                 need_bytes: int = 0, inputs: Sequence[Path | str] = (), hold: bool = False) -> list[str]:
    """Refuse early (before a long run) a target that cannot or must not be written.

    ``kind`` is the command writing (``run``, ``compare``, ...) and ``scenarios`` its scenario
    files (or cases): results of another kind or of other scenarios are refused unless
    ``force``; so is a directory with figures when ``figures`` is False. ``need_bytes`` is the
    estimated size; ``inputs`` are files the command reads (a target containing one is
    refused even with ``force``). With ``hold``, the target's lock is kept until
    :func:`write_results_dir` puts the new directory in place (or the process ends). Debris of
    killed writers is cleaned; returns what was cleaned."""
    out_dir = Path(out_dir)
    inputs = [*inputs, *(scenarios or ())]
    real = _check_place(out_dir, inputs=inputs, need_bytes=need_bytes)
    _acquire(out_dir, real)
    try:
        cleaned = recover(real)
        _check_content(out_dir, real, force, kind,
                       None if scenarios is None else scenario_identity(scenarios), figures)
    except BaseException:
        _release(real, all_holds=True)
        raise
    if not hold:
        _release(real)
    return cleaned


# --------------------------------------------------------------------------- writing


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_write_error(exc: BaseException) -> bool:
    if not isinstance(exc, OSError):
        return False
    if exc.errno in _WRITE_ERRNOS:
        return True
    text = str(exc)  # pyarrow's and some libraries' OSError carry no errno
    return exc.errno is None and any(os.strerror(e) in text for e in _WRITE_ERRNOS)


def _write_error(out_dir: Path, exc: OSError) -> WriteError:
    reason = exc.strerror or str(exc).splitlines()[0]
    return WriteError(f"cannot write {out_dir}: {reason}; nothing was replaced, earlier results "
                      "are untouched")


#: Test hook: seconds to wait between the two renames of the swap (signals sent meanwhile are
#: delivered after it), so that tests can send a signal at that moment.
_PAUSE_ENV = "V2VSIM_TEST_SWAP_PAUSE"


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then are delivered to their handlers."""
    held = {signal.SIGINT, signal.SIGTERM}
    main = threading.current_thread() is threading.main_thread()
    pending: list[int] = []
    posix = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigtimedwait")
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held) if posix else None
    previous: dict[int, Any] = {}
    if main:
        for signum in held:
            previous[signum] = signal.signal(signum, lambda s, _f: pending.append(s))
    try:
        yield
    finally:
        while posix:  # consume what is pending, to deliver it to the handlers restored below
            info = signal.sigtimedwait(held, 0)
            if info is None:
                break
            pending.append(info.si_signo)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if posix:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)


_FAILURES: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar(
    "v2vsim_figure_failures", default=None)


@contextlib.contextmanager
def guard_figures(name: str, directory: Path) -> Iterator[None]:
    """Figure code whose failure must not cost the data files: inside
    :func:`write_results_dir`'s ``fill``, an exception is recorded (the files this block wrote
    in ``directory`` are removed) and the write goes on; :class:`FiguresFailed` is raised once
    the directory is in place. Outside a write, or for a full or read-only disk, it propagates."""
    failures = _FAILURES.get()
    directory = Path(directory)
    before = set(directory.rglob("*")) if directory.is_dir() else set()
    try:
        yield
    except Exception as exc:
        if failures is None or _is_write_error(exc):
            raise
        if directory.is_dir():
            for path in sorted(set(directory.rglob("*")) - before, reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir() if path.is_dir() else path.unlink()
        text = (str(exc).strip().splitlines() or [""])[0][:300]
        failures.append((name, f"{type(exc).__name__}: {text}" if text else type(exc).__name__))


def write_results_dir(
    out_dir: Path,
    fill: Callable[[Path], dict[str, Any]],
    *,
    force: bool = False,
    kind: str | None = None,
    scenarios: Sequence[Path | str] | None = None,
    figures: bool | None = None,
    need_bytes: int = 0,
    inputs: Sequence[Path | str] = (),
) -> Path:
    """Create ``out_dir`` atomically: ``fill(tmp)`` writes the files and returns manifest fields.

    The target is checked as :func:`check_target` does (same arguments) under its lock, which
    is held until the new directory is in place. The manifest gets the sha256 of every file
    written, and the ``identity`` (``kind``, ``scenarios``) later writes are checked against.
    The previous directory, if any, is removed only after the new one is complete and in place.
    Raises :class:`OutputError` for a refused target, :class:`WriteError` when the file system
    fails the write, :class:`FiguresFailed` (after writing) when figures failed and
    :class:`WrittenThenInterrupted` for a signal during the swap.
    """
    out_dir = Path(out_dir)
    inputs = [*inputs, *(scenarios or ())]
    real = _check_place(out_dir, inputs=inputs, need_bytes=need_bytes)
    outer = _FAILURES.get()
    failures: list[tuple[str, str]] = [] if outer is None else outer
    written = False
    _acquire(out_dir, real)
    try:
        recover(real)
        identity = None if scenarios is None else scenario_identity(scenarios)
        _check_content(out_dir, real, force, kind, identity, figures)
        token = _FAILURES.set(failures)
        try:
            _write(out_dir, real, fill, kind, identity, failures if outer is None else [])
        finally:
            _FAILURES.reset(token)
        written = True
    finally:
        try:
            _release(real, all_holds=outer is None)
        except KeyboardInterrupt as exc:
            if written:
                raise WrittenThenInterrupted(out_dir) from exc
            raise
    if outer is None and failures:
        raise FiguresFailed(out_dir, failures)
    return out_dir


def _write(out_dir: Path, real: Path, fill: Callable[[Path], dict[str, Any]], kind: str | None,
           identity: list[dict[str, Any]] | None, failures: list[tuple[str, str]]) -> None:
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.tmp-{os.getpid()}-", dir=real.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
    except OSError as exc:
        if _is_write_error(exc):
            raise _write_error(out_dir, exc) from exc
        raise
    swapped = False
    try:
        manifest = fill(tmp)
        if kind is not None:
            manifest["identity"] = {"kind": kind, "scenarios": identity}
        if failures:
            manifest["figure_failures"] = [{"figures": n, "error": e} for n, e in failures]
        manifest["files"] = {
            str(p.relative_to(tmp)): sha256_file(p)
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        write_json(tmp / MANIFEST, manifest)
        _fsync_tree(tmp)
        old = None
        try:
            with _signals_held():  # a signal held back here is delivered as the block ends
                if real.exists():
                    old = real.parent / f".{real.name}.old-{os.getpid()}"
                    os.replace(real, old)
                pause = os.environ.get(_PAUSE_ENV)
                if pause:
                    time.sleep(float(pause))
                try:
                    os.replace(tmp, real)
                except BaseException:
                    if old is not None:
                        os.replace(old, real)
                    raise
                swapped = True
        finally:
            if swapped and old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except KeyboardInterrupt as exc:
        if swapped:
            raise WrittenThenInterrupted(out_dir) from exc
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not swapped and _is_write_error(exc):
            raise _write_error(out_dir, exc) from exc  # type: ignore[arg-type]
        raise


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


# --------------------------------------------------------------------------- verifying


def _manifest_files(manifest_path: Path) -> dict[str, str]:
    """The manifest's ``files`` (relative name -> sha256); :class:`OutputError` says what is
    malformed."""
    try:
        text = manifest_path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise OutputError(f"{manifest_path}: cannot read it: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise OutputError(f"{manifest_path}: malformed manifest: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise OutputError(f"{manifest_path}: malformed manifest: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise OutputError(f"{manifest_path}: malformed manifest: a JSON {type(data).__name__}, "
                          "not an object")
    if "files" not in data:
        raise OutputError(f"{manifest_path}: malformed manifest: no 'files'")
    files = data["files"]
    if not isinstance(files, dict):
        shown = "null" if files is None else f"a {type(files).__name__}"
        raise OutputError(f"{manifest_path}: malformed manifest: 'files' is {shown}, not an object "
                          "of file names and sha256 digests")
    for name, digest in files.items():
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise OutputError(f"{manifest_path}: malformed manifest: the entry for {name!r} is "
                              f"{json.dumps(digest)[:80]}, not a sha256 digest")
        parts = Path(name).parts
        if not name or Path(name).is_absolute() or ".." in parts:
            raise OutputError(f"{manifest_path}: malformed manifest: {name!r} is not a file name "
                              "inside the directory")
    return files


def verify_dir(out_dir: Path) -> list[str]:
    """Problems found when checking every file against the manifest's sha256 (empty: all good).

    Debris of a killed writer is cleaned first (as before a write) when the lock can be taken;
    a malformed manifest is one problem (``malformed manifest: ...``)."""
    out_dir = Path(out_dir)
    if _real(out_dir).parent.is_dir():  # never creates a directory
        with contextlib.suppress(OutputError, OSError):
            with target_lock(out_dir) as real:
                recover(real)
    manifest_path = out_dir / MANIFEST
    if not manifest_path.is_file():
        return [f"{out_dir}: no {MANIFEST}: not a v2vsim results directory"]
    try:
        files = _manifest_files(manifest_path)
    except OutputError as exc:
        return [str(exc)]
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
