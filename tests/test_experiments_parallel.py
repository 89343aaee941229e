"""Replications and sweep points in worker processes (or a Dask cluster) give the same results
as one process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

import v2vsim
from v2vsim import experiments as ex
from v2vsim.cli import app
from v2vsim.engine.runner import plan_ranges

TINY = """\
name: tiny
horizon_days: 250
replications: 9
seed: 21
arrivals: {rate_per_year: 35}
cohorts:
  - {name: adult, pathway: p, time_to_death: {dist: exponential, mean: 200}}
sites:
  plant: {slots: 1}
pathways:
  p:
    steps:
      - {name: apheresis, kind: apheresis, duration: 1}
      - {name: manufacture, kind: manufacture, site: plant, duration: {dist: uniform, low: 6, high: 12},
         failure_probability: 0.1, on_failure: {retry_from: apheresis, max_attempts: 2}}
      - {name: infusion, kind: infusion, duration: 1}
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.mark.parametrize(("start", "stop", "workers"), [(0, 1, 4), (0, 200, 2), (10, 37, 3), (0, 1000, 2), (5, 9, 1)])
def test_plan_ranges_cover_every_replication_once(start: int, stop: int, workers: int) -> None:
    ranges = plan_ranges(start, stop, workers)
    assert [r for a, b in ranges for r in range(a, b)] == list(range(start, stop))
    assert all(b - a <= 10 for a, b in ranges)
    sizes = [b - a for a, b in ranges]
    if workers == 1:
        assert all(size == 1 for size in sizes)
    else:  # shrinking to a single replication at the end, never growing
        assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1


@pytest.mark.parametrize("jobs", [2, 3])
def test_simulate_in_chunks_equals_one_process(tiny: Path, jobs: int) -> None:
    sc = v2vsim.load_scenario(tiny)
    one = v2vsim.simulate(sc, 11, jobs=1)
    many = v2vsim.simulate(sc, 11, jobs=jobs)
    for name in ("patients", "replications", "site_days", "events"):
        assert_frame_equal(getattr(many, name), getattr(one, name))
    assert many.events_processed == one.events_processed


def test_points_share_workers_and_match_one_process(tiny: Path) -> None:
    source = ex.ScenarioSource(tiny)
    points = ex.make_points(source, [{"sites.plant.slots": s} for s in (1, 2, 3)], replications=7)
    found: dict[str, dict[int, pd.DataFrame]] = {"inline": {}, "pool": {}}
    ex.run_points(points, lambda p, r: found["inline"].__setitem__(p.index, r.replications))
    with ex.executor_for(2) as (executor, workers):
        ex.run_points(points, lambda p, r: found["pool"].__setitem__(p.index, r.replications),
                      executor=executor, workers=workers)
    for p in points:
        assert_frame_equal(found["pool"][p.index], found["inline"][p.index])
        assert_frame_equal(found["inline"][p.index], v2vsim.simulate(p.scenario, 7, 21).replications)


def test_run_jobs_option_gives_identical_files(tiny: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for jobs in ("1", "2"):
        result = runner.invoke(app, ["run", str(tiny), "-n", "6", "-j", jobs, "--no-figures", "-o", str(tmp_path / jobs)])
        assert result.exit_code == 0, result.output
    for name in ("replications.csv", "summary.csv", "scenario.yaml"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes()
    assert_frame_equal(pd.read_parquet(tmp_path / "1" / "patients.parquet"),
                       pd.read_parquet(tmp_path / "2" / "patients.parquet"))
