"""Outputs of external validation: the predicted-against-observed and sensitivity figures, and
the report's validation section (``v2vsim report --validation DIR``).

The tables are built by hand to the contract of ``v2vsim validation`` (``validation.csv`` and
``sensitivity.csv``: the columns, fractions as 0–1, errors in percentage points or days): a
proportion inside the 95% range of a trial of its size, one outside, and a median time with no
observed interval. Every number the page must show is worked out from those tables in this file.
"""

from __future__ import annotations

import ast
import html
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.colors import to_hex
from typer.testing import CliRunner

from v2vsim.cli import app
from v2vsim.outputs.figures.style import OKABE_ITO
from v2vsim.outputs.figures.validation import (
    sensitivity_figure,
    sensitivity_plot,
    validation_figure,
    validation_plot,
)
from v2vsim.outputs.report import ReportError, load_validation, write_report
from v2vsim.outputs.report.validity import VERIFICATION
from v2vsim.outputs.results_dir import provenance, write_results_dir

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert(1)</script>"

ZUMA = "ZUMA-1 (axi-cel, r/r LBCL)"
JULIET = "JULIET (tisa-cel, r/r DLBCL)"


def _row(case: str, trial: str, metric: str, label: str, unit: str, size: int, pred: tuple[float, float, float],
         trial_range: tuple[float, float], observed: float, k: Any, n: Any, obs_ci: tuple[float, float],
         verdict: str, mechanism: str = "") -> dict[str, Any]:
    scale = 100.0 if unit == "fraction" else 1.0
    return dict(case=case, trial=trial, metric=metric, label=label, unit=unit, trial_size=size,
                replications=200, predicted_mean=pred[0], predicted_ci_low=pred[1], predicted_ci_high=pred[2],
                trial_low=trial_range[0], trial_high=trial_range[1], observed=observed, observed_k=k,
                observed_n=n, observed_ci_low=obs_ci[0], observed_ci_high=obs_ci[1],
                error=scale * (pred[0] - observed), error_unit="pp" if unit == "fraction" else "days",
                verdict=verdict, observed_source=f"{trial.split(' (')[0]} publication", mechanism=mechanism)


def validation_table() -> pd.DataFrame:
    """Three rows: a proportion inside, one outside, a median time without an observed CI."""
    return pd.DataFrame([
        _row("zuma1", ZUMA, "infused_fraction", "Infused, % of enrolled", "fraction", 111,
             (0.9286, 0.9254, 0.9318), (0.8829, 0.9730), 101 / 111, 101, 111, (0.8408, 0.9559), "inside"),
        _row("juliet", JULIET, "infused_fraction", "Infused, % of enrolled", "fraction", 165,
             (0.8000, 0.7960, 0.8040), (0.7450, 0.8610), 111 / 165, 111, 165, (0.5954, 0.7439), "outside",
             mechanism=f"no dropout for disease progression {HOSTILE}"),
        _row("juliet", JULIET, "vein_to_vein_median", "Vein-to-vein, median", "days", 165,
             (38.0, 37.6, 38.3), (33.1, 42.7), 40.0, None, None, (math.nan, math.nan), "inside"),
    ])


def sensitivity_table() -> pd.DataFrame:
    """JULIET's infused share over three values of one input (60 is the case's own) and its
    vein-to-vein time over two values of another."""
    rows = []
    for value, mean in ((30, 0.70), (60, 0.80), (120, 0.86)):
        rows.append(dict(case="juliet", trial=JULIET, metric="infused_fraction", label="Infused, % of enrolled",
                         unit="fraction", path="cohorts.adult_LBCL.time_to_ineligible.mean",
                         input_label="Mean time to losing fitness (days)", value=value, baseline=value == 60,
                         mechanism="disease progression before infusion", predicted_mean=mean,
                         predicted_ci_low=mean - 0.004, predicted_ci_high=mean + 0.004, trial_low=mean - 0.06,
                         trial_high=mean + 0.06, observed=111 / 165, observed_ci_low=0.5954,
                         observed_ci_high=0.7439))
    for value, mean in ((10, 34.0), (14, 38.0)):
        rows.append(dict(case="juliet", trial=JULIET, metric="vein_to_vein_median", label="Vein-to-vein, median",
                         unit="days", path="pathways.commercial.steps[3].duration.median",
                         input_label="Median manufacturing time (days)", value=value, baseline=value == 14,
                         mechanism="", predicted_mean=mean, predicted_ci_low=mean - 0.4,
                         predicted_ci_high=mean + 0.4, trial_low=mean - 4.8, trial_high=mean + 4.8,
                         observed=40.0, observed_ci_low=math.nan, observed_ci_high=math.nan))
    return pd.DataFrame(rows)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _panels(fig: Any) -> dict[str, Any]:
    """The figure's panels by title (titles are on the left in the house style; the verdicts'
    axes on the right of a panel has none)."""
    return {ax.get_title(loc="left"): ax for ax in fig.axes if ax.get_visible() and ax.get_title(loc="left")}


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def test_validation_figure_is_written_as_png_and_svg(tmp_path: Path) -> None:
    paths = validation_figure(validation_table(), tmp_path / "figures")
    assert [p.name for p in paths] == ["validation.png", "validation.svg"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    width, _height = _png_size(paths[0])
    assert width == 2400  # 12 inches at 200 dpi: slide width
    assert paths[1].read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_validation_plot_has_one_panel_per_unit_with_rows_grouped_by_case() -> None:
    table = validation_table()
    fig = validation_plot(table)
    panels = _panels(fig)
    assert set(panels) == {"Proportions", "Times"}
    share, times = panels["Proportions"], panels["Times"]
    assert [t.get_text() for t in share.get_yticklabels()] == [
        "ZUMA-1 · Infused, % of enrolled", "JULIET · Infused, % of enrolled"]
    assert [t.get_text() for t in times.get_yticklabels()] == ["JULIET · Vein-to-vein, median"]
    # Percent on the proportions axis, fitted to the data (every interval inside, no wide margin).
    values = 100 * table.loc[table["unit"] == "fraction", ["predicted_mean", "trial_low", "trial_high",
                                                         "observed_ci_low", "observed_ci_high"]].to_numpy()
    low, high = share.get_xlim()
    assert low <= values.min() and high >= values.max() and high <= 100
    assert (high - low) < 1.3 * (values.max() - values.min())
    assert share.xaxis.get_major_formatter()(80, 0) == "80%"
    # The verdict and the error at the right of each row; "outside" stands out.
    right = share.child_axes[0]
    verdicts = {t.get_text(): t for t in right.get_yticklabels()}
    assert set(verdicts) == {"inside  +1.9 pp", "outside  +12.7 pp"}
    assert to_hex(verdicts["outside  +12.7 pp"].get_color()) == OKABE_ITO["vermillion"].lower()
    assert verdicts["outside  +12.7 pp"].get_fontweight() == "bold"
    assert [t.get_text() for t in times.child_axes[0].get_yticklabels()] == ["inside  \u22122.0 days"]
    # The legend says what each interval is.
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "95% range of one trial of the trial's size" in legend
    assert "95% Monte-Carlo CI" in legend and "exact binomial 95% CI" in legend
    assert "patients per trial: ZUMA-1 111, JULIET 165" in " ".join(t.get_text() for t in fig.texts)


def test_validation_figure_edge_cases(tmp_path: Path) -> None:
    table = validation_table()
    # One row.
    assert len(validation_figure(table.iloc[[1]], tmp_path / "one")) == 2
    # Only times: no proportions panel, and no binomial interval in the legend.
    days = table[table["unit"] == "days"]
    assert set(_panels(validation_plot(days))) == {"Times"}
    assert "binomial" not in " ".join(t.get_text() for t in validation_plot(days).legends[0].get_texts())
    assert validation_figure(days, tmp_path / "days")[0].stat().st_size > 10_000
    # Every interval missing, an observed value missing, a verdict missing.
    holes = table.copy()
    for column in ("predicted_ci_low", "predicted_ci_high", "trial_low", "trial_high", "observed_ci_low",
                   "observed_ci_high"):
        holes[column] = math.nan
    holes.loc[0, ["observed", "verdict"]] = [math.nan, math.nan]
    assert validation_figure(holes, tmp_path / "holes")[0].stat().st_size > 10_000
    # Read back from CSV (empty cells as NaN, ints as floats) as the report reads it.
    table.to_csv(tmp_path / "validation.csv", index=False)
    assert len(validation_figure(pd.read_csv(tmp_path / "validation.csv"), tmp_path / "csv")) == 2
    # Nothing to draw: no file.
    assert validation_figure(table.iloc[0:0], tmp_path / "empty") == []
    assert not (tmp_path / "empty").exists()


def test_sensitivity_figure_has_one_panel_per_case_metric_and_input(tmp_path: Path) -> None:
    sens = sensitivity_table()
    paths = sensitivity_figure(sens, tmp_path)
    assert [p.name for p in paths] == ["validation_sensitivity.png", "validation_sensitivity.svg"]
    assert paths[0].stat().st_size > 10_000
    fig = sensitivity_plot(sens)
    panels = _panels(fig)
    assert set(panels) == {"JULIET · Infused, % of enrolled", "JULIET · Vein-to-vein, median"}
    share = panels["JULIET · Infused, % of enrolled"]
    assert share.get_xlabel() == "Mean time to losing fitness (days)"
    # The predicted mean against the input's value, in percent.
    line = next(l for l in share.get_lines() if len(l.get_xdata()) == 3)
    assert list(line.get_xdata()) == [30, 60, 120]
    assert list(line.get_ydata()) == pytest.approx([70.0, 80.0, 86.0])
    # The observed value as a horizontal line, the case's own value ringed at x = 60.
    assert any(list(l.get_ydata()) == pytest.approx([100 * 111 / 165] * 2) for l in share.get_lines())
    ring = [l for l in share.get_lines() if l.get_marker() == "o" and l.get_markerfacecolor() == "none"]
    assert len(ring) == 1 and list(ring[0].get_xdata()) == [60] and list(ring[0].get_ydata()) == pytest.approx([80.0])
    low, high = share.get_ylim()
    assert low <= 59.54 and high >= 92.0 and high - low < 45


def test_sensitivity_figure_edge_cases(tmp_path: Path) -> None:
    sens = sensitivity_table()
    assert sensitivity_figure(sens.iloc[0:0], tmp_path / "empty") == []
    assert not (tmp_path / "empty").exists()
    assert len(sensitivity_figure(sens.iloc[[0]], tmp_path / "one")) == 2
    words = sens[sens["metric"] == "infused_fraction"].assign(value=["weibull", "exponential", "gamma"],
                                                              baseline=["False", "True", "False"])
    fig = sensitivity_plot(words)
    ax = next(iter(_panels(fig).values()))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["weibull", "exponential", "gamma"]
    assert sensitivity_figure(words, tmp_path / "words")[0].stat().st_size > 10_000
    times = sens[sens["metric"] == "vein_to_vein_median"]  # no observed interval at all
    assert "binomial" not in " ".join(t.get_text() for t in sensitivity_plot(times).legends[0].get_texts())
    assert len(sensitivity_figure(times, tmp_path / "times")) == 2


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def invoke(*args: Any):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "overseas"
    result = invoke("run", ROOT / "scenarios" / "overseas.yaml", "-n", 3, "-j", 1, "--no-figures", "-o", out)
    assert result.exit_code == 0, result.output
    return out


def write_validation_dir(out: Path, table: pd.DataFrame, sens: pd.DataFrame | None,
                         manifest: dict[str, Any] | None = None) -> Path:
    """A validation results directory to the contract of ``v2vsim validation``."""

    def fill(tmp: Path) -> dict[str, Any]:
        table.to_csv(tmp / "validation.csv", index=False)
        validation_figure(table, tmp / "figures")
        if sens is not None:
            sens.to_csv(tmp / "sensitivity.csv", index=False)
            sensitivity_figure(sens, tmp / "figures")
        (tmp / "cases").mkdir()
        (tmp / "cases" / "juliet.yaml").write_text("name: JULIET\n", encoding="utf-8")
        return manifest if manifest is not None else provenance(
            "validation", ["v2vsim", "validation", "validation/juliet.yaml", "-o", str(out)])

    return write_results_dir(out, fill)


@pytest.fixture(scope="module")
def validation_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_validation_dir(tmp_path_factory.mktemp("v") / "validation", validation_table(),
                                sensitivity_table())


def _text(page: str) -> str:
    body = re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]*"', "", page))
    return html.unescape(re.sub(r"\s+", " ", body))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


HEADINGS = ["5.1 Face validity", "5.2 Verification (internal validity)", "5.3 Cross validity",
            "5.4 External validity", "5.5 Predictive validity"]


def test_report_with_validation_shows_the_table_verdicts_and_figures(run_dir: Path, validation_dir: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = invoke("report", run_dir, "--validation", validation_dir, "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    text = _text(page)
    assert re.findall(r"<h3[^>]*>(5\.\d [^<]+)</h3>", page) == HEADINGS
    assert "ISPOR–SMDM" in text and "Med Decis Making 2012" in text
    table = validation_table()
    zuma, juliet, v2v = (r for _, r in table.iterrows())
    # Proportions as percentages with one decimal, intervals "a to b", counts "k of n".
    for row in (zuma, juliet):
        assert f"{_pct(row['predicted_mean'])} {_pct(row['predicted_ci_low'])} to {_pct(row['predicted_ci_high'])}" in text
        assert f"{_pct(row['trial_low'])} to {_pct(row['trial_high'])}" in text
        assert (f"{_pct(row['observed'])} {row['observed_k']:.0f} of {row['observed_n']:.0f} "
                f"{_pct(row['observed_ci_low'])} to {_pct(row['observed_ci_high'])}") in text
    assert "92.9% 92.5% to 93.2%" in text and "91.0% 101 of 111 84.1% to 95.6%" in text
    assert "+1.9 pp" in text and "+12.7 pp" in text
    # Days with one decimal; no observed interval shown where there is none.
    assert "38.0 37.6 to 38.3 33.1 to 42.7 40.0 \u22122.0 days" in text
    # Verdicts, grouped by trial with its size, and the summary.
    assert page.count('<span class="pill inside">inside</span>') == 2
    assert page.count('<span class="pill outside">outside</span>') == 1
    assert f"{JULIET} · 165 patients · 200 virtual trials" in text
    assert "2 of 3 observed values lie inside" in text and "1 outside: JULIET · Infused, % of enrolled" in text
    # What the inputs lack, escaped.
    assert html.escape(HOSTILE) in page and HOSTILE not in page
    # Sensitivity: the case's own value in bold, where the observed value falls inside the range
    # (0.6727 lies in 0.70 ± 0.06 only: at 30).
    assert "<b>60</b>" in page and "70.0% to 86.0%" in text
    assert re.search(r"Mean time to losing fitness \(days\).*?<td>30</td>", page, re.S)
    assert "34.0 to 38.0 days" in text
    # Both validation figures embedded after the run's (which has none), numbered from 1.
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page)
    assert [alt for _, alt in images] == ["Predicted against observed",
                                         "Predictions against inputs the trials do not report"]
    assert "Figure 1. Predicted against observed." in text
    # The directory's integrity and the command that wrote it.
    manifest = json.loads((validation_dir / "manifest.json").read_text(encoding="utf-8"))
    assert f"<b>{validation_dir}</b>: all {len(manifest['files'])} files match" in page
    assert "v2vsim validation validation/juliet.yaml -o" in text
    assert f"--validation {validation_dir}" in text  # this report's own command


def test_report_without_validation_says_how_to_run_it(run_dir: Path, tmp_path: Path) -> None:
    page = write_report([run_dir], tmp_path / "r.html").read_text(encoding="utf-8")
    text = _text(page)
    assert re.findall(r"<h3[^>]*>(5\.\d [^<]+)</h3>", page) == HEADINGS
    assert "No validation results were given" in text
    assert "v2vsim validation validation/*.yaml -o results/validation" in text
    assert "--validation results/validation" in text
    assert "pill inside" not in page and "pill outside" not in page
    # Verification names the test modules; cross validity says no other model was compared.
    assert "test_model_queueing.py" in text and "test_engine_compiled.py" in text
    assert "No comparison with another published model" in text
    assert "None yet" in text


def test_verification_names_only_test_modules_that_exist() -> None:
    named = [f for check in VERIFICATION for f in check.files]
    assert len(named) == len(set(named))
    for name in named:
        path = ROOT / "tests" / name
        assert path.is_file(), name
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), name
    for must in ("test_model_queueing.py", "test_model_erlang_a.py", "test_model_analytic.py",
                 "test_model_trace.py", "test_model_invariants.py", "test_model_crn.py",
                 "test_reproducible.py", "test_engine_vectorised.py", "test_engine_compiled.py"):
        assert must in named


def test_a_manifest_saying_command_validation_is_recognised(tmp_path: Path) -> None:
    manifest = {"command": "validation", "v2vsim_version": "0.1.0"}
    loaded = load_validation(write_validation_dir(tmp_path / "v", validation_table(), None, manifest))
    assert len(loaded.table) == 3 and loaded.sensitivity is None
    assert [p.name for p in loaded.figures] == ["validation.png"]


def test_what_is_not_a_validation_directory_is_refused(run_dir: Path, validation_dir: Path,
                                                       tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    no_csv = tmp_path / "no_csv"
    write_validation_dir(no_csv, validation_table(), None)
    (no_csv / "validation.csv").unlink()
    bad_columns = write_validation_dir(tmp_path / "bad", validation_table().drop(columns=["trial_low"]), None)
    cases = {
        run_dir: "not a validation results directory (its manifest.json says kind 'run')",
        tmp_path / "empty": "not a validation results directory (no manifest.json)",
        tmp_path / "missing": "no such directory",
        no_csv: "not a validation results directory (no validation.csv)",
        bad_columns: "missing column(s) trial_low",
    }
    out = tmp_path / "r.html"
    for directory, message in cases.items():
        result = invoke("report", run_dir, "--validation", directory, "-o", out)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()) and "Traceback" not in result.output
        assert not out.exists()
    # A validation directory given as a results directory says where it belongs.
    result = invoke("report", validation_dir, "-o", out)
    assert result.exit_code == 2 and "pass it with --validation" in result.output
    with pytest.raises(ReportError, match="give --validation a directory written by `v2vsim validation`"):
        load_validation(tmp_path / "empty")
