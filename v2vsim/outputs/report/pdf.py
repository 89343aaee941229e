"""The report printed to PDF by headless Chromium (its own print-to-PDF; no network, no JavaScript).

The browser runs with a throw-away profile in a temporary directory, is killed after a timeout,
and leaves nothing behind: the PDF is written beside the target under a temporary name and moved
into place only when complete.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .load import ReportError

#: Names Chromium is installed under (Debian/Ubuntu packages, Google's build).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_SECONDS = 180.0


class PDFError(ReportError):
    """No browser to print with, or the browser failed: a problem of the machine, not the input."""


def find_browser() -> str:
    """The path of a Chromium on PATH (``V2VSIM_CHROMIUM`` overrides); PDFError if there is none."""
    override = os.environ.get("V2VSIM_CHROMIUM")
    if override:
        found = shutil.which(override)
        if found:
            return found
        raise PDFError(f"V2VSIM_CHROMIUM={override} is not an executable")
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise PDFError("a PDF needs Chromium, and none was found on PATH (chromium, chromium-browser "
                      "or google-chrome); install it, e.g. `apt-get install chromium`, or write HTML")


def html_to_pdf(html_file: Path, output: Path, timeout_seconds: float = TIMEOUT_SECONDS) -> Path:
    """Print ``html_file`` to ``output`` (PDF, page size from the page's ``@page`` rule)."""
    browser = find_browser()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix="v2vsim-chromium-") as profile:
            command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                       "--no-default-browser-check", "--disable-background-networking",
                       "--disable-component-update", "--disable-sync", "--disable-extensions",
                       "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={profile}",
                       "--no-pdf-header-footer", "--print-to-pdf-no-header",
                       f"--print-to-pdf={tmp}", Path(html_file).resolve().as_uri()]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    start_new_session=hasattr(os, "killpg"))
            try:
                _, err = proc.communicate(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise PDFError(f"Chromium did not print the PDF within {timeout_seconds:.0f} s") from None
            except BaseException:
                _kill(proc)
                raise
            finally:
                _kill(proc)  # helpers (zygote, GPU process) that outlive the browser
        if proc.returncode != 0 or os.path.getsize(tmp) == 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            raise PDFError(f"Chromium could not print the PDF (exit {proc.returncode})"
                              + (f": {tail[0]}" if tail else ""))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return output


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if not hasattr(os, "killpg"):  # Windows: no process groups
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
