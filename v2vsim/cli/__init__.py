"""The ``v2vsim`` command line: thin Typer commands over the public functions."""

from .commands import app, default_compare_dir, main

__all__ = ["app", "default_compare_dir", "main"]
