"""Every way a scenario file can break the contract (spec sections 2 and 6).

Each bad file is written to ``tmp_path`` and loaded with the public loader; the error must be
a :class:`v2vsim.ScenarioError` whose problems read ``FILE:LINE: key.path: message``, with the
line and key path worked out by hand from the small YAML below.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import v2vsim
from v2vsim.scenario import Problem, Scenario, scenario_to_yaml

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

# The smallest valid scenario. Line numbers (1-based) are used by every test below.
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
    "pathways:",                    # 11
    "  local:",                     # 12
    "    steps:",                   # 13
    "      - name: aph",            # 14
    "        kind: apheresis",      # 15
    "      - name: make",           # 16
    "        kind: manufacture",    # 17
    "        site: lab",            # 18
    "      - name: infusion",       # 19
    "        kind: infusion",       # 20
]
BASE = "\n".join(BASE_LINES) + "\n"


def insert(after: int, *lines: str) -> str:
    """BASE with ``lines`` inserted after line ``after`` (they become after+1, ...)."""
    out = BASE_LINES[:after] + list(lines) + BASE_LINES[after:]
    return "\n".join(out) + "\n"


def replace(first: int, last: int, *lines: str) -> str:
    """BASE with lines first..last (inclusive) replaced by ``lines``."""
    out = BASE_LINES[: first - 1] + list(lines) + BASE_LINES[last:]
    return "\n".join(out) + "\n"


def write(tmp_path: Path, text: str | bytes, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str | bytes) -> Scenario:
    return v2vsim.load_scenario(write(tmp_path, text))


def problems_of(tmp_path: Path, text: str | bytes) -> tuple[Path, v2vsim.ScenarioError]:
    path = write(tmp_path, text)
    with pytest.raises(v2vsim.ScenarioError) as info:
        v2vsim.load_scenario(path)
    err = info.value
    assert err.problems, "a ScenarioError must list at least one problem"
    # str() is one line per problem, in order, and each problem knows its file.
    assert str(err).splitlines() == [str(p) for p in err.problems]
    for problem in err.problems:
        assert isinstance(problem, Problem)
        assert problem.file == str(path)
        assert "Traceback" not in problem.message
    return path, err


def expect_one(tmp_path: Path, text: str | bytes, line: int | None, key: str,
               *fragments: str) -> Problem:
    """Exactly one problem, at ``line`` and ``key``, whose message contains ``fragments``."""
    path, err = problems_of(tmp_path, text)
    assert len(err.problems) == 1, str(err)
    problem = err.problems[0]
    assert (problem.line, problem.path) == (line, key), str(err)
    for fragment in fragments:
        assert fragment in problem.message, str(err)
    where = f"{path}:{line}" if line is not None else str(path)
    prefix = f"{where}: {key}: " if key else f"{where}: "
    assert str(err) == prefix + problem.message
    return problem


def expect_all(tmp_path: Path, text: str, expected: list[tuple[int, str, str]]) -> None:
    """The problems are exactly ``expected`` as (line, key path, message fragment), in order."""
    _, err = problems_of(tmp_path, text)
    got = [(p.line, p.path) for p in err.problems]
    assert got == [(line, key) for line, key, _ in expected], str(err)
    for problem, (_, _, fragment) in zip(err.problems, expected):
        assert fragment in problem.message, str(err)


# --------------------------------------------------------------------------- valid files


def test_base_is_valid(tmp_path: Path) -> None:
    sc = load(tmp_path, BASE)
    assert sc.name == "t"
    assert [s.name for s in sc.pathways["local"].steps] == ["aph", "make", "infusion"]
    assert sc.sites["lab"].slots == 1


@pytest.mark.parametrize("name", ["local.yaml", "overseas.yaml"])
def test_bundled_scenarios_validate(name: str) -> None:
    sc = v2vsim.load_scenario(SCENARIOS / name)
    assert isinstance(sc, Scenario)
    for pathway in sc.pathways.values():
        assert pathway.steps[-1].kind == "infusion"


# --------------------------------------------------------------------------- YAML level


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    text = "name: t\nhorizon_days: [1, 2\narrivals: x\n"
    problem = expect_one(tmp_path, text, 3, "", "YAML error (column 9)")
    assert "flow sequence" in problem.message


def test_bad_indentation(tmp_path: Path) -> None:
    expect_one(tmp_path, "name: t\n  bad: indent\n", 2, "", "YAML error (column 6)",
               "mapping values are not allowed")


def test_duplicate_top_level_key(tmp_path: Path) -> None:
    expect_one(tmp_path, BASE + "name: u\n", 21, "", "duplicate key", '"name"')


def test_duplicate_nested_key(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(10, "    slots: 2"), 11, "", "duplicate key", '"slots"',
               "column 5")


def test_second_document_refused(tmp_path: Path) -> None:
    expect_one(tmp_path, BASE + "---\nname: x\n", 21, "", "single document")


def test_invalid_date_has_a_line(tmp_path: Path) -> None:
    expect_one(tmp_path, BASE + "start_date: 2025-13-45\n", 21, "", "'2025-13-45'",
               "month must be in 1..12")


def test_huge_integer_has_a_line(tmp_path: Path) -> None:
    problem = expect_one(tmp_path, replace(2, 2, "horizon_days: 1" + "0" * 5000), 2, "",
                         "cannot read value")
    assert len(problem.message) < 300


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"],
                         ids=["empty", "blank", "comment", "document-marker"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    expect_one(tmp_path, text, 1, "", "empty")


@pytest.mark.parametrize("text", ["- a\n- b\n", "hello\n", "42\n"],
                         ids=["list", "string", "number"])
def test_document_not_a_mapping(tmp_path: Path, text: str) -> None:
    expect_one(tmp_path, text, 1, "", "must be a mapping")


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(v2vsim.ScenarioError) as info:
        v2vsim.load_scenario(path)
    assert str(info.value) == f"{path}: no such file"
    assert info.value.problems == [Problem(str(path), None, "", "no such file")]


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(v2vsim.ScenarioError) as info:
        v2vsim.load_scenario(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a scenario file"


def test_not_utf8(tmp_path: Path) -> None:
    problem = expect_one(tmp_path, b"name: caf\xe9\nhorizon_days: 1\n", None, "", "not UTF-8")
    assert problem.line is None


def test_utf8_bom_and_non_ascii_accepted(tmp_path: Path) -> None:
    sc = load(tmp_path, "\ufeff" + replace(1, 1, "name: Hôpital Robert-Debré — CAR-T"))
    assert sc.name == "Hôpital Robert-Debré — CAR-T"


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object/apply:os.system ['echo pwned > {marker}']",
         "!!python/object/apply:os.system"),
        ("!!python/object:pathlib.Path {{}}", "!!python/object:pathlib.Path"),
        ("!!python/object/new:pathlib.Path ['{marker}']", "!!python/object/new:pathlib.Path"),
        ("!!python/name:os.system", "!!python/name:os.system"),
        ("!custom value", "!custom"),
    ],
    ids=["apply", "object", "new", "name", "local-tag"],
)
def test_python_tags_refused_never_executed(tmp_path: Path, value: str, tag: str) -> None:
    marker = tmp_path / "marker"
    text = replace(1, 1, "name: " + value.format(marker=marker))
    expect_one(tmp_path, text, 1, "name", f"YAML tag '{tag}' is not allowed")
    assert not marker.exists()


def test_python_tag_on_an_unknown_key_reports_both(tmp_path: Path) -> None:
    text = BASE + "payload: !!python/object/apply:os.system ['true']\n"
    _, err = problems_of(tmp_path, text)
    assert [(p.line, p.path) for p in err.problems] == [(21, "payload"), (21, "payload")]
    messages = sorted(p.message for p in err.problems)
    assert messages[0].startswith("YAML tag '!!python/object/apply:os.system'")
    assert messages[1].startswith("unknown key")


def test_core_tags_are_plain_data(tmp_path: Path) -> None:
    sc = load(tmp_path, replace(1, 2, "name: !!str 5", "horizon_days: !!float 100"))
    assert sc.name == "5"
    assert sc.horizon_days == 100.0


def test_aliases_inside_limits_are_fine(tmp_path: Path) -> None:
    text = replace(
        16, 20,
        "      - name: make",
        "        kind: manufacture",
        "        duration: &d {dist: uniform, low: 1, high: 2}",
        "      - name: infusion",
        "        kind: infusion",
        "        duration: *d",
    )
    sc = load(tmp_path, text)
    steps = sc.pathways["local"].steps
    assert steps[1].duration == steps[2].duration


def test_billion_laughs_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    start = time.perf_counter()
    problem = expect_one(tmp_path, "\n".join(lines) + "\n", None, "", "too large")
    assert time.perf_counter() - start < 5.0  # 9**9 = 387 million strings if expanded
    assert "alias" in problem.message


def test_self_referencing_alias_does_not_crash(tmp_path: Path) -> None:
    _, err = problems_of(tmp_path, BASE + "loop: &x [*x]\n")
    assert any(p.path == "loop" and "unknown key" in p.message for p in err.problems)


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("text", "line", "key", "suggestion"),
    [
        (BASE + "horizon_day: 5\n", 21, "horizon_day", "horizon_days"),
        (insert(7, "    priorty: 1"), 8, "cohorts[0].priorty", "priority"),
        (insert(7, "    time_to_deaht: 10"), 8, "cohorts[0].time_to_deaht", "time_to_death"),
        (insert(10, "    slot: 2"), 11, "sites.lab.slot", "slots"),
        (insert(10, "    start_on: [mon]"), 11, "sites.lab.start_on", "starts_on"),
        (insert(18, "        durration: 3"), 19, "pathways.local.steps[1].durration", "duration"),
        (insert(18, "        failure_probabilty: 0.1"), 19,
         "pathways.local.steps[1].failure_probabilty", "failure_probability"),
        (insert(4, "  rate_per_yaer: 10"), 5, "arrivals.rate_per_yaer", "rate_per_year"),
        (insert(7, "    after_infusion:", "      response_probabilty: 0.5"), 9,
         "cohorts[0].after_infusion.response_probabilty", "response_probability"),
        (insert(12, "    step:", "      - name: x", "        kind: infusion"), 13,
         "pathways.local.step", "steps"),
        (insert(18, "        on_failure: {retry_from: make, max_attempts: 2, max_attempt: 3}"),
         19, "pathways.local.steps[1].on_failure.max_attempt", "max_attempts"),
        # distributions: the allowed keys depend on `dist`
        (insert(18, "        duration: {dist: exponential, mean: 3, medain: 2}"), 19,
         "pathways.local.steps[1].duration.medain", "median"),
        (insert(18, "        duration: {dist: triangular, low: 1, mode: 2, high: 3, hihg: 4}"),
         19, "pathways.local.steps[1].duration.hihg", "high"),
        (insert(7, "    time_to_death:", "      dist: weibull", "      shape: 1.2",
                "      scale: 200", "      shpe: 2"), 12,
         "cohorts[0].time_to_death.shpe", "shape"),
        (insert(18, "        duration: {dist: empirical, values: [1], weight: [1]}"), 19,
         "pathways.local.steps[1].duration.weight", "weights"),
    ],
    ids=["top", "cohort", "cohort-clock", "site", "site-starts_on", "step", "step-prob",
         "arrivals", "after_infusion", "pathway", "on_failure", "dist-exponential",
         "dist-triangular", "dist-weibull-block", "dist-empirical"],
)
def test_unknown_key_did_you_mean(tmp_path: Path, text: str, line: int, key: str,
                                  suggestion: str) -> None:
    expect_one(tmp_path, text, line, key, "unknown key", f"did you mean '{suggestion}'?")


def test_unknown_key_without_close_match_lists_allowed(tmp_path: Path) -> None:
    problem = expect_one(tmp_path, BASE + "zzzz: 1\n", 21, "zzzz", "unknown key", "allowed:")
    assert "horizon_days" in problem.message and "pathways" in problem.message


def test_field_name_instead_of_key_is_unknown(tmp_path: Path) -> None:
    """`mean_` is the Python attribute behind `mean`; it is not a scenario key."""
    expect_one(tmp_path, insert(18, "        duration: {dist: exponential, mean_: 3}"), 19,
               "pathways.local.steps[1].duration.mean_", "unknown key", "did you mean 'mean'?")


def test_typo_in_the_only_form_given(tmp_path: Path) -> None:
    # The typo is the problem to report; "give exactly one of scale, median" would be noise.
    text = insert(7, "    time_to_death:", "      dist: weibull", "      shape: 1.2",
                  "      medain: 200")
    expect_one(tmp_path, text, 11, "cohorts[0].time_to_death.medain", "unknown key",
               "did you mean 'median'?")


# --------------------------------------------------------------------------- missing keys


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (replace(1, 1), 1, "name"),
        (replace(2, 2), 1, "horizon_days"),
        (replace(3, 4), 1, "arrivals"),
        (replace(5, 7), 1, "cohorts"),
        (replace(11, 20), 1, "pathways"),
        (replace(16, 17, "      - kind: manufacture"), 16, "pathways.local.steps[1].name"),
        (replace(17, 17), 16, "pathways.local.steps[1].kind"),
        (replace(7, 7), 6, "cohorts[0].pathway"),
        (replace(6, 7, "  - pathway: local"), 6, "cohorts[0].name"),
        (replace(10, 10, "    cost_per_use: 5"), 9, "sites.lab.slots"),
        (insert(18, "        on_failure: {max_attempts: 2}"), 19,
         "pathways.local.steps[1].on_failure.retry_from"),
        (insert(18, "        duration: {dist: uniform, low: 1}"), 19,
         "pathways.local.steps[1].duration.high"),
        (replace(12, 20, "  local: {}"), 12, "pathways.local.steps"),
    ],
    ids=["name", "horizon_days", "arrivals", "cohorts", "pathways", "step-name", "step-kind",
         "cohort-pathway", "cohort-name", "site-slots", "retry_from", "dist-high",
         "pathway-steps"],
)
def test_missing_required_key(tmp_path: Path, text: str, line: int, key: str) -> None:
    expect_one(tmp_path, text, line, key, "required key is missing")


# --------------------------------------------------------------------------- wrong values


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        (replace(2, 2, "horizon_days: soon"), 2, "horizon_days", "must be a valid number"),
        (replace(2, 2, "horizon_days: -1"), 2, "horizon_days", "greater than 0 (got -1)"),
        (replace(2, 2, "horizon_days: true"), 2, "horizon_days", "must be a number, not true"),
        (replace(2, 2, "horizon_days: .nan"), 2, "horizon_days", "nan"),
        (replace(2, 2, "horizon_days: .inf"), 2, "horizon_days", ""),
        (replace(2, 2, "horizon_days:"), 2, "horizon_days", "(got None)"),
        (replace(1, 1, "name: 5"), 1, "name", "must be a valid string"),
        (replace(1, 1, "name: ''"), 1, "name", "must not be empty"),
        (replace(10, 10, "    slots: two"), 10, "sites.lab.slots", "must be a valid integer"),
        (replace(10, 10, "    slots: 1.5"), 10, "sites.lab.slots", "fractional part"),
        (replace(10, 10, "    slots: 0"), 10, "sites.lab.slots", "must be at least 1 (got 0)"),
        (replace(10, 10, "    slots: yes"), 10, "sites.lab.slots", "must be a valid integer"),
        (replace(10, 10, "    slots: true"), 10, "sites.lab.slots", "not true"),
        (insert(10, "    starts_on: [mon, funday]"), 11, "sites.lab.starts_on[1]",
         "(got 'funday')"),
        (insert(10, "    starts_on: [mon, thr]"), 11, "sites.lab.starts_on[1]",
         "did you mean 'thu'?"),
        (replace(5, 7, "cohorts: 5"), 5, "cohorts", "must be a valid list"),
        (replace(5, 7, "cohorts: []"), 5, "cohorts", "must not be empty"),
        (replace(13, 20, "    steps: []"), 13, "pathways.local.steps", "must not be empty"),
        (replace(13, 20, "    steps: nope"), 13, "pathways.local.steps", "must be a valid list"),
        (replace(11, 20, "pathways: {}"), 11, "pathways", "must not be empty"),
        (replace(14, 15, "      - aph"), 14, "pathways.local.steps[0]", "must be a mapping"),
        (replace(9, 10, "  lab:"), 9, "sites.lab", "must be a mapping"),
        (insert(7, "    share: -1"), 8, "cohorts[0].share", "must be at least 0 (got -1)"),
        (insert(7, "    priority: high"), 8, "cohorts[0].priority", "must be a valid integer"),
        (insert(7, "    after_infusion: {icu_probability: 1.5}"), 8,
         "cohorts[0].after_infusion.icu_probability", "must be at most 1"),
        (insert(18, "        failure_probability: 2"), 19,
         "pathways.local.steps[1].failure_probability", "must be at most 1"),
        (insert(18, "        cost: -5"), 19, "pathways.local.steps[1].cost", "(got -5)"),
        (insert(18, "        on_failure: {retry_from: make, max_attempts: 0}"), 19,
         "pathways.local.steps[1].on_failure.max_attempts", "must be at least 1 (got 0)"),
        (replace(20, 20, "        kind: infusion", "        shelf_life: 0"), 21,
         "pathways.local.steps[2].shelf_life", "greater than 0"),
        (BASE + "start_date: tomorrow\n", 21, "start_date", "valid date"),
        (BASE + "seed: -1\n", 21, "seed", "must be at least 0 (got -1)"),
        (BASE + "seed: 99999999999999999999999\n", 21, "seed",
         "less than 9223372036854775808"),
        (BASE + "replications: 0\n", 21, "replications", "must be at least 1 (got 0)"),
        # distributions in the scenario: the path ends at the offending parameter or form
        (insert(18, "        duration: {dist: exponential, mean: -3}"), 19,
         "pathways.local.steps[1].duration.mean", "greater than 0 (got -3)"),
        (insert(18, "        duration: {dist: lognormal, median: 5, p90: 4}"), 19,
         "pathways.local.steps[1].duration", "p90 (4) must exceed median (5)"),
        (insert(18, "        duration: {dist: uniform, low: 7, high: 3}"), 19,
         "pathways.local.steps[1].duration", "low (7) must not exceed high (3)"),
        (insert(18, "        duration:", "          dist: triangular", "          low: 5",
                "          mode: 1", "          high: 9"), 19,
         "pathways.local.steps[1].duration", "low <= mode <= high"),
        (insert(18, "        duration: {dist: empirical, values: [1, 2], weights: [0, 0]}"), 19,
         "pathways.local.steps[1].duration", "sum to a positive number"),
        (insert(18, "        duration: {dist: empirical, values: [1, 2], weights: [1]}"), 19,
         "pathways.local.steps[1].duration", "weights has 1 entries but values has 2"),
        (insert(18, "        duration: {dist: normal, mean: 3}"), 19,
         "pathways.local.steps[1].duration", "expected a number or {dist: fixed|"),
        (insert(18, "        duration: soon"), 19, "pathways.local.steps[1].duration",
         "(got 'soon')"),
        (insert(18, "        duration: -2"), 19, "pathways.local.steps[1].duration",
         "must be at least 0 (got -2)"),
        (insert(18, "        duration: {dist: uniform, low: true, high: 3}"), 19,
         "pathways.local.steps[1].duration.low", "not true"),
        (insert(7, "    time_to_death: {dist: exponential, mean: 3, median: 2}"), 8,
         "cohorts[0].time_to_death", "give exactly one of mean, median"),
    ],
)
def test_wrong_value(tmp_path: Path, text: str, line: int, key: str, fragment: str) -> None:
    expect_one(tmp_path, text, line, key, fragment)


def test_unknown_step_kind_suggests(tmp_path: Path) -> None:
    problem = expect_one(tmp_path, replace(17, 17, "        kind: manufacturing"), 17,
                         "pathways.local.steps[1].kind", "(got 'manufacturing'",
                         "did you mean 'manufacture'?")
    assert "'cryopreserve'" in problem.message  # the allowed kinds are listed


def test_unknown_step_kind_lists_kinds(tmp_path: Path) -> None:
    problem = expect_one(tmp_path, replace(17, 17, "        kind: zz"), 17,
                         "pathways.local.steps[1].kind", "(got 'zz')")
    for kind in ("screen", "apheresis", "cryopreserve", "transport", "manufacture", "release",
                 "conditioning", "delay", "infusion"):
        assert f"'{kind}'" in problem.message


# --------------------------------------------------------------------------- arrivals


def test_arrivals_with_no_form(tmp_path: Path) -> None:
    expect_one(tmp_path, replace(3, 4, "arrivals: {}"), 3, "arrivals",
               "give exactly one of rate_per_year, interarrival, schedule")


def test_arrivals_with_two_forms(tmp_path: Path) -> None:
    problem = expect_one(tmp_path, insert(4, "  schedule: [0, 14, 30.5]"), 3, "arrivals",
                         "give exactly one of rate_per_year, interarrival, schedule")
    assert "(got rate_per_year, schedule)" in problem.message


@pytest.mark.parametrize(
    ("line4", "fragment"),
    [
        ("  interarrival: never", "interarrival cannot be 'never'"),
        ("  interarrival: 0", "positive mean"),
        ("  rate_per_year: 0", "greater than 0"),
        ("  schedule: [1, -2]", "must be at least 0 (got -2)"),
    ],
)
def test_arrivals_bad_values(tmp_path: Path, line4: str, fragment: str) -> None:
    _, err = problems_of(tmp_path, replace(4, 4, line4))
    assert len(err.problems) == 1, str(err)
    assert err.problems[0].line in (3, 4)
    assert err.problems[0].path.startswith("arrivals")
    assert fragment in err.problems[0].message


@pytest.mark.parametrize("line4", ["  rate_per_year: 10", "  schedule: [0, 14, 30.5]",
                                   "  interarrival: {dist: exponential, mean: 18.25}"])
def test_each_arrivals_form_accepted(tmp_path: Path, line4: str) -> None:
    load(tmp_path, replace(4, 4, line4))


# --------------------------------------------------------------------------- steps


def test_never_as_step_duration(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(18, "        duration: never"), 19,
               "pathways.local.steps[1].duration", "'never' is only allowed for disease clocks")


def test_never_as_disease_clock_accepted(tmp_path: Path) -> None:
    sc = load(tmp_path, insert(7, "    time_to_death: never", "    time_to_ineligible: never"))
    assert sc.cohorts[0].time_to_death.is_never


def test_site_reference_missing(tmp_path: Path) -> None:
    expect_one(tmp_path, replace(18, 18, "        site: labb"), 18,
               "pathways.local.steps[1].site", "no site named 'labb'", "did you mean 'lab'?")


def test_site_reference_without_sites(tmp_path: Path) -> None:
    expect_one(tmp_path, replace(8, 10), 15, "pathways.local.steps[1].site",
               "no site named 'lab'")


def test_cohort_pathway_missing(tmp_path: Path) -> None:
    expect_one(tmp_path, replace(7, 7, "    pathway: locall"), 7, "cohorts[0].pathway",
               "no pathway named 'locall'", "did you mean 'local'?")


def test_reserve_from_later_step(tmp_path: Path) -> None:
    text = insert(15, "        site: lab", "        reserve_from: make")
    expect_one(tmp_path, text, 17, "pathways.local.steps[0].reserve_from",
               "'make' comes after this step", "earlier step")


def test_reserve_from_missing_step(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(18, "        reserve_from: aferesis"), 19,
               "pathways.local.steps[1].reserve_from", "no step named 'aferesis'",
               "in pathway 'local'")


def test_reserve_from_own_step(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(18, "        reserve_from: make"), 19,
               "pathways.local.steps[1].reserve_from", "earlier step, not this one")


def test_reserve_from_without_site(tmp_path: Path) -> None:
    expect_one(tmp_path, replace(18, 18, "        reserve_from: aph"), 18,
               "pathways.local.steps[1].reserve_from", "reserve_from needs a site")


def test_reserve_from_earlier_step_accepted(tmp_path: Path) -> None:
    sc = load(tmp_path, insert(18, "        reserve_from: aph"))
    assert sc.pathways["local"].steps[1].reserve_from == "aph"


def test_retry_from_forward(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(18, "        on_failure: {retry_from: infusion, max_attempts: 2}"),
               19, "pathways.local.steps[1].on_failure.retry_from",
               "'infusion' comes after this step", "this or an earlier step")


def test_retry_from_missing(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(18, "        on_failure:", "          retry_from: mak",
                                "          max_attempts: 2"),
               20, "pathways.local.steps[1].on_failure.retry_from", "no step named 'mak'",
               "did you mean 'make'?")


@pytest.mark.parametrize("target", ["make", "aph"])
def test_retry_from_this_or_earlier_accepted(tmp_path: Path, target: str) -> None:
    sc = load(tmp_path, insert(18, f"        on_failure: {{retry_from: {target}, max_attempts: 3}}"))
    on_failure = sc.pathways["local"].steps[1].on_failure
    assert on_failure is not None and on_failure.retry_from == target


def test_pathway_without_infusion(tmp_path: Path) -> None:
    expect_one(tmp_path, replace(19, 20), 13, "pathways.local.steps",
               "exactly one infusion step, found 0")


def test_pathway_with_two_infusions(tmp_path: Path) -> None:
    expect_one(tmp_path, replace(15, 15, "        kind: infusion"), 13, "pathways.local.steps",
               "exactly one infusion step, found 2")


def test_infusion_not_last(tmp_path: Path) -> None:
    expect_one(tmp_path, BASE + "      - name: after\n        kind: delay\n", 13,
               "pathways.local.steps", "infusion step must be the last step")


def test_shelf_life_on_non_infusion_step(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(18, "        shelf_life: 3"), 19,
               "pathways.local.steps[1].shelf_life", "only allowed on the infusion step")


def test_shelf_life_on_infusion_accepted(tmp_path: Path) -> None:
    sc = load(tmp_path, insert(20, "        shelf_life: 3"))
    assert sc.pathways["local"].steps[2].shelf_life == 3


def test_duplicate_step_names(tmp_path: Path) -> None:
    expect_one(tmp_path, replace(16, 16, "      - name: aph"), 16,
               "pathways.local.steps[1].name", "duplicate step name 'aph'")


def test_duplicate_cohort_names(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(7, "  - name: a", "    pathway: local"), 8, "cohorts[1].name",
               "duplicate cohort name 'a'")


def test_shares_sum_to_zero(tmp_path: Path) -> None:
    expect_one(tmp_path, insert(7, "    share: 0"), 5, "cohorts", "shares sum to zero")


def test_one_zero_share_among_others_accepted(tmp_path: Path) -> None:
    sc = load(tmp_path, insert(7, "    share: 0", "  - name: b", "    pathway: local"))
    assert sc.cohort_shares() == [0.0, 1.0]


# --------------------------------------------------------------------------- all at once


def test_all_problems_reported_at_once_in_file_order(tmp_path: Path) -> None:
    lines = list(BASE_LINES)
    lines[1] = "horizon_days: -1"                     # 2
    lines[6] = "    pathway: locall"                  # 7
    lines[9] = "    slots: 0"                         # 10
    lines[14] = "        kind: aph"                   # 15
    lines[17] = "        site: labb"                  # 18
    lines.insert(18, "        shelf_life: 3")          # 19
    lines.insert(19, "        duration: never")        # 20
    lines.append("extra: 1")                          # 23
    expect_all(tmp_path, "\n".join(lines) + "\n", [
        (2, "horizon_days", "greater than 0"),
        (7, "cohorts[0].pathway", "no pathway named 'locall'"),
        (10, "sites.lab.slots", "must be at least 1 (got 0)"),
        (15, "pathways.local.steps[0].kind", "(got 'aph')"),
        (18, "pathways.local.steps[1].site", "no site named 'labb'"),
        (19, "pathways.local.steps[1].shelf_life", "only allowed on the infusion step"),
        (20, "pathways.local.steps[1].duration", "'never' is only allowed"),
        (23, "extra", "unknown key"),
    ])


def test_error_is_a_value_error_with_one_line_per_problem(tmp_path: Path) -> None:
    text = replace(1, 2, "horizon_days: -1")
    path, err = problems_of(tmp_path, text)
    assert isinstance(err, ValueError)
    assert str(err).splitlines() == [
        f"{path}:1: name: required key is missing",
        f"{path}:1: horizon_days: must be greater than 0 (got -1)",
    ]


# --------------------------------------------------------------------------- round trip

RICH = """\
name: every form
description: |
  all distribution forms, arrivals by schedule
start_date: 2025-03-03
horizon_days: 365.5
drain_days: 100
replications: 7
seed: 99
currency: HKD
arrivals:
  schedule: [0, 14, 30.5]
cohorts:
  - name: kids
    share: 0.3
    pathway: p
    priority: 0
    time_to_death: {dist: weibull, shape: 1.2, median: 200}
    time_to_ineligible: never
    after_infusion: {response_probability: 0.8, icu_probability: 0.08}
  - name: adults
    share: 0.7
    pathway: p
    priority: 1
    time_to_death: {dist: weibull, shape: 0.9, scale: 300}
    time_to_ineligible: {dist: exponential, median: 180}
sites:
  lab: {slots: 2, starts_on: [mon, tue], cost_per_use: 10, fixed_cost_per_year: 1000.5}
  courier: {slots: 100}
pathways:
  p:
    steps:
      - {name: screen, kind: screen, duration: 1, failure_probability: 0.1}
      - {name: aph, kind: apheresis, duration: {dist: fixed, value: 0.5}, cost: 15000}
      - {name: ship, kind: transport, site: courier, duration: {dist: uniform, low: 1, high: 2}}
      - name: make
        kind: manufacture
        site: lab
        reserve_from: aph
        starts_on: [tue]   # with the site: Tuesdays
        duration: {dist: triangular, low: 10, mode: 12, high: 14}
        failure_probability: 0.05
        on_failure: {retry_from: aph, max_attempts: 2}
      - {name: freeze, kind: cryopreserve, duration: {dist: lognormal, median: 2, p90: 3}}
      - {name: qc, kind: release, duration: {dist: lognormal, mean: 3, sd: 1}}
      - {name: back, kind: transport, duration: {dist: gamma, mean: 4, sd: 1}}
      - {name: ld, kind: conditioning, duration: {dist: exponential, mean: 1}}
      - name: wait
        kind: delay
        duration: {dist: empirical, values: [1, 2, 4], weights: [1, 2, 1]}
      - name: infusion
        kind: infusion
        duration: {dist: empirical, values: [0, 1]}
        shelf_life: 3
        on_failure: {retry_from: make, max_attempts: 3}
"""


def _round_trip(tmp_path: Path, sc: Scenario) -> Scenario:
    text = scenario_to_yaml(sc)
    return v2vsim.load_scenario(write(tmp_path, text, "dumped.yaml"))


@pytest.mark.parametrize("name", ["local.yaml", "overseas.yaml"])
def test_bundled_scenarios_round_trip(tmp_path: Path, name: str) -> None:
    sc = v2vsim.load_scenario(SCENARIOS / name)
    assert _round_trip(tmp_path, sc) == sc


def test_rich_scenario_round_trips(tmp_path: Path) -> None:
    sc = load(tmp_path, RICH)
    again = _round_trip(tmp_path, sc)
    assert again == sc
    # and the dump is a fixed point
    assert scenario_to_yaml(again) == scenario_to_yaml(sc)


@pytest.mark.parametrize("line4", ["  rate_per_year: 12.5",
                                   "  interarrival: {dist: weibull, shape: 2, median: 30}"])
def test_other_arrival_forms_round_trip(tmp_path: Path, line4: str) -> None:
    sc = load(tmp_path, replace(4, 4, line4))
    assert _round_trip(tmp_path, sc) == sc


def test_dump_with_overrides(tmp_path: Path) -> None:
    sc = load(tmp_path, BASE)
    text = scenario_to_yaml(sc, seed=5, replications=3)
    again = v2vsim.load_scenario(write(tmp_path, text, "dumped.yaml"))
    assert (again.seed, again.replications) == (5, 3)
    assert again.model_copy(update={"seed": sc.seed, "replications": sc.replications}) == sc
