"""The installed version of v2vsim (a checkout that is not installed says so), and of what it runs on."""

import platform
from typing import Any

#: Packages whose versions a manifest records (and a Dask cluster must match).
_PACKAGES = ("v2vsim", "simpy", "numpy", "scipy", "pandas", "pyarrow", "matplotlib", "pydantic",
             "ruamel.yaml", "typer", "rich")


def __getattr__(name: str) -> Any:
    # __version__ is read on first use: importing importlib.metadata is a quarter of the time
    # of `v2vsim --help`, which does not show it.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import metadata

    try:
        version = metadata.version("v2vsim")
    except metadata.PackageNotFoundError:  # running from a checkout without installing
        version = "0.0.0+checkout"
    globals()["__version__"] = version
    return version


def package_versions() -> dict[str, str]:
    """Python's version and each of :data:`_PACKAGES`' ("not installed" when absent)."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


_GIT_COMMIT: list[str | None] = []


def git_commit() -> str | None:
    """The checkout's short commit hash, with ``-dirty`` when its tree has changes; None when the
    package is not in a git checkout or git is absent (asked once per process)."""
    if _GIT_COMMIT:
        return _GIT_COMMIT[0]
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    commit: str | None = None
    try:
        top = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10)
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        # An installed copy inside some other repository is not a checkout of v2vsim.
        ours = (top.returncode == 0 and top.stdout.strip()
                and (Path(top.stdout.strip()) / "v2vsim" / "_version.py").resolve()
                == Path(__file__).resolve())
        if ours and head.returncode == 0 and head.stdout.strip():
            commit = head.stdout.strip()
            # Changes to tracked files; results written inside the checkout do not count.
            status = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                     "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10)
            if status.returncode == 0 and status.stdout.strip():
                commit += "-dirty"
    except (OSError, subprocess.SubprocessError):
        commit = None
    _GIT_COMMIT.append(commit)
    return commit
