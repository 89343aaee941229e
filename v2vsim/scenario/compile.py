"""Checks that a validated scenario can run (filled in with the engine's compiled plan)."""

from __future__ import annotations

from typing import Any

__all__ = ["precondition_problems"]


def precondition_problems(scenario: Any) -> list[tuple[list[Any], str]]:
    """``(key path, message)`` for every reason the engine could not run ``scenario``."""
    return []
