"""``Results.save`` writes the results directory ``v2vsim run`` writes: the same files and tables
for the same seed and replications, a manifest that ``v2vsim verify`` accepts, written
atomically and never over a directory that v2vsim did not write."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import v2vsim
from v2vsim.cli import app
from v2vsim.outputs.results_dir import OutputError
from scenario_texts import SMALL

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


#: Files whose bytes depend only on the scenario, seed and replications.
TABLES = ("scenario.yaml", "scenario_source.yaml", "replications.csv", "summary.csv",
          "summary.json", "patients.csv", "budget.csv")


def _same_directories(saved: Path, ran: Path) -> None:
    files = json.loads((saved / "manifest.json").read_text())["files"]
    assert files.keys() == json.loads((ran / "manifest.json").read_text())["files"].keys()
    for name in TABLES:
        if name in files:
            assert (saved / name).read_bytes() == (ran / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(saved / "patients.parquet"),
                                  pd.read_parquet(ran / "patients.parquet"))


def _verify(directory: Path) -> None:
    result = runner.invoke(app, ["verify", str(directory)])
    assert result.exit_code == 0, result.output


def test_save_writes_what_run_writes(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL, encoding="utf-8")
    results = v2vsim.simulate(v2vsim.load_scenario(path), replications=3, seed=5)
    saved = results.save(tmp_path / "saved", csv=True, scenario_file=path)
    assert saved == tmp_path / "saved"
    _verify(saved)
    ran = tmp_path / "ran"
    result = runner.invoke(app, ["run", str(path), "-n", "3", "--seed", "5", "-o", str(ran), "--csv"])
    assert result.exit_code == 0, result.output
    _same_directories(saved, ran)
    assert (saved / "figures" / "attrition_funnel.png").is_file()
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["replications"] == 3
    assert manifest["scenario_file"] == str(path) and manifest["scenario_sha256"]
    assert "replications=3, seed=5" in manifest["command"][0]


def test_save_of_an_economic_run_has_its_budget(tmp_path: Path) -> None:
    scenario_file = ROOT / "scenarios" / "economics_local.yaml"
    results = v2vsim.simulate(v2vsim.load_scenario(scenario_file), replications=2, seed=3)
    saved = results.save(tmp_path / "saved", figures=False, scenario_file=scenario_file)
    _verify(saved)
    ran = tmp_path / "ran"
    result = runner.invoke(app, ["run", str(scenario_file), "-n", "2", "--seed", "3", "-o", str(ran),
                                 "--no-figures"])
    assert result.exit_code == 0, result.output
    assert (saved / "budget.csv").is_file()
    _same_directories(saved, ran)


def test_save_replaces_its_own_directory_but_not_another(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL, encoding="utf-8")
    results = v2vsim.simulate(v2vsim.load_scenario(path), replications=2)
    target = tmp_path / "out"
    results.save(target, figures=False)
    assert not (target / "scenario_source.yaml").exists()  # no file given
    results.save(target, figures=False)  # its own: replaced
    _verify(target)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="not written by v2vsim"):
        results.save(other, figures=False)
    assert (other / "notes.txt").read_text() == "keep"
    results.save(other, figures=False, force=True)
    _verify(other)
    assert not (other / "notes.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
