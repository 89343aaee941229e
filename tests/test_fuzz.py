"""Property-based fuzzing: no input produces a traceback or a hang.

Random mutations of the bundled scenarios and random YAML documents either validate (and then
simulate without error) or are refused with ScenarioError / exit status 2. Examples are
derandomized so CI is deterministic, and bounded in number and time.
"""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from typer.testing import CliRunner

from v2vsim.cli import app
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import Scenario, ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted((ROOT / "scenarios").glob("*.yaml"))
FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
#: Simulate a mutated scenario only when it is small enough to finish quickly.
MAX_SIMULATED_REFERRALS = 400


def _plain(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


def _dump(data: Any) -> str:
    buf = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, buf)
    return buf.getvalue()


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["never", "fixed", "mon", "infusion", "local", "hkib", "apheresis", "-1", "1e400"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)


def _mutate(data: Any, ops: list[tuple[int, int, Any]]) -> Any:
    data = copy.deepcopy(data)
    for pick, how, value in ops:
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = paths[pick % len(paths)]
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if how == 0:  # replace a value
            parent[key] = value
        elif how == 1:  # delete a key or item
            del parent[key]
        elif how == 2 and isinstance(parent, dict):  # add an unknown or misspelt key
            parent[str(key) + "x"] = value
        elif how == 3 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = -parent[key] if value is None else parent[key] * 1000  # sign / scale
        elif how == 4 and isinstance(parent, list):  # duplicate an item
            parent.append(copy.deepcopy(parent[key]))
    return data


def _check(text: str, tmp_path: Path) -> Scenario | None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        assert exc.problems, "a refusal must say why"
        for problem in exc.problems:
            assert str(problem).startswith(str(path)), problem
        return None
    return scenario


@pytest.mark.parametrize("bundled", BUNDLED, ids=lambda p: p.name)
@FUZZ
@given(ops=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 4), values), min_size=1, max_size=4))
def test_mutated_bundled_scenarios_validate_or_are_refused(bundled: Path, ops: list, tmp_path: Path) -> None:
    data = _mutate(_plain(bundled), ops)
    scenario = _check(_dump(data), tmp_path)
    if scenario is not None and scenario.expected_referrals() <= MAX_SIMULATED_REFERRALS \
            and scenario.horizon_days + scenario.drain_days < 50_000:
        out = run_replication(scenario, scenario.seed, 0)
        outcomes = out.columns["outcome"]
        assert len(outcomes) == out.columns["referral_day"].size
        assert all(isinstance(o, str) for o in outcomes)
        assert math.isfinite(out.end_day)


yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from([
        "name: x", "horizon_days: 10", "arrivals: {rate_per_year: 5}", "cohorts:", "  - name: a",
        "    pathway: p", "pathways:", "  p:", "    steps:", "      - {name: i, kind: infusion}",
        "sites: {s: {slots: 1}}", "&a [1, 2]", "*a", "? complex", "- item", "key: [unclosed",
        "dup: 1", "dup: 2", "!!python/object/apply:os.system ['true']", "\t tab: 1", "---", "...",
        "seed: 1e999", "horizon_days: .nan", "start_date: 2025-02-30", "replications: -1",
    ]), max_size=14).map("\n".join),
)


@FUZZ
@given(text=yaml_text)
def test_random_yaml_documents_validate_or_are_refused(text: str, tmp_path: Path) -> None:
    _check(text, tmp_path)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=yaml_text)
def test_validate_command_never_crashes(text: str, tmp_path: Path) -> None:
    path = tmp_path / "cli.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
