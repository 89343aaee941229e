"""What is wrong with a scenario: one :class:`Problem` per fault, all of them in one :class:`ScenarioError`.

A problem is shown as ``FILE:LINE: key.path: message``; :func:`format_path` writes the key path
and :func:`did_you_mean` the suggestion that ends a message about an unknown name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Problem", "ScenarioError", "did_you_mean", "format_path"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return _visible(text)


def _visible(text: str) -> str:
    """``text`` with every unprintable character escaped (``\\x1b``): a name quoted in a message
    never sends control characters to the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class ScenarioError(ValueError):
    """A scenario breaks the contract; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(path: Sequence[Any]) -> str:
    """The key path as a :class:`Problem` shows it (``pathways.local.steps[2].duration``)."""
    text = ""
    for key in path:
        if isinstance(key, int):
            text += f"[{key}]"
        else:
            key = str(key)
            if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in key):
                key = repr(key)  # a control character is shown, not sent to the terminal
            text += ("." if text else "") + key
    return text


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a close match, else `` (known: a, b)``, or ``""`` if none are known."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known: {', '.join(known)})" if known else ""
