"""The report's generated prose: scope and limitations read from each scenario, warnings from
the run, the executive summary from the numbers, the key-number cards and the appendix, figure
captions checked against what the figure code draws, and the sections of experiment directories.

Small real results directories are written once per session with the CLI (a few replications,
no figures unless a section needs them); hand-edited copies stand in for rare situations
(unresolved patients, a growing queue, an unmet precision target).
"""

from __future__ import annotations

import html
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from v2vsim.cli import app
from v2vsim.outputs.figures import outcomes, sites, waitlist
from v2vsim.outputs.figures import compare as compare_figures
from v2vsim.outputs.report import load_results, write_report
from v2vsim.outputs.report.context import COMPARISON_CAPTIONS, FIGURE_CAPTIONS
from v2vsim.outputs.report.scope import scenario_features, scope_context

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: Any) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def text_of(page: str) -> str:
    """The page's visible text, tags removed and entities decoded, whitespace collapsed."""
    page = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r"<img [^>]*>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def section(page: str, ident: str) -> str:
    """The text of ``<section id=ident>`` or of the ``<h3 id=ident>`` up to the next heading."""
    match = (re.search(rf'<section id="{ident}".*?</section>', page, flags=re.S)
             or re.search(rf'<h3 id="{ident}".*?(?=<section |<h3 |</section>)', page, flags=re.S))
    assert match, f"no {ident} in the page"
    return text_of(match.group(0))


@pytest.fixture(scope="session")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sections")
    out = {}
    out["local"] = base / "local"
    invoke("run", ROOT / "scenarios" / "local.yaml", "-n", 4, "-j", 1, "--no-figures", "-o", out["local"])
    out["slot"] = base / "slot"
    invoke("run", ROOT / "scenarios" / "slot_shortage.yaml", "-n", 4, "-j", 1, "--no-figures",
           "-o", out["slot"])
    out["compare"] = base / "compare"
    invoke("compare", ROOT / "scenarios" / "local.yaml", ROOT / "scenarios" / "overseas.yaml",
           "-n", 6, "-j", 1, "--no-figures", "-o", out["compare"])
    return out


def report(tmp_path: Path, *directories: Path) -> str:
    out = write_report(list(directories), tmp_path / "report.html")
    return out.read_text(encoding="utf-8")


# ------------------------------------------------------------------ scope and limitations

def _scenario(**cohort: Any) -> dict[str, Any]:
    base_cohort = {"name": "all", "share": 1, "pathway": "p",
                   "time_to_death": {"dist": "exponential", "mean": 300},
                   "after_infusion": {"response_probability": 0.8}}
    base_cohort.update(cohort)
    return {"name": "s", "horizon_days": 100, "arrivals": {"rate_per_year": 10},
            "cohorts": [base_cohort], "sites": {"lab": {"slots": 1}},
            "pathways": {"p": {"steps": [{"name": "make", "kind": "manufacture", "site": "lab",
                                          "duration": 10}]}}}


SURVIVAL = {"response_probability": 0.8, "follow_up_days": 730,
            "survival_responder": {"dist": "exponential", "mean": 900},
            "survival_non_responder": {"dist": "exponential", "mean": 200}}
BRIDGING = {"start_step": "make", "duration": 30, "hazard_ratio": 0.6}


def _all_text(ctx: dict[str, Any], part: str) -> str:
    return " ".join(s["text"] for s in ctx[part])


def test_survival_after_infusion_is_stated_only_where_simulated() -> None:
    without = scope_context([("a", _scenario())])
    with_survival = scope_context([("a", _scenario(after_infusion=SURVIVAL))])
    assert "disease course after infusion (survival, relapse, life-years) is not simulated" in \
        _all_text(without, "scope")
    assert "Survival and relapse after infusion" in _all_text(without, "limitations")
    scope = _all_text(with_survival, "scope")
    assert "not simulated" not in scope
    assert "survival after infusion is simulated" in scope and "730 days" in scope
    assert "Survival and relapse after infusion" not in _all_text(with_survival, "limitations")
    assert "Background (non-disease) mortality" in _all_text(with_survival, "limitations")


def test_bridging_is_stated_only_where_given() -> None:
    without = scope_context([("a", _scenario())])
    bridged = scope_context([("a", _scenario(bridging=BRIDGING))])
    assert "no bridging therapy is given while waiting" in _all_text(without, "assumptions")
    assert "Bridging therapy while waiting" in _all_text(without, "limitations")
    assert "no bridging" not in _all_text(bridged, "assumptions")
    assert "change only through bridging therapy's hazard ratio" in _all_text(bridged, "assumptions")
    assert "hazard ratio 0.6" in _all_text(bridged, "scope")
    assert "Bridging therapy" not in _all_text(bridged, "limitations")


def test_routing_and_economics_features() -> None:
    rule = {"primary": "p", "fallback": "q", "when": {"expected_wait_more_than_days": 20}}
    scenario = _scenario(pathway=rule)
    scenario["pathways"]["q"] = scenario["pathways"]["p"]
    features = scenario_features(scenario)
    assert features["routing"] and not features["economics"] and not features["bridging"]
    ctx = scope_context([("a", scenario)])
    assert "takes q instead of p when, at referral, the expected wait for a slot exceeds 20 days" \
        in _all_text(ctx, "scope")
    assert "Rerouting" not in _all_text(ctx, "limitations")
    assert "Rerouting" in _all_text(scope_context([("a", _scenario())]), "limitations")


def test_statements_that_differ_between_scenarios_name_them() -> None:
    ctx = scope_context([("plain", _scenario()), ("bridged", _scenario(bridging=BRIDGING))])
    limits = {s["text"]: s["scenarios"] for s in ctx["limitations"]}
    bridging = [t for t in limits if t.startswith("Bridging therapy while waiting")]
    assert bridging and limits[bridging[0]] == ["plain"]
    assert limits[next(t for t in limits if t.startswith("Correlated failures"))] == []


def test_report_method_text_follows_each_scenario(dirs: dict[str, Path], tmp_path: Path) -> None:
    local = report(tmp_path, dirs["local"])
    method = section(local, "method")
    assert "disease course after infusion (survival, relapse, life-years) is not simulated" in method
    assert "no bridging therapy is given while waiting" in method
    assert "Bridging therapy while waiting" in section(local, "limitations")

    slot = report(tmp_path, dirs["slot"])  # survival after infusion and bridging
    method = section(slot, "method")
    assert "is not simulated" not in method
    assert "survival after infusion is simulated" in method
    assert "no bridging" not in method and "Bridging therapy while waiting multiplies" in method
    limits = section(slot, "limitations")
    assert "Survival and relapse after infusion" not in limits and "Bridging therapy" not in limits


# ------------------------------------------------------------------ captions

#: Caption stem -> the figure function it describes.
_FIGURE_CODE = {
    ("run", "cumulative_incidence"): outcomes.cumulative_incidence_figure,
    ("run", "site_utilisation"): sites.site_timeline_figure,
    ("run", "waitlist"): waitlist.waitlist_figure,
    ("compare", "cumulative_incidence"): compare_figures.compare_cumulative_incidence_figure,
}


@pytest.mark.parametrize("kind,stem", list(_FIGURE_CODE))
def test_captions_name_the_statistic_the_figure_draws(kind: str, stem: str) -> None:
    caption = (FIGURE_CAPTIONS if kind == "run" else COMPARISON_CAPTIONS)[stem][1].lower()
    doc = re.sub(r"\s+", " ", inspect.getdoc(_FIGURE_CODE[(kind, stem)]) or "").lower()
    for statistic in ("mean", "median"):
        claimed = f"{statistic} across replications" in caption
        drawn = f"{statistic} across replications" in doc
        assert claimed == drawn, f"{kind} {stem}: caption and figure disagree on the {statistic}"


# ------------------------------------------------------------------ executive summary

def _comparison_rows(compare_dir: Path) -> Any:
    import pandas as pd

    return pd.read_csv(compare_dir / "comparison.csv")


def test_summary_states_each_paired_difference_with_its_interval(dirs: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    page = report(tmp_path, dirs["compare"])
    summary = section(page, "summary")
    assert page.index('id="summary"') < page.index('id="key-numbers"')
    loaded = load_results(dirs["compare"])
    local, overseas = (r.label for r in loaded.runs)
    assert f"This report compares {overseas} with {local} (the baseline)" in summary
    assert "6 replications of each" in summary and "1,825 days of referrals" in summary
    reps = {r.label: r.replications.set_index("replication") for r in loaded.runs}
    # The vein-to-vein difference, recomputed from the replications of each run.
    from v2vsim.metrics import t_interval

    diff = (reps[overseas]["vein_to_vein_median"] - reps[local]["vein_to_vein_median"]).to_numpy(float)
    mean, low, high, _ = t_interval(diff)
    assert mean > 0 and low > 0
    assert (f"The median vein-to-vein time was {mean:.1f} days longer (95% CI +{low:.1f} to "
            f"+{high:.1f}); the difference is statistically clear.") in summary


def test_summary_says_no_clear_difference_when_the_interval_spans_zero(dirs: dict[str, Path]) -> None:
    from v2vsim.outputs.report.summary import executive_summary

    table = _comparison_rows(dirs["compare"])
    table = table[table["metric"].isin(["infused_fraction", "referred"])].copy()
    names = list(dict.fromkeys(table["scenario"]))
    second = (table["scenario"] == names[1]) & (table["metric"] == "infused_fraction")
    if table.loc[second, "mean"].abs().max() > 1.5:  # the table in percent: back to fractions
        for col in ("mean", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high"):
            table.loc[table["metric"] == "infused_fraction", col] /= 100
    table.loc[second, ["diff", "diff_ci_low", "diff_ci_high"]] = [0.012, -0.004, 0.028]
    out = executive_summary(table, names, True, replications=["6"], seeds=["1"], horizon_days=365,
                            start_date="2025-01-06", currency="HKD", referred={})
    (finding,) = out["findings"]
    (sentence,) = finding["sentences"]
    assert sentence["text"] == ("Infused 1.2 more patients per 100 referred (95% CI −0.4 to +2.8); "
                                "no clear difference: the interval includes zero.")
    assert not sentence["clear"]
    assert "0 of these 1 differences are statistically clear" in out["meaning"]
    table.loc[second, ["diff", "diff_ci_low", "diff_ci_high"]] = [-0.123, -0.149, -0.098]
    out = executive_summary(table, names, True, replications=["6"], seeds=["1"], horizon_days=365,
                            start_date="2025-01-06", currency="HKD", referred={})
    assert out["findings"][0]["sentences"][0]["text"] == (
        "Infused 12.3 fewer patients per 100 referred (95% CI −14.9 to −9.8); the difference is "
        "statistically clear.")


def test_summary_of_one_run_gives_the_key_numbers_in_words(dirs: dict[str, Path], tmp_path: Path) -> None:
    import pandas as pd

    summary_csv = pd.read_csv(dirs["local"] / "summary.csv").set_index("metric")
    page = report(tmp_path, dirs["local"])
    summary = section(page, "summary")
    infused = summary_csv.loc["infused_fraction"]
    assert (f"{100 * infused['mean']:.1f} of every 100 referred patients were infused (95% CI "
            f"{100 * infused['ci_low']:.1f} to {100 * infused['ci_high']:.1f}).") in summary
    wait = summary_csv.loc["queue_wait_mean"]
    assert f"Patients waited {wait['mean']:.1f} days on average for a slot or a start day" in summary
    assert "compared with" not in summary


# ------------------------------------------------------------------ warnings

def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_unresolved_patients_and_an_unmet_precision_target_are_shown(dirs: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    import json

    import pandas as pd

    run = _copy_run(dirs["local"], tmp_path / "run")
    reps = pd.read_csv(run / "replications.csv")
    reps.loc[0, "unresolved"] = 3
    reps.to_csv(run / "replications.csv", index=False)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["command"] = ["v2vsim", "run", "scenarios/local.yaml", "--precision", "0.001"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    page = report(tmp_path, run)
    box = re.search(r'<div class="callout warn warnings".*?</div>', page, flags=re.S)
    assert box, "no warning box"
    text = text_of(box.group(0))
    assert "3 patients (0.8 per replication) were still in the pathway when the run stopped at day 5475" in text
    assert "the precision target (0.1% of the mean) was not reached within 4 replications" in text
    assert "do not match the sha256 in its manifest" in text  # replications.csv was changed
    # The box comes before the numbers.
    assert page.index('class="callout warn warnings"') < page.index('id="key-numbers"')


def test_a_growing_wait_is_a_warning_and_a_steady_one_is_not(dirs: dict[str, Path], tmp_path: Path) -> None:
    from v2vsim.outputs.report.run_warnings import run_warnings

    slot = run_warnings(load_results(dirs["slot"]))  # two slots a month for ~40 referrals a year
    assert any(w.startswith("the wait for a slot grows over the referral window") for w in slot)
    assert run_warnings(load_results(dirs["local"])) == []
    assert "Warnings from the run" not in report(tmp_path, dirs["local"])


# ------------------------------------------------------------------ key numbers and appendix

def _card_labels(page: str) -> list[str]:
    return [text_of(m).strip() for m in re.findall(r'<div class="clabel">(.*?)</div>', page)]


def test_cards_add_queue_wait_and_life_years_where_the_scenario_has_them(dirs: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    local = _card_labels(report(tmp_path, dirs["local"]))
    assert "Queue wait per patient, mean" in local
    assert not any(label.startswith("Life-years") for label in local)
    assert not any(label.startswith("Routed") for label in local)
    slot = _card_labels(report(tmp_path, dirs["slot"]))
    assert "Life-years in follow-up per referred patient" in slot


def test_all_zero_metrics_and_defaults_move_to_the_appendix(dirs: dict[str, Path], tmp_path: Path) -> None:
    import pandas as pd

    page = report(tmp_path, dirs["local"])
    summary_csv = pd.read_csv(dirs["local"] / "summary.csv")
    zero = summary_csv[(summary_csv[["mean", "ci_low", "ci_high"]] == 0).all(axis=1)]["metric"].tolist()
    assert "lost_in_transit" in zero
    from v2vsim.metrics import metric_label

    results = section(page, "results")
    table = re.search(r'<table class="results">.*?</table>', page, flags=re.S).group(0)
    appendix = section(page, "appendix")
    for metric in zero:
        label = metric_label(metric, "HKD")[0]
        assert f"<td>{html.escape(label)}</td>" not in table, label
        # A zero count is listed once: its rate per 100 referred, zero too, is not repeated.
        if metric.endswith("_per_100_referred"):
            assert metric.removesuffix("_per_100_referred") in zero and label not in appendix
        else:
            assert label in appendix, label
    assert "A.1" in results
    # Parameters the file does not set: in the appendix, not in the assumptions table.
    assumptions = section(page, "assumptions")
    assert "wait_effect.per_days" not in assumptions
    assert "cohorts[0].after_infusion.wait_effect.per_days" in appendix


# ------------------------------------------------------------------ experiment directories

@pytest.fixture(scope="session")
def experiment_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("experiments")
    local = ROOT / "scenarios" / "local.yaml"
    out = {k: base / k for k in ("sweep", "sensitivity", "capacity")}
    invoke("sweep", local, "--set", "sites.hkib.slots=1,2", "-n", 3, "-j", 1, "-o", out["sweep"])
    invoke("sensitivity", local, "--method", "oat", "--param", "sites.hkib.slots", 1, 2,
           "-n", 3, "-j", 1, "-o", out["sensitivity"])
    invoke("capacity", local, "--site", "hkib", "--target", "queue_wait_mean<=7", "--max-slots", 3,
           "-n", 3, "-j", 1, "-o", out["capacity"])
    return out


def test_sweep_directory_is_reported(experiment_dirs: dict[str, Path], tmp_path: Path) -> None:
    import pandas as pd

    page = report(tmp_path, experiment_dirs["sweep"])
    assert "Parameter sweep" in page
    varied = section(page, "varied")
    assert "sites.hkib.slots" in varied and "1, 2" in varied
    table = pd.read_csv(experiment_dirs["sweep"] / "sweep.csv")
    results = section(page, "results")
    for point in (0, 1):
        row = table[(table["point"] == point) & (table["metric"] == "queue_wait_mean")].iloc[0]
        assert f"{row['mean']:.1f}" in results and f"{row['ci_low']:.1f} to {row['ci_high']:.1f}" in results
    assert page.count("<figure") == len(list((experiment_dirs["sweep"] / "figures").glob("*.png")))
    assert "Metrics across the sweep" in page and "common random numbers" in section(page, "method")


def test_sensitivity_and_capacity_directories_are_reported(experiment_dirs: dict[str, Path],
                                                           tmp_path: Path) -> None:
    import json

    import pandas as pd

    page = report(tmp_path, experiment_dirs["sensitivity"])
    indices = pd.read_csv(experiment_dirs["sensitivity"] / "indices.csv")
    assert "Sensitivity analysis" in page and "One-at-a-time sensitivity" in page
    swing = float(indices["swing"].iloc[0])
    assert f"{100 * swing:.1f} pp" in section(page, "results")
    page = report(tmp_path, experiment_dirs["capacity"])
    info = json.loads((experiment_dirs["capacity"] / "capacity.json").read_text())
    answer = info["answer"]
    summary = section(page, "summary")
    if answer is None:
        assert "no slot count" in summary.lower()
    else:
        assert f"{answer} slot{'s' if answer != 1 else ''} at hkib meet" in summary
    assert "Capacity curve of hkib" in page


def test_an_experiment_is_reported_on_its_own(experiment_dirs: dict[str, Path], dirs: dict[str, Path],
                                              tmp_path: Path) -> None:
    from v2vsim.outputs.report import ReportError

    with pytest.raises(ReportError, match="reported on its own"):
        write_report([experiment_dirs["sweep"], dirs["local"]], tmp_path / "r.html")


def test_counts_are_per_100_referred_with_their_number_a_year(dirs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """Deaths in the summary and the table: the rate per 100 referred recomputed from each
    replication, and the count a year from the per-replication count and the horizon."""
    from v2vsim.metrics import format_value, per_year, t_interval

    page = report(tmp_path, dirs["compare"])
    loaded = load_results(dirs["compare"])
    local, overseas = (r.label for r in loaded.runs)
    reps = {r.label: r.replications.set_index("replication") for r in loaded.runs}
    rate = {n: 100 * reps[n]["died"] / reps[n]["referred"] for n in reps}
    diff, _low, _high, _ = t_interval((rate[overseas] - rate[local]).to_numpy(float))
    yearly = per_year(float((reps[overseas]["died"] - reps[local]["died"]).mean()), 1825)
    word = "more" if diff > 0 else "fewer"
    summary = section(page, "summary")
    assert (f"{format_value(abs(diff), 'per 100 referred')} {word} patients per 100 referred died "
            f"before infusion (about {format_value(abs(yearly), 'count')} "
            f"{'more' if yearly > 0 else 'fewer'} a year; 95% CI") in summary
    table = section(page, "results")
    assert "Died before infusion, per 100 referred" in table
    base_yearly = per_year(float(reps[local]["died"].mean()), 1825)
    assert f"{format_value(base_yearly, 'count')} a year" in table
    # The per-replication counts are still there, after the headline rows.
    assert table.index("Other metrics") < table.index("Died before infusion per replication")


def test_names_and_references_are_in_the_appendix_not_the_parameter_tables(
        dirs: dict[str, Path], tmp_path: Path) -> None:
    page = report(tmp_path, dirs["compare"])
    start, labels = page.index('id="assumptions"'), page.index('id="appendix-labels"')
    name_row = "<code>pathways.local.steps[0].name</code>"
    assert name_row not in page[start:labels]  # not among the parameters that need a source
    assert page.index(name_row, labels) > labels
    assert "<code>pathways.local.steps[0].duration</code>" in page[start:labels]
