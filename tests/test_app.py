"""The web app without a browser: its controls map to ``--set`` paths that change what they say,
its runs are the command line's (same files, cached by content, cancellable), and the page
(Streamlit's AppTest harness) shows controls, commands, results and clear messages for bad input.
The real-browser test is tests/test_app_browser.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")

from scenario_texts import SMALL  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from v2vsim.app.controls import assignments, controls_for, duration_value  # noqa: E402
from v2vsim.app.jobs import Job, Request, ScenarioInput  # noqa: E402
from v2vsim.app.results import comparison_table, key_cards, read_comparison  # noqa: E402
from v2vsim.app.serve import SCRIPT  # noqa: E402
from v2vsim.app.template import FormValues, form_yaml  # noqa: E402
from v2vsim.scenario import load_scenario  # noqa: E402
from v2vsim.scenario.bundled import scenario_names, scenario_path  # noqa: E402
from v2vsim.scenario.overrides import ScenarioSource, parse_sets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ controls


def _changed(control, value):  # a value different from the scenario's, within the bounds
    if control.kind == "duration":
        median = control.value[0] + 1.5
        return (median, median * 1.25)
    if control.kind == "probability":
        return 0.25 if control.value != 0.25 else 0.5
    if control.kind == "int":
        return control.value + 1
    return value * 2 + 1


@pytest.mark.parametrize("name", scenario_names())
def test_every_control_is_a_set_path_that_changes_what_it_says(name: str) -> None:
    path = scenario_path(name)
    source = ScenarioSource(path)
    controls = controls_for(source.base)
    assert controls and len({c.path for c in controls}) == len(controls)
    # The scenario's own values change nothing.
    assert assignments(controls, {c.path: c.value for c in controls}) == []
    for control in controls:
        value = _changed(control, control.value)
        [text] = assignments(controls, {control.path: value})
        assert text.startswith(control.path + "=")
        changed = source.variant(parse_sets([text]))
        node = changed
        for key in control.path.split("."):  # walk the path as the override does
            if isinstance(node, list):
                node = next(item for item in node if item.name == key)
            elif isinstance(node, dict):
                node = node[key]
            else:
                node = getattr(node, key)
        if control.kind == "duration":
            # A lognormal through the median and 90th percentile asked for.
            median, p90 = node.ppf(np.array([0.5, 0.9]))
            assert math.isclose(median, value[0], rel_tol=1e-9)
            assert math.isclose(p90, value[1], rel_tol=1e-9)
        else:
            assert math.isclose(float(node), float(value), rel_tol=1e-12), control.path


def test_a_control_shows_the_scenarios_own_quantiles() -> None:
    controls = {c.path: c for c in controls_for(load_scenario(scenario_path("local")))}
    slots = controls["sites.hkib.slots"]
    assert (slots.value, slots.kind, slots.group) == (1, "int", "Capacity")
    manufacture = controls["pathways.local.steps.manufacture.duration"]
    # Triangular(11, 12.5, 14) is symmetric: median 12.5; p90 = 14 - 3 sqrt(0.1 / 2) = 13.329.
    assert manufacture.value == (12.5, round(14 - 3 * math.sqrt(0.05), 3))
    assert duration_value(3, 3) == "3" and duration_value(2, 5.5) == "{dist: lognormal, median: 2, p90: 5.5}"


def test_the_scenario_as_run_is_the_file_with_its_changes() -> None:
    path = scenario_path("local")
    source = ScenarioSource(path)
    sets = ["sites.hkib.slots=2", "pathways.local.steps.manufacture.duration={dist: lognormal, median: 12, p90: 14}"]
    text = source.variant_text(parse_sets(sets))
    written = load_scenario(Path("local-changed.yaml"), text)
    assert written.model_dump() == source.variant(parse_sets(sets)).model_dump()
    original = path.read_text(encoding="utf-8").splitlines()
    lines = text.splitlines()
    assert lines[:3] == ["# local.yaml with these changes (v2vsim --set PATH=VALUE):",
                         "#   sites.hkib.slots=2",
                         "#   pathways.local.steps.manufacture.duration={dist: lognormal, median: 12, p90: 14}"]
    # Only the two changed lines differ from the file, and they say what they were.
    differ = [(a, b) for a, b in zip(original, lines[3:]) if a != b]
    assert len(lines) - 3 == len(original) and len(differ) == 2
    assert differ[0][1] == "    slots: 2  # changed, was 1"
    assert "# changed, was {dist: triangular, low: 11, mode: 12.5, high: 14}" in differ[1][1]


def test_the_form_writes_a_valid_scenario() -> None:
    values = FormValues(name='Centre "north"', devices=3, manufacture_median_days=10,
                        manufacture_p90_days=10, referrals_per_year=12.5)
    scenario = load_scenario(Path("form.yaml"), form_yaml(values))
    assert scenario.name == 'Centre "north"' and scenario.sites["manufacturing"].slots == 3
    assert scenario.arrivals.rate_per_year == 12.5
    make = next(s for s in scenario.pathways["main"].steps if s.name == "manufacture")
    assert float(make.duration.ppf(np.array([0.3]))[0]) == 10.0  # equal quantiles: fixed


# ------------------------------------------------------------------------------ runs


def _small(tmp_path: Path, text: str = SMALL) -> ScenarioInput:
    path = tmp_path / "small.yaml"
    path.write_text(text, encoding="utf-8")
    return ScenarioInput(str(path), "small.yaml", text)


def test_a_request_is_the_command_line_and_its_key_the_content(tmp_path: Path) -> None:
    item = _small(tmp_path)
    request = Request("compare", (item, item), ((), ("sites.dev.slots=1",)), 5, 11)
    assert request.shown() == "v2vsim compare small.yaml small.yaml --set-for 2:sites.dev.slots=1 -n 5 --seed 11"
    assert request.argv(Path("out"))[-4:] == ["--jobs", "2", "--out", "out"]
    same = Request("compare", (item, item), ((), ("sites.dev.slots=1",)), 5, 11)
    assert same.key == request.key
    other_value = Request("compare", (item, item), ((), ("sites.dev.slots=3",)), 5, 11)
    (tmp_path / "other").mkdir()
    edited = _small(tmp_path / "other", SMALL.replace("seed: 11", "seed: 12"))
    other_text = Request("compare", (item, edited), ((), ("sites.dev.slots=1",)), 5, 11)
    assert len({request.key, other_value.key, other_text.key}) == 3
    capacity = Request("capacity", (item,), (("arrivals.rate_per_year=50",),), 5, 11, site="dev",
                       target="queue_wait_mean<=3")
    assert capacity.shown() == ("v2vsim capacity small.yaml --site dev --target 'queue_wait_mean<=3' "
                                "--max-slots 20 --set arrivals.rate_per_year=50 -n 5 --seed 11")


def test_a_job_writes_what_the_command_line_writes_and_is_cached(tmp_path: Path) -> None:
    item = _small(tmp_path)
    request = Request("compare", (item, item), ((), ("sites.dev.slots=1",)), 5, 11)
    job = Job(request, tmp_path / "cache")
    job.start()
    progress = job.wait(120)
    assert progress.state == "done", job.log()
    assert progress.fraction == 1.0 and progress.tasks[0]["total"] == 10
    # The command line, run by hand, writes the same comparison.
    by_hand = tmp_path / "by-hand"
    subprocess.run([sys.executable, "-m", "v2vsim", "compare", item.path, item.path,
                    "--set-for", "2:sites.dev.slots=1", "-n", "5", "--seed", "11", "--out", str(by_hand)],
                   check=True, capture_output=True, cwd=tmp_path)
    assert (job.results / "comparison.csv").read_bytes() == (by_hand / "comparison.csv").read_bytes()
    frame = read_comparison(job.results)
    table = comparison_table(frame)
    assert list(table.columns) == ["Metric", "A: mean (95% CI)", "B: mean (95% CI)",
                                   "B − A: paired difference (95% CI)"]
    cards = {c.metric: c for c in key_cards(frame)}
    assert cards["infused_fraction"].differences[0] is None and cards["infused_fraction"].unit == ""
    # Asked again (another session, another server): answered from the cache, no process.
    again = Job(request, tmp_path / "cache")
    assert again.done
    mtime = (again.results / "manifest.json").stat().st_mtime_ns
    again.start()
    assert again.progress().state == "done"
    assert (again.results / "manifest.json").stat().st_mtime_ns == mtime
    # The zip holds every file of the results directory, its manifest included.
    import zipfile

    names = zipfile.ZipFile(again.zip()).namelist()
    manifest = json.loads((again.results / "manifest.json").read_text())
    assert "v2vsim-compare/manifest.json" in names
    assert {f"v2vsim-compare/{f}" for f in manifest["files"]} <= set(names)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_job_can_be_cancelled_and_leaves_no_process(tmp_path: Path) -> None:
    item = _small(tmp_path, SMALL.replace("horizon_days: 200", "horizon_days: 20000"))
    request = Request("compare", (item, item), ((), ("sites.dev.slots=1",)), 400, 11)
    job = Job(request, tmp_path / "cache")
    job.start()
    deadline = time.monotonic() + 60
    while job.progress().fraction == 0:  # running, with workers, some replications done
        assert job.progress().state == "running" and time.monotonic() < deadline, job.log()
        time.sleep(0.1)
    pid = json.loads((job.dir / "status.json").read_text())["pid"]
    job.cancel()
    assert job.progress().state == "cancelled"
    deadline = time.monotonic() + 10
    while _group_alive(pid):
        assert time.monotonic() < deadline, "the run's processes are still alive"
        time.sleep(0.1)
    assert not job.results.exists() and not job.done


def test_a_failed_run_says_why(tmp_path: Path) -> None:
    item = _small(tmp_path)
    request = Request("capacity", (item,), ((),), 5, 11, site="dev", target="no_such_metric<=3")
    job = Job(request, tmp_path / "cache")
    job.start()
    progress = job.wait(60)
    assert progress.state == "failed" and "no such metric 'no_such_metric'" in progress.message


def test_progress_bars_are_mirrored_to_a_file(tmp_path: Path) -> None:
    item = _small(tmp_path)
    progress_file = tmp_path / "progress.json"
    subprocess.run([sys.executable, "-m", "v2vsim", "run", item.path, "-n", "7", "--no-figures",
                    "--out", str(tmp_path / "run")], check=True, capture_output=True,
                   env={**os.environ, "V2VSIM_PROGRESS_FILE": str(progress_file)})
    document = json.loads(progress_file.read_text())
    assert document["finished"] is True
    [task] = document["tasks"]
    assert task["completed"] == task["total"] == 7


# ------------------------------------------------------------------------------ the page


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("V2VSIM_APP_CACHE", str(tmp_path / "cache"))
    return AppTest.from_file(str(SCRIPT), default_timeout=120).run()


def _codes(app: AppTest) -> list[str]:
    return [c.value for c in app.code]


def test_the_page_opens_on_the_bundled_comparison(app: AppTest) -> None:
    assert not app.exception and not app.error
    assert [s.value for s in app.selectbox][:2] == ["local", "overseas"]
    assert "v2vsim compare local overseas -n 200 --seed 20250415" in _codes(app)
    captions = " ".join(c.value for c in app.caption)
    for path in ("sites.hkib.slots", "sites.commercial_plant.slots", "arrivals.rate_per_year",
                 "pathways.local.steps.manufacture.duration"):
        assert f"--set {path}" in captions
    assert app.button(key="run").label == "Run" and not app.button(key="run").disabled


def test_a_change_is_shown_as_its_set_for(app: AppTest) -> None:
    key = next(n.key for n in app.number_input if n.key and n.key.startswith("B|") and n.key.endswith("sites.commercial_plant.slots"))
    app.number_input(key=key).set_value(3).run()
    assert not app.error
    assert "v2vsim compare local overseas --set-for 2:sites.commercial_plant.slots=3 -n 200 --seed 20250415" in _codes(app)


def test_an_impossible_value_is_explained_and_not_run(app: AppTest) -> None:
    key = next(n.key for n in app.number_input
               if n.key and n.key.startswith("A|") and n.key.endswith("manufacture.duration|p90"))
    app.number_input(key=key).set_value(5.0).run()  # a 90th percentile below the median
    assert not app.exception
    [error] = [e.value for e in app.error]
    assert "--set pathways.local.steps.manufacture.duration" in error and "must exceed median" in error
    assert app.button(key="run").disabled


def test_a_huge_run_is_refused_with_a_way_out(app: AppTest) -> None:
    key = next(n.key for n in app.number_input if n.key and n.key.startswith("A|") and n.key.endswith("arrivals.rate_per_year"))
    app.number_input(key=key).set_value(50_000.0).run()
    assert not app.exception
    [error] = [e.value for e in app.error]
    assert "more than the app runs at a time" in error and "--allow-large" in error
    assert app.button(key="run").disabled


def test_an_uploaded_file_with_problems_shows_them_with_line_numbers() -> None:
    from v2vsim.app.page import _check_upload

    item, problem = _check_upload("mine.yaml", b"name: x\nhorizon_days: [\n")
    assert item is None and problem.startswith("mine.yaml:") and "YAML error" in problem
    bad = SMALL.replace("share: 1", "share: -1")
    item, problem = _check_upload("mine.yaml", bad.encode())
    assert item is None and "mine.yaml:" in problem and "cohorts[0].share" in problem
    item, problem = _check_upload("mine.yaml", b"\xff\xfe")
    assert item is None and "not UTF-8" in problem
    item, problem = _check_upload("mine.yaml", SMALL.encode())
    assert problem is None and Path(item.path).read_text() == SMALL


def test_a_run_from_the_page_shows_results_and_is_cached(app: AppTest) -> None:
    # Fewer replications keep the test short; the page is the same at 200.
    app.number_input(key=next(n.key for n in app.number_input if n.label == "Replications per scenario")).set_value(20).run()
    app.button(key="run").click().run()
    deadline = time.monotonic() + 120
    while not any(h.value == "Results" for h in app.header):
        assert time.monotonic() < deadline and not app.exception
        time.sleep(0.3)
        app.run()
    assert not app.exception and not app.error
    labels = [m.label for m in app.metric]
    assert "Infused (% of referred) — A" in labels and "Cost per infused patient (HKD) — B" in labels
    [table] = app.dataframe
    assert "B − A: paired difference (95% CI)" in table.value.columns
    assert app.button(key="run").label == "Show the results"  # the same question is cached


# ------------------------------------------------------------------------------ v2vsim app


def test_the_app_command_says_what_is_missing_or_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from typer.testing import CliRunner

    import v2vsim.app.serve as serve
    from v2vsim.cli import app as cli

    runner = CliRunner()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(cli, ["app", "--port", str(port), "--no-browser"])
    assert result.exit_code == 2 and f"127.0.0.1:{port} is in use" in result.output
    monkeypatch.setattr(serve, "have_streamlit", lambda: False)
    result = runner.invoke(cli, ["app"])
    assert result.exit_code == 1 and 'pip install "v2vsim[app]"' in result.output


def test_streamlit_is_started_offline_and_local() -> None:
    from v2vsim.app.serve import SCRIPT, streamlit_argv

    argv = streamlit_argv("127.0.0.1", 8765, open_browser=False)
    assert argv[1:5] == ["-m", "streamlit", "run", str(SCRIPT)]
    for option in ("--server.address=127.0.0.1", "--server.port=8765", "--server.headless=true",
                   "--browser.gatherUsageStats=false", "--server.showEmailPrompt=false"):
        assert option in argv


def test_the_report_of_a_run_in_html_and_pdf(tmp_path: Path) -> None:
    from test_report import CHROMIUM

    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed")
    item = _small(tmp_path)
    job = Job(Request("compare", (item, item), ((), ("sites.dev.slots=1",)), 5, 11), tmp_path / "cache")
    job.start()
    assert job.wait(120).state == "done", job.log()
    html, pdf = job.report(".html"), job.report(".pdf")
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert job.report(".pdf") == pdf  # written once


def _wait_for(app: AppTest, seen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not seen():
        assert time.monotonic() < deadline and not app.exception, [e.value for e in app.error]
        time.sleep(0.3)
        app.run()


def test_a_run_can_be_cancelled_from_the_page(app: AppTest) -> None:
    replications = next(n.key for n in app.number_input if n.label == "Replications per scenario")
    app.number_input(key=replications).set_value(4000).run()
    app.button(key="run").click().run()
    _wait_for(app, lambda: any(b.key == "compare|cancel" for b in app.button))
    request = app.session_state["job:compare"]
    pid = json.loads((Job(request).dir / "status.json").read_text())["pid"]
    app.button(key="compare|cancel").click().run()
    assert [i.value for i in app.info] == ["The run was cancelled; nothing was kept."]
    deadline = time.monotonic() + 10
    while _group_alive(pid):
        assert time.monotonic() < deadline, "the run's processes are still alive"
        time.sleep(0.1)
    assert app.button(key="run").label == "Run" and not app.button(key="run").disabled


def test_how_many_devices_in_one_click(app: AppTest) -> None:
    replications = next(n.key for n in app.number_input if n.label == "Replications per scenario")
    app.number_input(key=replications).set_value(20).run()
    value = next(n.key for n in app.number_input if n.key and n.key.startswith("capvalue"))
    app.number_input(key=value).set_value(2.0).run()
    assert "v2vsim capacity local --site hkib --target 'queue_wait_mean<=2' --max-slots 20 -n 20 --seed 20250415" in _codes(app)
    app.button(key="find_slots").click().run()
    _wait_for(app, lambda: bool(app.success) or bool(app.warning))
    [answer] = [s.value for s in app.success]
    # One Prodigy gives a mean wait of about 12 days (the comparison above): two or more are needed.
    slots = int(answer.split()[0])
    assert slots >= 2 and "at hkib meet queue_wait_mean<=2 with 95% confidence" in answer


def test_a_huge_replication_count_is_refused_with_a_way_out(app: AppTest) -> None:
    replications = next(n.key for n in app.number_input if n.label == "Replications per scenario")
    app.number_input(key=replications).set_value(100_000).run()
    assert not app.exception
    [error] = [e.value for e in app.error]
    # 100,000 replications x 100 expected referrals (20 a year for 5 years) x 2 scenarios.
    assert "about 20,000,000 referrals" in error and "more than the app runs at a time (5,000,000)" in error
    assert app.button(key="run").disabled
    app.number_input(key=replications).set_value(200).run()  # and the page is usable again
    assert not app.error and not app.button(key="run").disabled
