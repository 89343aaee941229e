"""Pydantic's validation errors as our messages: the data's own key path and plain words.

pydantic reports locations with its union tags in them (``fixed``, ``pathway-rule``) and says
"Input should be"; a scenario's author wants ``steps[2].duration: must be at least 0 (got -1)``
and, for an unknown key, the key they probably meant.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from . import distributions as _dists
from .distributions import DIST_NAMES
from .schema import Scenario

__all__ = ["clean_loc", "error_message"]

_DIST_TAGS = frozenset(("number", *DIST_NAMES))
_TAGS = frozenset(("number", "never", *DIST_NAMES, "pathway-name", "pathway-rule",
                    "slot-count", "slot-schedule", "course-until", "course-length"))


def clean_loc(raw: Any, loc: Sequence[Any]) -> list[Any]:
    """Drop pydantic's union tags from an error location, keeping the data's own keys."""
    out: list[Any] = []
    node = raw
    for key in loc:
        if isinstance(node, Mapping) and key in node:
            out.append(key)
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            out.append(key)
            node = node[key]
        elif isinstance(key, str) and key in _TAGS:
            continue
        elif isinstance(key, str) and (key.startswith("function-") or key == "[key]"):
            continue  # "[key]": the error is about a mapping's key itself, named by the path
        else:
            out.append(key)
            node = None
    return out


def _known_keys(path: Sequence[Any]) -> list[str]:
    """Keys allowed where an unknown key was found (for "did you mean")."""
    import typing

    model: Any = Scenario
    skip_name = False  # the next key is a name in a dict of models (sites.NAME)
    for key in path[:-1]:
        if skip_name or isinstance(key, int):
            skip_name = False
            continue
        fields = getattr(model, "model_fields", {})
        by_alias = {f.alias or n: f for n, f in fields.items()}
        if key not in by_alias:
            return []
        ann = by_alias[key].annotation
        skip_name = typing.get_origin(ann) is dict
        model = _inner_model(ann)
        if model is None:
            return []
    fields = getattr(model, "model_fields", {})
    return [f.alias or n for n, f in fields.items()]


def _inner_model(ann: Any) -> Any:
    import types
    import typing

    origin = typing.get_origin(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if origin in (list, dict):
        return _inner_model(typing.get_args(ann)[-1])
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(ann):
            model = _inner_model(arg)
            if model is not None:
                return model
    if origin is typing.Annotated:
        return _inner_model(typing.get_args(ann)[0])
    return None


_DIST_MODELS: dict[str, type[BaseModel]] = {
    "fixed": _dists.Fixed, "uniform": _dists.Uniform, "triangular": _dists.Triangular,
    "exponential": _dists.Exponential, "lognormal": _dists.Lognormal, "gamma": _dists.Gamma,
    "weibull": _dists.Weibull, "empirical": _dists.Empirical,
}


def _node_at(raw: Any, path: Sequence[Any]) -> Any:
    node = raw
    for key in path:
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return None
    return node


_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def error_message(err: Mapping[str, Any], raw: Any, path: list[Any]) -> str:
    """The message for one pydantic error ``err`` at ``path`` (from :func:`clean_loc`) of ``raw``."""
    kind = err["type"]
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "extra_forbidden":
        parent = _node_at(raw, path[:-1])
        if isinstance(parent, Mapping) and parent.get("dist") in _DIST_MODELS:
            model = _DIST_MODELS[parent["dist"]]
            known = [f.alias or n for n, f in model.model_fields.items() if n != "dist"]
        else:
            known = _known_keys(path)
        msg = "unknown key"
        if known:
            close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6)
            msg += f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(known)})"
    elif kind == "missing":
        msg = "required key is missing"
    elif kind == "string_pattern_mismatch" and isinstance(err.get("input"), str):
        text, pattern = err["input"], str(err.get("ctx", {}).get("pattern", ""))
        # The first character the pattern refuses (a control character: NAME_PATTERN, TEXT_PATTERN).
        at = next((i for i, ch in enumerate(text) if not re.fullmatch(pattern, ch)), None)
        if at is not None:
            return (f"must not contain control characters (U+{ord(text[at]):04X} at character "
                    f"{at + 1} of {text[:60]!r})")
    elif kind in ("too_short", "string_too_short") and err.get("ctx", {}).get("min_length") == 1:
        msg = "must not be empty"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = "must be a mapping of keys to values"
    elif kind in _BOUNDS and isinstance(err.get("ctx"), Mapping):
        # pydantic shows large integer bounds as floats (2**63 as 9223372036854776000).
        ctx_key, words = _BOUNDS[kind]
        bound = err["ctx"][ctx_key]
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        msg = f"must be {words} {bound!r}"
        in_distribution = any(k in _DIST_TAGS for k in err.get("loc", ()))
        if in_distribution and bound in _dists.BOUND_REASONS:
            msg += f": {_dists.BOUND_REASONS[bound]}"
    msg = msg.replace("Input should be", "must be").replace("Value should be", "must be")
    if isinstance(err.get("input"), bool) and kind == "value_error":
        return msg  # the message already says true/false
    if kind == "literal_error" and isinstance(err.get("input"), str):
        allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(err["input"], allowed, n=1, cutoff=0.6)
        if close:
            return f"{msg} (got {err['input']!r}; did you mean '{close[0]}'?)"
    if kind == "value_error" and (err.get("input") is None or str(err.get("input")) in msg):
        return msg  # our own checks name the value already (or there is none: a default)
    if kind not in ("missing",) and "input" in err and not isinstance(err["input"], (dict, list)):
        shown = str(err["input"]) if isinstance(err["input"], dt.date) else repr(err["input"])
        if len(shown) <= 60 and kind != "extra_forbidden":
            msg += f" (got {shown})"
    return msg
