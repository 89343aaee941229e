"""Sensitivity analyses: OAT from plain runs of each variant; Morris and Sobol (SALib) give an
index of exactly zero to a parameter that cannot change the metric (common random numbers)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import v2vsim
from v2vsim import experiments as ex
from v2vsim.cli import app

TINY = """\
name: tiny
horizon_days: 250
replications: 4
seed: 13
arrivals: {rate_per_year: 40}
cohorts:
  - {name: adult, pathway: p, time_to_death: {dist: exponential, mean: 150}}
sites:
  plant: {slots: 1}
pathways:
  p:
    steps:
      - {name: apheresis, kind: apheresis, duration: 1, cost: 100}
      - {name: manufacture, kind: manufacture, site: plant, reserve_from: apheresis,
         duration: {dist: triangular, low: 8, mode: 10, high: 14}}
      - {name: infusion, kind: infusion, duration: 1}
"""
SLOTS = ("sites.plant.slots", 1, 3)
COST = ("pathways.p.steps.apheresis.cost", 0.0, 500.0)  # cannot change who is infused
MODE = ("pathways.p.steps.manufacture.duration.mode", 9, 13)


@pytest.fixture()
def source(tmp_path: Path) -> ex.ScenarioSource:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return ex.ScenarioSource(path)


def mean_of(source: ex.ScenarioSource, values: dict, metric: str = "infused_fraction") -> float:
    return float(v2vsim.simulate(source.variant(values), 4, 13).replications[metric].mean())


def test_oat_is_each_parameter_alone_around_the_base(source: ex.ScenarioSource) -> None:
    result, points, _ = ex.sensitivity_analysis(source, [SLOTS, MODE, COST], "oat", replications=4)
    assert len(points) == 7
    rows = result.indices.set_index("parameter")
    base = mean_of(source, {})
    for name, low, high in (SLOTS, MODE, COST):
        assert rows.loc[name, "base_mean"] == pytest.approx(base, rel=1e-12)
        assert rows.loc[name, "low_mean"] == pytest.approx(mean_of(source, {name: low}), rel=1e-12)
        assert rows.loc[name, "high_mean"] == pytest.approx(mean_of(source, {name: high}), rel=1e-12)
    assert rows.loc[COST[0], "swing"] == 0
    assert list(result.indices["swing"]) == sorted(result.indices["swing"], reverse=True)
    assert rows.loc[SLOTS[0], "base_value"] == 1 and rows.loc[MODE[0], "base_value"] == 10


def test_morris_gives_zero_to_an_inert_parameter(source: ex.ScenarioSource) -> None:
    result, points, _ = ex.sensitivity_analysis(source, [SLOTS, COST], "morris", replications=3, trajectories=4)
    assert len(points) == 4 * 3
    rows = result.indices.set_index("parameter")
    assert rows.loc[COST[0], "mu_star"] == 0 and rows.loc[COST[0], "sigma"] == 0
    assert rows.loc[SLOTS[0], "mu_star"] > 0
    assert set(result.indices.columns) == {"parameter", "metric", "mu", "mu_star", "mu_star_conf", "sigma"}
    # Integer bounds give integer slot counts at every point.
    assert all(isinstance(p.values[SLOTS[0]], int) for p in points)


def test_sobol_gives_zero_to_an_inert_parameter(source: ex.ScenarioSource) -> None:
    result, points, _ = ex.sensitivity_analysis(source, [MODE, COST], "sobol", replications=3, samples=8)
    assert len(points) == 8 * (2 + 2)
    rows = result.indices.set_index("parameter")
    assert rows.loc[COST[0], "ST"] == pytest.approx(0, abs=1e-12)
    assert rows.loc[COST[0], "S1"] == pytest.approx(0, abs=1e-12)
    assert rows.loc[MODE[0], "ST"] > 0


def test_sensitivity_command_takes_three_word_params(source: ex.ScenarioSource, tmp_path: Path) -> None:
    out = tmp_path / "sens"
    result = CliRunner().invoke(app, ["sensitivity", str(source.path), "--param", *map(str, SLOTS),
                                      "--param", *map(str, MODE), "--method", "oat", "-n", "3", "-j", "1",
                                      "--metric", "queue_wait_mean", "-o", str(out)])
    assert result.exit_code == 0, result.output
    indices = pd.read_csv(out / "indices.csv")
    assert set(indices["parameter"]) == {SLOTS[0], MODE[0]}
    assert (indices["metric"] == "queue_wait_mean").all()
    assert len(pd.read_csv(out / "points.csv")) == 5
    assert (out / "figures" / "tornado.png").is_file() and (out / "figures" / "tornado.svg").is_file()
    assert not (tmp_path / "sens.partial").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--param", "sites.plant.slots", "1", "x"], "bound 'x' is not a number"),
    (["--param", "sites.plant.slots", "3", "1"], "LOW must be less than HIGH"),
    (["--param", "sites.plant.slot", "1", "3"], "no such key 'slot' (did you mean 'slots'?)"),
    (["--param", "sites.plant.slots", "0", "3"], "must be at least 1"),
    (["--param", "sites.plant.slots", "1", "3", "--metric", "infused_fractoin"], "did you mean 'infused_fraction'"),
    (["--param", "sites.plant.slots", "1", "3", "--method", "sobol", "--samples", "10"], "power of 2"),
])
def test_bad_sensitivity_input_exits_2(source: ex.ScenarioSource, tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["sensitivity", str(source.path), *args, "-o", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert message in result.output
