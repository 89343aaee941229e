"""Runs the web app starts: the ``v2vsim`` command line in a process of its own, cached on disk.

A :class:`Request` is a command line (``compare`` or ``capacity``) over scenario files with
``--set``/``--set-for`` overrides. Its :attr:`~Request.key` is a hash of the command and of the
content of every scenario file (and the v2vsim version), so the same question asked again, by
anyone, is answered from the cache directory at once; a changed file or value is a new run.

A :class:`Job` is that command running in its own process group (``python -m v2vsim ...``), so
the page stays responsive, its worker processes are the command's own, and cancelling it is a
SIGTERM to the group (the command stops its workers, writes nothing and exits 143). Its progress
bars reach the page through ``V2VSIM_PROGRESS_FILE``. The results directory is the command's
own (atomic, with its manifest): what the app shows and offers for download is exactly what the
command line writes.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__

__all__ = ["Job", "Progress", "Request", "ScenarioInput", "cache_root", "zip_directory"]

#: Environment variable of the app's cache directory (set by ``v2vsim app --cache``).
CACHE_ENV = "V2VSIM_APP_CACHE"


def cache_root() -> Path:
    """``$V2VSIM_APP_CACHE``, else ``$XDG_CACHE_HOME/v2vsim/app`` (``~/.cache/v2vsim/app``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "v2vsim" / "app"


@dataclass(frozen=True)
class ScenarioInput:
    """A scenario of a request: the file the command reads, how the user knows it (a bundled
    name such as ``local``, or an uploaded file's name) and the file's text."""

    path: str
    shown: str
    text: str


@dataclass(frozen=True)
class Request:
    """A ``compare`` of two or more scenarios (the first is the baseline), or a ``capacity``
    search on the last one, as the command line takes it."""

    command: str
    scenarios: tuple[ScenarioInput, ...]
    #: Overrides of each scenario (its ``--set-for``), in the order of :attr:`scenarios`.
    own: tuple[tuple[str, ...], ...]
    replications: int
    seed: int
    jobs: int = 2
    #: ``capacity``: the site, the target (``queue_wait_mean<=30``) and the largest count tried.
    site: str = ""
    target: str = ""
    max_slots: int = 20

    def _args(self, shown: bool) -> list[str]:
        files = [s.shown if shown else s.path for s in self.scenarios]
        if self.command == "compare":
            args = ["compare", *files]
            for i, sets in enumerate(self.own):
                args += [part for text in sets for part in ("--set-for", f"{i + 1}:{text}")]
        elif self.command == "capacity":
            args = ["capacity", files[-1], "--site", self.site, "--target", self.target,
                    "--max-slots", str(self.max_slots)]
            args += [part for text in self.own[-1] for part in ("--set", text)]
        else:
            raise ValueError(f"unknown command {self.command!r}")
        return [*args, "-n", str(self.replications), "--seed", str(self.seed)]

    def argv(self, out_dir: Path) -> list[str]:
        """The arguments of the ``v2vsim`` command that answers the request."""
        return [*self._args(shown=False), "--jobs", str(self.jobs), "--out", str(out_dir)]

    def shown(self) -> str:
        """The command as a user would type it to get the same results."""
        return shlex.join(["v2vsim", *self._args(shown=True)])

    @property
    def key(self) -> str:
        """Hash of the command and every scenario file's content (and the v2vsim version)."""
        document = {"version": __version__, "args": self._args(shown=False)[0:1]
                    + self._args(shown=True)[1:], "texts": [s.text for s in self.scenarios]}
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class Progress:
    """What a job has done: its progress bars (description, completed, total) and its state
    (``running``, ``done``, ``failed``, ``cancelled``)."""

    state: str
    tasks: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0

    @property
    def fraction(self) -> float:
        """Completed share of the bar with most to do (0 before any bar)."""
        totals = [t for t in self.tasks if t.get("total")]
        if not totals:
            return 0.0
        task = max(totals, key=lambda t: t["total"])
        return max(0.0, min(1.0, task["completed"] / task["total"]))

    @property
    def text(self) -> str:
        return " · ".join(f"{t['description']}: {t['completed']:,.0f} of {t['total']:,.0f}"
                          for t in self.tasks if t.get("total")) or "starting"


_RUNNING: dict[str, subprocess.Popen[bytes]] = {}
_LOCK = threading.Lock()


def _stop_all() -> None:  # the app's server stops: so do the runs it started
    for process in list(_RUNNING.values()):
        _terminate(process)


atexit.register(_stop_all)


def _terminate(process: subprocess.Popen[bytes], grace_seconds: float = 5.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Job:
    """The run of one :class:`Request` in ``cache_root()/runs/KEY``: ``results/`` (the command's
    results directory), ``progress.json``, ``log.txt`` (its output) and ``status.json``."""

    def __init__(self, request: Request, root: Path | None = None) -> None:
        self.request = request
        self.dir = (root or cache_root()) / "runs" / request.key
        self.results = self.dir / "results"

    # ------------------------------------------------------------------ state
    def _status(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / "status.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    @property
    def done(self) -> bool:
        """Finished with results (now or in an earlier session: the cache)."""
        status = self._status()
        return bool(status and status.get("state") == "done" and (self.results / "manifest.json").is_file())

    def progress(self) -> Progress:
        """The job's state now (a finished process's exit status is recorded here)."""
        with _LOCK:
            process = _RUNNING.get(self.request.key)
            if process is not None and process.poll() is not None:
                self._finish(process.returncode)
                del _RUNNING[self.request.key]
        status = self._status()
        tasks: list[dict[str, Any]] = []
        with contextlib.suppress(OSError, ValueError):
            tasks = json.loads((self.dir / "progress.json").read_text(encoding="utf-8"))["tasks"]
        if status is None:
            return Progress("idle", tasks)
        seconds = float(status.get("seconds") or time.time() - float(status.get("started", time.time())))
        if status["state"] == "running" and self.request.key not in _RUNNING:
            # Started by an earlier server: finished or lost without a word.
            state = "done" if (self.results / "manifest.json").is_file() else "failed"
            message = "" if state == "done" else "the run stopped without finishing; run it again"
            return Progress(state, tasks, message, seconds)
        return Progress(status["state"], tasks, str(status.get("message", "")), seconds)

    def _finish(self, code: int) -> None:
        status = self._status() or {}
        log = ""
        with contextlib.suppress(OSError):
            log = (self.dir / "log.txt").read_text(encoding="utf-8", errors="replace")
        if status.get("state") == "cancelled":
            return
        if code == 0 and (self.results / "manifest.json").is_file():
            state, message = "done", ""
        else:
            state = "failed"
            lines = [line for line in log.splitlines() if line.strip()]
            wanted = [line for line in lines if line.startswith(("error", "warning")) or ": " in line]
            message = "\n".join((wanted or lines)[-12:]) or f"the run exited with status {code}"
        self._write_status(state=state, message=message, code=code,
                           seconds=round(time.time() - float(status.get("started", time.time())), 2),
                           started=status.get("started"))

    def _write_status(self, **fields: Any) -> None:
        tmp = self.dir / f"status.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(fields), encoding="utf-8")
        os.replace(tmp, self.dir / "status.json")

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        """Start the run unless it is running or its results are cached."""
        with _LOCK:
            if self.done or self.request.key in _RUNNING:
                return
            self.dir.mkdir(parents=True, exist_ok=True)
            for stale in ("progress.json", "status.json"):
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / stale).unlink()
            if self.results.exists():  # a failed run's partial figures (data are atomic)
                import shutil

                shutil.rmtree(self.results, ignore_errors=True)
            (self.dir / "request.json").write_text(
                json.dumps({"command": self.request.shown(), "argv": self.request.argv(self.results)},
                           indent=2), encoding="utf-8")
            env = dict(os.environ, V2VSIM_PROGRESS_FILE=str(self.dir / "progress.json"),
                       COLUMNS="160", NO_COLOR="1")
            with open(self.dir / "log.txt", "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "v2vsim", *self.request.argv(self.results)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    cwd=self.dir, start_new_session=True)
            _RUNNING[self.request.key] = process
            self._write_status(state="running", started=time.time(), pid=process.pid)

    def cancel(self) -> None:
        """Stop the run (its workers with it); nothing is kept."""
        with _LOCK:
            process = _RUNNING.pop(self.request.key, None)
        if process is None:
            return
        status = self._status() or {}
        self._write_status(state="cancelled", message="cancelled: nothing was kept",
                           started=status.get("started"),
                           seconds=round(time.time() - float(status.get("started", time.time())), 2))
        _terminate(process)

    def wait(self, timeout: float) -> Progress:
        """Poll until the run is no longer running (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            progress = self.progress()
            if progress.state != "running" or time.monotonic() > deadline:
                return progress
            time.sleep(0.1)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "log.txt").read_text(encoding="utf-8", errors="replace")
        return ""

    def report(self, suffix: str = ".html", timeout: float = 300.0) -> Path:
        """The HTML (or, where the command line writes one, PDF) report of the results,
        written once by ``v2vsim report`` and kept beside them. Raises ``RuntimeError`` with the
        command's message if it fails."""
        path = self.dir / f"report{suffix}"
        if path.is_file():
            return path
        done = subprocess.run([sys.executable, "-m", "v2vsim", "report", str(self.results), "-o", str(path)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=self.dir,
                              timeout=timeout, env=dict(os.environ, NO_COLOR="1"))
        if done.returncode != 0 or not path.is_file():
            raise RuntimeError((done.stderr or done.stdout).strip() or f"report exited {done.returncode}")
        return path

    def zip(self) -> Path:
        """The results directory as a zip file (built once), its manifest inside."""
        path = self.dir / "results.zip"
        if not path.is_file():
            tmp = self.dir / f"results.zip.tmp-{os.getpid()}"
            tmp.write_bytes(zip_directory(self.results, f"v2vsim-{self.request.command}"))
            os.replace(tmp, path)
        return path


def zip_directory(directory: Path, prefix: str, skip: Sequence[str] = ()) -> bytes:
    """Every file under ``directory`` in a zip, under the folder ``prefix``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path.name not in skip:
                archive.write(path, f"{prefix}/{path.relative_to(directory).as_posix()}")
    return buffer.getvalue()
