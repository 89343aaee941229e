"""``--cluster``: the same tasks on a Dask distributed cluster (two worker processes over
loopback) give results identical to a local run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

import v2vsim
from v2vsim import experiments as ex
from v2vsim.cli import app
from v2vsim.engine.distributed import ClusterError, cluster_executor

distributed = pytest.importorskip("distributed")

TINY = """\
name: tiny
horizon_days: 250
replications: 6
seed: 8
arrivals: {rate_per_year: 35}
cohorts:
  - {name: adult, pathway: p, time_to_death: {dist: weibull, shape: 0.9, median: 200}}
sites:
  plant: {slots: 1, starts_on: [mon, tue, wed, thu, fri]}
pathways:
  p:
    steps:
      - {name: apheresis, kind: apheresis, duration: 1}
      - {name: manufacture, kind: manufacture, site: plant, reserve_from: apheresis,
         duration: {dist: triangular, low: 8, mode: 10, high: 13}, failure_probability: 0.1}
      - {name: infusion, kind: infusion, duration: {dist: exponential, mean: 1}}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as local:
        yield local.scheduler_address


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def test_cluster_results_equal_local(cluster: str, tiny: Path) -> None:
    sc = v2vsim.load_scenario(tiny)
    local = v2vsim.simulate(sc, 9, jobs=1)
    with cluster_executor(cluster) as (executor, workers):
        assert workers == 2
        remote = v2vsim.simulate(sc, 9, jobs=workers, executor=executor)
    for name in ("patients", "replications", "site_days", "events"):
        assert_frame_equal(getattr(remote, name), getattr(local, name))


def test_sweep_on_cluster_equals_local(cluster: str, tiny: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["sweep", str(tiny), "--set", "sites.plant.slots=1,2", "-n", "5", "--no-figures"]
    result = runner.invoke(app, [*args, "--cluster", cluster, "-o", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*args, "-j", "1", "-o", str(tmp_path / "l")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "sweep.csv").read_bytes() == (tmp_path / "l" / "sweep.csv").read_bytes()


def test_precision_on_cluster_equals_local(cluster: str, tiny: Path) -> None:
    sc = v2vsim.load_scenario(tiny)
    precision = ex.Precision(0.3, max_replications=40)
    remote = ex.simulate_to_precision(sc, precision, cluster=cluster)
    local = ex.simulate_to_precision(sc, precision, jobs=1)
    assert remote.n_replications == local.n_replications
    assert_frame_equal(remote.replications, local.replications)


def test_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(ClusterError, match="cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        with cluster_executor("tcp://127.0.0.1:9", timeout_seconds=1):
            pass


def test_run_command_on_cluster_writes_the_same_files(cluster: str, tiny: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for name, extra in (("c", ["--cluster", cluster]), ("l", ["-j", "1"])):
        result = runner.invoke(app, ["run", str(tiny), "-n", "5", "--no-figures", "-o", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    for name in ("replications.csv", "summary.csv", "scenario.yaml"):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "l" / name).read_bytes()
