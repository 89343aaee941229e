"""The web app in a real browser: ``v2vsim app`` started on a free localhost port, the page loaded
in headless Chromium, the bundled local-vs-overseas comparison run by clicking Run, the figures
waited for, and nothing the browser reports as wrong (console errors, exceptions, requests
outside localhost: the app must work offline). The server is stopped by the test, by its PID.

``V2VSIM_SCREENSHOT=app.png`` keeps a screenshot of the results for a person to look at.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

from test_report import DevTools, chromium  # noqa: E402,F401  (the report test's browser)

from v2vsim.app.serve import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - localhost
        return response.status, response.read()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "v2vsim", "app", "--port", str(port), "--no-browser",
         "--cache", str(tmp_path / "cache")],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, env={**os.environ, "NO_COLOR": "1"})
    assert process.stdout is not None
    first = process.stdout.readline()
    url = f"http://localhost:{port}"
    try:
        # The address and the server's own PID (it execs Streamlit) are printed first.
        assert first.strip() == f"v2vsim app: {url} (pid {process.pid}; Ctrl-C stops it)", first
        deadline = time.monotonic() + 90
        while True:
            try:
                if _get(f"{url}/_stcore/health")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the app did not start: " + process.stdout.read())
            time.sleep(0.2)
        yield url, process
    finally:
        os.kill(process.pid, signal.SIGTERM)  # stopped by its PID, as a user's Ctrl-C would
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise AssertionError("the app did not stop on SIGTERM within 20 s") from None
        finally:
            process.stdout.close()


def _problems(tools: DevTools, origin: str) -> list[str]:
    """Console errors and warnings, uncaught exceptions, dialogs, failed requests and any
    request that leaves ``origin`` (the app must not need the internet)."""
    out = []
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(f"console {params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            out.append(f"exception: {params.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            out.append(f"log error: {params['entry'].get('text')}")
        elif method == "Page.javascriptDialogOpening":
            out.append(f"dialog: {params.get('message')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            out.append(f"request failed: {params.get('errorText')}")
        elif method in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            url = (params.get("request") or {}).get("url") or params.get("url", "")
            local = (origin, origin.replace("http", "ws"))
            if not url.startswith((*local, "data:", "blob:", "about:")):
                out.append(f"request outside the app: {url}")
    return out


def _wait(tools: DevTools, expression: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not tools.evaluate(expression):
        if time.monotonic() > deadline:
            text = tools.evaluate("document.body.innerText.slice(0, 3000)")
            raise AssertionError(f"{what}: not seen within {timeout:.0f} s; the page says:\n{text}")
        time.sleep(0.25)


BUTTON = "Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() === {label!r})"
FIGURES = """Array.from(document.images).filter(i => i.src.includes('/media/') && i.complete
    && i.naturalWidth > 0 && i.getBoundingClientRect().width > 200).length"""


def test_bundled_comparison_in_headless_chromium(chromium: str, server: tuple[str, subprocess.Popen[str]],
                                                 tmp_path: Path) -> None:
    url, process = server
    tools = DevTools(chromium, tmp_path / "profile", width=1400, height=1000)
    try:
        tools.call("Page.navigate", session=True, url=url)
        tools.wait_for("Page.loadEventFired")
        _wait(tools, f"!!({BUTTON.format(label='Run')})", 60, "the Run button")
        text = tools.evaluate("document.body.innerText")
        assert "v2vsim compare local overseas -n 200 --seed 20250415" in text
        assert "--set sites.hkib.slots" in text  # each control names its --set path
        started = time.monotonic()
        tools.evaluate(f"{BUTTON.format(label='Run')}.click()")
        _wait(tools, f"({FIGURES}) >= 5 && !!({BUTTON.format(label='Results directory (.zip)')})",
              180, "the comparison's figures and downloads")
        seconds = time.monotonic() - started
        text = tools.evaluate("document.body.innerText")
        for expected in ("Results", "Infused (% of referred)", "paired difference",
                         "Hong Kong local manufacturing (fresh product)",
                         "Overseas commercial CAR-T (cryopreserved product)",
                         "Results directory (.zip)"):
            assert expected in text, expected
        # Let the page settle (the progress fragment's last poll), then look for problems.
        time.sleep(1.5)
        assert _problems(tools, url) == []
        tools.call("Emulation.setDeviceMetricsOverride", session=True, width=1400,
                   height=int(tools.evaluate("document.querySelector('section.main, [data-testid=stMain]')"
                                             "?.scrollHeight || 3000")) + 100,
                   deviceScaleFactor=1, mobile=False)
        time.sleep(0.5)
        shot = tools.call("Page.captureScreenshot", session=True, format="png")
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        (tmp_path / "app.png").write_bytes(png)
        if os.environ.get("V2VSIM_SCREENSHOT"):
            shutil.copy(tmp_path / "app.png", os.environ["V2VSIM_SCREENSHOT"])
        # The run is cached: its results directory, with the manifest, is on disk.
        runs = list((tmp_path / "cache" / "runs").iterdir())
        assert len(runs) == 1
        status = json.loads((runs[0] / "status.json").read_text())
        print(f"results shown {seconds:.1f} s after Run (the command itself: {status['seconds']:.1f} s)")
        manifest = json.loads((runs[0] / "results" / "manifest.json").read_text())
        assert manifest["kind"] == "compare" and manifest["replications"] == 200
    finally:
        tools.close()
    assert process.poll() is None  # the server is still up; the fixture stops it by PID
