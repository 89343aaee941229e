"""The HTML report: content checked against the results it reads, escaping of hostile text,
bad input, and the page loaded in a real headless Chromium (DevTools protocol).

Results directories are made once per session with the real `v2vsim run` (and `v2vsim compare`
when the command exists); the hand-built comparison directory follows the contract of
`v2vsim compare` (one run directory per scenario, comparison.csv/json, manifest kind
"compare") so the report is tested against the contract and not only against one writer.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from v2vsim import metrics
from v2vsim.cli import app
from v2vsim.outputs.results_dir import sha256_file, write_json
from v2vsim.outputs.report import (
    KEY_METRICS,
    ReportError,
    load_results,
    paired_comparison,
    source_parameters,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
N_REPS = 8

HOSTILE_SCRIPT = "<script>alert(1)</script>"
HOSTILE_IMG = "<img src=x onerror=alert(1)>"

# Every user-supplied string is hostile: names, description, comments, cohort/site/step names.
HOSTILE = f"""\
# Notes {HOSTILE_SCRIPT} and {HOSTILE_IMG}
name: "Evil {HOSTILE_SCRIPT} scenario"
description: "{HOSTILE_IMG} & friends"
horizon_days: 120        # source {HOSTILE_SCRIPT}
replications: 3
seed: 7
currency: "HK$<b>"
arrivals: {{rate_per_year: 40}}   # {HOSTILE_IMG}
cohorts:
  # above {HOSTILE_SCRIPT}
  - name: "{HOSTILE_SCRIPT}"
    share: 1
    pathway: "p<script>"
    time_to_death: {{dist: exponential, mean: 300}}
sites:
  "{HOSTILE_IMG}": {{slots: 2}}
pathways:
  "p<script>":
    steps:
      - {{name: "{HOSTILE_IMG}", kind: apheresis, duration: 1}}
      - {{name: make, kind: manufacture, site: "{HOSTILE_IMG}", duration: 10}}
      - {{name: infusion, kind: infusion, duration: 1}}
"""


def invoke(*args: Any):
    return runner.invoke(app, [str(a) for a in args])


def _run(scenario: Path, out: Path, *extra: Any) -> Path:
    result = invoke("run", scenario, "-n", N_REPS, "-j", 1, "-o", out, *extra)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real run directories of the bundled scenarios (local with figures)."""
    base = tmp_path_factory.mktemp("runs")
    return {
        "local": _run(ROOT / "scenarios" / "local.yaml", base / "local"),
        "overseas": _run(ROOT / "scenarios" / "overseas.yaml", base / "overseas", "--no-figures"),
    }


def _hand_compare(run_dirs: dict[str, Path], out: Path) -> Path:
    """A comparison directory built by hand to the contract of `v2vsim compare`."""
    out.mkdir()
    names = []
    tables = {}
    for slug in ("local", "overseas"):
        shutil.copytree(run_dirs[slug], out / slug)
        manifest = json.loads((out / slug / "manifest.json").read_text())
        names.append(manifest["scenario_name"])
        tables[manifest["scenario_name"]] = pd.read_csv(out / slug / "replications.csv")
    base = tables[names[0]].set_index("replication")
    rows = []
    for name in names:
        reps = tables[name].set_index("replication")
        for metric in [c for c in reps.columns if pd.api.types.is_numeric_dtype(reps[c])]:
            label, unit = metrics.metric_label(metric, "HKD")
            mean, low, high, n = metrics.t_interval(reps[metric].to_numpy(float))
            diff = dlow = dhigh = math.nan
            if name != names[0] and metric in base:
                diff, dlow, dhigh, _ = metrics.t_interval((reps[metric] - base[metric]).to_numpy(float))
            rows.append(dict(metric=metric, label=label, unit=unit, scenario=name, mean=mean,
                             ci_low=low, ci_high=high, n=n, diff=diff, diff_ci_low=dlow,
                             diff_ci_high=dhigh))
    table = pd.DataFrame(rows)
    table.to_csv(out / "comparison.csv", index=False)
    write_json(out / "comparison.json", {"scenarios": names, "baseline": names[0],
                                         "replications": N_REPS, "seed": 20250415,
                                         "rows": table.to_dict(orient="records")})
    (out / "figures").mkdir()
    shutil.copy(run_dirs["local"] / "figures" / "vein_to_vein.png", out / "figures" / "outcomes_per_100.png")
    files = {str(p.relative_to(out)): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}
    write_json(out / "manifest.json", {
        "kind": "compare", "v2vsim_version": "0.1.0", "packages": {"python": "3", "v2vsim": "0.1.0"},
        "command": ["v2vsim", "compare", "scenarios/local.yaml", "scenarios/overseas.yaml"],
        "seed": 20250415, "replications": N_REPS, "wall_seconds": 1.0, "baseline": names[0],
        "scenarios": [{"name": n, "dir": s} for n, s in zip(names, ("local", "overseas"))],
        "files": files})
    return out


@pytest.fixture(scope="session")
def compare_dir(run_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _hand_compare(run_dirs, tmp_path_factory.mktemp("cmp") / "cmp")


def _has_compare_command() -> bool:
    return any(c.name == "compare" or getattr(c.callback, "__name__", "") == "compare"
               for c in app.registered_commands)


@pytest.fixture(scope="session")
def real_compare_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output of the real `v2vsim compare`, once that command exists."""
    if not _has_compare_command():
        pytest.skip("`v2vsim compare` does not exist yet; the hand-built directory is tested")
    out = tmp_path_factory.mktemp("realcmp") / "cmp"
    # Without figures (they are the plots module's business and take half a minute); the
    # hand-built directory carries a comparison figure.
    result = invoke("compare", ROOT / "scenarios" / "local.yaml", ROOT / "scenarios" / "overseas.yaml",
                    "-n", N_REPS, "-j", 1, "--no-figures", "-o", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    scenario = base / "evil.yaml"
    scenario.write_text(HOSTILE, encoding="utf-8")
    result = invoke("run", scenario, "-j", 1, "--no-figures", "-o", base / "run")
    assert result.exit_code == 0, result.output
    return base / "run"


class _Collect(HTMLParser):
    """Elements and text of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    return parser


def _fmt_pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# --------------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------------


def test_run_report_holds_the_numbers_of_the_run(run_dirs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = invoke("report", run_dirs["local"], "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    summary = pd.read_csv(run_dirs["local"] / "summary.csv").set_index("metric")
    text = " ".join(parse(page).text)
    # The key numbers with their intervals, exactly as in summary.csv.
    infused = summary.loc["infused_fraction"]
    assert _fmt_pct(infused["mean"]) in text
    assert f"{_fmt_pct(infused['ci_low'])} to {_fmt_pct(infused['ci_high'])}" in text
    v2v = summary.loc["vein_to_vein_median"]
    assert f"{v2v['ci_low']:.1f} to {v2v['ci_high']:.1f}" in text
    cost = summary.loc["cost_per_infused"]
    assert f"{cost['mean']:,.0f}" in text
    # Figures: one embedded PNG per figure of the run, with a caption, and no file references.
    pngs = sorted(p.name for p in (run_dirs["local"] / "figures").glob("*.png"))
    images = [a for tag, a in parse(page).tags if tag == "img"]
    assert len(images) == len(pngs) == 6  # local forms a waitlist: its figure too
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert attrs.get("alt")
    assert page.count("<figcaption>") == 6
    # Self-contained: no script, no external resource, a CSP forbidding both.
    assert "<script" not in page.lower()
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page)
    assert "default-src 'none'" in page
    # STRESS-DES sections in order, and reproducibility data from the manifest.
    headings = re.findall(r"<h3[^>]*>(4\.\d) ([^<]+)", page)
    assert [h[0] for h in headings] == ["4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7"]
    assert [h[1].split()[0] for h in headings] == ["Objectives", "Model", "Data:", "Experimentation",
                                                   "Implementation", "Code", "Limitations:"]
    manifest = json.loads((run_dirs["local"] / "manifest.json").read_text())
    assert manifest["scenario_sha256"] in page
    assert html.escape(" ".join(manifest["command"])) in page
    for package, version in manifest["packages"].items():
        assert f"<td>{package}</td><td class=\"mono\">{version}</td>" in page
    assert "all 18 files match" in page
    assert f"{N_REPS} per scenario" in page


def test_assumptions_pair_every_parameter_with_its_comment() -> None:
    text = (ROOT / "scenarios" / "local.yaml").read_text(encoding="utf-8")
    params, notes = source_parameters(text)
    by_path = {p.path: p for p in params}
    # End-of-line comment.
    assert by_path["sites.hkib.slots"].comment.startswith("one CliniMACS Prodigy (seed interviews)")
    # Comment lines just above the key (joined, in order), not the ones above the previous key.
    death = by_path["cohorts[0].time_to_death"]
    assert death.comment.startswith("Relapsed childhood ALL: 5-year OS")
    assert death.comment.endswith("salvaged long term by other therapy.")
    assert by_path["cohorts[0].time_to_ineligible"].comment.startswith("assumption: CD19-negative")
    assert by_path["cohorts[0].time_to_death"].value == "{dist: weibull, shape: 0.56, median: 365}"
    assert by_path["cohorts[0].time_to_death"].hint == "paediatric_ALL"
    # Every numeric value of the bundled scenario has a source (STYLE.md), names need none.
    assert [p.path for p in params if p.status == "missing"] == []
    assert by_path["name"].status == "label" and by_path["name"].comment == ""
    # The file's header notes are the scenario's, not its first key's.
    assert notes.startswith("Hong Kong local manufacturing (fresh product)")
    assert "Modelling choices" in notes and "=====" not in notes
    # Line numbers point at the key.
    lines = text.splitlines()
    assert lines[by_path["seed"].line - 1].startswith("seed: 20250415")


def test_comments_are_read_by_yaml_rules_and_missing_sources_flagged() -> None:
    text = """\
name: t  # a name
horizon_days: 10
seed: 3          # "quoted # not the comment start"
description: "value # inside quotes"
notes_block: |
  # not a comment: a block scalar line
arrivals:        # on the enclosing key
  rate_per_year: 5
# detached by a blank line

replications: 4
"""
    params, _ = source_parameters(text, {"horizon_days": 10, "seed": 3, "replications": 9,
                                         "drain_days": 3650})
    by_path = {p.path: p for p in params}
    assert by_path["horizon_days"].status == "missing" and by_path["horizon_days"].comment == ""
    assert by_path["seed"].comment == '"quoted # not the comment start"'
    assert by_path["description"].value == "value # inside quotes"
    assert by_path["description"].status == "label"
    assert by_path["notes_block"].status == "missing"  # the '#' line is part of the value
    assert by_path["arrivals.rate_per_year"].status == "inherited"
    assert by_path["arrivals.rate_per_year"].comment == "on the enclosing key"
    assert by_path["replications"].status == "missing"  # a blank line detaches a comment
    assert by_path["replications"].run_value == "9"  # overridden on the command line
    assert by_path["drain_days"].status == "default" and by_path["drain_days"].value == "3650"


def test_compare_report_shows_paired_differences(compare_dir: Path, tmp_path: Path) -> None:
    out = write_report([compare_dir], tmp_path / "c.html")
    page = out.read_text(encoding="utf-8")
    table = pd.read_csv(compare_dir / "comparison.csv")
    overseas = table[(table["metric"] == "vein_to_vein_median") & table["diff"].notna()].iloc[0]
    text = " ".join(parse(page).text)
    assert f"+{overseas['diff']:.1f}" in text
    assert f"+{overseas['diff_ci_low']:.1f} to +{overseas['diff_ci_high']:.1f}" in text
    infused = table[(table["metric"] == "infused_fraction") & table["diff"].notna()].iloc[0]
    sign = "+" if infused["diff"] > 0 else "\u2212"
    assert f"{sign}{abs(100 * infused['diff']):.1f} pp" in text
    # Common random numbers: the same referrals, so a zero difference, not marked as clear.
    assert '<td class="num diffcell"><b>±0.00</b>' in page
    assert f'<td class="num diffcell clear"><b>+{overseas["diff"]:.1f}</b>' in page
    # Both scenarios' assumptions and the comparison figure (first) are in the page.
    assert page.count('class="params"') == 2
    first_img = next(a for t, a in parse(page).tags if t == "img")
    assert first_img["alt"] == "Outcomes per 100 referred patients"
    assert "Comparison table" in page and "Difference: Overseas commercial CAR-T" in page
    # The same numbers as reporting the two run directories (paired by replication) directly.
    computed, note = paired_comparison([load_results(compare_dir / "local"),
                                        load_results(compare_dir / "overseas")])
    assert note == ""
    mine = computed[computed["diff"].notna()].set_index("metric")
    theirs = table[table["diff"].notna()].set_index("metric")
    for metric in KEY_METRICS:
        assert mine.loc[metric, "diff"] == pytest.approx(theirs.loc[metric, "diff"], rel=1e-9)


def test_report_of_real_compare_output(real_compare_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "real.html"
    result = invoke("report", real_compare_dir, "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    table = pd.read_csv(real_compare_dir / "comparison.csv")
    runs = json.loads((real_compare_dir / "manifest.json").read_text())["scenarios"]
    own = pd.read_csv(real_compare_dir / runs[0]["dir"] / "summary.csv").set_index("metric")
    # Percentages appear on the run's own scale whichever scale comparison.csv uses.
    assert _fmt_pct(own.loc["infused_fraction", "mean"]) in page
    diff = table[(table["metric"] == "vein_to_vein_median") & table["diff"].notna()].iloc[0]
    assert f"+{diff['diff']:.1f}" in page
    assert page.count('class="params"') == 2
    assert "all 2 files match" not in page and "do not match the manifest" not in page


def test_run_dirs_with_different_seeds_are_not_paired(run_dirs: dict[str, Path],
                                                     tmp_path: Path) -> None:
    other = tmp_path / "other"
    result = invoke("run", ROOT / "scenarios" / "overseas.yaml", "-n", 3, "--seed", 1, "-j", 1,
                    "--no-figures", "-o", other)
    assert result.exit_code == 0, result.output
    page = write_report([run_dirs["local"], other], tmp_path / "x.html").read_text(encoding="utf-8")
    assert "not paired by common random numbers" in page
    assert "Difference:" not in page
    paired = write_report([run_dirs["local"], run_dirs["overseas"]], tmp_path / "y.html")
    assert "Difference: Overseas" in paired.read_text(encoding="utf-8")


def test_hostile_text_is_escaped(hostile_dir: Path, tmp_path: Path) -> None:
    out = write_report([hostile_dir], tmp_path / "h.html")
    page = out.read_text(encoding="utf-8")
    lowered = page.lower()
    assert "<script" not in lowered
    assert "<img src=x" not in lowered
    assert not re.search(r"<[a-z]+[^>]*\son[a-z]+=", lowered)  # no event-handler attribute
    assert "HK$<b>" not in page and "HK$&lt;b&gt;" in page  # the currency
    assert html.escape(HOSTILE_SCRIPT) in page and html.escape(HOSTILE_IMG) in page
    # The escaped text is there as text, in every place it was written.
    parsed = parse(page)
    text = "\n".join(parsed.text)
    for where in ("Evil <script>alert(1)</script> scenario", "<img src=x onerror=alert(1)> & friends",
                  "source <script>alert(1)</script>", "above <script>alert(1)</script>",
                  "Notes <script>alert(1)</script> and <img src=x onerror=alert(1)>"):
        assert where in text, where
    assert {tag for tag, _ in parsed.tags} <= {
        "html", "head", "meta", "title", "style", "body", "header", "div", "p", "h1", "h2", "h3",
        "h4", "ul", "li", "b", "span", "main", "nav", "a", "section", "table", "thead", "tbody",
        "tr", "th", "td", "code", "i", "sub", "dl", "dt", "dd", "pre", "footer", "figure", "img",
        "figcaption"}
    assert all(tag != "img" or (a["src"] or "").startswith("data:image/") for tag, a in parsed.tags)


def test_not_a_results_directory_exits_2(tmp_path: Path, run_dirs: dict[str, Path]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text('{"hello": 1}')
    cases = {
        tmp_path / "empty": "not a v2vsim results directory (no manifest.json)",
        tmp_path / "missing": "no such directory",
        tmp_path / "file.txt": "not a v2vsim results directory (it is not a directory)",
        fake: "manifest.json was not written by v2vsim",
    }
    for directory, message in cases.items():
        result = invoke("report", run_dirs["local"], directory, "-o", tmp_path / "r.html")
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert not (tmp_path / "r.html").exists()
    with pytest.raises(ReportError, match="is a directory"):
        write_report([run_dirs["local"]], tmp_path)


def test_report_is_deterministic(run_dirs: dict[str, Path], tmp_path: Path) -> None:
    a = write_report([run_dirs["overseas"]], tmp_path / "a.html").read_bytes()
    b = write_report([run_dirs["overseas"]], tmp_path / "a.html").read_bytes()
    assert a == b


# --------------------------------------------------------------------------------------------
# A real browser
# --------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="session")
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (CI installs it; locally: apt-get install chromium)")
    return CHROMIUM


class DevTools:
    """Headless Chromium driven over the DevTools protocol (one page, events recorded)."""

    def __init__(self, executable: str, profile: Path, width: int = 1280, height: int = 2000) -> None:
        import websocket  # websocket-client

        profile.mkdir(parents=True, exist_ok=True)
        self.log = open(profile / "stderr.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-extensions",
             "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
             f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "--enable-logging=stderr", "--v=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not start: "
                                   + (profile / "stderr.log").read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        browser = websocket.create_connection(
            f"ws://127.0.0.1:{port}{port_file.read_text().split()[1]}", timeout=60,
            suppress_origin=True)
        self.ws = browser
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method:
                    return event
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, dialogs and non-local requests seen so far."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                out.append(f"console {params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                out.append(f"log {params['entry']['level']}: {params['entry'].get('text')}")
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog: {params.get('message')}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(("data:", "file:", "about:")):
                    out.append(f"network request: {url}")
        return out

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                try:
                    self.call("Browser.close")
                except Exception:  # the browser may close the socket before replying
                    pass
                self.ws.close()
        finally:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[DevTools]:
    tools = DevTools(chromium, tmp_path / "profile")
    try:
        yield tools
    finally:
        tools.close()


def _load(tools: DevTools, page: Path) -> None:
    tools.call("Page.navigate", session=True, url=page.resolve().as_uri())
    tools.wait_for("Page.loadEventFired")


IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
    complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width})))"""


def test_report_in_headless_chromium(browser: DevTools, compare_dir: Path, run_dirs: dict[str, Path],
                                     tmp_path: Path) -> None:
    out = write_report([compare_dir], tmp_path / "report.html")
    _load(browser, out)
    images = json.loads(browser.evaluate(IMAGES_JS))
    # The comparison figure and the local run's six figures (a waitlist forms), every one
    # decoded and laid out.
    assert len(images) == 7
    for image in images:
        assert image["complete"] and image["w"] > 0 and image["h"] > 0 and image["shown"] > 0, image
    assert browser.evaluate("document.scripts.length") == 0
    assert browser.evaluate("document.querySelectorAll('section').length") == 7
    # The page fits the window: nothing wider than the viewport forces a horizontal scroll.
    assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert browser.problems() == []
    shot = browser.call("Page.captureScreenshot", session=True, format="png")
    png = base64.b64decode(shot["data"])
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 2000)
    if os.environ.get("V2VSIM_SCREENSHOT"):  # for a human to look at
        shutil.copy(screenshot, os.environ["V2VSIM_SCREENSHOT"])


def test_hostile_report_runs_nothing_in_chromium(browser: DevTools, hostile_dir: Path,
                                                 tmp_path: Path) -> None:
    out = write_report([hostile_dir], tmp_path / "hostile.html")
    _load(browser, out)
    # No alert dialog, no injected element; the text shows literally.
    assert browser.problems() == []
    assert browser.evaluate("document.scripts.length") == 0
    assert browser.evaluate("document.querySelectorAll('img[src=x], [onerror]').length") == 0
    assert browser.evaluate("document.querySelector('h1').textContent") == \
        "Evil <script>alert(1)</script> scenario"
    assert HOSTILE_IMG in browser.evaluate("document.body.innerText")


def _need_poppler() -> None:
    """Skip without poppler-utils (pdfinfo, pdftotext); on CI, which installs them, fail."""
    if shutil.which("pdfinfo") is None or shutil.which("pdftotext") is None:
        if os.environ.get("CI"):
            pytest.fail("poppler-utils is not installed (apt-get install poppler-utils)")
        pytest.skip("poppler-utils is not installed (apt-get install poppler-utils)")


def _pdf_pages_and_text(pdf: Path) -> tuple[int, list[str]]:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[1] for line in info.splitlines() if line.startswith("Pages:")))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    return pages, text.split("\f")


def test_report_printed_to_pdf(chromium: str, real_compare_dir: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    _need_poppler()
    monkeypatch.setenv("V2VSIM_CHROMIUM", chromium)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tempfile.tempdir = None  # TMPDIR is read again
    try:
        result = invoke("report", real_compare_dir, "-o", tmp_path / "out" / "r.html", "--pdf")
    finally:
        tempfile.tempdir = None
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.html", "r.pdf"]
    assert list((tmp_path / "tmp").iterdir()) == []  # the browser's profile is gone
    pages, text = _pdf_pages_and_text(tmp_path / "out" / "r.pdf")
    # The bundled comparison without figures printed to 25 A4 pages when this was written (32
    # with its figures; 37 before the print layout).
    assert 5 <= pages <= 28, pages
    whole = "\n".join(text)
    for heading in ("Key numbers", "Comparison table", "Method", "Validation"):
        assert heading in whole, heading
    # The paired-difference column is printed whole on the table's page: its header and the
    # difference of the first row (a signed number, "pp" for percentages), not cut at the margin.
    table_page = next(p for p in text if "Difference:" in p and "Referred patients" in p)
    assert "baseline" in table_page
    assert re.search(r"Infused.*[−+±]\d+\.\d pp", table_page), table_page


def test_pdf_without_a_browser_is_one_line_exit_1(real_compare_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    monkeypatch.delenv("V2VSIM_CHROMIUM", raising=False)
    result = invoke("report", real_compare_dir, "-o", tmp_path / "r.pdf")
    assert result.exit_code == 1
    assert "apt-get install chromium" in result.output and not (tmp_path / "r.pdf").exists()


def test_report_of_the_bundled_comparison_is_at_most_3_mb(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "cmp"
    result = invoke("compare", ROOT / "scenarios" / "local.yaml", ROOT / "scenarios" / "overseas.yaml",
                    "-n", N_REPS, "-j", 1, "-o", out)
    assert result.exit_code == 0, result.output
    page = write_report([out], tmp_path / "r.html")
    # 5.6-8 MB with the figures embedded at full size; 1.2 MB when this was written.
    assert page.stat().st_size <= 3_000_000, page.stat().st_size
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page.read_text(encoding="utf-8"))
    assert len(pngs) >= 10
    for data in pngs:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert 600 <= image.width <= 1800, image.size


def test_report_printed_on_letter_paper(chromium: str, real_compare_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """--paper letter: US Letter pages (612 x 792 pt), the paired-difference column whole."""
    _need_poppler()
    monkeypatch.setenv("V2VSIM_CHROMIUM", chromium)
    result = invoke("report", real_compare_dir, "-o", tmp_path / "r.pdf", "--paper", "letter")
    assert result.exit_code == 0, result.output
    info = subprocess.run(["pdfinfo", str(tmp_path / "r.pdf")], capture_output=True, text=True,
                          check=True).stdout
    assert "612 x 792 pts (letter)" in info
    _pages, text = _pdf_pages_and_text(tmp_path / "r.pdf")
    table_page = next(p for p in text if "Difference:" in p and "Referred patients" in p)
    assert re.search(r"Infused.*[−+±]\d+\.\d pp", table_page), table_page
    bad = invoke("report", real_compare_dir, "-o", tmp_path / "x.pdf", "--paper", "b5")
    assert bad.exit_code == 2 and "unknown paper size 'b5'" in bad.output
    assert not (tmp_path / "x.pdf").exists()
