"""``--set PATH=VALUE`` overrides: applied to the YAML tree, validated like the file itself.

The reference is independent of the override code: the same change made by editing the file's
text must give an equal scenario.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import v2vsim
from v2vsim import experiments as ex
from v2vsim.cli import app

TINY = """\
name: tiny
horizon_days: 200
replications: 4
seed: 7
arrivals: {rate_per_year: 30}
cohorts:
  - name: adult
    share: 0.7
    pathway: p
    time_to_death: {dist: exponential, mean: 300}
  - name: child
    share: 0.3
    pathway: p
sites:
  plant: {slots: 1}
pathways:
  p:
    steps:
      - {name: apheresis, kind: apheresis, duration: 1}
      - name: manufacture
        kind: manufacture
        site: plant
        duration: {dist: triangular, low: 8, mode: 10, high: 14}
      - {name: infusion, kind: infusion, duration: {dist: exponential, mean: 1}}
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def edited(tmp_path: Path, old: str, new: str) -> v2vsim.Scenario:
    assert TINY.count(old) == 1
    path = tmp_path / "edited.yaml"
    path.write_text(TINY.replace(old, new), encoding="utf-8")
    return v2vsim.load_scenario(path)


@pytest.mark.parametrize(("sets", "old", "new"), [
    (["sites.plant.slots=3"], "plant: {slots: 1}", "plant: {slots: 3}"),
    (["pathways.p.steps.manufacture.duration.mode=12"], "mode: 10", "mode: 12"),
    (["cohorts.adult.time_to_death={dist: weibull, shape: 1.2, median: 150}"],
     "time_to_death: {dist: exponential, mean: 300}", "time_to_death: {dist: weibull, shape: 1.2, median: 150}"),
    # A key the file does not set (a default) can be set too.
    (["cohorts.child.priority=2"], "    share: 0.3\n", "    share: 0.3\n    priority: 2\n"),
    (["sites.plant.starts_on=[mon, wed]"], "plant: {slots: 1}", "plant: {slots: 1, starts_on: [mon, wed]}"),
])
def test_override_equals_editing_the_file(tiny: Path, tmp_path: Path, sets: list[str], old: str, new: str) -> None:
    assert ex.load_with_overrides(tiny, sets) == edited(tmp_path, old, new)


def test_values_are_typed_like_the_file(tiny: Path) -> None:
    sc = ex.load_with_overrides(tiny, ["sites.plant.slots=2", "horizon_days=100.5", "name=other"])
    assert sc.sites["plant"].slots == 2 and isinstance(sc.sites["plant"].slots, int)
    assert sc.horizon_days == 100.5
    assert sc.name == "other"


def test_later_override_wins_and_base_is_untouched(tiny: Path) -> None:
    source = ex.ScenarioSource(tiny)
    assert source.variant(ex.parse_sets(["sites.plant.slots=2", "sites.plant.slots=5"])).sites["plant"].slots == 5
    assert source.variant([]).sites["plant"].slots == 1
    assert source.base.sites["plant"].slots == 1


@pytest.mark.parametrize(("text", "message"), [
    ("sites.plnt.slots=2", "--set sites.plnt.slots: no such site 'plnt' (did you mean 'plant'?)"),
    ("sites.plant.slot=2", "--set sites.plant.slot: no such key 'slot' (did you mean 'slots'?)"),
    ("horizon=5", "--set horizon: no such key 'horizon' (did you mean 'horizon_days'?)"),
    ("pathways.p.steps.manufactur.duration.mode=3",
     "--set pathways.p.steps.manufactur.duration.mode: no such step 'manufactur' in pathway 'p' "
     "(did you mean 'manufacture'?)"),
    ("cohorts.adlt.share=1", "--set cohorts.adlt.share: no such cohort 'adlt' (did you mean 'adult'?)"),
    ("pathways.p.steps.1.duration=2", "steps are addressed by name, not index"),
    ("cohorts.adult.time_to_death.men=3", "--set cohorts.adult.time_to_death.men: no such key 'men' (did you mean 'mean'?)"),
    ("sites.plant.slots=0", "--set sites.plant.slots: must be at least 1 (got 0)"),
    ("sites.plant.slots=two", "--set sites.plant.slots: "),
    ("cohorts.adult.time_to_death={dist: exponential, mean: -1}", "--set cohorts.adult.time_to_death.mean: must be greater than 0"),
    ("pathways.p.steps.apheresis.duration.mode=3", "'pathways.p.steps.apheresis.duration' is the single value 1"),
    ("sites.plant.slots=!!python/object:os.system 1", "YAML tag '!!python/object:os.system' is not allowed"),
    ("sites.plant.slots", "expected PATH=VALUE"),
])
def test_bad_overrides_are_reported_against_the_set(tiny: Path, text: str, message: str) -> None:
    with pytest.raises(v2vsim.ScenarioError) as info:
        ex.load_with_overrides(tiny, [text])
    assert len(info.value.problems) == 1
    assert message in str(info.value.problems[0])


def test_run_with_set_writes_the_resolved_scenario(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(tiny), "--set", "sites.plant.slots=2", "--set",
                                      "cohorts.adult.time_to_death={dist: exponential, mean: 200}",
                                      "-n", "3", "-j", "1", "--no-figures", "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = v2vsim.load_scenario(out / "scenario.yaml")
    assert written.sites["plant"].slots == 2
    assert written.cohorts[0].time_to_death.mean() == pytest.approx(200)
    assert written.replications == 3


def test_run_with_a_missing_path_exits_2(tiny: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(tiny), "--set", "sites.plant.slotz=2", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--set sites.plant.slotz: no such key 'slotz' (did you mean 'slots'?)" in result.output
    assert not (tmp_path / "o").exists()


def test_split_values_keeps_flow_values_whole() -> None:
    assert ex.split_values("1, 2,{dist: uniform, low: 1, high: 2},[mon, tue],'a,b'") == [
        "1", "2", "{dist: uniform, low: 1, high: 2}", "[mon, tue]", "'a,b'"]
