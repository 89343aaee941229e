"""Results directories are atomic: never half-written, never destroying earlier results; manifest hashes."""

from __future__ import annotations

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
from v2vsim.outputs.results_dir import OutputError, verify_dir, write_results_dir

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


def test_manifest_lists_every_file_and_verify_detects_changes(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert runner.invoke(app, ["run", str(scenario), "-o", str(out), "-n", "2"]).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == files
    assert any(name.startswith("figures/") and name.endswith(".png") for name in files)
    assert verify_dir(out) == []
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    with open(out / "summary.csv", "a") as fh:
        fh.write("tampered,1,1,1,1\n")
    (out / "figures" / "journey.svg").unlink()
    (out / "extra.txt").write_text("x")
    problems = verify_dir(out)
    assert any("summary.csv: changed" in p for p in problems)
    assert any("journey.svg: missing" in p for p in problems)
    assert any("extra.txt: not listed" in p for p in problems)
    result = runner.invoke(app, ["verify", str(out)])
    assert result.exit_code == 1 and "summary.csv" in result.output
    assert runner.invoke(app, ["verify", str(tmp_path)]).exit_code == 1  # no manifest at all


def test_manifest_records_the_git_commit_of_a_checkout(scenario: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from v2vsim import _version

    package = Path(_version.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    out = tmp_path / "r"
    assert runner.invoke(app, ["run", str(scenario), "-o", str(out), "-n", "2"]).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    if head.returncode == 0:  # the tests run from a checkout
        assert manifest["git_commit"] == head.stdout.strip() + ("-dirty" if dirty else "")
    # No git on PATH: no commit and no error.
    monkeypatch.setattr(_version, "_GIT_COMMIT", [])
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert _version.git_commit() is None


def test_a_failed_write_leaves_the_previous_results_untouched(tmp_path: Path) -> None:
    out = tmp_path / "res"

    def good(tmp: Path) -> dict:
        (tmp / "a.txt").write_text("first")
        return {"v2vsim_version": "test"}

    write_results_dir(out, good)
    before = (out / "a.txt").read_text(), (out / "manifest.json").read_text()

    def crash(tmp: Path) -> dict:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_results_dir(out, crash)
    assert ((out / "a.txt").read_text(), (out / "manifest.json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]  # no temporary left behind

    def second(tmp: Path) -> dict:
        (tmp / "b.txt").write_text("second")
        return {"v2vsim_version": "test"}

    write_results_dir(out, second)  # a v2vsim directory is replaced once the new one is complete
    assert not (out / "a.txt").exists() and (out / "b.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_a_directory_v2vsim_did_not_write_is_never_replaced_without_force(scenario: Path,
                                                                          tmp_path: Path) -> None:
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    result = runner.invoke(app, ["run", str(scenario), "-o", str(mine), "--no-figures"])
    assert result.exit_code == 2 and "was not written by v2vsim" in " ".join(result.output.split())
    assert (mine / "chapter1.tex").read_text() == "precious"
    with pytest.raises(OutputError):
        write_results_dir(mine, lambda tmp: {})
    result = runner.invoke(app, ["run", str(scenario), "-o", str(mine), "--no-figures", "--force"])
    assert result.exit_code == 0
    assert not (mine / "chapter1.tex").exists() and (mine / "manifest.json").is_file()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert runner.invoke(app, ["run", str(scenario), "-o", str(a_file), "--no-figures"]).exit_code == 2


def test_interrupting_a_real_run_keeps_earlier_results(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    assert runner.invoke(app, ["run", str(scenario), "-o", str(out), "--no-figures"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # The same scenario (results of another are refused before simulating), at length.
    proc = subprocess.Popen([sys.executable, "-m", "v2vsim", "run", str(scenario), "-o", str(out),
                             "-n", "100000", "-j", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    time.sleep(6)  # importing and simulating (100,000 replications take minutes), not yet writing
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr and b"nothing was written" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res", "s.yaml"]
