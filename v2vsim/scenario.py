"""The scenario contract: pydantic models and YAML loading with line numbers.

``load_scenario`` reads a YAML file safely (ruamel.yaml round-trip mode never constructs
arbitrary objects and keeps the line of every key), validates it strictly (unknown keys are
errors) and reports *every* problem as ``FILE:LINE: key.path: message`` in one
:class:`ScenarioError`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from . import distributions as _dists
from .distributions import DIST_NAMES, Distribution, DistributionSpec, Fixed, Never, no_bool

__all__ = [
    "Scenario",
    "Cohort",
    "Site",
    "Pathway",
    "Step",
    "ScenarioError",
    "Problem",
    "load_scenario",
    "scenario_from_dict",
    "scenario_to_yaml",
    "OUTCOME_BY_KIND",
    "STEP_KINDS",
    "WEEKDAYS",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
StepKind = Literal[
    "screen", "apheresis", "cryopreserve", "transport", "manufacture", "release",
    "conditioning", "delay", "infusion",
]
STEP_KINDS: tuple[str, ...] = StepKind.__args__  # type: ignore[attr-defined]

#: The outcome of a patient whose pathway ends with a failure of a step of this kind.
OUTCOME_BY_KIND = {
    "screen": "screen_failed",
    "apheresis": "collection_failed",
    "transport": "lost_in_transit",
    "manufacture": "manufacturing_failed",
    "release": "out_of_specification",
    "infusion": "product_expired",
}

#: Largest YAML document accepted, in bytes (a scenario is a few kilobytes).
MAX_FILE_BYTES = 2_000_000

# YAML `true`/`false` are never numbers here (pydantic would read them as 1 and 0).
NoBool = BeforeValidator(no_bool)
Probability = Annotated[float, NoBool, Field(ge=0, le=1, allow_inf_nan=False)]
NonNegative = Annotated[float, NoBool, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, NoBool, Field(gt=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_never(value: DistributionSpec) -> DistributionSpec:
    if isinstance(value, Never):
        raise ValueError("'never' is only allowed for disease clocks")
    return value


class OnFailure(_Model):
    retry_from: Name
    max_attempts: Annotated[int, NoBool, Field(ge=1, le=1000)]


class Step(_Model):
    name: Name
    kind: StepKind
    duration: Distribution = Field(default_factory=lambda: Fixed(value=0))
    site: Name | None = None
    reserve_from: Name | None = None
    starts_on: list[Weekday] | None = None
    failure_probability: Probability = 0.0
    on_failure: OnFailure | None = None
    cost: NonNegative = 0.0
    shelf_life: Positive | None = None

    _check_duration = field_validator("duration")(_not_never)

    # Field validators (not a model validator) so that the error points at the offending key.
    # Fields are validated in declaration order, so `kind` and `site` are in info.data unless
    # they were themselves invalid (then that error is reported instead).
    @field_validator("reserve_from")
    @classmethod
    def _reserve_needs_site(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "site" in info.data and info.data["site"] is None:
            raise ValueError("reserve_from needs a site on the same step")
        return value

    @field_validator("shelf_life")
    @classmethod
    def _shelf_life_on_infusion(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("kind", "infusion") != "infusion":
            raise ValueError(f"shelf_life is only allowed on the infusion step, not on a "
                             f"{info.data['kind']} step")
        return value


class Pathway(_Model):
    steps: list[Step] = Field(min_length=1)


class AfterInfusion(_Model):
    response_probability: Probability = 0.0
    icu_probability: Probability = 0.0


class Cohort(_Model):
    name: Name
    share: NonNegative = 1.0
    pathway: Name
    priority: Annotated[int, NoBool] = 0
    time_to_death: Distribution = Field(default_factory=Never)
    time_to_ineligible: Distribution = Field(default_factory=Never)
    after_infusion: AfterInfusion = Field(default_factory=AfterInfusion)


class Site(_Model):
    slots: Annotated[int, NoBool, Field(ge=1, le=1_000_000)]
    starts_on: list[Weekday] | None = None
    cost_per_use: NonNegative = 0.0
    fixed_cost_per_year: NonNegative = 0.0


class Arrivals(_Model):
    rate_per_year: Positive | None = None
    interarrival: Distribution | None = None
    schedule: list[NonNegative] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Arrivals":
        given = [k for k in ("rate_per_year", "interarrival", "schedule") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of rate_per_year, interarrival, schedule"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if isinstance(self.interarrival, Never):
            raise ValueError("interarrival cannot be 'never'")
        if self.interarrival is not None and self.interarrival.mean() <= 0:
            raise ValueError("interarrival must have a positive mean")
        return self


class Scenario(_Model):
    """A validated scenario. Build it with :func:`load_scenario`."""

    name: Name
    description: str | None = None
    start_date: dt.date = dt.date(2025, 1, 6)
    horizon_days: Annotated[float, NoBool, Field(gt=0, le=36500 * 4, allow_inf_nan=False)]
    drain_days: Annotated[float, NoBool, Field(ge=0, le=36500 * 4, allow_inf_nan=False)] = 3650.0
    replications: Annotated[int, NoBool, Field(ge=1, le=1_000_000)] = 100
    seed: Annotated[int, NoBool, Field(ge=0, lt=2**63)] = 12345
    currency: Name = "USD"
    arrivals: Arrivals
    cohorts: list[Cohort] = Field(min_length=1)
    sites: dict[Name, Site] = Field(default_factory=dict)
    pathways: dict[Name, Pathway] = Field(min_length=1)

    def cohort_shares(self) -> list[float]:
        total = sum(c.share for c in self.cohorts)
        return [c.share / total for c in self.cohorts]

    def expected_referrals(self) -> float:
        """Expected referrals per replication (for sizing and refusing absurd runs)."""
        arr = self.arrivals
        if arr.rate_per_year is not None:
            return arr.rate_per_year * self.horizon_days / 365.0
        if arr.schedule is not None:
            return float(sum(1 for t in arr.schedule if t < self.horizon_days))
        return self.horizon_days / arr.interarrival.mean()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioError(ValueError):
    """A scenario breaks the contract; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------- YAML


class _Constructor(RoundTripConstructor):
    """Round-trip constructor that reports unreadable scalars with their line."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
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


# Tags a scenario may carry explicitly (`!!str 5`); anything else (`!!python/object:...`,
# `!custom`) is refused rather than read as plain data.
_CORE_TAGS = frozenset(
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "omap", "merge")
)


def _tag_problems(tree: Any) -> list[tuple[list[Any], str]]:
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


def _to_plain(node: Any) -> Any:
    """ruamel containers and scalar subclasses -> plain dict/list/str/int/float/bool."""
    if isinstance(node, Mapping):
        return {str(k) if not isinstance(k, (str, int, float, bool)) else k: _to_plain(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_to_plain(v) for v in node]
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


def _line_of(tree: Any, path: Sequence[Any]) -> int | None:
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


_TAGS = frozenset(("number", "never", *DIST_NAMES))


def _clean_loc(raw: Any, loc: Sequence[Any]) -> list[Any]:
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
        elif isinstance(key, str) and key.startswith("function-"):
            continue
        else:
            out.append(key)
            node = None
    return out


def _format_path(path: Sequence[Any]) -> str:
    text = ""
    for key in path:
        if isinstance(key, int):
            text += f"[{key}]"
        else:
            text += ("." if text else "") + str(key)
    return text


_FIELDS: dict[type[BaseModel], set[str]] = {}


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


def _message(err: Mapping[str, Any], raw: Any, path: list[Any]) -> str:
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
    msg = msg.replace("Input should be", "must be").replace("Value should be", "must be")
    if isinstance(err.get("input"), bool) and kind == "value_error":
        return msg  # the message already says true/false
    if kind == "literal_error" and isinstance(err.get("input"), str):
        allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(err["input"], allowed, n=1, cutoff=0.6)
        if close:
            return f"{msg} (got {err['input']!r}; did you mean '{close[0]}'?)"
    if kind not in ("missing",) and "input" in err and not isinstance(err["input"], (dict, list)):
        shown = repr(err["input"])
        if len(shown) <= 60 and kind != "extra_forbidden":
            msg += f" (got {shown})"
    return msg


def _reference_problems(raw: Any) -> list[tuple[list[Any], str]]:
    """Cross-reference checks on the raw data, defensive about its shape."""
    out: list[tuple[list[Any], str]] = []
    if not isinstance(raw, Mapping):
        return out
    sites = raw.get("sites") if isinstance(raw.get("sites"), Mapping) else {}
    pathways = raw.get("pathways") if isinstance(raw.get("pathways"), Mapping) else {}
    cohorts = raw.get("cohorts")
    if isinstance(cohorts, list):
        names: set[str] = set()
        for i, cohort in enumerate(cohorts):
            if not isinstance(cohort, Mapping):
                continue
            name = cohort.get("name")
            if isinstance(name, str):
                if name in names:
                    out.append((["cohorts", i, "name"], f"duplicate cohort name '{name}'"))
                names.add(name)
            pw = cohort.get("pathway")
            if isinstance(pw, str) and pathways and pw not in pathways:
                out.append((["cohorts", i, "pathway"], _missing("pathway", pw, pathways)))
        shares = [c.get("share", 1.0) for c in cohorts if isinstance(c, Mapping)]
        # Negative shares are reported on their own key; here only all-zero shares.
        if cohorts and all(isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0
                           for s in shares):
            if shares and sum(shares) <= 0:
                out.append((["cohorts"], "cohort shares sum to zero"))
    for pname, pathway in pathways.items():
        if not isinstance(pathway, Mapping) or not isinstance(pathway.get("steps"), list):
            continue
        steps = pathway["steps"]
        index: dict[str, int] = {}
        for j, step in enumerate(steps):
            if not isinstance(step, Mapping):
                continue
            name = step.get("name")
            base = ["pathways", pname, "steps", j]
            if isinstance(name, str):
                if name in index:
                    out.append((base + ["name"], f"duplicate step name '{name}' in pathway '{pname}'"))
                else:
                    index[name] = j
            site = step.get("site")
            if isinstance(site, str) and site not in sites:
                out.append((base + ["site"], _missing("site", site, sites)))
            res = step.get("reserve_from")
            if isinstance(res, str):
                k = index.get(res)
                if k is None or k == j:
                    if any(isinstance(s, Mapping) and s.get("name") == res for s in steps[j + 1:]):
                        out.append((base + ["reserve_from"],
                                    f"'{res}' comes after this step; reserve_from must name an earlier step"))
                    elif k == j:
                        out.append((base + ["reserve_from"], "reserve_from must name an earlier step, not this one"))
                    else:
                        out.append((base + ["reserve_from"], _missing("step", res, index, pname)))
            onf = step.get("on_failure")
            if isinstance(onf, Mapping) and isinstance(onf.get("retry_from"), str):
                target = onf["retry_from"]
                if target not in index:
                    later = [s.get("name") for s in steps[j + 1:] if isinstance(s, Mapping)]
                    if target in later:
                        out.append((base + ["on_failure", "retry_from"],
                                    f"'{target}' comes after this step; retry_from must name this or an earlier step"))
                    else:
                        out.append((base + ["on_failure", "retry_from"],
                                    _missing("step", target, index, pname)))
        kinds = [s.get("kind") for s in steps if isinstance(s, Mapping)]
        n_inf = kinds.count("infusion")
        if steps and len(kinds) == len(steps):
            if n_inf != 1:
                out.append((["pathways", pname, "steps"],
                            f"a pathway needs exactly one infusion step, found {n_inf}"))
            elif kinds[-1] != "infusion":
                out.append((["pathways", pname, "steps"], "the infusion step must be the last step"))
    return out


def _missing(what: str, name: str, known: Iterable[str], pathway: str | None = None) -> str:
    known = list(known)
    where = f" in pathway '{pathway}'" if pathway else ""
    msg = f"no {what} named '{name}'{where}"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        msg += f" (did you mean '{close[0]}'?)"
    elif known:
        msg += f" (known: {', '.join(known)})"
    return msg


def scenario_from_dict(data: Any, file: str = "<scenario>", tree: Any = None) -> Scenario:
    """Validate plain data (as loaded from YAML) into a :class:`Scenario`."""
    raw = _to_plain(data)
    tree = data if tree is None else tree
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise ScenarioError([Problem(file, 1, "", "a scenario must be a mapping of keys to values")])
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = _clean_loc(raw, err["loc"])
            problems.append(Problem(file, _line_of(tree, path), _format_path(path),
                                    _message(err, raw, path)))
    for path, msg in _reference_problems(raw):
        problems.append(Problem(file, _line_of(tree, path), _format_path(path), msg))
    tagged = _tag_problems(tree)
    if tagged:
        # The tag is the problem; what pydantic says about the tagged value is noise.
        prefixes = [_format_path(path) for path, _ in tagged]
        problems = [p for p in problems if p.message.startswith("unknown key")
                    or not any(p.path == q or p.path.startswith((q + ".", q + "[")) for q in prefixes)]
        problems += [Problem(file, _line_of(tree, path), _format_path(path), msg)
                     for path, msg in tagged]
    if problems:
        # One line per problem, in file order.
        unique = list(dict.fromkeys(problems))
        unique.sort(key=lambda p: (p.line if p.line is not None else 0))
        raise ScenarioError(unique)
    assert scenario is not None
    return scenario


def load_scenario(path: str | Path, text: str | None = None) -> Scenario:
    """Load and validate a scenario file; raises :class:`ScenarioError` listing every problem."""
    file = str(path)
    if text is None:
        try:
            size = Path(path).stat().st_size
            if size > MAX_FILE_BYTES:
                raise ScenarioError([Problem(file, None, "", f"file is larger than {MAX_FILE_BYTES} bytes")])
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError([Problem(file, None, "", "no such file")]) from None
        except IsADirectoryError:
            raise ScenarioError([Problem(file, None, "", "is a directory, not a scenario file")]) from None
        except UnicodeDecodeError as exc:
            raise ScenarioError([Problem(file, None, "", f"not UTF-8 text ({exc.reason})")]) from None
        except OSError as exc:
            raise ScenarioError([Problem(file, None, "", f"cannot read: {exc.strerror}")]) from None
    tree = read_yaml(text, file)
    if tree is None:
        raise ScenarioError([Problem(file, 1, "", "the file is empty")])
    return scenario_from_dict(tree, file, tree)


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
