"""The installed version of v2vsim (a checkout that is not installed says so)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("v2vsim")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+checkout"
