"""The JSON Schema of scenario files (``v2vsim schema``), with every bound the loader enforces on
a single value written in standard keywords, so that an editor refuses what the loader refuses.

pydantic's ``model_json_schema`` is the starting point: it keeps the descriptions (they are the
documentation) and the shape of every model. Two kinds of rule are lost on the way, and this
module puts them back by post-processing the generated schema, in one place:

* **Numeric bounds after a ``BeforeValidator``.** Every number of the contract refuses YAML
  ``true``/``false`` with a ``BeforeValidator`` placed before its ``Field(ge=...)``; pydantic then
  enforces the bound with an after-validator and writes it into the JSON Schema under its own
  names (``ge``, ``gt``, ``le``, ``lt``), which JSON Schema validators ignore. They are renamed to
  ``minimum``, ``exclusiveMinimum``, ``maximum`` and ``exclusiveMaximum`` here. Fixing it at the
  source would mean reordering some forty annotations in four modules (``Field`` before the
  validator), which changes the core validation schema of every number and comes undone the next
  time one is written in the natural order; the rename covers every number, present and future,
  and ``tests/test_json_schema.py`` asserts that no pydantic-only keyword survives.
* **The pattern of a mapping's keys** (names without control characters) is written by pydantic
  as ``patternProperties``, which lets any other key through; it is moved to ``propertyNames``.
* **Rules written as validators.** Model validators (exactly one of ``rate_per_year``,
  ``interarrival``, ``schedule``; ``mean`` or ``median``; a closure by dates or by days; ...),
  field validators (``never`` only on disease clocks and survival, ``shelf_life`` only on the
  infusion step, utilities from -0.6 to 1), the distribution union's need for ``dist`` and the
  file forms the loader reads before validating (a life table named by its CSV) are invisible to
  pydantic's generator. ``json_schema_extra`` or ``WithJsonSchema`` on each model would put these
  JSON-only copies of the rules into the four contract modules, mixed with the validation they
  mirror; here they sit together, each with a ``$comment`` naming the check it mirrors, and the
  test holds each one against the loader's verdict.

What JSON Schema cannot say is left to the loader and listed in the test: comparisons between
values (``low <= high``, ``p90 > median``, ``to`` after ``from``, a schedule going forward),
references between keys (a step's site, ``reserve_from`` naming an earlier step, a rule's two
pathways), checks across sections (the economics section and the cohorts' survival), the engine's
preconditions and non-finite numbers (JSON has no ``.inf``). A number written as a quoted string
(``slots: "3"``) is refused by both (the loader says "write 3 without quotes"); the schema is
stricter than the loader in one way on purpose: a date written other than ``YYYY-MM-DD`` is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from .distributions import MAX_PARAMETER
from .economics import UTILITY_MIN
from .schema import Scenario

__all__ = ["DRAFT", "scenario_json_schema", "validation_case_json_schema", "standard_bounds"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: pydantic's names for numeric bounds -> JSON Schema's.
_BOUND_KEYWORDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

# Distribution fields by whether `never` is allowed (the field validators `_not_never` and the
# arrivals' positive-mean check). A distribution field in neither set is an error: say where it goes.
_NEVER_ALLOWED = frozenset({("Cohort", "time_to_death"), ("Cohort", "time_to_ineligible"),
                            ("AfterInfusion", "survival_responder"),
                            ("AfterInfusion", "survival_non_responder")})
_NEVER_REFUSED = frozenset({("Step", "duration"), ("Bridging", "duration"),
                            ("Bridging", "toxicity_delay"), ("Cohort", "age"),
                            ("BacklogEntry", "waited_days")})
_POSITIVE_MEAN = frozenset({("Arrivals", "interarrival")})


# ------------------------------------------------------------------------------- walking schemas
def _subschemas(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The schemas directly inside ``node`` (not its property names, defaults or examples)."""
    for key in ("properties", "$defs", "patternProperties", "dependentSchemas"):
        yield from (v for v in node.get(key, {}).values() if isinstance(v, dict))
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        yield from (v for v in node.get(key, []) if isinstance(v, dict))
    for key in ("items", "additionalProperties", "not", "if", "then", "else", "contains",
                "propertyNames", "unevaluatedItems", "unevaluatedProperties"):
        if isinstance(node.get(key), dict):
            yield node[key]


def _schemas(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``node`` and every schema nested in it."""
    yield node
    for sub in _subschemas(node):
        yield from _schemas(sub)


def standard_bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """Rename pydantic's ``ge``/``gt``/``le``/``lt`` to JSON Schema's keywords, in place, and give
    every ``format: date`` string a pattern (``format`` is only an annotation in 2020-12)."""
    for node in _schemas(schema):
        for old, new in _BOUND_KEYWORDS.items():
            if old in node and isinstance(node[old], (int, float)) and not isinstance(node[old], bool):
                node[new] = node.pop(old)
        if node.get("format") == "date" and node.get("type") == "string":
            node.setdefault("pattern", _DATE_PATTERN)
        _key_pattern(node)
    return schema


def _key_pattern(node: dict[str, Any]) -> None:
    """pydantic writes the pattern of a mapping's keys (``dict[Name, Site]``) as the only entry of
    ``patternProperties``, which leaves a key that does not match it unchecked; the pattern
    belongs in ``propertyNames`` and the value schema in ``additionalProperties``."""
    patterns = node.get("patternProperties")
    if not isinstance(patterns, dict) or len(patterns) != 1 or "additionalProperties" in node:
        return
    (pattern, value), = patterns.items()
    del node["patternProperties"]
    node.setdefault("propertyNames", {})["pattern"] = pattern
    node["additionalProperties"] = value


# ------------------------------------------------------------------------------------ rule helpers
def _given(*keys: str) -> dict[str, Any]:
    """The keys are present and not null (how the validators test ``is not None``)."""
    return {"required": list(keys), "properties": {k: {"not": {"type": "null"}} for k in keys}}


def _absent(*keys: str) -> dict[str, Any]:
    """The keys are missing or null."""
    return {"properties": {k: {"type": "null"} for k in keys}}


def _one_form(forms: list[tuple[str, ...]], comment: str) -> dict[str, Any]:
    """Exactly one of the groups of keys is given in full, and no key of another group."""
    everything = [k for form in forms for k in form]
    branches = []
    for form in forms:
        given, absent = _given(*form), _absent(*(k for k in everything if k not in form))
        branches.append({"required": given["required"],
                         "properties": {**given["properties"], **absent["properties"]}})
    return {"$comment": comment, "oneOf": branches}


def _add(node: dict[str, Any], rule: dict[str, Any]) -> None:
    node.setdefault("allOf", []).append(rule)


def _branch(prop: dict[str, Any], kind: str) -> dict[str, Any]:
    """The branch of ``X | None`` (``anyOf``) or of a union (``oneOf``) of JSON type ``kind``."""
    if prop.get("type") == kind:
        return prop
    for branch in prop.get("anyOf", []) + prop.get("oneOf", []):
        if branch.get("type") == kind:
            return branch
    raise KeyError(f"no {kind} branch in {prop}")


def _def(defs: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in defs:
        raise KeyError(f"the generated schema has no $defs/{name}: update v2vsim.scenario.json_schema")
    return defs[name]


# ---------------------------------------------------------------------------------- distributions
def _is_union(node: Any) -> bool:
    return isinstance(node, dict) and any(b.get("$ref") == "#/$defs/Fixed" for b in node.get("oneOf", []))


def _distributions(defs: dict[str, Any]) -> None:
    """One definition per distribution form, and every distribution field pointing at the one
    that fits it."""
    refs: list[dict[str, Any]] | None = None
    for model, node in defs.items():
        for name, prop in node.get("properties", {}).items():
            # The union itself, ``X | None`` (anyOf) or a union with another form (bridging's
            # ``until_infusion``, oneOf).
            holders = [prop] + [b for b in prop.get("anyOf", []) + prop.get("oneOf", []) if isinstance(b, dict)]
            for holder in holders:
                if not _is_union(holder):
                    continue
                branches = holder.pop("oneOf")
                if refs is None:
                    refs = [b for b in branches if "$ref" in b]
                    if [b for b in branches if "$ref" not in b] != [
                            {"maximum": MAX_PARAMETER, "minimum": 0, "type": "number"},
                            {"const": "never", "type": "string"}]:
                        raise ValueError(f"unexpected distribution union: {branches}")
                key = (model, name)
                target = ("DistributionOrNever" if key in _NEVER_ALLOWED else "Distribution"
                          if key in _NEVER_REFUSED else "InterarrivalDistribution"
                          if key in _POSITIVE_MEAN else None)
                if target is None:
                    raise ValueError(f"{model}.{name} is a distribution: say in "
                                     "v2vsim.scenario.json_schema whether it may be 'never'")
                holder["$ref"] = f"#/$defs/{target}"
    assert refs is not None, "no distribution in the scenario schema"
    number = {"type": "number", "minimum": 0, "maximum": MAX_PARAMETER, "description": "A fixed value."}
    never = {"const": "never", "description": "The event never happens."}
    forms = ("A plain number (a fixed value) or {dist: NAME, ...} with that distribution's keys: "
             "fixed {value}, uniform {low, high}, triangular {low, mode, high}, exponential "
             "{mean | median}, lognormal {median, p90 | mean, sd}, gamma {mean, sd}, weibull "
             "{shape, scale | median}, empirical {values, weights?}.")
    defs["Distribution"] = {"description": forms, "oneOf": [number, *refs]}
    defs["DistributionOrNever"] = {"description": forms + " Or 'never' (disease clocks and "
                                   "survival only).", "oneOf": [number, never, *refs]}
    positive = {"Fixed": {"properties": {"value": {"exclusiveMinimum": 0}}},
                "Uniform": {"properties": {"high": {"exclusiveMinimum": 0}}},
                "Triangular": {"properties": {"high": {"exclusiveMinimum": 0}}},
                "Empirical": {"properties": {"values": {"contains": {"exclusiveMinimum": 0}}}}}
    defs["InterarrivalDistribution"] = {
        "description": forms + " The mean must be positive ('never' is not allowed).",
        "$comment": "Arrivals._exactly_one: interarrival cannot be 'never' and must have a positive mean",
        "oneOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": MAX_PARAMETER,
                   "description": "A fixed value."}]
        + [{**ref, **positive.get(ref["$ref"].rsplit("/", 1)[1], {})} for ref in refs]}

    fixed = _def(defs, "Fixed")
    fixed["required"] = ["dist"] + [k for k in fixed.get("required", []) if k != "dist"]
    fixed["$comment"] = "the distribution union picks the form by `dist`, so a mapping must name it"
    _add(_def(defs, "Exponential"), _one_form([("mean",), ("median",)], "Exponential._check"))
    _add(_def(defs, "Lognormal"), _one_form([("median", "p90"), ("mean", "sd")], "Lognormal._check"))
    _add(_def(defs, "Weibull"), _one_form([("scale",), ("median",)], "Weibull._check"))
    _branch(_def(defs, "Empirical")["properties"]["weights"], "array")["contains"] = {
        "exclusiveMinimum": 0, "$comment": "Empirical._check: weights must sum to a positive number"}


# --------------------------------------------------------------------------------- scenario rules
def _scenario_rules(schema: dict[str, Any], defs: dict[str, Any]) -> None:
    schema["properties"]["cohorts"]["contains"] = {
        "$comment": "references: cohort shares must not sum to zero (share defaults to 1)",
        "anyOf": [{"not": {"required": ["share"]}}, {"properties": {"share": {"exclusiveMinimum": 0}}}]}
    _add(_def(defs, "Arrivals"), _one_form([("rate_per_year",), ("interarrival",), ("schedule",)],
                                           "Arrivals._exactly_one"))
    _add(_def(defs, "RouteWhen"), _one_form([("waiting_more_than",), ("expected_wait_more_than_days",)],
                                            "RouteWhen._exactly_one"))
    _add(_def(defs, "SlotChange"), _one_form([("from",), ("from_day",)], "SlotChange._one_start"))
    _add(_def(defs, "Closure"), _one_form([("from", "to"), ("from_day", "to_day")], "Closure._one_form"))
    _branch(_def(defs, "Site")["properties"]["slots"], "array")["contains"] = {
        "$comment": "references: a schedule whose every entry has 0 slots could never be used",
        "required": ["slots"], "properties": {"slots": {"exclusiveMinimum": 0}}}

    step = _def(defs, "Step")
    _branch(step["properties"]["starts_on"], "array")["minItems"] = 1  # compile: never starts
    _add(step, {"$comment": "Step._shelf_life_on_infusion",
                "if": {"required": ["kind"], "properties": {"kind": {"not": {"const": "infusion"}}}},
                "then": _absent("shelf_life")})
    _add(step, {"$comment": "Step._reserve_needs_site", "if": _given("reserve_from"), "then": _given("site")})
    _add(step, {"$comment": "Step._exception_on_release",
                "if": {"required": ["kind"], "properties": {"kind": {"not": {"const": "release"}}}},
                "then": _absent("out_of_spec_infusion")})
    _def(defs, "Pathway")["properties"]["steps"].update({
        "$comment": "references: a pathway needs exactly one infusion step (the last one)",
        "contains": {"required": ["kind"], "properties": {"kind": {"const": "infusion"}}},
        "minContains": 1, "maxContains": 1})

    _add(_def(defs, "Bridging"), {
        "$comment": "Bridging._delay_with_probability: toxicity_probability > 0 needs a toxicity_delay",
        "if": {"required": ["toxicity_probability"],
               "properties": {"toxicity_probability": {"exclusiveMinimum": 0}}},
        "then": _given("toxicity_delay")})
    _add(_def(defs, "Bridging"), {
        "$comment": "Bridging._toxicity_needs_an_end: no toxicity with duration until_infusion",
        "if": {"required": ["duration"], "properties": {"duration": {"const": "until_infusion"}}},
        "then": {"properties": {"toxicity_probability": {"maximum": 0}}}})
    _add(_def(defs, "AfterInfusion"), {
        "$comment": "AfterInfusion._survival_together (follow_up_days may come from economics)",
        "anyOf": [_given("survival_responder", "survival_non_responder"),
                  _absent("survival_responder", "survival_non_responder", "follow_up_days")]})

    economics = _def(defs, "Economics")
    economics["properties"]["life_table"]["anyOf"].insert(0, {
        "type": "string", "minLength": 1,
        "description": "Path of the CSV (age,qx or age,sex,qx), relative to the scenario file; "
                       "read when the scenario is loaded."})
    _add(economics, {"$comment": "Economics._lifetime_needs_table",
                     "if": {"required": ["follow_up_years"],
                            "properties": {"follow_up_years": {"const": "lifetime"}}},
                     "then": _given("life_table")})
    for prop in _def(defs, "Utilities")["properties"].values():
        _branch(prop, "number").update({"minimum": UTILITY_MIN, "maximum": 1})
    _def(defs, "LifeTable")["properties"]["qx"]["anyOf"] = [
        {"required": ["all"], "maxProperties": 1}, {"required": ["male", "female"], "maxProperties": 2}]

    uncertain = _def(defs, "Uncertain")
    uncertain["properties"]["path"]["pattern"] = r"^[^.]+(\.[^.]+)*$"  # no empty key
    _add(uncertain, {"$comment": "Uncertain._check: bounds do not apply to a fixed value",
                     "if": {"required": ["distribution"],
                            "properties": {"distribution": {"required": ["fixed"]}}},
                     "then": _absent("bounds")})
    spec = _def(defs, "UncertainDistribution")
    names = [k for k in spec["properties"] if k != "fixed"]
    branches = [{"required": [n], "not": {"required": ["fixed"]},
                 "properties": {n: {"not": {"type": "null"}}, **_absent(*(m for m in names if m != n))["properties"]}}
                for n in names]
    _add(spec, {"$comment": "UncertainDistribution._exactly_one ('fixed' counts even when null)",
                "oneOf": branches + [{"required": ["fixed"], **_absent(*names)}]})
    beta = _def(defs, "BetaSpec")
    _add(beta, _one_form([("alpha", "beta"), ("mean", "sd")], "BetaSpec._one_form"))
    _branch(beta["properties"]["mean"], "number").update({"exclusiveMinimum": 0, "exclusiveMaximum": 1})
    _branch(beta["properties"]["sd"], "number")["exclusiveMinimum"] = 0
    _add(_def(defs, "LognormalSpec"), _one_form([("mean", "sd"), ("median", "ci95")],
                                                "LognormalSpec._one_form"))


def _document(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = standard_bounds(model.model_json_schema(by_alias=True))
    schema.pop("title", None)
    return {"$schema": DRAFT, "title": title, **schema}


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a scenario file, for editors (``v2vsim schema``)."""
    schema = _document(Scenario, "v2vsim scenario")
    defs = schema["$defs"]
    _distributions(defs)
    _scenario_rules(schema, defs)
    return schema


def validation_case_json_schema(case: type[BaseModel]) -> dict[str, Any]:
    """JSON Schema of a validation case file, given the case model
    (:class:`v2vsim.scenario.cases.Case`, which imports this module's layer, not the reverse)."""
    schema = _document(case, "v2vsim validation case")
    defs = schema["$defs"]
    _add(_def(defs, "Observed"), _one_form([("k", "n"), ("value",)], "Observed._shape"))
    _add(_def(defs, "SensitivityInput"), {
        "$comment": "SensitivityInput._x: values that are not numbers need x",
        "if": {"required": ["values"], "properties": {"values": {"contains": {"not": {"type": "number"}}}}},
        "then": _given("x")})
    return schema
