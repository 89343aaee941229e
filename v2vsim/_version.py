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
