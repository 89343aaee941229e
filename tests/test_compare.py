"""Comparing scenarios: paired differences under common random numbers, the table, the CLI.

The bundled pair (scenarios/local.yaml vs scenarios/overseas.yaml) shares cohorts, arrivals,
seed and step names, so replication r of both has the same patients. Pairing by replication
must then give a narrower interval for a difference than treating the two sets of
replications as independent (Welch), and the paired interval must be exactly the
t-interval of the per-replication differences (scipy's ``ttest_rel``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

import v2vsim
from v2vsim import metrics
from v2vsim.cli import app, default_compare_dir
from v2vsim.experiments.compare import Comparison

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "scenarios" / "local.yaml"
OVERSEAS = ROOT / "scenarios" / "overseas.yaml"
COLUMNS = ["metric", "label", "unit", "scenario", "mean", "ci_low", "ci_high", "n", "diff",
           "diff_ci_low", "diff_ci_high"]
runner = CliRunner()


@pytest.fixture(scope="module")
def pair() -> Comparison:
    return v2vsim.compare([LOCAL, OVERSEAS], replications=40)


def _rows(comparison: Comparison, metric: str) -> tuple[pd.Series, pd.Series]:
    table = comparison.table.set_index(["metric", "scenario"])
    return (table.loc[(metric, comparison.names[0])], table.loc[(metric, comparison.names[1])])


# ---------------------------------------------------------------- the paired interval


def test_paired_difference_hand_worked() -> None:
    # Differences b - a = [1, 2, 0, 3]: mean 1.5, sd sqrt(5/3) = 1.290994, t(0.975, 3) =
    # 3.182446, half-width 3.182446 * 1.290994 / 2 = 2.054260.
    a = [1.0, 2.0, 3.0, 4.0]
    b = [2.0, 4.0, 3.0, 7.0]
    mean, low, high, n = metrics.paired_difference(a, b)
    assert (mean, n) == (1.5, 4)
    assert low == pytest.approx(1.5 - 2.054260, abs=1e-6)
    assert high == pytest.approx(1.5 + 2.054260, abs=1e-6)
    reference = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert (low, high) == pytest.approx((reference.low, reference.high), rel=1e-12)
    # Level 0.90: t(0.95, 3) = 2.353363.
    _, low90, high90, _ = metrics.paired_difference(a, b, level=0.90)
    assert high90 - 1.5 == pytest.approx(2.353363 * math.sqrt(5 / 3) / 2, abs=1e-6)


def test_paired_difference_drops_incomplete_pairs() -> None:
    # Only replications 0 and 3 have both values: differences 1 and 3, mean 2, sd sqrt(2),
    # t(0.975, 1) = 12.706205: half-width 12.706205.
    mean, low, high, n = metrics.paired_difference([1.0, math.nan, 3.0, 4.0],
                                                   [2.0, 5.0, math.nan, 7.0])
    assert (mean, n) == (2.0, 2)
    assert (low, high) == pytest.approx((2 - 12.706205, 2 + 12.706205), abs=1e-6)
    one = metrics.paired_difference([1.0], [3.0])
    assert one[0] == 2.0 and math.isnan(one[1]) and math.isnan(one[2]) and one[3] == 1
    assert metrics.paired_difference([math.nan], [1.0])[3] == 0
    with pytest.raises(ValueError):
        metrics.paired_difference([1.0, 2.0], [1.0])


@pytest.mark.parametrize("metric", ["infused_fraction", "died"])
def test_paired_interval_is_narrower_than_unpaired(pair: Comparison, metric: str) -> None:
    base, other = (r.replications[metric].to_numpy(dtype=float) for r in pair.results)
    _, row = _rows(pair, metric)
    paired_width = row["diff_ci_high"] - row["diff_ci_low"]
    welch = stats.ttest_ind(other, base, equal_var=False).confidence_interval(0.95)
    welch_width = welch.high - welch.low
    # Same patients in both pathways: the replications' results are positively correlated,
    # so the paired interval is much narrower (0.71x and 0.51x with this seed).
    assert np.corrcoef(base, other)[0, 1] > 0.4
    assert paired_width < 0.8 * welch_width
    # ... and it is the t-interval of the per-replication differences.
    rel = stats.ttest_rel(other, base).confidence_interval(0.95)
    assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((rel.low, rel.high),
                                                                      rel=1e-9)


def test_paired_mean_equals_difference_of_means_exactly(pair: Comparison) -> None:
    table = pair.table
    checked = 0
    for metric, frame in table.groupby("metric"):
        if len(frame) != 2 or (frame["n"] != pair.replications).any():
            continue
        base, other = frame.iloc[0], frame.iloc[1]
        assert other["diff"] == other["mean"] - base["mean"], metric
        checked += 1
    assert checked >= 20


def test_same_seed_gives_the_same_patients(pair: Comparison) -> None:
    local, overseas = (r.patients for r in pair.results)
    for column in ("replication", "patient", "cohort", "referral_day"):
        np.testing.assert_array_equal(local[column].to_numpy(), overseas[column].to_numpy())
    assert [r.seed for r in pair.results] == [pair.seed, pair.seed] == [20250415] * 2


# ---------------------------------------------------------------- the table


def test_comparison_table_rows_and_columns(pair: Comparison) -> None:
    table = pair.table
    assert list(table.columns) == COLUMNS
    assert pair.baseline == pair.names[0] == "Hong Kong local manufacturing (fresh product)"
    first = ["infused_fraction", *metrics.LOSS_CAUSES, "vein_to_vein_median",
             "vein_to_vein_p90", "referral_to_infusion_median", "queue_wait_mean",
             "cost_per_referred", "cost_per_infused", "icu_admissions", "responders"]
    metrics_in_order = list(dict.fromkeys(table["metric"]))
    assert metrics_in_order[:len(first)] == first
    # Every numeric column of either replications table is there, nothing else.
    numeric = {c for r in pair.results for c in r.replications.columns
               if c != "replication"}
    assert set(metrics_in_order) == numeric
    # The baseline's rows have no difference; sites exist in one scenario only.
    assert table.loc[table["scenario"] == pair.baseline, ["diff", "diff_ci_low",
                                                          "diff_ci_high"]].isna().all().all()
    assert set(table.loc[table["metric"] == "utilization_hkib", "scenario"]) == {pair.baseline}
    # Means and intervals are each scenario's own summary (fractions stay fractions).
    for results in pair.results:
        own = results.summary().set_index("metric")
        mine = table[table["scenario"] == results.scenario.name].set_index("metric")
        for metric in ("infused_fraction", "died", "cost_per_infused"):
            assert mine.loc[metric, ["mean", "ci_low", "ci_high"]].tolist() == pytest.approx(
                own.loc[metric, ["mean", "ci_low", "ci_high"]].tolist(), rel=1e-12)
    local, _ = _rows(pair, "infused_fraction")
    assert local["unit"] == "fraction" and 0 < local["mean"] < 1
    assert _rows(pair, "cost_per_infused")[0]["unit"] == "HKD"
    assert _rows(pair, "vein_to_vein_median")[0]["label"] == "Vein-to-vein, median"


def test_results_do_not_depend_on_jobs() -> None:
    one = v2vsim.compare([LOCAL, OVERSEAS], replications=6, jobs=1)
    two = v2vsim.compare([LOCAL, OVERSEAS], replications=6, jobs=2)
    pd.testing.assert_frame_equal(one.table, two.table)


def test_defaults_come_from_the_first_scenario(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    text = OVERSEAS.read_text(encoding="utf-8")
    other.write_text(text.replace("seed: 20250415", "seed: 7").replace(
        "replications: 200", "replications: 3"), encoding="utf-8")
    first = v2vsim.load_scenario(LOCAL).model_copy(update={"replications": 2})
    comparison = v2vsim.compare([first, other])
    assert comparison.replications == 2 and comparison.seed == 20250415
    assert all(r.n_replications == 2 and r.seed == 20250415 for r in comparison.results)


def test_names_must_differ_and_currencies_match() -> None:
    local = v2vsim.load_scenario(LOCAL)
    with pytest.raises(ValueError, match="distinct"):
        v2vsim.compare([local, local], replications=1)
    with pytest.raises(ValueError, match="different currencies"):
        v2vsim.compare([local, local.model_copy(update={"name": "x", "currency": "USD"})],
                       replications=1)
    with pytest.raises(ValueError, match="at least two"):
        v2vsim.compare([local], replications=1)


# ---------------------------------------------------------------- the command


def test_compare_command_writes_a_verifiable_directory(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(LOCAL), str(OVERSEAS), "-n", "4", "--seed", "3",
                                 "-j", "1", "--no-figures", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", " ")
    assert "paired" in text and "B − A" in text

    table = pd.read_csv(out / "comparison.csv")
    assert list(table.columns) == COLUMNS
    document = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    names = [v2vsim.load_scenario(p).name for p in (LOCAL, OVERSEAS)]
    assert document["scenarios"] == names and document["baseline"] == names[0]
    assert (document["replications"], document["seed"]) == (4, 3)
    assert len(document["rows"]) == len(table)
    assert document["rows"][0]["diff"] is None  # NaN is written as null
    assert set(document["rows"][0]) == set(COLUMNS)

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["kind"] == "compare" and manifest["seed"] == 3
    assert [s["name"] for s in manifest["scenarios"]] == names
    for entry in manifest["scenarios"]:
        sub = out / entry["dir"]
        # Each scenario directory is what `v2vsim run` writes, with its own manifest.
        for name in ("scenario.yaml", "scenario_source.yaml", "patients.parquet",
                     "replications.csv", "summary.csv", "summary.json", "manifest.json"):
            assert (sub / name).is_file(), (entry["dir"], name)
        own = json.loads((sub / "manifest.json").read_text(encoding="utf-8"))
        assert own["kind"] == "run" and own["scenario_name"] == entry["name"]
        assert own["seed"] == 3 and own["replications"] == 4
        assert runner.invoke(app, ["verify", str(sub)]).exit_code == 0
        replications = pd.read_csv(sub / "replications.csv")
        row = table[(table["scenario"] == entry["name"]) & (table["metric"] == "died")].iloc[0]
        assert row["mean"] == pytest.approx(replications["died"].mean())
    assert f"{manifest['scenarios'][0]['dir']}/manifest.json" in manifest["files"]

    verified = runner.invoke(app, ["verify", str(out)])
    assert verified.exit_code == 0, verified.output
    (out / "comparison.csv").write_text("tampered", encoding="utf-8")
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 1


def test_compare_command_rejects_bad_input(tmp_path: Path) -> None:
    same = runner.invoke(app, ["compare", str(LOCAL), str(LOCAL), "-o", str(tmp_path / "x")])
    assert same.exit_code == 2
    assert "scenario names must be distinct" in same.output
    assert not (tmp_path / "x").exists()

    bad = tmp_path / "bad.yaml"
    bad.write_text(LOCAL.read_text(encoding="utf-8").replace("horizon_days:", "horizon_dayz:"),
                   encoding="utf-8")
    result = runner.invoke(app, ["compare", str(LOCAL), str(bad), "-o", str(tmp_path / "y")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if "horizon_dayz" in t)
    assert f"{bad}:{line}: horizon_dayz: unknown key" in result.output.replace("\n", "")
    assert runner.invoke(app, ["compare", str(LOCAL)]).exit_code == 2


def test_default_directory_names_every_scenario_file() -> None:
    assert default_compare_dir([Path("scenarios/local.yaml"), Path("scenarios/overseas.yaml")]) \
        == Path("results/compare-local-vs-overseas")
    assert default_compare_dir(["a.yaml", "b.yml", "local"]) == Path("results/compare-a-vs-b-vs-local")


def test_compare_accepts_overrides_and_precision(tmp_path: Path) -> None:
    """--set applies to every scenario; --precision picks one replication count for all."""
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, [
        "compare", "scenarios/local.yaml", "scenarios/overseas.yaml", "-o", str(out),
        "--no-figures", "-j", "1", "--set", "horizon_days=365", "--precision", "0.2", "-n", "40"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "comparison.json").read_text())
    assert 10 <= data["replications"] <= 40
    for sub in json.loads((out / "manifest.json").read_text())["scenarios"]:
        assert "horizon_days: 365" in (out / sub["dir"] / "scenario.yaml").read_text()
    bad = CliRunner().invoke(app, ["compare", "scenarios/local.yaml", "scenarios/overseas.yaml",
                                   "-o", str(tmp_path / "x"), "--set", "sites.nope.slots=2"])
    assert bad.exit_code == 2 and "no such site" in bad.output
