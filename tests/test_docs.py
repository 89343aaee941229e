"""The documentation site builds strictly, offline, and its generated reference matches the code.

``mkdocs build --strict`` fails on a broken link or anchor, a page missing from the navigation, a
docstring mkdocstrings cannot read, or an error in the hook that generates the scenario schema
and command-line pages (docs/hooks/reference.py). The generated pages are then checked against
sources they were not built from: the keys of the bundled scenario files, and ``v2vsim COMMAND
--help`` as the installed command prints it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "reference.py"
BUILD_SECONDS = 60


def _mkdocs_available() -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        if os.environ.get("CI"):
            pytest.fail("mkdocs is not installed; the test extra installs it (pip install -e '.[test]')")
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _mkdocs_available()
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-4000:]
    assert seconds < BUILD_SECONDS, f"the documentation took {seconds:.0f} s to build"
    return out


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in ("tutorial", "gallery", "how-to/scenario-from-published-figures",
                 "how-to/compare-for-a-proposal", "how-to/plan-capacity", "how-to/run-on-a-cluster",
                 "reference/scenario-schema", "reference/cli", "reference/api"):
        assert (site / page / "index.html").is_file(), page
    # The hook's own sources are not published as static files.
    assert not (site / "hooks").exists()


def test_the_site_needs_no_network(site: Path) -> None:
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, page
        for src in re.findall(r"<(?:script|link)[^>]+(?:src|href)=\"(https?:)?//", html):
            pytest.fail(f"{page.relative_to(site)} loads a script or stylesheet from the network")


def test_the_api_reference_documents_the_public_api(site: Path) -> None:
    text = _text((site / "reference" / "api" / "index.html").read_text(encoding="utf-8"))
    for name in ("load_scenario", "simulate", "compare", "Results", "Comparison", "ScenarioError",
                 "capacity_search", "sweep_table", "sensitivity_analysis", "simulate_to_precision",
                 "load_with_overrides", "load_case", "run_cases"):
        assert re.search(rf"\b{name}\b", text), name
    # Sphinx roles are turned into code, never shown raw; `#:` comments become attribute docs.
    assert ":class:" not in text and ":func:" not in text
    assert "The site-day profile as arrays" in text


def _keys_in(data: Any, path: str, schema: Any, name: str, found: set[tuple[str, str]]) -> None:
    props = schema.model(name).get("properties", {})
    for key, value in data.items():
        found.add((path, key))
        for suffix, child in schema.targets(props.get(key, {})):
            parts = [value]
            for step in re.findall(r"\[\]|\.NAME", suffix):
                parts = [x for p in parts for x in (p if step == "[]" and isinstance(p, list) else
                                                     p.values() if step == ".NAME" and isinstance(p, dict) else [])]
            for sub in parts:
                if isinstance(sub, dict):
                    _keys_in(sub, f"{path}.{key}{suffix}" if path else f"{key}{suffix}", schema, child, found)


def test_the_schema_page_lists_every_key_of_the_schema_and_of_the_bundled_scenarios(hook: ModuleType) -> None:
    page = hook.scenario_schema_page()
    raw, _ = hook.scenario_schema()
    schema = hook.Schema(raw)
    sections = dict(schema.sections())
    # Every object of the contract has a section, with one table row per key of its model.
    for path, name in sections.items():
        title = "Top level" if not path else f"`{path}`"
        chunk = page.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
        rows = re.findall(r"^\| `([^`]+)` \|", chunk, flags=re.M)
        assert rows == list(schema.model(name).get("properties", {})), path
    # Every distribution has its table, with every key.
    for model in schema.dists.values():
        dist = model["properties"]["dist"]["const"]
        chunk = page.split(f"### `{dist}`", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        assert re.findall(r"^\| `([^`]+)` \|", chunk, flags=re.M) == list(model["properties"]), dist
    # Independently of the schema: every key the bundled scenario files use is on the page, in
    # the section of its path (a key the walk could not place would be missing here).
    from ruamel.yaml import YAML

    used: set[tuple[str, str]] = set()
    for file in sorted(ROOT.glob("scenarios/*.yaml")) + sorted(ROOT.glob("validation/scenarios/*.yaml")):
        _keys_in(YAML(typ="safe", pure=True).load(file.read_text(encoding="utf-8")), "", schema, "", used)
    documented = set(hook.schema_keys())
    assert used - documented == set()
    assert {"cohorts[]", "pathways.NAME.steps[]", "sites.NAME", "arrivals"} <= set(sections)


def test_the_schema_page_reads_bounds_defaults_and_examples_from_the_schema(hook: ModuleType) -> None:
    page = hook.scenario_schema_page()
    row = next(line for line in page.splitlines() if line.startswith("| `failure_probability` |"))
    assert "≥ 0, ≤ 1" in row and "`0.0`" in row and "scenarios/local.yaml" in row
    row = next(line for line in page.splitlines() if line.startswith("| `horizon_days` |"))
    assert "**required**" in row and "> 0" in row and "`1825`" in row
    assert "{dist: weibull, shape: 0.56, median: 365}" in page  # scenarios/local.yaml's death clock


def _help(*args: str) -> str:
    env = dict(os.environ, COLUMNS="88", TERM="dumb", NO_COLOR="1")
    done = subprocess.run([sys.executable, "-m", "v2vsim", *args, "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cli_page_is_the_help_every_command_prints(hook: ModuleType) -> None:
    page = hook.cli_page()
    commands = re.findall(r"^  (\w+) {2,}", _help().split("Commands:", 1)[1], flags=re.M)
    assert len(commands) >= 10
    for command in commands:
        assert f"## `v2vsim {command}`" in page, command
        printed = _help(command)
        # Every option the installed command prints is on the page, in that command's section.
        section = page.split(f"## `v2vsim {command}`", 1)[1].split("\n## ", 1)[0]
        for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", printed):
            assert option in section, (command, option)
        assert printed.splitlines()[0].replace("python -m v2vsim", "v2vsim") in section
