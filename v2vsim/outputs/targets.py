"""The target of a results directory: where one can be written, what it holds, one writer at
a time, and what a killed writer left.

The rules, in the order they are checked (:func:`check_target`, before anything is simulated,
and again by :func:`.results_dir.write_results_dir`):

* **The target is a place a directory can be written**: not an existing file, not a dangling
  symbolic link, not under ``/proc``, ``/sys`` or ``/dev``, not ``.``, the working directory's
  or the scenario files' ancestor; a name that leaves room for the temporary names (at most
  :data:`NAME_MAX_BYTES` bytes); a parent that exists or can be created and where a file can
  really be written; free space for the estimated size (:func:`estimated_bytes`). A symbolic
  link to a directory is followed: the results replace the directory it points to and the link
  is kept.
* **One writer per target**: a lock (``fcntl.lockf`` on ``.NAME.lock`` beside the target, which
  records the holder's pid, removed when released) is held from the check until the new
  directory is in place; a second v2vsim on the same target is refused at once.
* **Debris of a dead process is cleaned** (:func:`recover`): under the lock, ``.NAME.tmp-PID-*``
  directories of a process that is no longer alive are removed, and a ``.NAME.old-PID`` left by
  a process killed in the middle of the swap is restored as NAME when NAME is missing (removed
  when NAME is complete).
* **Nothing is replaced silently**: a directory that v2vsim did not write (no manifest), results
  of another kind of command or of other scenarios, or a directory with figures replaced by a
  run without figures are refused unless the caller forces it. Two sets of results are of the
  same scenarios when, scenario by scenario, the files are the same path (resolved) or have the
  same content (sha256): editing a scenario and running it again replaces its results, and so
  does a moved checkout; another scenario's results are never replaced.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock between processes
    fcntl = None  # type: ignore[assignment]

from .manifest import MANIFEST, OutputError, WriteError, is_v2vsim_dir, read_manifest, sha256_file

__all__ = ["NAME_MAX_BYTES", "FIGURE_BYTES", "check_target", "estimated_bytes", "recover",
           "release_target", "scenario_identity", "target_lock"]

#: Longest results directory name in bytes: 255 (what file systems allow) less the longest
#: temporary name's additions (``.`` ``.tmp-`` a pid of up to 10 digits, ``-`` and 8 random
#: characters).
NAME_MAX_BYTES = 255 - len("..tmp--") - 10 - 8

#: Figure files are assumed to take at most this much per results directory (a run's five
#: figures in PNG and SVG take 2-4 MB).
FIGURE_BYTES = 16 << 20

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


def real_target(out_dir: Path) -> Path:
    """The directory the results go to: ``out_dir``, or the directory a symbolic link points to
    (the link is kept)."""
    out_dir = Path(out_dir)
    return out_dir.resolve() if out_dir.is_symlink() else Path(os.path.abspath(out_dir))


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_place(out_dir: Path, *, inputs: Sequence[Path | str] = (), need_bytes: int = 0) -> Path:
    """Refuse a target where no results directory can be written; returns the real target."""
    if out_dir.is_symlink():
        real = out_dir.resolve()
        if not real.exists():
            raise OutputError(f"{out_dir} is a symbolic link to {real}, which does not exist; "
                              "remove the link or choose another --out")
        if not real.is_dir():
            raise OutputError(f"{out_dir} is a symbolic link to {real}, which is not a directory")
    real = real_target(out_dir)
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


def acquire_lock(out_dir: Path, real: Path) -> None:
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


def release_lock(real: Path, *, all_holds: bool = False) -> None:
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
        release_lock(Path(key), all_holds=True)


def release_target(out_dir: Path) -> None:
    """Give up every hold this process has on ``out_dir``'s lock (``check_target(hold=True)``)."""
    release_lock(real_target(Path(out_dir)), all_holds=True)


@contextlib.contextmanager
def target_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the target's lock (re-entrant in one process); yields the real target."""
    real = real_target(Path(out_dir))
    acquire_lock(Path(out_dir), real)
    try:
        yield real
    finally:
        release_lock(real)


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


def check_content(out_dir: Path, real: Path, force: bool, kind: str | None,
                   scenarios: list[dict[str, Any]] | None, figures: bool | None) -> None:
    if not real.is_dir() or force:
        return
    try:
        empty = not any(real.iterdir())
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot read it: {exc.strerror or exc}") from exc
    if empty:
        return
    manifest = read_manifest(real)
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
    real = check_place(out_dir, inputs=inputs, need_bytes=need_bytes)
    acquire_lock(out_dir, real)
    try:
        cleaned = recover(real)
        check_content(out_dir, real, force, kind,
                       None if scenarios is None else scenario_identity(scenarios), figures)
    except BaseException:
        release_lock(real, all_holds=True)
        raise
    if not hold:
        release_lock(real)
    return cleaned
