"""Writing a results directory atomically, with a manifest of hashes, and verifying one.

A command's results are written into a temporary directory next to the target
(``.NAME.tmp-PID-*``) and renamed into place only when every file is complete, so an
interrupted run never leaves a directory that looks finished and never destroys earlier
results. Before writing, the target is checked and locked as :mod:`.targets` says (a place a
directory can be written, one writer at a time, debris of killed writers cleaned, nothing
replaced silently); then:

* **The swap cannot be cut in half**: SIGINT and SIGTERM are held back while the old directory
  is renamed aside (``.NAME.old-PID``) and the new one renamed into place, and delivered after
  (:class:`WrittenThenInterrupted` then says that the new results are in place).
* **A full disk or a read-only file system is an error, not a traceback**: ENOSPC, EROFS,
  EACCES, EDQUOT, EPERM during the write raise :class:`WriteError` with one line; the temporary
  directory is removed and the previous results are intact.
* **A figure that fails costs only that figure**: figure code run through :func:`guard_figures`
  that raises leaves the data files written; the manifest lists the failures and
  :class:`FiguresFailed` is raised once the directory is in place.

:func:`verify_dir` cleans a killed writer's debris as a write would, then checks every file
against the manifest.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
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

from .._version import git_commit, package_versions
from ..scenario import scenario_to_yaml
from .manifest import (MANIFEST, FiguresFailed, OutputError, WriteError, WrittenThenInterrupted,
                       is_v2vsim_dir, read_manifest, sha256_file, write_json)
from .targets import (NAME_MAX_BYTES, acquire_lock, check_content, check_place, check_target,
                      estimated_bytes, real_target, recover, release_lock, release_target,
                      scenario_identity, target_lock)

__all__ = ["OutputError", "WriteError", "FiguresFailed", "WrittenThenInterrupted", "sha256_file",
           "write_results_dir", "package_versions", "verify_dir", "check_target", "guard_figures",
           "target_lock", "release_target", "recover", "scenario_identity", "estimated_bytes",
           "MANIFEST", "NAME_MAX_BYTES", "is_v2vsim_dir", "read_manifest", "write_json"]

#: Errors of the file system that end a write with one line (and exit status 1 in the CLI).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG,
                 errno.EIO}



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
    real = check_place(out_dir, inputs=inputs, need_bytes=need_bytes)
    outer = _FAILURES.get()
    failures: list[tuple[str, str]] = [] if outer is None else outer
    written = False
    acquire_lock(out_dir, real)
    try:
        recover(real)
        identity = None if scenarios is None else scenario_identity(scenarios)
        check_content(out_dir, real, force, kind, identity, figures)
        token = _FAILURES.set(failures)
        try:
            _write(out_dir, real, fill, kind, identity, failures if outer is None else [])
        finally:
            _FAILURES.reset(token)
        written = True
    finally:
        try:
            release_lock(real, all_holds=outer is None)
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
    if real_target(out_dir).parent.is_dir():  # never creates a directory
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
            "packages": versions, "git_commit": git_commit(), "command": list(command)}


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
