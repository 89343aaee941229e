"""The ``app`` command: the web app on a local address (Streamlit, the ``app`` extra)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import _fail, out

__all__ = ["app_command"]


def app_command(
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (the default serves this machine only).")] = "127.0.0.1",
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open the app in a web browser (where the machine has a display).")] = True,
    cache: Annotated[Optional[Path], typer.Option("--cache", metavar="DIR", help="Directory of cached runs and uploads (default: ~/.cache/v2vsim/app).")] = None,
) -> None:
    """Start the web app: compare scenarios, change values, run and download in a browser.

    Needs the app extra: pip install "v2vsim[app]". Stop it with Ctrl-C.

    Examples:

    \b
      v2vsim app
      v2vsim app --port 8600 --no-browser
    """
    from ..app.serve import address_free, free_port, have_streamlit, streamlit_argv

    if not have_streamlit():
        _fail('error: the web app needs Streamlit: pip install "v2vsim[app]" (or, in a checkout, '
              'pip install -e ".[app]")', 1)
    if port == 0:
        port = free_port(host)
    elif not address_free(host, port):
        _fail(f"error: {host}:{port} is in use (another app?); choose another with --port, "
              "or --port 0 for any free port")
    env = dict(os.environ)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        env["V2VSIM_APP_CACHE"] = str(cache.resolve())
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    out.print(f"v2vsim app: http://{shown}:{port} (pid {os.getpid()}; Ctrl-C stops it)",
              markup=False, highlight=False)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = streamlit_argv(host, port, browser)
    os.execve(argv[0], argv, env)  # the server is this process: its pid is the one printed
