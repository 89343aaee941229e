"""Every new policy key is strict: bad values, unknown keys and broken cross-references are
reported as ``FILE:LINE: key.path: message``, with lines and paths worked out by hand from the
small YAML below; valid files round-trip and the JSON Schema documents the keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import v2vsim
from v2vsim.scenario import Closure, PathwayRule, Problem, Scenario, SlotChange, scenario_to_yaml

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

BASE_LINES = [
    "name: t",                      # 1
    "horizon_days: 100",            # 2
    "arrivals:",                    # 3
    "  rate_per_year: 10",          # 4
    "cohorts:",                     # 5
    "  - name: a",                  # 6
    "    pathway: local",           # 7
    "sites:",                       # 8
    "  lab:",                       # 9
    "    slots: 1",                 # 10
    "  far:",                       # 11
    "    slots: 10",                # 12
    "pathways:",                    # 13
    "  local:",                     # 14
    "    steps:",                   # 15
    "      - name: aph",            # 16
    "        kind: apheresis",      # 17
    "      - name: make",           # 18
    "        kind: manufacture",    # 19
    "        site: lab",            # 20
    "      - name: infusion",       # 21
    "        kind: infusion",       # 22
    "  overseas:",                  # 23
    "    steps:",                   # 24
    "      - name: ship",           # 25
    "        kind: transport",      # 26
    "      - name: make",           # 27
    "        kind: manufacture",    # 28
    "        site: far",            # 29
    "      - name: infusion",       # 30
    "        kind: infusion",       # 31
]
BASE = "\n".join(BASE_LINES) + "\n"
RULE = "    pathway: {primary: local, fallback: overseas, when: {waiting_more_than: 3}}"


def insert(after: int, *lines: str) -> str:
    return "\n".join(BASE_LINES[:after] + list(lines) + BASE_LINES[after:]) + "\n"


def replace(first: int, last: int, *lines: str) -> str:
    return "\n".join(BASE_LINES[: first - 1] + list(lines) + BASE_LINES[last:]) + "\n"


def problems_of(tmp_path: Path, text: str) -> tuple[Path, v2vsim.ScenarioError]:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(v2vsim.ScenarioError) as info:
        v2vsim.load_scenario(path)
    err = info.value
    assert str(err).splitlines() == [str(p) for p in err.problems]
    assert all(isinstance(p, Problem) and "Traceback" not in p.message for p in err.problems)
    return path, err


def expect_one(tmp_path: Path, text: str, line: int, key: str, *fragments: str) -> None:
    path, err = problems_of(tmp_path, text)
    assert len(err.problems) == 1, str(err)
    problem = err.problems[0]
    assert (problem.line, problem.path) == (line, key), str(err)
    for fragment in fragments:
        assert fragment in problem.message, str(err)
    assert str(err) == (f"{path}:{line}: {key}: " if key else f"{path}:{line}: ") + problem.message


def expect_all(tmp_path: Path, text: str, expected: list[tuple[int, str, str]]) -> None:
    _, err = problems_of(tmp_path, text)
    assert [(p.line, p.path) for p in err.problems] == [(line, key) for line, key, _ in expected], str(err)
    for problem, (_, _, fragment) in zip(err.problems, expected):
        assert fragment in problem.message, str(err)


def load(tmp_path: Path, text: str) -> Scenario:
    path = tmp_path / "ok.yaml"
    path.write_text(text, encoding="utf-8")
    return v2vsim.load_scenario(path)


# --------------------------------------------------------------------------- sites

@pytest.mark.parametrize(("lines", "line", "key", "fragments"), [
    (["    starts_per_month: 0"], 11, "sites.lab.starts_per_month", ["must be at least 1 (got 0)"]),
    (["    starts_per_week: 1.5"], 11, "sites.lab.starts_per_week", ["valid integer"]),
    (["    starts_per_week: true"], 11, "sites.lab.starts_per_week", ["not true"]),
    (["    starts_per_montth: 2"], 11, "sites.lab.starts_per_montth", ["unknown key", "did you mean 'starts_per_month'?"]),
    (["    closures: [{from: 2025-02-03, to: 2025-01-28}]"], 11, "sites.lab.closures[0].to",
     ["to (2025-01-28) is before from (2025-02-03)"]),
    (["    closures:", "      - {from_day: 5, to_day: 3}"], 12, "sites.lab.closures[0].to_day",
     ["to_day (3) is before from_day (5)"]),
    (["    closures: [{from: 2025-02-30, to: 2025-03-01}]"], 11, "", ["YAML error", "'2025-02-30'", "day is out of range"]),
    (["    closures: [{from: soon, to: 2025-03-01}]"], 11, "sites.lab.closures[0].from", ["valid date"]),
    (["    closures: [{from: 30, to: 2025-03-01}]"], 11, "sites.lab.closures[0].from",
     ["must be a date", "from_day/to_day"]),
    (["    closures: [{from: 2025-01-28}]"], 11, "sites.lab.closures[0]", ["give both from and to"]),
    (["    closures: [{from: 2025-01-28, to: 2025-01-30, from_day: 3, to_day: 4}]"], 11,
     "sites.lab.closures[0]", ["give from and to (dates), or from_day and to_day (days)"]),
    (["    closures: [{form: 2025-01-28, to: 2025-01-30}]"], 11, "sites.lab.closures[0].form",
     ["unknown key", "did you mean 'from'?"]),
    (["    closures: [{from_day: -1, to_day: 3}]"], 11, "sites.lab.closures[0].from_day", ["at least 0"]),
    (["    closures: {from: 2025-01-28, to: 2025-01-30}"], 11, "sites.lab.closures", ["valid list"]),
], ids=["month-0", "week-float", "week-bool", "typo", "from>to", "from_day>to_day", "bad-date",
        "not-a-date", "number-as-date", "no-to", "both-forms", "closure-typo", "negative-day", "not-a-list"])
def test_site_allocation_and_closure_errors(tmp_path: Path, lines: list[str], line: int, key: str,
                                            fragments: list[str]) -> None:
    expect_one(tmp_path, insert(10, *lines), line, key, *fragments)


@pytest.mark.parametrize(("slots", "key", "fragments"), [
    ("[{from: 2025-01-06, slots: 1}, {from: 2025-01-01, slots: 2}]", "sites.lab.slots[1]",
     ["must start after the previous entry", "day -5 is not after day 0"]),
    ("[{from: 2025-01-06, slots: 1}, {from_day: 0, slots: 2}]", "sites.lab.slots[1]",
     ["must start after the previous entry"]),
    ("[{from: 2025-01-07, slots: 1}]", "sites.lab.slots[0]", ["on or before start_date (2025-01-06)"]),
    ("[{from_day: 0, slots: -1}]", "sites.lab.slots[0].slots", ["at least 0"]),
    ("[{from_day: 0, slots: 0}, {from_day: 5, slots: 0}]", "sites.lab.slots", ["every entry has 0 slots"]),
    ("[{from_day: 0, from: 2025-01-06, slots: 1}]", "sites.lab.slots[0]", ["exactly one of from, from_day"]),
    ("[]", "sites.lab.slots", ["must not be empty"]),
    ("0", "sites.lab.slots", ["must be at least 1 (got 0)"]),
    ("two", "sites.lab.slots", ["must be a valid integer"]),
], ids=["backwards", "same-day", "late-start", "negative", "all-zero", "both-forms", "empty", "zero", "word"])
def test_slot_schedule_errors(tmp_path: Path, slots: str, key: str, fragments: list[str]) -> None:
    expect_one(tmp_path, replace(10, 10, f"    slots: {slots}"), 10, key, *fragments)


def test_slot_schedule_typo_reports_the_typo_and_the_missing_key(tmp_path: Path) -> None:
    expect_all(tmp_path, replace(10, 10, "    slots:", "      - {from_day: 0, slot: 1}"), [
        (11, "sites.lab.slots[0].slots", "required key is missing"),
        (11, "sites.lab.slots[0].slot", "did you mean 'slots'?"),
    ])


def test_slot_schedule_follows_start_date(tmp_path: Path) -> None:
    # The first entry may start before start_date; days count from start_date.
    sc = load(tmp_path, replace(10, 10, "    slots: [{from: 2025-01-01, slots: 1}, {from: 2025-02-03, slots: 2}]")
              + "start_date: 2025-01-20\n")
    assert sc.sites["lab"].slot_changes(sc.start_date) == [(-19.0, 1), (14.0, 2)]
    expect_one(tmp_path, replace(10, 10, "    slots: [{from: 2025-01-21, slots: 1}]") + "start_date: 2025-01-20\n",
               10, "sites.lab.slots[0]", "on or before start_date (2025-01-20); it starts on day 1")


# --------------------------------------------------------------------------- routing rules

@pytest.mark.parametrize(("rule", "key", "fragments"), [
    ("{primary: local, fallback: overseaz, when: {waiting_more_than: 3}}", "cohorts[0].pathway.fallback",
     ["no pathway named 'overseaz'", "did you mean 'overseas'?"]),
    ("{primary: locall, fallback: overseas, when: {waiting_more_than: 3}}", "cohorts[0].pathway.primary",
     ["no pathway named 'locall'"]),
    ("{primary: local, fallback: local, when: {waiting_more_than: 3}}", "cohorts[0].pathway.fallback",
     ["must differ from the primary"]),
    ("{primary: local, fallback: overseas}", "cohorts[0].pathway.when", ["required key is missing"]),
    ("{primary: local, fallback: overseas, when: {}}", "cohorts[0].pathway.when",
     ["give exactly one of waiting_more_than, expected_wait_more_than_days"]),
    ("{primary: local, fallback: overseas, when: {waiting_more_than: 3, expected_wait_more_than_days: 4}}",
     "cohorts[0].pathway.when", ["(got waiting_more_than, expected_wait_more_than_days)"]),
    ("{primary: local, fallback: overseas, when: {waiting_more_than: -1}}",
     "cohorts[0].pathway.when.waiting_more_than", ["at least 0"]),
    ("{primary: local, fallback: overseas, when: {waiting_more_than: 2.5}}",
     "cohorts[0].pathway.when.waiting_more_than", ["valid integer"]),
    ("{primary: local, fallback: overseas, when: {expected_wait_more_than_days: -3}}",
     "cohorts[0].pathway.when.expected_wait_more_than_days", ["at least 0"]),
    ("{primary: local, fallback: overseas, when: {waiting_more_then: 3}}",
     "cohorts[0].pathway.when.waiting_more_then", ["unknown key", "did you mean 'waiting_more_than'?"]),
    ("5", "cohorts[0].pathway", ["valid string"]),
], ids=["fallback", "primary", "same", "no-when", "empty-when", "two-tests", "negative", "float",
        "negative-days", "typo", "number"])
def test_routing_rule_errors(tmp_path: Path, rule: str, key: str, fragments: list[str]) -> None:
    expect_one(tmp_path, replace(7, 7, f"    pathway: {rule}"), 7, key, *fragments)


def test_routing_rule_typo_and_primary_without_a_site(tmp_path: Path) -> None:
    expect_all(tmp_path, replace(7, 7, "    pathway: {primry: local, fallback: overseas, when: {waiting_more_than: 1}}"), [
        (7, "cohorts[0].pathway.primary", "required key is missing"),
        (7, "cohorts[0].pathway.primry", "did you mean 'primary'?"),
    ])
    text = replace(29, 29).replace("  far:\n    slots: 10\n", "")
    text = text.replace("    pathway: local\n", "    pathway: {primary: overseas, fallback: local, when: {waiting_more_than: 1}}\n")
    expect_one(tmp_path, text, 7, "cohorts[0].pathway.primary", "pathway 'overseas' takes no site slot")


# --------------------------------------------------------------------------- bridging

@pytest.mark.parametrize(("bridging", "key", "fragments"), [
    ("{start_step: aphh, duration: 10, hazard_ratio: 0.6}", "cohorts[0].bridging.start_step",
     ["no step named 'aphh' in pathway 'local'", "did you mean 'aph'?"]),
    ("{start_step: aph, duration: 10, hazard_ratio: -0.1}", "cohorts[0].bridging.hazard_ratio",
     ["must be at least 0 (got -0.1)"]),
    ("{start_step: aph, duration: 10}", "cohorts[0].bridging.hazard_ratio", ["required key is missing"]),
    ("{duration: 10, hazard_ratio: 0.6}", "cohorts[0].bridging.start_step", ["required key is missing"]),
    ("{start_step: aph, duration: never, hazard_ratio: 0.6}", "cohorts[0].bridging.duration",
     ["'never' is only allowed for disease clocks"]),
    ("{start_step: aph, duration: {dist: uniform, low: 9, high: 3}, hazard_ratio: 0.6}",
     "cohorts[0].bridging.duration", ["low (9) must not exceed high (3)"]),
    ("{start_step: aph, duration: 10, hazard_ratio: 0.6, toxicity_probability: 1.5, toxicity_delay: 5}",
     "cohorts[0].bridging.toxicity_probability", ["at most 1"]),
    ("{start_step: aph, duration: 10, hazard_ratio: 0.6, toxicity_probability: 0.1}",
     "cohorts[0].bridging.toxicity_delay", ["toxicity_probability > 0 needs a toxicity_delay"]),
    ("{start_step: aph, duration: 10, hazard_ratio: 0.6, toxicity_probability: 0.1, toxicity_delay: never}",
     "cohorts[0].bridging.toxicity_delay", ["'never' is only allowed"]),
    ("{start_step: aph, duration: 10, hazard_ration: 0.6}", "cohorts[0].bridging.hazard_ration",
     ["did you mean 'hazard_ratio'?"]),
    ("{start_step: aph, duration: 10, hazard_ratio: 0.6, cost: -5}", "cohorts[0].bridging.cost", ["at least 0"]),
], ids=["start_step", "negative-ratio", "no-ratio", "no-start", "never", "bad-dist", "probability",
        "no-delay", "never-delay", "typo", "cost"])
def test_bridging_errors(tmp_path: Path, bridging: str, key: str, fragments: list[str]) -> None:
    text = insert(7, f"    bridging: {bridging}")
    _, err = problems_of(tmp_path, text)
    if key.endswith("hazard_ration"):  # the typo, and the real key then missing
        assert [p.path for p in err.problems] == ["cohorts[0].bridging.hazard_ratio", key]
        assert fragments[0] in err.problems[1].message
        return
    expect_one(tmp_path, text, 8, key, *fragments)


def test_bridging_start_step_must_be_in_every_pathway_of_a_rule(tmp_path: Path) -> None:
    text = replace(7, 7, RULE, "    bridging: {start_step: aph, duration: 10, hazard_ratio: 0.6}")
    expect_one(tmp_path, text, 8, "cohorts[0].bridging.start_step", "no step named 'aph' in pathway 'overseas'")
    sc = load(tmp_path, replace(7, 7, RULE, "    bridging: {start_step: make, duration: 10, hazard_ratio: 0.6}"))
    assert isinstance(sc.cohorts[0].pathway, PathwayRule)
    assert sc.cohorts[0].pathway_names() == ["local", "overseas"]


# --------------------------------------------------------------------------- after infusion

@pytest.mark.parametrize(("after", "key", "fragments"), [
    ("{survival_responder: 100, follow_up_days: 1825}", "cohorts[0].after_infusion",
     ["together (missing: survival_non_responder)"]),
    ("{follow_up_days: 1825}", "cohorts[0].after_infusion",
     ["missing: survival_responder, survival_non_responder"]),
    ("{survival_responder: 100, survival_non_responder: 20, follow_up_days: 0}",
     "cohorts[0].after_infusion.follow_up_days", ["greater than 0"]),
    ("{survival_responder: {dist: exponential, mean: -1}, survival_non_responder: 20, follow_up_days: 9}",
     "cohorts[0].after_infusion.survival_responder.mean", ["greater than 0"]),
    ("{survival_responder: 100, survival_non_responder: 20, follow_up_day: 9}",
     "cohorts[0].after_infusion.follow_up_day", ["did you mean 'follow_up_days'?"]),
], ids=["partial", "only-window", "zero-window", "bad-dist", "typo"])
def test_after_infusion_errors(tmp_path: Path, after: str, key: str, fragments: list[str]) -> None:
    expect_one(tmp_path, insert(7, f"    after_infusion: {after}"), 8, key, *fragments)


# --------------------------------------------------------------------------- all at once, valid files

def test_all_new_problems_at_once_in_file_order(tmp_path: Path) -> None:
    lines = list(BASE_LINES)
    lines[6] = "    pathway: {primary: local, fallback: overseaz, when: {waiting_more_than: 3}}"   # 7
    lines.insert(7, "    bridging: {start_step: aph, duration: 10, hazard_ratio: -1}")            # 8
    lines.insert(11, "    closures: [{from_day: 9, to_day: 2}]")                                   # 12
    lines.insert(12, "    starts_per_week: 0")                                                      # 13
    expect_all(tmp_path, "\n".join(lines) + "\n", [
        (7, "cohorts[0].pathway.fallback", "no pathway named 'overseaz'"),
        (8, "cohorts[0].bridging.hazard_ratio", "at least 0"),
        (12, "sites.lab.closures[0].to_day", "before from_day"),
        (13, "sites.lab.starts_per_week", "at least 1"),
    ])


FULL = replace(7, 12, RULE,
               "    bridging:",
               "      start_step: make",
               "      duration: {dist: uniform, low: 10, high: 20}",
               "      hazard_ratio: 0.6",
               "      cost: 20000",
               "      toxicity_probability: 0.1",
               "      toxicity_delay: {dist: triangular, low: 3, mode: 7, high: 14}",
               "    after_infusion:",
               "      response_probability: 0.7",
               "      survival_responder: {dist: weibull, shape: 1.1, median: 900}",
               "      survival_non_responder: never",
               "      follow_up_days: 1825",
               "sites:",
               "  lab:",
               "    slots: [{from: 2025-01-06, slots: 1}, {from_day: 365, slots: 2}]",
               "    starts_per_month: 2",
               "    starts_per_week: 1",
               "    closures:",
               "      - {from: 2025-01-28, to: 2025-02-03}",
               "      - {from_day: 400, to_day: 406}",
               "  far:",
               "    slots: 10")


def test_a_full_policies_scenario_loads_and_round_trips(tmp_path: Path) -> None:
    sc = load(tmp_path, FULL)
    lab = sc.sites["lab"]
    assert isinstance(lab.slots, list) and isinstance(lab.slots[0], SlotChange)
    assert lab.closures is not None and isinstance(lab.closures[0], Closure)
    assert lab.closed_days(sc.start_date) == [(22.0, 29.0), (400.0, 407.0)]  # inclusive ends
    assert lab.has_calendar and not sc.sites["far"].has_calendar
    again = load(tmp_path, scenario_to_yaml(sc))
    assert again == sc
    assert scenario_to_yaml(again) == scenario_to_yaml(sc)
    res = v2vsim.simulate(sc, replications=2, seed=3)
    assert {"rerouted", "bridged", "bridging_toxicities", "life_years_per_referred",
            "deaths_in_follow_up"} <= set(res.replications.columns)


@pytest.mark.parametrize("name", ["hybrid.yaml", "slot_shortage.yaml"])
def test_bundled_policy_scenarios_validate_and_round_trip(tmp_path: Path, name: str) -> None:
    sc = v2vsim.load_scenario(SCENARIOS / name)
    assert load(tmp_path, scenario_to_yaml(sc)) == sc


def test_the_json_schema_documents_every_new_key() -> None:
    defs = Scenario.model_json_schema()["$defs"]
    documented = {
        "Site": ["slots", "starts_per_month", "starts_per_week", "starts_per_day", "closures"],
        "SlotChange": ["from", "from_day", "slots"],
        "Closure": ["from", "to", "from_day", "to_day"],
        "Cohort": ["pathway", "bridging"],
        "PathwayRule": ["primary", "fallback", "when"],
        "RouteWhen": ["waiting_more_than", "expected_wait_more_than_days"],
        "Bridging": ["start_step", "duration", "hazard_ratio", "cost", "toxicity_probability", "toxicity_delay"],
        "AfterInfusion": ["survival_responder", "survival_non_responder", "follow_up_days"],
    }
    for model, keys in documented.items():
        props = defs[model]["properties"]
        for key in keys:
            assert props[key].get("description"), f"{model}.{key}"
    assert defs["Closure"]["additionalProperties"] is False
    assert {"oneOf"} <= set(defs["Site"]["properties"]["slots"])
