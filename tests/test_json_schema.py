"""The JSON Schema of ``v2vsim schema`` refuses what the loader refuses, judged by the loader.

Every bundled scenario passes both. Broken variants of bundled scenarios (curated, and swept from
the pydantic models: every numeric bound just outside and just inside, a wrong type for every
number, a wrong word for every choice, an unknown key in and a missing required key of every
model, ``never`` in every distribution field) get the same verdict from ``jsonschema`` (draft
2020-12, formats checked) as from :func:`v2vsim.scenario.scenario_from_dict`, and the loader's
problem names the edited key. What JSON Schema cannot say is listed in ``LOADER_ONLY``: the schema
accepts each of those files and the loader refuses it, so that the gap is written down and cannot
grow without a test changing.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types as at
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from v2vsim.scenario import ScenarioError, read_yaml, scenario_from_dict, to_plain
from v2vsim.scenario.cases import case_json_schema, load_case
from v2vsim.scenario.distributions import _Number
from v2vsim.scenario.economics import UTILITY_MIN, Utilities
from v2vsim.scenario.errors import format_path
from v2vsim.scenario.json_schema import scenario_json_schema
from v2vsim.scenario.schema import Scenario
from v2vsim.scenario.uncertain import BetaSpec

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted([*ROOT.glob("scenarios/*.yaml"), *ROOT.glob("validation/scenarios/*.yaml"),
                  ROOT / "benchmarks" / "stress_1m.yaml"])
SCHEMA = scenario_json_schema()
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)

L, E, H, S = "scenarios/local.yaml", "scenarios/economics_local.yaml", "scenarios/hybrid.yaml", \
    "scenarios/slot_shortage.yaml"
W, WS = "scenarios/waitlist_fifo.yaml", "scenarios/waitlist_sickest.yaml"
DELETE = object()
Path_ = tuple[Any, ...]


# ------------------------------------------------------------------------------------------ helpers
def _plain(file: str) -> dict[str, Any]:
    text = (ROOT / file).read_text(encoding="utf-8")
    return to_plain(read_yaml(text, file))


_BASES = {str(p.relative_to(ROOT)): _plain(str(p.relative_to(ROOT))) for p in BUNDLED}


def as_json(value: Any) -> Any:
    """The data as an editor's YAML language server sees it: dates are strings."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def edited(file: str, *edits: tuple[Path_, Any]) -> dict[str, Any]:
    """A copy of a bundled scenario with ``(path, value)`` set (``DELETE``: the key removed)."""
    data = copy.deepcopy(_BASES[file])
    for path, value in edits:
        node = data
        for key in path[:-1]:
            node = node[key]
        if value is DELETE:
            del node[path[-1]]
        elif isinstance(node, list) and path[-1] == len(node):
            node.append(copy.deepcopy(value))
        else:
            node[path[-1]] = copy.deepcopy(value)
    return data


def schema_errors(data: dict[str, Any]) -> list[str]:
    return [f"{format_path(list(e.absolute_path)) or '(top)'}: {e.message[:200]}"
            for e in VALIDATOR.iter_errors(as_json(data))]


def loader_problems(data: dict[str, Any], file: str) -> list[str] | None:
    """The loader's problem paths, or None when it accepts the data."""
    try:
        scenario_from_dict(copy.deepcopy(data), str(ROOT / file))
    except ScenarioError as exc:
        return [p.path for p in exc.problems]
    return None


def _related(a: str, b: str) -> bool:
    """One key path is the other or lies inside it."""
    def inside(x: str, y: str) -> bool:
        return x == y or (y == "" and x != "") or x.startswith((y + ".", y + "["))
    return inside(a, b) or inside(b, a)


def assert_both_refuse(data: dict[str, Any], file: str, where: Path_) -> None:
    problems = loader_problems(data, file)
    assert problems is not None, "the loader accepts it"
    key = format_path(list(where))
    assert any(_related(p, key) for p in problems), f"the loader refuses it elsewhere: {problems}"
    assert schema_errors(data), f"the schema accepts what the loader refuses at {problems}"


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["title"] == "v2vsim scenario"


KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "$comment", "$anchor", "allOf", "anyOf", "oneOf", "not",
    "if", "then", "else", "dependentSchemas", "prefixItems", "items", "contains", "properties",
    "patternProperties", "additionalProperties", "propertyNames", "type", "enum", "const",
    "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
    "maxProperties", "minProperties", "required", "dependentRequired", "title", "description",
    "default", "deprecated", "examples", "format",
}


def _schema_nodes(node: Any) -> typing.Iterator[dict[str, Any]]:
    if not isinstance(node, dict):
        return
    yield node
    for key, value in node.items():
        if key in ("properties", "$defs", "patternProperties", "dependentSchemas"):
            for sub in value.values():
                yield from _schema_nodes(sub)
        elif key in ("allOf", "anyOf", "oneOf", "prefixItems"):
            for sub in value:
                yield from _schema_nodes(sub)
        elif key in ("items", "additionalProperties", "not", "if", "then", "else", "contains",
                     "propertyNames"):
            yield from _schema_nodes(value)


@pytest.mark.parametrize("schema", [SCHEMA, case_json_schema()], ids=["scenario", "case"])
def test_only_standard_keywords_survive(schema: dict[str, Any]) -> None:
    """No pydantic-only ``ge``/``gt``/``le``/``lt`` (ignored by validators), nor any other."""
    unknown = {key for node in _schema_nodes(schema) for key in node if key not in KEYWORDS}
    assert unknown == set()


def test_descriptions_are_kept() -> None:
    original = Scenario.model_json_schema(by_alias=True)["$defs"]
    for name, node in original.items():
        for key, prop in node.get("properties", {}).items():
            if "description" in prop:
                assert SCHEMA["$defs"][name]["properties"][key]["description"] == prop["description"]


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bundled_scenario_passes_both(path: Path) -> None:
    file = str(path.relative_to(ROOT))
    assert schema_errors(_BASES[file]) == []
    assert loader_problems(_BASES[file], file) is None


# ------------------------------------------------------------------------------ curated variants
STEPS = ("pathways", "local", "steps")
D = STEPS + (0, "duration")  # a distribution that may not be 'never'


@dataclass(frozen=True)
class Variant:
    name: str
    file: str
    edits: tuple[tuple[Path_, Any], ...]
    where: Path_ | None = None  # where the loader's problem is (default: the first edited key)

    @property
    def data(self) -> dict[str, Any]:
        return edited(self.file, *self.edits)

    @property
    def location(self) -> Path_:
        return self.where if self.where is not None else self.edits[0][0]


def V(name: str, file: str, *edits: tuple[Path_, Any], where: Path_ | None = None) -> Variant:
    return Variant(name, file, edits, where)


BROKEN = [
    V("negative slots", L, (("sites", "hkib", "slots"), -3)),
    V("failure_probability 1.7", L, (STEPS + (2, "failure_probability"), 1.7)),
    V("share -1", L, (("cohorts", 0, "share"), -1)),
    V("lognormal sd -1", L, (("cohorts", 0, "time_to_death"), {"dist": "lognormal", "mean": 100, "sd": -1})),
    V("unknown key at the top", L, (("horizon",), 100)),
    V("unknown key in a cohort", L, (("cohorts", 0, "sahre"), 1)),
    V("unknown key in a step", L, (STEPS + (2, "capacity"), 2)),
    V("unknown key in on_failure", L, (STEPS + (2, "on_failure", "retry"), "apheresis")),
    V("unknown key in a distribution", L, (STEPS + (2, "duration", "mean"), 12)),
    V("unknown key in the utilities", E, (("economics", "utilities", "dead"), 0)),
    V("unknown key in an uncertain spec", E, (("uncertain", 1, "distribution", "beta", "gamma"), 1)),
    V("unknown key in a routing rule", H, (("cohorts", 0, "pathway", "when", "or"), 1)),
    V("wrong distribution name", L, (D, {"dist": "normal", "mean": 5, "sd": 1})),
    V("a string where a number goes", L, (STEPS + (2, "cost"), "a lot")),
    V("a string where a distribution goes", L, (D, "a few hours")),
    V("missing required key (kind)", L, (STEPS + (2, "kind"), DELETE)),
    V("missing required key (gamma sd)", L, (D, {"dist": "gamma", "mean": 2})),
    V("weekday funday", L, (STEPS + (0, "starts_on"), ["mon", "funday"])),
    V("a probability of true", L, (STEPS + (2, "failure_probability"), True)),
    V("a share of false", L, (("cohorts", 0, "share"), False)),
    V("a duration of true", L, (D, True)),
    V("replications 0", L, (("replications",), 0)),
    V("horizon_days 0", L, (("horizon_days",), 0)),
    V("seed -1", L, (("seed",), -1)),
    V("seed 2**63", L, (("seed",), 2**63)),
    V("max_attempts 0", L, (STEPS + (2, "on_failure", "max_attempts"), 0)),
    V("priority 1.5", L, (("cohorts", 0, "priority"), 1.5)),
    V("a step duration of never", L, (D, "never")),
    V("an age of never", E, (("cohorts", 0, "age"), "never")),
    V("an interarrival of never", L, (("arrivals",), {"interarrival": "never"})),
    V("an interarrival of 0", L, (("arrivals",), {"interarrival": 0})),
    V("an interarrival fixed at 0", L, (("arrivals",), {"interarrival": {"dist": "fixed", "value": 0}})),
    V("an interarrival uniform on [0, 0]", L, (("arrivals",), {"interarrival": {"dist": "uniform", "low": 0, "high": 0}})),
    V("an interarrival of only zeros", L, (("arrivals",), {"interarrival": {"dist": "empirical", "values": [0, 0]}})),
    V("a fixed value without dist", L, (D, {"value": 3})),
    V("{dist: never}", L, (("cohorts", 0, "time_to_death"), {"dist": "never"})),
    V("exponential with mean and median", L, (D, {"dist": "exponential", "mean": 1, "median": 1})),
    V("weibull without scale or median", L, (D, {"dist": "weibull", "shape": 1})),
    V("lognormal mixing median and sd", L, (D, {"dist": "lognormal", "median": 1, "sd": 1})),
    V("lognormal median without p90", L, (D, {"dist": "lognormal", "median": 1})),
    V("triangular with a negative low", L, (D, {"dist": "triangular", "low": -1, "mode": 1, "high": 2})),
    V("empirical without values", L, (D, {"dist": "empirical", "values": []})),
    V("empirical weights all zero", L, (D, {"dist": "empirical", "values": [1, 2], "weights": [0, 0]})),
    V("arrivals with a rate and a schedule", L, (("arrivals", "schedule"), [0, 10])),
    V("arrivals with nothing", L, (("arrivals",), {})),
    V("arrivals with a negative time", L, (("arrivals",), {"schedule": [0, -1]})),
    V("a rule with both tests", H, (("cohorts", 0, "pathway", "when", "waiting_more_than"), 3)),
    V("a rule with no test", H, (("cohorts", 0, "pathway", "when"), {})),
    V("a rule waiting for -1", H, (("cohorts", 0, "pathway", "when"), {"waiting_more_than": -1})),
    V("a slot change with from and from_day", L,
      (("sites", "hkib", "slots"), [{"from": "2025-01-06", "from_day": 0, "slots": 1}])),
    V("a slot change with neither", L, (("sites", "hkib", "slots"), [{"slots": 1}])),
    V("a schedule with no slot ever", L, (("sites", "hkib", "slots"), [{"from_day": 0, "slots": 0}])),
    V("an empty slot schedule", L, (("sites", "hkib", "slots"), [])),
    V("slots 2.5", L, (("sites", "hkib", "slots"), 2.5)),
    V("a closure mixing dates and days", L, (("sites", "hkib", "closures"), [{"from": "2025-02-01", "to_day": 40}])),
    V("a closure without its end", L, (("sites", "hkib", "closures"), [{"from_day": 10}])),
    V("a closure on day -1", L, (("sites", "hkib", "closures"), [{"from_day": -1, "to_day": 3}])),
    V("a date that is no date", L, (("start_date",), "2025-02-30")),
    V("a date in words", L, (("start_date",), "next monday")),
    V("a date as a number", L, (("sites", "hkib", "slots"), [{"from": 42, "slots": 1}])),
    V("starts_per_week 0", L, (("sites", "hkib", "starts_per_week"), 0)),
    V("starts_per_day 0", L, (("sites", "hkib", "starts_per_day"), 0)),
    V("starts_per_day true", L, (("sites", "hkib", "starts_per_day"), True)),
    V("shelf_life on a release step", L, (STEPS + (3, "shelf_life"), 3)),
    V("reserve_from without a site", L, (STEPS + (3, "reserve_from"), "apheresis")),
    V("a step that never starts (starts_on: [])", L, (STEPS + (0, "starts_on"), [])),
    V("a step kind 'cook'", L, (STEPS + (2, "kind"), "cook")),
    V("cost_category 'travel'", L, (STEPS + (2, "cost_category"), "travel")),
    V("a pathway without an infusion", L, (STEPS + (5, "kind"), "delay"), (STEPS + (5, "shelf_life"), DELETE),
      where=STEPS),
    V("a pathway with two infusions", L, (STEPS + (4, "kind"), "infusion"), where=STEPS),
    V("a pathway without steps", L, (STEPS, [])),
    V("no cohorts", L, (("cohorts",), [])),
    V("no pathways", L, (("pathways",), {})),
    V("an empty name", L, (("name",), "")),
    V("a name of 201 characters", L, (("name",), "x" * 201)),
    V("a site named ''", L, (("sites", ""), {"slots": 1}), where=("sites",)),
    V("every cohort share 0", E, (("cohorts", 0, "share"), 0), (("cohorts", 1, "share"), 0), where=("cohorts",)),
    V("toxicity_probability without a delay", S, (("cohorts", 0, "bridging", "toxicity_delay"), DELETE),
      where=("cohorts", 0, "bridging")),
    V("a bridging hazard ratio of -0.5", S, (("cohorts", 0, "bridging", "hazard_ratio"), -0.5)),
    V("a toxicity after a course until infusion", S, (("cohorts", 0, "bridging", "duration"), "until_infusion"),
      where=("cohorts", 0, "bridging", "toxicity_probability")),
    V("a bridging duration 'until_death'", S, (("cohorts", 0, "bridging", "duration"), "until_death")),
    V("a negative bridging cost per day", S, (("cohorts", 0, "bridging", "cost_per_day"), -1)),
    V("out_of_spec_infusion on a manufacture step", L,
      (STEPS + (2, "out_of_spec_infusion"), {"probability": 0.5, "response_probability": 0.5})),
    V("an exception probability of 1.5", L,
      (STEPS + (3, "out_of_spec_infusion"), {"probability": 1.5, "response_probability": 0.5}),
      where=STEPS + (3, "out_of_spec_infusion", "probability")),
    V("an exception without its response probability", L,
      (STEPS + (3, "out_of_spec_infusion"), {"probability": 0.5}), where=STEPS + (3, "out_of_spec_infusion")),
    V("one survival without the other", E, (("cohorts", 0, "after_infusion", "survival_non_responder"), DELETE),
      where=("cohorts", 0, "after_infusion")),
    V("crs_probability 2", E, (("cohorts", 0, "after_infusion", "crs_probability"), 2)),
    V("male_share -0.1", E, (("cohorts", 0, "male_share"), -0.1)),
    V("a response odds ratio of 0", E, (("cohorts", 0, "after_infusion", "wait_effect"), {"response_odds_ratio": 0})),
    V("a lifetime follow-up without a life table", E, (("economics", "life_table"), DELETE), where=("economics",)),
    V("follow_up_years 'forever'", E, (("economics", "follow_up_years"), "forever")),
    V("follow_up_years 0", E, (("economics", "follow_up_years"), 0)),
    V("a utility of -0.7", E, (("economics", "utilities", "progressed"), -0.7)),
    V("a utility of 1.2", E, (("economics", "utilities", "responder"), 1.2)),
    V("a discount method 'monthly'", E, (("economics", "discount", "method"), "monthly")),
    V("a discount rate of 1", E, (("economics", "discount", "costs"), 1)),
    V("a QALY loss of 1.5", E, (("economics", "disutilities", "icu"), 1.5)),
    V("a negative ICU cost", E, (("economics", "costs", "icu"), -1)),
    V("a willingness to pay of -1", E, (("economics", "wtp"), [-1])),
    V("a life table named ''", E, (("economics", "life_table"), "")),
    V("a life table with qx 'other'", E, (("economics", "life_table"), {"ages": [60], "qx": {"other": [0.1]}})),
    V("a life table with qx for all and male", E,
      (("economics", "life_table"), {"ages": [60], "qx": {"all": [0.1], "male": [0.1]}})),
    V("a life table with age 151", E,
      (("economics", "life_table"), {"ages": [151], "qx": {"male": [0.1], "female": [0.1]}})),
    V("a life table with qx 1.5", E,
      (("economics", "life_table"), {"ages": [60], "qx": {"male": [1.5], "female": [0.1]}})),
    V("an uncertain path with an empty key", E, (("uncertain", 0, "path"), "cohorts..age")),
    V("an uncertain name ''", E, (("uncertain", 0, "name"), "")),
    V("bounds on a fixed value", E, (("uncertain", 0, "distribution"), {"fixed": 200}),
      (("uncertain", 0, "bounds"), [0, 1]), where=("uncertain", 0)),
    V("an uncertain value with two distributions", E, (("uncertain", 1, "distribution", "gamma"), {"mean": 1, "sd": 1})),
    V("an uncertain value with no distribution", E, (("uncertain", 1, "distribution"), {})),
    V("a beta with a mean of 1.2", E, (("uncertain", 2, "distribution", "beta"), {"mean": 1.2, "sd": 0.1})),
    V("a beta with an sd of 0", E, (("uncertain", 2, "distribution", "beta"), {"mean": 0.5, "sd": 0})),
    V("a beta mixing alpha and sd", E, (("uncertain", 2, "distribution", "beta"), {"alpha": 2, "sd": 0.1})),
    V("an uncertain lognormal ci95 of one value", E, (("uncertain", 0, "distribution", "lognormal", "ci95"), [180])),
    V("an uncertain normal with sd -1", E, (("uncertain", 0, "distribution"), {"normal": {"mean": 1, "sd": -1}})),
]


@pytest.mark.parametrize("variant", BROKEN, ids=lambda v: v.name)
def test_a_broken_value_is_refused_by_both(variant: Variant) -> None:
    assert_both_refuse(variant.data, variant.file, variant.location)


def test_there_are_enough_broken_variants() -> None:
    assert len(BROKEN) >= 30 and len({v.name for v in BROKEN}) == len(BROKEN)


# ---------------------------------------------------------------------------- loader-only checks
#: What the loader refuses and JSON Schema cannot say: comparisons between values, references
#: between keys, checks across sections, files, the engine's preconditions and non-finite numbers.
LOADER_ONLY = [
    V("a cohort's pathway is not defined", L, (("cohorts", 0, "pathway"), "lcoal")),
    V("a step's site is not defined", L, (STEPS + (2, "site"), "hkbi")),
    V("reserve_from names a later step", L, (STEPS + (2, "reserve_from"), "qc_release")),
    V("retry_from names no step", L, (STEPS + (2, "on_failure", "retry_from"), "aphaeresis")),
    V("two cohorts with one name", E, (("cohorts", 1, "name"), "paediatric_ALL")),
    V("two steps with one name", L, (STEPS + (1, "name"), "apheresis")),
    V("the infusion is not the last step", L,
      (STEPS + (4,), {"name": "infusion", "kind": "infusion"}), (STEPS + (5,), {"name": "conditioning", "kind": "conditioning"}),
      where=STEPS),
    V("a rule's fallback is its primary", H, (("cohorts", 0, "pathway", "fallback"), "local")),
    V("a rule's primary takes no site", H, (("pathways", "direct"), {"steps": [{"name": "infusion", "kind": "infusion"}]}),
      (("cohorts", 0, "pathway", "primary"), "direct"), where=("cohorts", 0, "pathway", "primary")),
    V("bridging starts at a step the pathway lacks", S, (("cohorts", 0, "bridging", "start_step"), "collection")),
    V("a slot schedule going back in time", L,
      (("sites", "hkib", "slots"), [{"from_day": 0, "slots": 1}, {"from_day": 0, "slots": 2}])),
    V("a slot schedule starting after start_date", L, (("sites", "hkib", "slots"), [{"from_day": 5, "slots": 1}])),
    V("a closure ending before it starts (dates)", L,
      (("sites", "hkib", "closures"), [{"from": "2025-03-01", "to": "2025-02-01"}])),
    V("a closure ending before it starts (days)", L, (("sites", "hkib", "closures"), [{"from_day": 9, "to_day": 3}])),
    V("a closure for the whole horizon", L, (("sites", "hkib", "closures"), [{"from_day": 0, "to_day": 292000}]),
      where=("sites", "hkib", "closures")),
    V("a site's empty starts_on, for the step on it", L, (("sites", "hkib", "starts_on"), []), where=STEPS + (2, "site")),
    V("uniform with low above high", L, (D, {"dist": "uniform", "low": 2, "high": 1})),
    V("triangular with the mode above high", L, (D, {"dist": "triangular", "low": 1, "mode": 3, "high": 2})),
    V("lognormal with p90 below the median", L, (D, {"dist": "lognormal", "median": 2, "p90": 1})),
    V("empirical weights of another length", L, (D, {"dist": "empirical", "values": [1, 2], "weights": [1]})),
    V("an interarrival whose positive values weigh nothing", L,
      (("arrivals",), {"interarrival": {"dist": "empirical", "values": [0, 5], "weights": [1, 0]}})),
    V("uncertain bounds low above high", E, (("uncertain", 7, "bounds"), [10, 1])),
    V("uncertain bounds outside the distribution", E, (("uncertain", 7, "bounds"), [-2, -1])),
    V("a beta sd too large for its mean", E, (("uncertain", 2, "distribution", "beta"), {"mean": 0.5, "sd": 0.6})),
    V("an uncertain lognormal ci95 not around the median", E,
      (("uncertain", 0, "distribution", "lognormal", "ci95"), [200, 213])),
    V("an uncertain uniform with low above high", E, (("uncertain", 0, "distribution"), {"uniform": {"low": 2, "high": 1}})),
    V("economics without survival after infusion", E,
      (("cohorts", 0, "after_infusion", "survival_responder"), DELETE),
      (("cohorts", 0, "after_infusion", "survival_non_responder"), DELETE), where=("cohorts", 0, "after_infusion")),
    V("follow_up_days with an economics section", E, (("cohorts", 0, "after_infusion", "follow_up_days"), 365)),
    V("a life table without the cohort's age", E, (("cohorts", 0, "age"), DELETE), where=("cohorts", 0)),
    V("a life table by sex without male_share", E, (("cohorts", 0, "male_share"), DELETE), where=("cohorts", 0)),
    V("male_share with a life table for all", E,
      (("economics", "life_table"), {"ages": [60, 61], "qx": {"all": [0.01, 0.02]}}), where=("cohorts", 0, "male_share")),
    V("an age without an economics section", L, (("cohorts", 0, "age"), 50)),
    V("survival without follow_up_days or economics", L,
      (("cohorts", 0, "after_infusion", "survival_responder"), 1000),
      (("cohorts", 0, "after_infusion", "survival_non_responder"), 100), where=("cohorts", 0, "after_infusion")),
    V("life table ages with a gap", E,
      (("economics", "life_table"), {"ages": [60, 62], "qx": {"male": [0.1, 0.1], "female": [0.1, 0.1]}})),
    V("life table qx of another length", E,
      (("economics", "life_table"), {"ages": [60, 61], "qx": {"male": [0.1], "female": [0.1, 0.1]}})),
    V("a life table CSV that does not exist", E, (("economics", "life_table"), "data/nope.csv")),
    V("a cost of .inf (JSON has no infinity)", L, (STEPS + (2, "cost"), math.inf)),
]


@pytest.mark.parametrize("variant", LOADER_ONLY, ids=lambda v: v.name)
def test_a_check_only_the_loader_makes(variant: Variant) -> None:
    data = variant.data
    assert schema_errors(data) == [], "the schema refuses it now: move it to BROKEN"
    problems = loader_problems(data, variant.file)
    assert problems is not None, "the loader accepts it"
    key = format_path(list(variant.location))
    assert any(_related(p, key) for p in problems), f"the loader refuses it elsewhere: {problems}"


# ------------------------------------------------------------------------- sweeps over the models
@dataclass(frozen=True)
class Place:
    """Where an instance of a model sits in a bundled scenario: ``value`` (if given) is set at
    ``at`` first, and the instance is at ``at + inner``."""

    file: str
    at: Path_
    value: Any = None
    inner: Path_ = ()

    @property
    def path(self) -> Path_:
        return self.at + self.inner

    def data(self, *edits: tuple[Path_, Any]) -> dict[str, Any]:
        first = () if self.value is None else ((self.at, self.value),)
        return edited(self.file, *first, *edits)

    def instance(self) -> Any:
        node: Any = self.data()
        for key in self.path:
            node = node[key]
        return node


DIST_AT = STEPS + (2, "duration")
UNC = ("uncertain", 0, "distribution")
#: Instances of every model in bundled scenarios (several when a model has alternative forms).
PLACES: dict[str, list[Place]] = {
    "Scenario": [Place(L, ())],
    "Arrivals": [Place(L, ("arrivals",)), Place(L, ("arrivals",), {"schedule": [0, 30]}),
                 Place(L, ("arrivals",), {"interarrival": {"dist": "exponential", "mean": 18}})],
    "Cohort": [Place(E, ("cohorts", 0))],
    "AfterInfusion": [Place(E, ("cohorts", 0, "after_infusion")), Place(S, ("cohorts", 0, "after_infusion"))],
    "WaitEffect": [Place(E, ("cohorts", 0, "after_infusion", "wait_effect"),
                         {"per_days": 30, "reference_days": 0, "response_odds_ratio": 1, "survival_hazard_ratio": 1})],
    "Bridging": [Place(S, ("cohorts", 0, "bridging"))],
    "PathwayRule": [Place(H, ("cohorts", 0, "pathway"))],
    "RouteWhen": [Place(H, ("cohorts", 0, "pathway", "when")),
                  Place(H, ("cohorts", 0, "pathway", "when"), {"waiting_more_than": 3})],
    "Site": [Place(L, ("sites", "hkib"))],
    "SlotChange": [Place(L, ("sites", "hkib", "slots"), [{"from_day": 0, "slots": 1}, {"from_day": 90, "slots": 2}], (1,)),
                   Place(L, ("sites", "hkib", "slots"), [{"from": "2025-01-06", "slots": 1},
                                                         {"from": "2025-04-01", "slots": 2}], (1,))],
    "Closure": [Place(L, ("sites", "hkib", "closures"), [{"from_day": 10, "to_day": 12}], (0,)),
                Place(L, ("sites", "hkib", "closures"), [{"from": "2025-02-01", "to": "2025-02-03"}], (0,))],
    "Pathway": [Place(L, ("pathways", "local"))],
    "Step": [Place(L, STEPS + (2,)), Place(L, STEPS + (5,)), Place(L, STEPS + (0,))],
    "OnFailure": [Place(L, STEPS + (2, "on_failure"))],
    "OutOfSpecInfusion": [Place(L, STEPS + (3, "out_of_spec_infusion"),
                                {"probability": 0.5, "response_probability": 0.6})],
    "Economics": [Place(E, ("economics",))],
    "Discount": [Place(E, ("economics", "discount"))],
    "Utilities": [Place(E, ("economics", "utilities"))],
    "Disutilities": [Place(E, ("economics", "disutilities"))],
    "EconomicCosts": [Place(E, ("economics", "costs"))],
    "LifeTable": [Place(E, ("economics", "life_table"),
                        {"ages": [60, 61], "qx": {"male": [0.01, 0.02], "female": [0.01, 0.02]}})],
    "Uncertain": [Place(E, ("uncertain", 7), {"name": "icu_cost", "path": "economics.costs.icu",
                                              "distribution": {"gamma": {"mean": 170800, "sd": 50000}},
                                              "bounds": [0, 1000000]})],
    "UncertainDistribution": [Place(E, UNC)],
    "BetaSpec": [Place(E, ("uncertain", 1, "distribution", "beta")), Place(E, ("uncertain", 2, "distribution", "beta"))],
    "GammaSpec": [Place(E, ("uncertain", 7, "distribution", "gamma"))],
    "LognormalSpec": [Place(E, UNC + ("lognormal",)), Place(E, UNC, {"lognormal": {"mean": 192, "sd": 10}}, ("lognormal",))],
    "NormalSpec": [Place(E, UNC, {"normal": {"mean": 192, "sd": 10}}, ("normal",))],
    "UniformSpec": [Place(E, UNC, {"uniform": {"low": 180, "high": 200}}, ("uniform",))],
    "Fixed": [Place(L, DIST_AT, {"dist": "fixed", "value": 12})],
    "Uniform": [Place(L, DIST_AT, {"dist": "uniform", "low": 11, "high": 14})],
    "Triangular": [Place(L, DIST_AT, {"dist": "triangular", "low": 11, "mode": 12, "high": 14})],
    "Exponential": [Place(L, DIST_AT, {"dist": "exponential", "mean": 12}),
                    Place(L, DIST_AT, {"dist": "exponential", "median": 12})],
    "Lognormal": [Place(L, DIST_AT, {"dist": "lognormal", "median": 12, "p90": 14}),
                  Place(L, DIST_AT, {"dist": "lognormal", "mean": 12, "sd": 1})],
    "Gamma": [Place(L, DIST_AT, {"dist": "gamma", "mean": 12, "sd": 1})],
    "Weibull": [Place(L, DIST_AT, {"dist": "weibull", "shape": 2, "scale": 12}),
                Place(L, DIST_AT, {"dist": "weibull", "shape": 2, "median": 12})],
    "Empirical": [Place(L, DIST_AT, {"dist": "empirical", "values": [11, 13], "weights": [1, 1]})],
    "BacklogEntry": [Place(W, ("backlog", 0)),
                     Place(W, ("backlog",), [{"cohort": "RRMM", "count": 2, "waited_days": 30}], (0,))],
    "QueueRule": [Place(WS, ("sites", "allocation", "queue")),
                  Place(WS, ("sites", "allocation", "queue"), {"order": "sickest_first", "estimate_error": 0.3})],
    # hybrid's first cohort on the local pathway, re-referred overseas after 60 days on the list
    "ReReferral": [Place(H, ("cohorts", 0), {**{k: v for k, v in _BASES[H]["cohorts"][0].items() if k != "pathway"},
                                             "pathway": "local",
                                             "re_referral": {"after_days": 60, "pathway": "overseas"}},
                         ("re_referral",))],
}


@dataclass(frozen=True)
class Leaf:
    """A value a field holds: the base type, where inside the field (list items: ``0``, dict
    values: ``"*"``) and its bounds."""

    model: type[BaseModel]
    alias: str
    container: Path_
    base: Any
    bounds: tuple[tuple[str, float], ...]


def _bounds(metadata: typing.Iterable[Any]) -> list[tuple[str, float]]:
    out = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            out += _bounds(item.metadata)
        for cls, key in ((at.Ge, "ge"), (at.Gt, "gt"), (at.Le, "le"), (at.Lt, "lt")):
            if isinstance(item, cls):
                out.append((key, getattr(item, key)))
    return out


def _leaves(ann: Any, container: Path_ = (), metadata: tuple[Any, ...] = ()) -> typing.Iterator[tuple[Path_, Any, tuple[Any, ...]]]:
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(ann)
        yield from _leaves(base, container, metadata + tuple(meta))
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(ann):
            if arg is not type(None):
                yield from _leaves(arg, container, metadata)
    elif origin in (list, tuple):
        yield from _leaves(typing.get_args(ann)[0], container + (0,))
    elif origin is dict:
        yield from _leaves(typing.get_args(ann)[1], container + ("*",))
    else:
        yield container, ann, metadata


def _models() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    stack: list[type[BaseModel]] = [Scenario]
    while stack:
        model = stack.pop()
        if model.__name__ in found:
            continue
        found[model.__name__] = model
        for field in model.model_fields.values():
            for _, base, _ in _leaves(field.annotation):
                if isinstance(base, type) and issubclass(base, BaseModel):
                    stack.append(base)
    return {k: m for k, m in found.items() if m.model_fields}


MODELS = _models()


def _all_leaves() -> list[Leaf]:
    out = []
    for model in MODELS.values():
        for name, field in model.model_fields.items():
            for container, base, meta in _leaves(field.annotation):
                if not container:
                    meta = meta + tuple(field.metadata)
                out.append(Leaf(model, field.alias or name, container, base, tuple(_bounds(meta))))
    return out


LEAVES = _all_leaves()
#: Bounds the walk cannot see (they are in validators, not in annotations).
VALIDATOR_BOUNDS = [
    *[Leaf(Utilities, name, (), float, (("ge", UTILITY_MIN), ("le", 1))) for name in Utilities.model_fields],
    Leaf(BetaSpec, "mean", (), float, (("gt", 0), ("lt", 1))),
    Leaf(BetaSpec, "sd", (), float, (("gt", 0),)),
]


def _place(model: type[BaseModel], alias: str) -> Place:
    places = PLACES[model.__name__]
    return next((p for p in places if isinstance(p.instance(), dict) and alias in p.instance()), places[0])


def _value_path(leaf: Leaf, place: Place) -> Path_:
    path = place.path + (leaf.alias,)
    node = place.instance().get(leaf.alias)
    for key in leaf.container:
        if key == "*":
            key = next(iter(node))
        path += (key,)
        node = node[key] if isinstance(node, (dict, list)) and node else None
    return path


def _set_leaf(leaf: Leaf, value: Any) -> tuple[dict[str, Any], Path_]:
    place = _place(leaf.model, leaf.alias)
    if leaf.container and leaf.alias not in place.instance():
        assert leaf.container == (0,), leaf
        path = place.path + (leaf.alias,)
        return place.data((path, [value])), path + (0,)
    path = _value_path(leaf, place)
    return place.data((path, value)), path


def test_every_model_has_a_place_and_every_place_is_valid() -> None:
    assert set(MODELS) == set(PLACES)
    for name, places in PLACES.items():
        for place in places:
            data = place.data()
            assert schema_errors(data) == [], (name, place)
            assert loader_problems(data, place.file) is None, (name, place)


def _is_number(base: Any) -> bool:
    return base in (int, float)


NUMBER_LEAVES = [leaf for leaf in LEAVES if _is_number(leaf.base)]
BOUNDED = [(leaf, kind, bound) for leaf in LEAVES + VALIDATOR_BOUNDS for kind, bound in leaf.bounds]


def _id(leaf: Leaf) -> str:
    return f"{leaf.model.__name__}.{leaf.alias}" + "".join(f"[{k}]" for k in leaf.container)


def _outside_inside(kind: str, bound: float, integer: bool) -> tuple[float, float]:
    step = 1 if integer else max(abs(bound), 1.0) * 1e-9
    return {"ge": (bound - step, bound), "gt": (bound, bound + step),
            "le": (bound + step, bound), "lt": (bound, bound - step)}[kind]


def test_the_walk_finds_the_bounds() -> None:
    found = {(_id(leaf), kind) for leaf, kind, _ in BOUNDED}
    assert {("Site.slots", "ge"), ("Step.failure_probability", "le"), ("Cohort.share", "ge"),
            ("Lognormal.sd", "gt"), ("LifeTable.qx[*][0]", "le"), ("Scenario.seed", "lt"),
            ("Utilities.bridging", "ge"), ("LognormalSpec.ci95[0]", "gt")} <= found
    assert len(BOUNDED) > 60


@pytest.mark.parametrize(("leaf", "kind", "bound"), BOUNDED, ids=[f"{_id(l)} {k} {b}" for l, k, b in BOUNDED])
def test_just_outside_every_bound_both_refuse_and_just_inside_the_schema_accepts(leaf: Leaf, kind: str, bound: float) -> None:
    integer = leaf.base is int
    outside, inside = _outside_inside(kind, bound, integer)
    data, path = _set_leaf(leaf, outside)
    assert_both_refuse(data, _place(leaf.model, leaf.alias).file, path)
    data, _ = _set_leaf(leaf, inside)
    assert schema_errors(data) == []


TYPE_CASES = [(leaf, bad) for leaf in NUMBER_LEAVES for bad in (True, "abc", *((2.5,) if leaf.base is int else ()))]


@pytest.mark.parametrize(("leaf", "bad"), TYPE_CASES, ids=[f"{_id(l)}={b!r}" for l, b in TYPE_CASES])
def test_a_number_of_the_wrong_type_is_refused_by_both(leaf: Leaf, bad: Any) -> None:
    data, path = _set_leaf(leaf, bad)
    assert_both_refuse(data, _place(leaf.model, leaf.alias).file, path)


CHOICES = [leaf for leaf in LEAVES if typing.get_origin(leaf.base) is typing.Literal]


@pytest.mark.parametrize("leaf", CHOICES, ids=_id)
def test_a_word_that_is_not_a_choice_is_refused_by_both(leaf: Leaf) -> None:
    data, path = _set_leaf(leaf, "funday")
    assert_both_refuse(data, _place(leaf.model, leaf.alias).file, path)


@pytest.mark.parametrize("name", sorted(PLACES))
def test_an_unknown_key_is_refused_by_both(name: str) -> None:
    place = PLACES[name][0]
    path = place.path + ("zz_unknown",)
    assert_both_refuse(place.data((path, 1)), place.file, path)


REQUIRED = [(model, field.alias or key) for model in MODELS.values()
            for key, field in model.model_fields.items() if field.is_required()]


@pytest.mark.parametrize(("model", "alias"), REQUIRED, ids=[f"{m.__name__}.{a}" for m, a in REQUIRED])
def test_a_missing_required_key_is_refused_by_both(model: type[BaseModel], alias: str) -> None:
    place = _place(model, alias)
    assert alias in place.instance()
    path = place.path + (alias,)
    assert_both_refuse(place.data((path, DELETE)), place.file, place.path)


DIST_FIELDS = sorted({(leaf.model.__name__, leaf.alias) for leaf in LEAVES if leaf.base is _Number})


@pytest.mark.parametrize(("model", "alias"), DIST_FIELDS, ids=[f"{m}.{a}" for m, a in DIST_FIELDS])
def test_never_gets_the_same_verdict_from_both_and_a_wrong_dist_is_refused(model: str, alias: str) -> None:
    place = _place(MODELS[model], alias)
    path = place.path + (alias,)
    data = place.data((path, "never"))
    assert (loader_problems(data, place.file) is None) == (schema_errors(data) == [])
    assert_both_refuse(place.data((path, {"dist": "normal", "mean": 1, "sd": 1})), place.file, path)


def test_never_is_allowed_exactly_on_disease_clocks_and_survival() -> None:
    allowed = set()
    for model, alias in DIST_FIELDS:
        place = _place(MODELS[model], alias)
        if loader_problems(place.data((place.path + (alias,), "never")), place.file) is None:
            allowed.add(f"{model}.{alias}")
    assert allowed == {"Cohort.time_to_death", "Cohort.time_to_ineligible",
                       "AfterInfusion.survival_responder", "AfterInfusion.survival_non_responder"}


# ------------------------------------------------------------------------------ validation cases
CASES = sorted(ROOT.glob("validation/*.yaml"))
CASE_VALIDATOR = Draft202012Validator(case_json_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _case(path: Path) -> dict[str, Any]:
    return to_plain(read_yaml(path.read_text(encoding="utf-8"), str(path)))


def test_the_case_schema_is_valid() -> None:
    Draft202012Validator.check_schema(case_json_schema())


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_every_bundled_case_passes_the_case_schema(path: Path) -> None:
    assert list(CASE_VALIDATOR.iter_errors(as_json(_case(path)))) == []


CASE_BROKEN = [
    ("trial size 0", (("trial", "size"), 0)),
    ("replications 1", (("replications",), 1)),
    ("a name with a space", (("name",), "zuma 1")),
    ("an unknown metric", (("outcomes", 0, "metric"), "cured_fraction")),
    ("an unknown key", (("outcomes", 0, "observed", "se"), 0.1)),
    ("k, n and value", (("outcomes", 0, "observed", "value"), 3)),
    ("neither k and n nor value", (("outcomes", 0, "observed"), {"low": 1})),
    ("k without n", (("outcomes", 0, "observed"), {"k": 1})),
    ("values that are not numbers, without x", (("sensitivity", 0, "x"), DELETE)),
    ("no inputs", (("inputs",), [])),
]


@pytest.mark.parametrize(("name", "change"), CASE_BROKEN, ids=[n for n, _ in CASE_BROKEN])
def test_a_broken_case_is_refused_by_both(tmp_path: Path, name: str, change: tuple[Path_, Any]) -> None:
    source = ROOT / "validation" / "zuma1.yaml"
    data = _case(source)
    data["scenario"] = str(source.parent / data["scenario"])
    node: Any = data
    path, value = change
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    assert list(CASE_VALIDATOR.iter_errors(as_json(data))), "the schema accepts it"
    file = tmp_path / "case.yaml"
    file.write_text(json.dumps(as_json(data)), encoding="utf-8")
    with pytest.raises(ScenarioError) as refused:
        load_case(file)
    assert any(_related(p.path, format_path(list(path[:-1] if value is DELETE else path)))
               for p in refused.value.problems), refused.value.problems
