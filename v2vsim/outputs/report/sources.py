"""Scenario parameters and the comments written next to them: the report's assumptions table.

Comments are read from ruamel.yaml's round-trip tokens, so a ``#`` inside a quoted value or a
block scalar is never taken for a comment; values the run used that the file does not set are
added as defaults, and values changed on the command line are marked.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.tokens import CommentToken

from ...scenario import to_plain
from .load import ReportError

__all__ = ["LABEL_KEYS", "Parameter", "format_yaml_value", "source_parameters"]

#: Keys whose values are names or references, not quantities: they need no source comment.
LABEL_KEYS = frozenset({"name", "label", "description", "kind", "currency", "pathway", "site"})


@dataclass
class Parameter:
    """One scenario parameter as written (or defaulted) and the comment next to it."""

    path: str
    value: str
    comment: str = ""
    status: str = "missing"  # sourced | inherited | missing | label | default
    line: int | None = None  # 1-based line in the scenario file
    run_value: str = ""  # the value the run used, when it differs (command-line overrides)
    hint: str = ""  # the name of the cohort or step the path points into
    keys: tuple[Any, ...] = ()


def _comment_lines(tree: Any, lines: Sequence[str]) -> dict[int, tuple[int, str]]:
    """Every comment ruamel found: 0-based line -> (column of '#', text without '#').

    ruamel.yaml's scanner decides what is a comment (not a '#' in a quoted value or a block
    scalar); its tokens carry a start line that may be off by the newline they begin with,
    so each comment line is anchored on the source line that ends with its text.
    """
    found: dict[int, tuple[int, str]] = {}
    seen: set[int] = set()

    def anchor(token: CommentToken) -> None:
        start = token.start_mark.line if token.start_mark is not None else 0
        pieces = [p.strip() for p in token.value.split("\n") if p.strip().startswith("#")]
        number = max(0, start - 3)
        for text in pieces:
            while number < len(lines) and not (lines[number].rstrip().endswith(text)
                                               and number not in found):
                number += 1
            if number >= len(lines):
                return
            column = lines[number].rstrip().rfind(text)
            found[number] = (column, text[1:].strip())
            number += 1

    def tokens(obj: Any) -> None:
        if isinstance(obj, CommentToken):
            if id(obj) not in seen:
                seen.add(id(obj))
                anchor(obj)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                tokens(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                tokens(item)

    stack = [tree]
    visited: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        ca = getattr(node, "ca", None)
        if ca is not None:
            tokens(ca.comment)
            tokens(ca.items)
            tokens(ca.end)
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _is_flow(node: Any) -> bool:
    fa = getattr(node, "fa", None)
    return bool(fa is not None and fa.flow_style())


def _is_leaf(node: Any) -> bool:
    if isinstance(node, Mapping):
        return "dist" in node or _is_flow(node)
    if isinstance(node, list):
        return _is_flow(node) or all(not isinstance(v, (Mapping, list)) for v in node)
    return True


def _plain(node: Any) -> Any:
    """Plain data for display: as the loader sees it, with dates written as text."""

    def text_dates(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): text_dates(v) for k, v in value.items()}
        if isinstance(value, list):
            return [text_dates(v) for v in value]
        if isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    return text_dates(to_plain(node))


def format_yaml_value(value: Any) -> str:
    """A compact, YAML-like rendering of a parameter's value."""
    value = _plain(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(format_yaml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def _path_text(keys: Sequence[Any]) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else ("." if text else "") + str(key)
    return text


def _hint(root: Any, keys: Sequence[Any]) -> str:
    """Name of the innermost named list item along ``keys`` (a cohort or a step)."""
    node, hint = root, ""
    for key in keys[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(key, int) and isinstance(node, Mapping) and isinstance(node.get("name"), str):
            hint = node["name"]
    return hint


def _flatten_plain(node: Any, keys: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Leaves of the resolved scenario, with the same leaf rule as the source file."""
    if keys and (not isinstance(node, (dict, list)) or (isinstance(node, dict) and "dist" in node)
                 or (isinstance(node, list) and all(not isinstance(v, (dict, list)) for v in node))):
        return [(keys, node)]
    items = node.items() if isinstance(node, dict) else enumerate(node)
    out = []
    for key, value in items:
        out.extend(_flatten_plain(value, (*keys, key)))
    return out


def _header_notes(lines: Sequence[str], comments: Mapping[int, tuple[int, str]],
                  first_key_line: int) -> str:
    """The comment block at the top of the file (the author's notes on the scenario)."""
    kept = []
    for number in range(first_key_line):
        if number in comments and not lines[number][: comments[number][0]].strip():
            text = comments[number][1]
            if text and set(text) <= set("=-#~*_ "):
                continue  # underlines of a heading
            kept.append(text)
        elif number < len(lines) and not lines[number].strip():
            kept.append("")
    return "\n".join(kept).strip("\n")


def source_parameters(text: str, resolved: Mapping[str, Any] | None = None
                      ) -> tuple[list[Parameter], str]:
    """Every parameter of a scenario file with the comment written next to it.

    The comment of a parameter is its end-of-line comment, else the block of comment lines
    directly above its key, else (marked ``inherited``) the comment on the key of the mapping
    that holds it. Parameters of ``resolved`` (the scenario as run) that the file does not set
    are added as ``default``. Returns the parameters in file order and the file's header notes.
    Comments are read from ruamel.yaml's round-trip tokens, so a ``#`` inside a quoted value or
    a block scalar is never taken for a comment.
    """
    yaml = YAML(typ="rt", pure=True)
    try:
        tree = yaml.load(io.StringIO(text))
    except (YAMLError, ValueError) as exc:
        raise ReportError(f"cannot read the scenario file ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, CommentedMap):
        raise ReportError("the scenario file is not a mapping")
    lines = text.splitlines()
    comments = _comment_lines(tree, lines)
    first_key_line = tree.lc.key(next(iter(tree)))[0] if len(tree) else len(lines)
    header = _header_notes(lines, comments, first_key_line)

    def full_line(number: int) -> bool:
        return number in comments and number < len(lines) \
            and not lines[number][: comments[number][0]].strip()

    def comment_at(line: int) -> str:
        if line in comments and not full_line(line):
            return comments[line][1]
        above = []
        number = line - 1
        # The notes at the top of the file belong to the whole scenario, not to its first key.
        while number >= first_key_line and full_line(number):
            above.append(comments[number][1])
            number -= 1
        return "\n".join(reversed(above)).strip()


    params: list[Parameter] = []

    def walk(node: Any, keys: tuple[Any, ...], parent_comment: str) -> None:
        if isinstance(node, CommentedMap):
            entries = [(k, node.lc.key(k)[0]) for k in node]
        else:
            entries = [(i, node.lc.item(i)[0]) for i in range(len(node))]
        for key, line in entries:
            child = node[key]
            path = (*keys, key)
            own = comment_at(line)
            if _is_leaf(child):
                last = next((k for k in reversed(path) if isinstance(k, str)), "")
                if last in LABEL_KEYS:
                    status, comment = "label", own
                elif own:
                    status, comment = "sourced", own
                elif parent_comment and isinstance(node, CommentedMap):
                    status, comment = "inherited", parent_comment
                else:
                    status, comment = "missing", ""
                params.append(Parameter(_path_text(path), format_yaml_value(child), comment,
                                        status, line + 1, hint=_hint(tree, path), keys=path))
            else:
                walk(child, path, own if isinstance(node, CommentedMap) else "")

    walk(tree, (), "")
    if resolved:
        _merge_resolved(params, resolved, tree)
    return params, header


def _merge_resolved(params: list[Parameter], resolved: Mapping[str, Any], tree: Any) -> None:
    """Mark values changed at run time and add parameters left at their defaults."""
    written = {p.keys: p for p in params}

    def covered(keys: tuple[Any, ...]) -> bool:
        return any(keys[: len(k)] == k or k[: len(keys)] == keys for k in written)

    for keys, value in _flatten_plain(dict(resolved)):
        param = written.get(keys)
        if param is not None:
            written_value = _plain(_node(tree, keys))
            numeric = (int, float)
            if isinstance(value, numeric) and isinstance(written_value, numeric) \
                    and not isinstance(value, bool) and not isinstance(written_value, bool) \
                    and value != written_value:
                param.run_value = format_yaml_value(value)
            continue
        if covered(keys):
            continue
        row = Parameter(_path_text(keys), format_yaml_value(value), "", "default",
                        hint=_hint(resolved, keys), keys=keys)
        # Next to the written parameters it belongs with (same step, cohort or site).
        best, best_len = len(params), 0
        for i, p in enumerate(params):
            common = 0
            for a, b in zip(p.keys, keys):
                if a != b:
                    break
                common += 1
            if common >= best_len and common > 0:
                best, best_len = i + 1, common
        params.insert(best, row)
        written[keys] = row


def _node(tree: Any, keys: Sequence[Any]) -> Any:
    node = tree
    for key in keys:
        node = node[key]
    return node
