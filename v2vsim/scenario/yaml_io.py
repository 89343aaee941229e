"""Scenario YAML: reading it safely with line numbers, and writing a resolved scenario back.

ruamel.yaml's round-trip mode never constructs arbitrary objects and keeps the line of every key,
so every problem found later can name its line (:func:`line_of`). Explicit tags other than YAML's
core ones are refused (:func:`tag_problems`), and so are documents too large to be a scenario.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import stat
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .distributions import DistributionSpec
from .errors import Problem, ScenarioError

if TYPE_CHECKING:
    from .schema import Scenario

__all__ = ["MAX_FILE_BYTES", "UnreadableFile", "line_of", "read_text_file", "read_yaml", "scenario_to_dict", "scenario_to_yaml", "tag_problems",
           "to_plain"]

#: Largest YAML document accepted, in bytes (a scenario is a few kilobytes).
MAX_FILE_BYTES = 2_000_000

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class UnreadableFile(ValueError):
    """A file that is not read as input: missing, not a regular file, too large, not UTF-8."""


def _not_regular(mode: int, what: str) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"is a directory, not {what}"
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"is {kind}, not {what}: only regular files are read"


def read_text_file(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES,
                   what: str = "a scenario file") -> str:
    """The UTF-8 text of the regular file ``path``, of at most ``limit`` bytes.

    Anything else is refused at once with :class:`UnreadableFile` (its message says why): a
    directory, a FIFO (never opened for a blocking read, so this never waits for a writer), a
    device such as ``/dev/zero`` (never read past ``limit`` + 1 bytes, so it cannot fill memory).
    """
    try:
        problem = _not_regular(os.stat(path).st_mode, what)
        if problem:
            raise UnreadableFile(problem)
        # O_NONBLOCK: should the path become a FIFO after the check, opening it does not wait.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        try:
            problem = _not_regular(os.fstat(fd).st_mode, what)
            if problem:
                raise UnreadableFile(problem)
            os.set_blocking(fd, True)
            chunks: list[bytes] = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise UnreadableFile("no such file") from None
    except IsADirectoryError:
        raise UnreadableFile(f"is a directory, not {what}") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read: {exc.strerror or exc}") from None
    if size > limit:
        raise UnreadableFile(f"file is larger than {limit} bytes")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text ({exc.reason})") from None

#: Tags a scenario's values may carry, explicitly (`!!str 5`) or as YAML resolves plain values.
#: Every other tag -- `!!binary`, `!!set`, `!!omap`, `!!pairs`, `!!python/...`, `!custom` -- is
#: refused at its key (:func:`tag_problems`) rather than read as some other kind of data.
_CORE_TAGS = frozenset(
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
)


class _Constructor(RoundTripConstructor):
    """Round-trip constructor that reports unreadable scalars with their line, and keeps a value
    with a tag outside :data:`_CORE_TAGS` unread, as a :class:`TaggedScalar` carrying the tag."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        tag = getattr(node.tag, "value", node.tag)
        if tag not in _CORE_TAGS:
            value = node.value if isinstance(node.value, str) else ""
            return TaggedScalar(value=value[:40], tag=node.tag)
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # e.g. 2025-13-45, a 5000-digit integer
            value = node.value if isinstance(node.value, str) else ""
            shown = f" {value[:40]!r}" if value else ""
            raise ConstructorError(None, None, f"cannot read value{shown}: {exc}",
                                   node.start_mark) from None


def _yaml() -> YAML:
    # Round-trip mode keeps line numbers and comments and builds only plain containers
    # and scalars (no tags resolved to Python objects); duplicate keys raise.
    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = False
    return yaml


def tag_problems(tree: Any) -> list[tuple[list[Any], str]]:
    """Paths of values carrying a non-core YAML tag."""
    out: list[tuple[list[Any], str]] = []
    stack: list[tuple[Any, list[Any]]] = [(tree, [])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:  # aliases share nodes
            continue
        seen.add(id(node))
        tag = getattr(node, "tag", None)
        value = getattr(tag, "value", None) if tag is not None else None
        if isinstance(node, (CommentedMap, CommentedSeq, TaggedScalar)) and value is not None \
                and value not in _CORE_TAGS:
            shown = value.replace("tag:yaml.org,2002:", "!!")
            out.append((path, f"YAML tag '{shown}' is not allowed in a scenario"))
            continue
        if isinstance(node, Mapping):
            stack.extend((v, path + [k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, path + [i]) for i, v in enumerate(node))
    return out


def _count_nodes(node: Any, limit: int) -> int:
    """Count containers and scalars, following aliases: refuses 'billion laughs' documents."""
    count = 0
    stack = [node]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return count
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def to_plain(node: Any) -> Any:
    """ruamel containers and scalar subclasses -> plain dict/list/str/int/float/bool."""
    if isinstance(node, Mapping):
        return {str(k) if not isinstance(k, (str, int, float, bool)) else k: to_plain(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, (dt.date, dt.datetime)):
        return node
    if isinstance(node, TaggedScalar):
        return str(node.value)
    return str(node)


def read_yaml(text: str, file: str) -> Any:
    """Parse YAML text into a ruamel tree, raising ScenarioError with line numbers."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise ScenarioError([Problem(file, None, "", f"file is larger than {MAX_FILE_BYTES} bytes")])
    try:
        data = _yaml().load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = f" (column {mark.column + 1})" if mark is not None else ""
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        if "duplicate key" in str(exc) or type(exc).__name__ == "DuplicateKeyError":
            what = str(exc.problem or "duplicate key").split("\n")[0]
        raise ScenarioError([Problem(file, line, "", f"YAML error{col}: {what}")]) from None
    except (YAMLError, RecursionError, ValueError) as exc:
        msg = str(exc).split("\n")[0] or type(exc).__name__
        raise ScenarioError([Problem(file, None, "", f"YAML error: {msg}")]) from None
    if _count_nodes(data, 200_000) > 200_000:
        raise ScenarioError([Problem(file, None, "", "document too large (more than 200000 "
                                     "values after expanding aliases)")])
    return data


def dump_yaml(tree: Any) -> str:
    """A tree read by :func:`read_yaml` (perhaps changed) as YAML text, its comments kept."""
    stream = io.StringIO()
    yaml = _yaml()
    yaml.width = 4096  # long comments stay on their lines
    yaml.indent(mapping=2, sequence=4, offset=2)  # the bundled scenarios' layout
    yaml.dump(tree, stream)
    return stream.getvalue()


def line_of(tree: Any, path: Sequence[Any]) -> int | None:
    """1-based line of the deepest key along ``path`` that exists in the ruamel tree."""
    line = None
    node = tree
    for key in path:
        try:
            if isinstance(node, CommentedMap) and key in node:
                line = node.lc.key(key)[0] + 1
                node = node[key]
                continue
            if isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                line = node.lc.item(key)[0] + 1
                node = node[key]
                continue
        except (KeyError, IndexError, AttributeError, TypeError):
            pass
        break
    if line is None and hasattr(tree, "lc") and tree.lc.line is not None:
        line = tree.lc.line + 1
    return line


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The fully resolved scenario as plain data (distributions in explicit form)."""

    def dump(value: Any) -> Any:
        if isinstance(value, DistributionSpec):
            return value.to_yaml()
        if isinstance(value, BaseModel):
            out = {}
            for name, field in type(value).model_fields.items():
                item = getattr(value, name)
                if item is None:
                    continue
                out[field.alias or name] = dump(item)
            return out
        if isinstance(value, dict):
            return {k: dump(v) for k, v in value.items()}
        if isinstance(value, list):
            return [dump(v) for v in value]
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return int(value) if abs(value) < 2**53 else value
        return value

    return dump(scenario)


def scenario_to_yaml(scenario: Scenario, **extra: Any) -> str:
    """YAML text of the resolved scenario; ``extra`` keys override (e.g. seed, replications)."""
    data = scenario_to_dict(scenario)
    data.update(extra)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()
