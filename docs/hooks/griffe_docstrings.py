"""Griffe extension for the API reference (mkdocstrings): the code's docstring habits in Markdown.

The package documents with plain prose docstrings, Sphinx roles (``:func:`simulate```) and
``#:`` comments above attributes. Griffe reads none of the last two, so this extension turns a
role into inline code and a ``#:`` comment block into the attribute's docstring.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|mod|data|attr|meth|exc|obj|py:\w+):`~?\.*([^`<]+?)(?:\s*<[^>]+>)?`")


def markdown(text: str) -> str:
    """A docstring's Sphinx roles and double backticks as Markdown inline code."""
    return _ROLE.sub(r"`\1`", text).replace("``", "`")


class SphinxHabits(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is not None or attr.lineno is None or attr.filepath is None:
            return
        try:
            lines = attr.lines_collection[attr.filepath]
        except KeyError:
            return
        comment: list[str] = []
        i = attr.lineno - 2  # the line above the attribute (lineno counts from 1)
        while i >= 0 and lines[i].strip().startswith("#:"):
            comment.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        if comment:
            attr.docstring = griffe.Docstring(markdown(" ".join(comment)), parent=attr)
