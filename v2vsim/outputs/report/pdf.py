"""The report printed to PDF by headless Chromium (its print-to-PDF, with the report's own
``@media print`` layout: A4, tables and figures kept whole where they fit).

Chromium is found on ``PATH`` (``chromium``, ``chromium-browser``, ``google-chrome``) or named
by ``$V2VSIM_CHROMIUM``. It runs with a throw-away profile, no network services and a timeout;
the PDF is written beside its target and renamed into place, so a failed print leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .load import ReportError

__all__ = ["BROWSERS", "find_browser", "print_pdf"]

#: Executables tried, in order, when ``$V2VSIM_CHROMIUM`` is not set.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The Chromium executable to print with, or None."""
    named = os.environ.get("V2VSIM_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html: Path, pdf: Path, timeout_seconds: float = 180.0) -> Path:
    """Print the HTML file ``html`` to ``pdf``. Raises :class:`ReportError` when no browser is
    found, it fails or it takes longer than ``timeout_seconds``."""
    browser = find_browser()
    if browser is None:
        raise ReportError("printing to PDF needs Chromium, which was not found: install it "
                          "(Debian/Ubuntu: apt-get install chromium) or name it with "
                          "V2VSIM_CHROMIUM=/path/to/chrome; the HTML report needs nothing")
    pdf = Path(pdf)
    pdf.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{pdf.name}.", suffix=".tmp", dir=pdf.parent)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix="v2vsim-chromium-") as profile:
            command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                       "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                       "--disable-background-networking", "--disable-component-update",
                       "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={profile}",
                       "--no-pdf-header-footer", "--print-to-pdf-no-header",
                       f"--print-to-pdf={tmp}", Path(html).resolve().as_uri()]
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, start_new_session=True)
            try:
                _, stderr = process.communicate(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise ReportError(f"Chromium did not print the report within {timeout_seconds:.0f} s") from None
            except BaseException:  # Ctrl-C: the browser goes too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
        with open(tmp, "rb") as handle:
            head = handle.read(5)
        if process.returncode != 0 or head != b"%PDF-":
            last = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise ReportError(f"Chromium could not print the report (exit {process.returncode}"
                              f"{': ' + last[0] if last[0] else ''})")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, pdf)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return pdf
