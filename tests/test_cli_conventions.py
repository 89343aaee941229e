"""Conventions every command follows: results named after the scenario files, examples in every
``--help``, console tables that do not wrap when piped, the scenario's policy metrics in the
console summaries, and ``compare --set-for`` (one scenario's override)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer.main
from typer.testing import CliRunner

from v2vsim import load_scenario
from v2vsim.cli import app, default_compare_dir
from v2vsim.cli.common import NAME_BYTES, result_name
from v2vsim.cli.compare import _fmt_compare, _scenario_dirs
from v2vsim.metrics import format_value, headline_rows

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
runner = CliRunner()

SMALL = """\
name: {name}
horizon_days: 200
replications: 4
seed: 11
currency: HKD
arrivals: {{rate_per_year: 40}}
cohorts:
  - {{name: a, share: 1, pathway: p, time_to_death: {{dist: exponential, mean: 300}}}}
sites:
  dev: {{slots: {slots}, cost_per_use: 100}}
pathways:
  p:
    steps:
      - {{name: apheresis, kind: apheresis, duration: 1, cost: 10}}
      - {{name: make, kind: manufacture, site: dev, reserve_from: apheresis, duration: {{dist: uniform, low: 9, high: 12}}}}
      - {{name: infusion, kind: infusion, duration: 1}}
"""

#: Long enough that a table's title wraps at any width; the rows must not.
LONG_NAME = "A small test scenario whose title is as long as the titles of the bundled scenarios are, or longer"


def write_small(path: Path, name: str = "small test", slots: int = 2) -> Path:
    path.write_text(SMALL.format(name=name, slots=slots), encoding="utf-8")
    return path


def invoke(*args: object, **kwargs: object):
    return runner.invoke(app, [str(a) for a in args], **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- result names


def test_result_names_are_the_file_stems_within_the_byte_limit() -> None:
    assert result_name(["scenarios/local.yaml"]) == "local"
    assert result_name(["local"]) == "local"  # a bundled scenario's NAME
    assert result_name([Path("a/b/local.yml")], suffix="-sweep") == "local-sweep"
    assert result_name(["local.yaml", "overseas.yaml"], prefix="psa-") == "psa-local-vs-overseas"
    long_a, long_b = "x" * 300 + "_a.yaml", "x" * 300 + "_b.yaml"
    chinese = "香港本地製造" * 20 + ".yaml"  # 120 characters, 360 bytes
    for files in ([long_a], [long_a, long_b], [chinese], [chinese, long_a, long_b]):
        for prefix, suffix in (("", ""), ("compare-", ""), ("", "-sensitivity-morris")):
            name = result_name(files, prefix=prefix, suffix=suffix)
            assert len(name.encode("utf-8")) <= NAME_BYTES, name
            assert name.startswith(prefix) and name.endswith(suffix)
            name.encode("utf-8").decode("utf-8")  # never a character cut in half
    # Two long stems alike for 300 characters still get different names.
    assert result_name([long_a]) != result_name([long_b])
    assert result_name([long_a, long_b], prefix="compare-") != result_name([long_b, long_a], prefix="compare-")


def test_the_same_file_twice_gets_distinct_subdirectories() -> None:
    assert default_compare_dir(["scenarios/local.yaml", "scenarios/local.yaml"]) == Path(
        "results/compare-local-vs-local")
    assert _scenario_dirs(["scenarios/local.yaml", "other/local.yaml", "local"]) == [
        "local", "local-2", "local-3"]
    # Names of the comparison's own files are never taken by a scenario.
    assert _scenario_dirs(["figures.yaml", "manifest.json.yaml"]) == ["figures-2", "manifest.json-2"]


def test_every_command_names_its_results_after_the_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """run, compare, sweep, sensitivity and capacity, from a folder with no results yet; the
    scenarios' titles are long (the names must not come from them)."""
    small = write_small(tmp_path / "small.yaml", LONG_NAME)
    other = write_small(tmp_path / "other.yaml", LONG_NAME + " (one slot)", slots=1)
    monkeypatch.chdir(tmp_path)
    common = ["--no-figures", "-j", "1"]
    commands = {
        "small": ["run", small, "-n", 2],
        "compare-small-vs-other": ["compare", small, other, "-n", 2],
        "small-sweep": ["sweep", small, "--set", "sites.dev.slots=1,2", "-n", 2],
        "small-sensitivity-oat": ["sensitivity", small, "--param", "sites.dev.slots", 1, 2, "-n", 2],
        "small-capacity-dev": ["capacity", small, "--site", "dev", "--target", "queue_wait_mean<=1000",
                               "--max-slots", 2, "-n", 2],
    }
    for expected, args in commands.items():
        result = invoke(*args, *common)
        assert result.exit_code == 0, (args, result.output)
        assert (tmp_path / "results" / expected / "manifest.json").is_file(), expected
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(commands)
    manifest = json.loads((tmp_path / "results" / "compare-small-vs-other" / "manifest.json").read_text())
    assert [s["dir"] for s in manifest["scenarios"]] == ["small", "other"]


# --------------------------------------------------------------------------- help


COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_every_registered_command_is_checked() -> None:
    assert {"run", "compare", "validate", "verify", "report", "sweep", "sensitivity", "capacity",
            "psa", "validation"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_ends_with_examples_on_their_own_lines(name: str) -> None:
    result = invoke(name, "--help")
    assert result.exit_code == 0, name
    lines = result.output.splitlines()
    stripped = [line.strip() for line in lines]
    assert "Examples:" in stripped, f"{name}: no Examples: paragraph"
    at = stripped.index("Examples:")
    # The paragraph runs to the next unindented line (Arguments:, Options:).
    end = next((i for i in range(at + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")),
               len(lines))
    commands = [line for line in stripped[at + 1:end] if "v2vsim " in line]
    assert commands, f"{name}: no example after Examples:"
    for line in commands:  # one example a line: the paragraphs are not run together
        assert line.count("v2vsim ") == 1, (name, line)
    assert any(line.startswith(f"v2vsim {name}") for line in commands), name


# --------------------------------------------------------------------------- piped tables


def _table_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("│")]


def test_run_summary_rows_do_not_wrap_when_piped(tmp_path: Path) -> None:
    small = write_small(tmp_path / "small.yaml", LONG_NAME)
    out = tmp_path / "out"
    # CliRunner's output is not a terminal; COLUMNS=50 is what a narrow pipe would get.
    result = invoke("run", small, "-n", 4, "-o", out, "--no-figures", "-j", 1, env={"COLUMNS": "50"})
    assert result.exit_code == 0, result.output
    lines = _table_lines(result.output)
    rows = headline_rows(pd.read_csv(out / "summary.csv"), "HKD",
                         load_scenario(small).horizon_days)
    assert len(lines) == len(rows)  # one line a row (and a row a line)
    for (_metric, label, mean, ci, yearly), line in zip(rows, lines):
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert cells == [label, mean, ci, yearly]
    assert len({len(line) for line in lines}) == 1
    assert f"{LONG_NAME} — 4 replications, seed 11" in result.output.splitlines()  # the title too


def test_compare_rows_do_not_wrap_when_piped(tmp_path: Path) -> None:
    a = write_small(tmp_path / "a.yaml", LONG_NAME)
    b = write_small(tmp_path / "b.yaml", LONG_NAME + " with one slot", slots=1)
    out = tmp_path / "cmp"
    result = invoke("compare", a, b, "-n", 4, "-o", out, "--no-figures", "-j", 1, env={"COLUMNS": "50"})
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "comparison.csv")
    lines = _table_lines(result.output)
    shown = 0
    # Counts of patients are shown per 100 referred (the rate's row of comparison.csv).
    for metric in ("infused_fraction", "died_per_100_referred", "vein_to_vein_median",
                   "queue_wait_mean", "cost_per_infused", "cost_per_referred"):
        rows = table[table["metric"] == metric].set_index("scenario")
        unit, label = str(rows["unit"].iloc[0]), str(rows["label"].iloc[0])
        label += "" if unit in ("fraction", "per 100 referred") else f" ({unit})"
        first = [line for line in lines if line.strip("│ ").startswith(label + " ")]
        assert len(first) == 1, (label, result.output)
        cells = [c.strip() for c in first[0].strip("│").split("│")]
        means = [_fmt_compare(rows["mean"].iloc[i], unit) for i in range(2)]
        assert cells == [label, *means, _fmt_compare(rows["diff"].iloc[1], unit, diff=True)]
        shown += 1
    assert shown == 6 and len({len(line) for line in lines}) == 1
    output = result.output.splitlines()  # the caption's lines whole
    assert f"A = {LONG_NAME} (baseline)" in output and f"B = {LONG_NAME} with one slot" in output


# --------------------------------------------------------------------------- policy metrics


POLICY_LABELS = {
    "rerouted": "Routed to the fallback pathway, per 100 referred",
    "bridged": "Given bridging therapy, per 100 referred",
    "bridging_toxicities": "Bridging toxicities, per 100 referred",
    "life_years_per_referred": "Life-years in follow-up per referred patient (years)",
    "deaths_in_follow_up": "Deaths within follow-up, per 100 referred",
    "qalys_per_referred": "QALYs per referred patient (QALYs)",
    "qalys_discounted_per_referred": "QALYs per referred patient, discounted (QALYs)",
    "cost_discounted_per_referred": "Cost per referred patient, discounted (HKD)",
}


@pytest.mark.parametrize(("scenario", "policies"), [
    ("local", set()),  # none of the policies
    ("hybrid", {"rerouted"}),  # a routing rule
    ("slot_shortage", {"bridged", "bridging_toxicities", "life_years_per_referred",
                       "deaths_in_follow_up"}),  # bridging and survival after infusion
    ("economics_local", {"life_years_per_referred", "deaths_in_follow_up", "qalys_per_referred",
                         "qalys_discounted_per_referred", "cost_discounted_per_referred"}),
])
def test_run_summary_shows_the_policy_metrics_the_scenario_has(scenario: str, policies: set[str],
                                                              tmp_path: Path) -> None:
    out = tmp_path / scenario
    result = invoke("run", SCENARIOS / f"{scenario}.yaml", "-n", 3, "-o", out, "--no-figures")
    assert result.exit_code == 0, result.output
    labels = [[c.strip() for c in line.strip("│").split("│")][0] for line in _table_lines(result.output)]
    currency = load_scenario(SCENARIOS / f"{scenario}.yaml").currency
    shown = {m for m, label in POLICY_LABELS.items()
             if label.replace("(HKD)", f"({currency})") in labels}
    assert shown == policies
    # The policy rows sit among the headline rows: routing and bridging after the times and
    # before the utilisation, survival and economics after the costs.
    assert labels[:2] == ["Referred patients (over the referral window)", "Infused (% of referred)"]
    position = {label.split(" (")[0].split(", per 100")[0]: i for i, label in enumerate(labels)}
    for metric in policies:
        at = position[POLICY_LABELS[metric].split(" (")[0].split(", per 100")[0]]
        if metric in ("rerouted", "bridged", "bridging_toxicities"):
            assert position["Queue wait per patient, mean"] < at < min(
                i for i, label in enumerate(labels) if label.startswith("Utilisation of"))
        else:
            assert at > position["Cost per referred patient"]
    summary = pd.read_csv(out / "summary.csv").set_index("metric")
    assert policies <= set(summary.index)
    # A count is shown as its rate, with the mean number a year over the referral window.
    for metric in policies & {"rerouted", "bridged", "bridging_toxicities", "deaths_in_follow_up"}:
        row = next(line for line in _table_lines(result.output) if POLICY_LABELS[metric] in line)
        cells = [c.strip() for c in row.strip("│").split("│")]
        rate = summary.loc[f"{metric}_per_100_referred", "mean"]
        horizon = load_scenario(SCENARIOS / f"{scenario}.yaml").horizon_days
        assert cells[1] == format_value(rate, "per 100 referred")
        assert cells[3] == format_value(summary.loc[metric, "mean"] * 365 / horizon, "count")


def test_compare_table_shows_a_policy_metric_where_a_scenario_has_it(tmp_path: Path) -> None:
    result = invoke("compare", SCENARIOS / "local.yaml", SCENARIOS / "hybrid.yaml", "-n", 3,
                    "-o", tmp_path / "c", "--no-figures")
    assert result.exit_code == 0, result.output
    row = next(line for line in _table_lines(result.output) if POLICY_LABELS["rerouted"] in line)
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[1] == "–" and cells[2] != "–"  # local has no routing rule, hybrid has


# --------------------------------------------------------------------------- compare --set-for


def _comparison(directory: Path) -> tuple[pd.DataFrame, list[dict]]:
    rows = json.loads((directory / "comparison.json").read_text())["rows"]
    return pd.read_csv(directory / "comparison.csv"), rows


def test_set_for_overrides_one_scenario_as_a_copy_of_its_file_would(tmp_path: Path) -> None:
    """Two devices at HKIB against overseas: --set-for 2 (and by the file's stem) gives the very
    comparison of a copy of local.yaml with the edit, on the same patients."""
    text = (SCENARIOS / "local.yaml").read_text(encoding="utf-8")
    assert text.count("\n    slots: 1 ") == 1
    copy = tmp_path / "local_two.yaml"
    copy.write_text(text.replace("\n    slots: 1 ", "\n    slots: 2 "), encoding="utf-8")
    common = ["-n", 6, "--no-figures", "-j", 2]
    by_copy = invoke("compare", SCENARIOS / "overseas.yaml", copy, "-o", tmp_path / "copy", *common)
    assert by_copy.exit_code == 0, by_copy.output
    expected = _comparison(tmp_path / "copy")
    for which in ("2", "local"):
        out = tmp_path / f"set-for-{which}"
        result = invoke("compare", SCENARIOS / "overseas.yaml", SCENARIOS / "local.yaml",
                        "--set-for", f"{which}:sites.hkib.slots=2", "-o", out, *common)
        assert result.exit_code == 0, result.output
        got = _comparison(out)
        pd.testing.assert_frame_equal(got[0], expected[0])
        assert got[1] == expected[1]
        manifest = json.loads((out / "manifest.json").read_text())
        assert [s["overrides"] for s in manifest["scenarios"]] == [[], ["sites.hkib.slots=2"]]
        assert "slots: 2" in (out / "local" / "scenario.yaml").read_text()
    # Without the override the second device is not there: the table differs.
    plain = tmp_path / "plain"
    assert invoke("compare", SCENARIOS / "overseas.yaml", SCENARIOS / "local.yaml", "-o", plain,
                  *common).exit_code == 0
    assert not _comparison(plain)[0].equals(expected[0])


def test_set_for_compares_a_file_with_itself_changed(tmp_path: Path) -> None:
    """local.yaml against local.yaml with two devices: distinct names and directories, and the
    same patients (every replication refers the same patients in both)."""
    out = tmp_path / "twice"
    result = invoke("compare", SCENARIOS / "local.yaml", SCENARIOS / "local.yaml", "--set",
                    "horizon_days=365", "--set-for", "2:sites.hkib.slots=2", "-n", 4, "-o", out,
                    "--no-figures", "-j", 2)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    names = [s["name"] for s in manifest["scenarios"]]
    assert names[1] == f"{names[0]} (sites.hkib.slots=2)"
    assert [s["dir"] for s in manifest["scenarios"]] == ["local", "local-2"]
    assert [s["overrides"] for s in manifest["scenarios"]] == [
        ["horizon_days=365"], ["horizon_days=365", "sites.hkib.slots=2"]]
    a, b = (pd.read_csv(out / d / "replications.csv") for d in ("local", "local-2"))
    assert a["referred"].tolist() == b["referred"].tolist()
    referred = pd.read_csv(out / "comparison.csv").query("metric == 'referred'")
    assert referred["diff"].iloc[1] == 0
    assert (b["utilization_hkib"] < a["utilization_hkib"]).all()


@pytest.mark.parametrize(("option", "message"), [
    ("3:sites.hkib.slots=2", "there is no scenario 3"),
    ("0:sites.hkib.slots=2", "there is no scenario 0"),
    ("nosuch:sites.hkib.slots=2", "no scenario file is named 'nosuch'"),
    ("sites.hkib.slots=2", "expected WHICH:PATH=VALUE"),
    ("2:sites.hkib.slots", "expected WHICH:PATH=VALUE"),
    ("2:=3", "expected WHICH:PATH=VALUE"),
    ("2:sites.hkib.slots=many", "--set-for 2:sites.hkib.slots: must be a valid integer"),
    ("1:sites.hkib.slots=2", "--set-for 1:sites.hkib.slots: no such site 'hkib'"),  # overseas has none
])
def test_set_for_refuses_a_bad_scenario_or_override(option: str, message: str, tmp_path: Path) -> None:
    result = invoke("compare", SCENARIOS / "overseas.yaml", SCENARIOS / "local.yaml",
                    "--set-for", option, "-o", tmp_path / "x", "--no-figures")
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ") and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_set_for_by_stem_refuses_a_file_given_twice(tmp_path: Path) -> None:
    result = invoke("compare", SCENARIOS / "local.yaml", SCENARIOS / "local.yaml",
                    "--set-for", "local:sites.hkib.slots=2", "-o", tmp_path / "x")
    assert result.exit_code == 2
    assert "'local' names scenarios 1 and 2; give its position" in result.output.replace("\n", " ")
