"""Variants of a scenario file: ``--set PATH=VALUE`` overrides applied to its YAML tree.

Overrides edit scenario *data*, before validation, so a variant is checked exactly like the file
itself and a problem inside an overridden value is reported against its ``--set`` rather than
against a line of the file. Items of ``cohorts`` and of a pathway's ``steps`` are addressed by
name (``--set pathways.local.steps.manufacture.duration.value=21``); every value is read as YAML.
Each variant parses the file again, so variants share nothing (no object is changed in place).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import Problem, ScenarioError, did_you_mean, format_path
from .loading import load_scenario, scenario_from_dict
from .schema import Scenario
from .yaml_io import UnreadableFile, dump_yaml, read_text_file, read_yaml, to_plain

__all__ = [
    "ScenarioSource",
    "load_with_overrides",
    "parse_assignment",
    "parse_sets",
    "parse_value",
    "split_values",
]

_NAMED_LISTS = {"cohorts": "cohort", "steps": "step"}  # lists whose items are addressed by name
_NAMED_DICTS = {"sites": "site", "pathways": "pathway"}  # mappings whose keys are names
_CORE_TAG = "tag:yaml.org,2002:"


def parse_assignment(text: str) -> tuple[str, str]:
    """``"PATH=VALUE"`` -> ``(PATH, VALUE)`` (split at the first ``=``)."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ScenarioError([Problem(f"--set {text}", None, "", "expected PATH=VALUE, "
                                     "e.g. --set sites.hkib.slots=2")])
    if any(not part for part in path.split(".")):
        raise ScenarioError([Problem(f"--set {path}", None, "", "empty key in the path")])
    return path, raw.strip()


def parse_value(raw: str, where: str) -> Any:
    """A ``--set`` value read as YAML (a scalar or a flow mapping/list), as plain data."""
    tree = read_yaml(raw, f"--set {where}")
    _refuse_tags(tree, where)
    return to_plain(tree)


def _refuse_tags(node: Any, where: str) -> None:
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag is not None and not str(tag).startswith(_CORE_TAG) or type(node).__name__ == "TaggedScalar":
        raise ScenarioError([Problem(f"--set {where}", None, "",
                                     f"YAML tag '{str(tag).replace(_CORE_TAG, '!!')}' is not allowed in a value")])
    if isinstance(node, Mapping):
        for value in node.values():
            _refuse_tags(value, where)
    elif isinstance(node, list):
        for value in node:
            _refuse_tags(value, where)


def split_values(raw: str) -> list[str]:
    """Split ``V1,V2,...`` at top-level commas (not inside ``{}``, ``[]`` or quotes)."""
    parts: list[str] = []
    depth = 0
    quote = ""
    current = ""
    for ch in raw:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    parts.append(current.strip())
    return parts


def _resolve(tree: Any, dotted: str, *, create: bool) -> tuple[Any, Any, list[Any]]:
    """Walk ``dotted`` in the YAML tree: ``(parent, key, index path)`` of the last key.

    Items of ``cohorts`` and of a pathway's ``steps`` are addressed by name; a missing site,
    pathway, cohort or step is an error (with a suggestion); other missing mapping keys are
    created when ``create`` (validation then says whether they exist in the contract).
    """
    keys = dotted.split(".")
    node = tree
    path: list[Any] = []
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        parent_key = path[-1] if path else None
        where = f"--set {dotted}"
        if isinstance(node, list):
            kind = _NAMED_LISTS.get(str(parent_key), "item")
            names = [str(item.get("name")) for item in node if isinstance(item, Mapping)]
            if key not in names:
                owner = f" in pathway '{path[-2]}'" if kind == "step" and len(path) >= 2 else ""
                hint = ""
                if key.isdigit():
                    hint = f"; {kind}s are addressed by name, not index"
                raise ScenarioError([Problem(where, None, "", f"no such {kind} '{key}'{owner}"
                                             f"{did_you_mean(key, names)}{hint}")])
            index = names.index(key)
            if last:
                return node, index, path + [index]
            node = node[index]
            path.append(index)
            continue
        if not isinstance(node, Mapping):
            shown = json.dumps(to_plain(node)) if not isinstance(node, str) else repr(node)
            raise ScenarioError([Problem(where, None, "", f"'{'.'.join(keys[:depth])}' is the single value "
                                         f"{shown}, not a mapping: set it whole, e.g. --set "
                                         f"{'.'.join(keys[:depth])}={{dist: ..., ...}}")])
        if key not in node:
            kind = _NAMED_DICTS.get(str(parent_key)) if depth > 0 else None
            if kind is not None or not create:
                known = [str(k) for k in node]
                what = f"{kind} '{key}'" if kind else f"key '{key}'"
                raise ScenarioError([Problem(where, None, "", f"no such {what}{did_you_mean(key, known)}")])
            if not last:
                node[key] = {}
        if last:
            return node, key, path + [key]
        node = node[key]
        path.append(key)
    raise AssertionError("unreachable")


def _holds(parent: Any, key: Any) -> bool:
    return key in parent if isinstance(parent, Mapping) else 0 <= key < len(parent)


def _flow_node(value: Any) -> Any:
    """A mapping or list written in flow style, as the scenario files write distributions."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, Mapping):
        node = CommentedMap((k, _flow_node(v)) for k, v in value.items())
    elif isinstance(value, list):
        node = CommentedSeq(_flow_node(v) for v in value)
    else:
        return value
    node.fa.set_flow_style()
    return node


def _flow(value: Any) -> str:
    """A plain value as one line of YAML flow style (``{dist: lognormal, median: 12}``)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value) if not value or any(c in value for c in ":#{}[],'\"") else value
    if value is None:
        return "null"
    return json.dumps(value)


def _rewrite(problem: Problem, overrides: Sequence[tuple[str, list[Any]]]) -> Problem:
    """A problem inside an overridden value is reported against its ``--set``, not the file."""
    for dotted, index_path in overrides:
        target = format_path(index_path)
        if problem.path == target or problem.path.startswith((target + ".", target + "[")):
            suffix = problem.path[len(target):]
            message = problem.message
            if message.startswith("unknown key"):
                message = f"no such key '{index_path[-1] if not suffix else suffix.lstrip('.')}'" \
                          + message[len("unknown key"):]
            return Problem(f"--set {dotted}{suffix}", None, "", message)
        if target.startswith((problem.path + ".", problem.path + "[")) and \
                problem.message.startswith("unknown key"):
            name = problem.path.rsplit(".", 1)[-1]
            return Problem(f"--set {dotted}", None, "",
                           f"no such key '{name}'" + problem.message[len("unknown key"):])
    return problem


class ScenarioSource:
    """A scenario file from which variants with overrides are built and validated.

    The file is read and parsed once; each :meth:`variant` takes a deep copy of the parsed tree
    (line numbers included, so variants share nothing and report problems at the file's
    lines), applies the overrides and validates the result like the file itself.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = str(path)
        try:  # read once: the text validated is the text every variant parses again
            self.text = read_text_file(self.path)
        except UnreadableFile as exc:
            raise ScenarioError([Problem(self.file, None, "", str(exc))]) from None
        self.base = load_scenario(path, self.text)  # every problem of the file itself, as `validate` shows

    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def tree(self) -> Any:
        """A fresh copy of the file's parsed YAML tree (parsed on first use; a copy costs a
        quarter of parsing again)."""
        parsed = self.__dict__.get("_parsed")
        if parsed is None:
            parsed = self.__dict__["_parsed"] = read_yaml(self.text, self.file)
        return copy.deepcopy(parsed)

    def variant(self, overrides: Sequence[tuple[str, Any]] | Mapping[str, Any]) -> Scenario:
        """The scenario with ``(PATH, value)`` overrides applied (values as plain data)."""
        items = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
        if not items:
            return self.base
        tree = self.tree()
        applied: list[tuple[str, list[Any]]] = []
        for dotted, value in items:
            parent, key, index_path = _resolve(tree, dotted, create=True)
            parent[key] = copy.deepcopy(value)
            applied.append((dotted, index_path))
        try:
            return scenario_from_dict(tree, self.file, tree)
        except ScenarioError as exc:
            problems = list(dict.fromkeys(_rewrite(p, applied[::-1]) for p in exc.problems))
            raise ScenarioError(problems) from None

    def variant_text(self, overrides: Sequence[tuple[str, Any]]) -> str:
        """The file's text with ``(PATH, value)`` overrides written into it (its comments kept,
        the overrides listed in a comment at the top): the file of what a variant ran. The
        overrides are checked first (:meth:`variant`), so the text is a valid scenario."""
        items = list(overrides)
        self.variant(items)
        if not items:
            return self.text
        tree = self.tree()
        for dotted, value in items:
            parent, key, _ = _resolve(tree, dotted, create=True)
            was = to_plain(parent[key]) if _holds(parent, key) else None
            parent[key] = _flow_node(copy.deepcopy(value))
            if hasattr(parent, "yaml_add_eol_comment"):  # the file's own comment no longer fits
                note = "changed" if was is None else f"changed, was {_flow(was)}"
                parent.yaml_add_eol_comment(note, key)
        lines = [f"# {self.path.name} with these changes (v2vsim --set PATH=VALUE):"]
        lines += [f"#   {dotted}={_flow(to_plain(value))}" for dotted, value in items]
        return "\n".join(lines) + "\n" + dump_yaml(tree)

    def value_at(self, dotted: str) -> Any:
        """The value at ``dotted`` in the file (plain data); ScenarioError if it is not set."""
        tree = self.tree()
        parent, key, _ = _resolve(tree, dotted, create=False)
        try:
            return to_plain(parent[key])
        except (KeyError, IndexError):
            raise ScenarioError([Problem(f"--param {dotted}", None, "", "not set in the scenario file")]) from None


def load_with_overrides(path: str | Path, sets: Sequence[str]) -> Scenario:
    """``load_scenario`` with ``--set PATH=VALUE`` overrides (each value read as YAML)."""
    source = ScenarioSource(path)
    return source.variant(parse_sets(sets))


def parse_sets(sets: Sequence[str]) -> list[tuple[str, Any]]:
    """``["PATH=VALUE", ...]`` -> ``[(PATH, value), ...]`` with values read as YAML."""
    out = []
    for text in sets:
        dotted, raw = parse_assignment(text)
        out.append((dotted, parse_value(raw, dotted)))
    return out
