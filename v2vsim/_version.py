"""The installed version of v2vsim (a checkout that is not installed says so), and of what it runs on."""

import platform
from importlib import metadata

try:
    __version__ = metadata.version("v2vsim")
except metadata.PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+checkout"

#: Packages whose versions a manifest records (and a Dask cluster must match).
_PACKAGES = ("v2vsim", "simpy", "numpy", "scipy", "pandas", "pyarrow", "matplotlib", "pydantic",
             "ruamel.yaml", "typer", "rich")


def package_versions() -> dict[str, str]:
    """Python's version and each of :data:`_PACKAGES`' ("not installed" when absent)."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
