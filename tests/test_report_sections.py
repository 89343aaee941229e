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
from v2vsim.outputs.figures import outcomes, sites
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
