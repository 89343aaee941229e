"""Sweeps: every point run with the same seeds; the table equals plain runs of each variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

import v2vsim
from v2vsim import experiments as ex
from v2vsim import metrics
from v2vsim.cli import app

TINY = """\
name: tiny
horizon_days: 200
replications: 5
seed: 11
arrivals: {rate_per_year: 40}
cohorts:
  - name: adult
    pathway: p
    time_to_death: {dist: exponential, mean: 250}
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
        failure_probability: 0.1
      - {name: infusion, kind: infusion, duration: {dist: exponential, mean: 1}}
"""
COLUMNS = ["point", "sites.plant.slots", "arrivals.rate_per_year", "metric", "mean", "ci_low", "ci_high", "n"]


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def sweep(tiny: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(app, ["sweep", str(tiny), "--set", "sites.plant.slots=1,2,3",
                                      "--set", "arrivals.rate_per_year=30,50", "-n", "4", "-o", str(out), *extra])
    assert result.exit_code == 0, result.output


def test_sweep_table_equals_plain_runs_of_each_variant(tiny: Path, tmp_path: Path) -> None:
    sweep(tiny, tmp_path / "s", "-j", "1", "--no-figures")
    table = pd.read_csv(tmp_path / "s" / "sweep.csv")
    assert list(table.columns) == COLUMNS
    assert_frame_equal(pd.read_parquet(tmp_path / "s" / "sweep.parquet"), table, check_dtype=False)
    # Grid order: first parameter slowest.
    points = table.drop_duplicates("point")[["sites.plant.slots", "arrivals.rate_per_year"]]
    assert points.values.tolist() == [[1, 30], [1, 50], [2, 30], [2, 50], [3, 30], [3, 50]]
    source = ex.ScenarioSource(tiny)
    for point, slots, rate in table.drop_duplicates("point")[["point", "sites.plant.slots", "arrivals.rate_per_year"]].itertuples(index=False):
        sc = source.variant({"sites.plant.slots": int(slots), "arrivals.rate_per_year": int(rate)})
        expected = metrics.summarise(v2vsim.simulate(sc, 4, 11, jobs=1).replications)
        got = table[table["point"] == point][["metric", "mean", "ci_low", "ci_high", "n"]].reset_index(drop=True)
        assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, check_dtype=False)


def test_points_share_seeds_and_more_slots_never_wait_longer(tiny: Path, tmp_path: Path) -> None:
    sweep(tiny, tmp_path / "s", "-j", "2")
    table = pd.read_csv(tmp_path / "s" / "sweep.csv")
    wide = table.pivot_table(index=["arrivals.rate_per_year", "sites.plant.slots"], columns="metric", values="mean")
    for rate, group in wide.groupby(level=0):
        # Common random numbers: the slots do not change who is referred.
        assert group["referred"].nunique() == 1
        waits = group["queue_wait_mean"].to_numpy()
        assert np.all(np.diff(waits) <= 1e-12), waits
    assert sorted(p.name for p in (tmp_path / "s" / "figures").iterdir()) == [
        "heatmap_infused_fraction.png", "heatmap_infused_fraction.svg", "heatmap_queue_wait_mean.png",
        "heatmap_queue_wait_mean.svg", "sweep_curves.png", "sweep_curves.svg"]
    assert not (tmp_path / "s.partial").exists()
    assert v2vsim.load_scenario(tmp_path / "s" / "scenario.yaml").sites["plant"].slots == 1


def test_sweep_results_do_not_depend_on_jobs(tiny: Path, tmp_path: Path) -> None:
    sweep(tiny, tmp_path / "a", "-j", "1", "--no-figures")
    sweep(tiny, tmp_path / "b", "-j", "2", "--no-figures")
    for name in ("sweep.csv", "points.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert_frame_equal(pd.read_parquet(tmp_path / "a" / "replications.parquet"),
                       pd.read_parquet(tmp_path / "b" / "replications.parquet"))


def test_lhs_design_is_reproducible_and_in_range() -> None:
    ranges = [("a", 1, 4), ("b", 0.5, 2.0)]
    first = ex.lhs_points(ranges, 8, seed=3)
    assert first == ex.lhs_points(ranges, 8, seed=3)
    assert first != ex.lhs_points(ranges, 8, seed=4)
    a = [p["a"] for p in first]
    b = np.array([p["b"] for p in first])
    assert all(isinstance(v, int) and 1 <= v <= 4 for v in a)
    assert set(a) == {1, 2, 3, 4}  # 8 strata over 4 integers: each integer twice
    assert sorted(a) == [1, 1, 2, 2, 3, 3, 4, 4]
    # Latin hypercube: exactly one point in each of the 8 equal strata of b's range.
    strata = np.floor((b - 0.5) / 1.5 * 8).astype(int)
    assert sorted(strata) == list(range(8))


def test_lhs_sweep_from_the_command_line(tiny: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sweep", str(tiny), "--design", "lhs", "--samples", "5",
                                      "--set", "pathways.p.steps.manufacture.failure_probability=0.0:0.3",
                                      "--set", "sites.plant.slots=1:2", "--set", "horizon_days=150",
                                      "-n", "3", "-j", "1", "-o", str(tmp_path / "l")])
    assert result.exit_code == 0, result.output
    points = pd.read_csv(tmp_path / "l" / "points.csv")
    assert len(points) == 5
    assert points["pathways.p.steps.manufacture.failure_probability"].between(0, 0.3).all()
    assert set(points["sites.plant.slots"]) <= {1, 2}
    assert v2vsim.load_scenario(tmp_path / "l" / "scenario.yaml").horizon_days == 150  # the fixed override
    assert sorted(p.stem for p in (tmp_path / "l" / "figures").glob("*.png")) == [
        "scatter_infused_fraction", "scatter_queue_wait_mean"]


def test_sweep_with_precision_runs_each_point_to_it(tiny: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sweep", str(tiny), "--set", "sites.plant.slots=1,2", "--precision", "0.2",
                                      "-n", "60", "-j", "2", "--no-figures", "-o", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "p" / "sweep.csv").set_index(["point", "metric"])
    points = pd.read_csv(tmp_path / "p" / "points.csv")
    for row in points.itertuples(index=False):
        assert 10 <= row.replications <= 60 and row.replications % 10 == 0
        for metric in ex.PRECISION_METRICS:
            mean, low, high = table.loc[(row.point, metric), ["mean", "ci_low", "ci_high"]]
            if row.precision_reached and mean != 0:
                assert (high - low) / 2 <= 0.2 * abs(mean) + 1e-12


def test_nothing_to_sweep_and_bad_points_exit_2(tiny: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(tiny), "--set", "sites.plant.slots=2", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "nothing to sweep" in result.output
    result = runner.invoke(app, ["sweep", str(tiny), "--set", "sites.plant.slots=1,0", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--set sites.plant.slots: must be at least 1 (got 0)" in result.output
    result = runner.invoke(app, ["sweep", str(tiny), "--set", "sites.plnt.slots=1,2", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "did you mean 'plant'" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
