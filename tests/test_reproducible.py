"""Reproducibility: the same scenario, seed and version give byte-identical output files
(Parquet, CSV, JSON, YAML; figures excepted) whatever the number of worker processes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from test_outputs import TABLES, scenario  # noqa: F401  (the same small scenario, as a fixture)
from v2vsim.cli import app

runner = CliRunner()


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
