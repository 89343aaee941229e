"""Starting the web app: the ``streamlit run`` command line of ``v2vsim app``.

Streamlit is started with what an offline, local app needs: no usage statistics (they would
be sent to a web service), no e-mail prompt, no file watcher, uploads limited to the size a
scenario file may have, and the address bound to localhost unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import sys
from pathlib import Path

__all__ = ["SCRIPT", "address_free", "free_port", "have_streamlit", "streamlit_argv"]

#: The script ``streamlit run`` is given.
SCRIPT = Path(__file__).with_name("_script.py")


def have_streamlit() -> bool:
    """Whether Streamlit is installed (the ``app`` extra)."""
    return importlib.util.find_spec("streamlit") is not None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def address_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def streamlit_argv(host: str, port: int, open_browser: bool) -> list[str]:
    """``python -m streamlit run SCRIPT`` with the app's options."""
    options = {
        "server.address": host,
        "server.port": str(port),
        "server.headless": "false" if open_browser else "true",
        "server.showEmailPrompt": "false",
        "server.fileWatcherType": "none",
        "server.runOnSave": "false",
        "server.maxUploadSize": "2",  # MB: a scenario file is read up to 2,000,000 bytes
        "browser.gatherUsageStats": "false",
        "browser.serverAddress": "localhost" if host in ("127.0.0.1", "localhost") else host,
        "global.developmentMode": "false",
        "client.toolbarMode": "minimal",
        "theme.base": "light",
    }
    args = [sys.executable, "-m", "streamlit", "run", str(SCRIPT)]
    for key, value in options.items():
        args.append(f"--{key}={value}")
    return args
