"""The command line: run, validate, schema, verify, and bad input (exit 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from v2vsim.cli import app
from scenario_texts import SMALL

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_run_writes_the_contract_files(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("run", small, "-o", out, "--csv", "--no-figures", "-j", "1")
    assert result.exit_code == 0, result.output
    for name in ("scenario.yaml", "scenario_source.yaml", "patients.parquet", "patients.csv",
                 "replications.csv", "summary.csv", "summary.json", "manifest.json"):
        assert (out / name).is_file(), name
    patients = pd.read_parquet(out / "patients.parquet")
    contract = ["replication", "patient", "cohort", "pathway", "referral_day", "apheresis_day",
                "manufacture_start_day", "release_day", "infusion_day", "outcome", "outcome_step",
                "vein_to_vein_days", "referral_to_infusion_days", "queue_wait_days",
                "manufacturing_attempts", "cost"]
    assert list(patients.columns[: len(contract)]) == contract
    assert sorted(patients["replication"].unique()) == [0, 1, 2, 3, 4]
    reps = pd.read_csv(out / "replications.csv")
    assert len(reps) == 5 and "utilization_dev" in reps and "cost_per_infused" in reps
    # Every patient accounted for: outcome counts add up to the referrals.
    outcomes = [c for c in ("infused", "died", "ineligible", "screen_failed", "collection_failed",
                            "lost_in_transit", "manufacturing_failed", "out_of_specification",
                            "product_expired", "step_failed", "unresolved")]
    assert (reps[outcomes].sum(axis=1) == reps["referred"]).all()
    assert reps["referred"].sum() == len(patients)
    summary = json.loads((out / "summary.json").read_text())
    assert {row["metric"] for row in summary} >= {"infused_fraction", "vein_to_vein_median"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 11 and manifest["replications"] == 5
    assert manifest["packages"]["simpy"] and manifest["scenario_sha256"]
    resolved = (out / "scenario.yaml").read_text()
    assert "seed: 11" in resolved and "replications: 5" in resolved and "dist: uniform" in resolved
    # The terminal summary names the key metrics.
    assert "Infused (% of referred)" in result.output and "Utilisation of dev" in result.output
    assert invoke("verify", out).exit_code == 0


def test_run_options_override_the_file(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert invoke("run", small, "-n", "3", "--seed", "5", "-o", out, "--no-figures").exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["replications"] == 3
    assert len(pd.read_csv(out / "replications.csv")) == 3


def test_default_output_directory_is_named_after_the_file(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """results/<file stem>, not the title: a 90-character Chinese title is 270 bytes, past the
    255-byte limit of a file name."""
    title = "香港本地製造新鮮產品" * 9
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.replace("name: small test", f"name: {title}"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = invoke("run", path, "-n", "2", "--no-figures")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["small"]
    assert json.loads((tmp_path / "results" / "small" / "manifest.json").read_text())["scenario_name"] == title


def test_bad_scenario_exits_2_with_located_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("rate_per_year", "rate_per_yer").replace("site: dev", "site: devv"))
    for command in (["run", bad, "-o", tmp_path / "x"], ["validate", bad]):
        result = invoke(*command)
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert f"{bad}:6: arrivals.rate_per_yer: unknown key (did you mean 'rate_per_year'?)" in result.output
        assert f"{bad}:15: pathways.p.steps[1].site: no site named 'devv' (did you mean 'dev'?)" in result.output
    assert not (tmp_path / "x").exists()


def test_validate_reports_each_file(small: Path, tmp_path: Path) -> None:
    result = invoke("validate", small, ROOT / "scenarios" / "local.yaml")
    assert result.exit_code == 0 and result.output.count(": ok") == 2
    missing = invoke("validate", tmp_path / "nope.yaml")
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_schema_is_json_schema_of_the_scenario(tmp_path: Path) -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["type"] == "object" and {"name", "arrivals", "pathways"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    out = tmp_path / "s.json"
    assert invoke("schema", "-o", out).exit_code == 0
    assert json.loads(out.read_text()) == schema


def test_bad_options_exit_2(small: Path) -> None:
    assert invoke("run", small, "-n", "0").exit_code == 2
    assert invoke("run", small, "--jobs", "zero").exit_code == 2
    assert invoke("frobnicate").exit_code == 2


def test_absurd_run_is_refused_unless_allowed(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(SMALL.replace("rate_per_year: 40", "rate_per_year: 50000000"))
    result = invoke("run", big, "-o", tmp_path / "big")
    assert result.exit_code == 2
    assert "about 136,986,301 referrals" in result.output.replace("\n", " ")
    assert "--allow-large" in result.output
    assert not (tmp_path / "big").exists()


def test_console_script_and_checkout_shim_agree(small: Path, tmp_path: Path) -> None:
    outputs = []
    for i, command in enumerate(([sys.executable, "-m", "v2vsim"], [sys.executable, str(ROOT / "cli.py")])):
        out = tmp_path / f"r{i}"
        proc = subprocess.run([*command, "run", str(small), "-o", str(out), "--no-figures", "-n", "2"],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        outputs.append((out / "summary.csv").read_bytes())
    assert outputs[0] == outputs[1]
