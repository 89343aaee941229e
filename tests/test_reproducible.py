"""Reproducibility: the same scenario, seed and version give byte-identical output files
(Parquet, CSV, JSON, YAML; figures excepted) whatever the number of worker processes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from v2vsim.cli import app
from v2vsim.output import OutputError, verify_dir, write_results_dir

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

SCENARIO = """\
name: outputs test
horizon_days: 300
replications: 6
seed: 4
arrivals: {rate_per_year: 30}
cohorts:
  - {name: a, pathway: p, time_to_death: {dist: weibull, shape: 1.2, median: 150}}
sites:
  dev: {slots: 1, starts_on: [mon, tue, wed, thu, fri]}
pathways:
  p:
    steps:
      - {name: apheresis, kind: apheresis, duration: 1}
      - {name: make, kind: manufacture, site: dev, reserve_from: apheresis, duration: {dist: triangular, low: 10, mode: 12, high: 14}, failure_probability: 0.1, on_failure: {retry_from: make, max_attempts: 2}}
      - {name: infusion, kind: infusion, duration: {dist: exponential, mean: 1}, shelf_life: 3}
"""
TABLES = ("scenario.yaml", "patients.parquet", "patients.csv", "replications.csv", "summary.csv",
          "summary.json")


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_byte_identical_files_whatever_the_jobs(scenario: Path, tmp_path: Path) -> None:
    digests = []
    for jobs in ("1", "2", "1"):
        out = tmp_path / f"j{jobs}-{len(digests)}"
        result = runner.invoke(app, ["run", str(scenario), "-o", str(out), "--csv", "--no-figures",
                                     "-j", jobs])
        assert result.exit_code == 0, result.output
        digests.append({name: _sha(out / name) for name in TABLES})
    assert digests[0] == digests[1] == digests[2]
    other = tmp_path / "other-seed"
    assert runner.invoke(app, ["run", str(scenario), "-o", str(other), "--no-figures",
                               "--seed", "5"]).exit_code == 0
    assert _sha(other / "patients.parquet") != digests[0]["patients.parquet"]
