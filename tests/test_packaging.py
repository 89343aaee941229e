"""Packaging: the licence, citation and changelog agree with pyproject.toml (the one place the
name, version and licence are set); the bundled study ships inside the package, is listed by
``v2vsim scenarios``, copied by ``v2vsim init`` and named by a bare NAME wherever a scenario file
is; ``python cli.py`` without the dependencies says how to install them; and a wheel built from
the checkout, installed in a fresh environment, runs the bundled study from another folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

import v2vsim
from v2vsim.cli import app, common
from v2vsim.scenario.bundled import BUNDLED_DIR, STUDY_FILES, scenario_names, study_files
from v2vsim.scenario.cases import load_case

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
runner = CliRunner()

#: The top-level keys of CFF 1.2.0 (its schema's `properties`) and the ones it requires.
CFF_KEYS = {"abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi",
            "identifiers", "keywords", "license", "license-url", "message", "preferred-citation",
            "references", "repository", "repository-artifact", "repository-code", "title", "type",
            "url", "version"}
CFF_REQUIRED = {"authors", "cff-version", "message", "title"}
#: The bundled folders, each a symlink in v2vsim/bundled/ to the top-level folder of its name.
BUNDLED_FOLDERS = ("scenarios", "validation", "notebooks")
INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install -e ."


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _one_sentence(text: str) -> bool:
    flat = " ".join(text.split())
    return flat.endswith(".") and re.search(r"[.!?]\s+[A-Z]", flat) is None


# --------------------------------------------------------------------------- licence, citation, changelog


def test_licence_is_mit_with_the_authors_copyright() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "MIT License"
    assert "Copyright (c) 2025–2026 The v2vsim authors" in text
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_citation_is_cff_1_2_0_and_agrees_with_pyproject() -> None:
    cff = YAML(typ="safe").load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert CFF_REQUIRED <= set(cff) <= CFF_KEYS, set(cff) - CFF_KEYS
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software"
    assert cff["version"] == PROJECT["version"]  # a string, not a YAML number
    assert cff["license"] == PROJECT["license"]
    assert cff["authors"] == [{"name": "The v2vsim authors"}]
    assert cff["title"].startswith(f"{PROJECT['name']}: ")
    assert isinstance(cff["message"], str) and cff["message"]
    assert _one_sentence(cff["abstract"]), cff["abstract"]
    assert all(isinstance(k, str) for k in cff.get("keywords", []))


def test_the_version_is_set_in_pyproject_alone() -> None:
    from importlib import metadata

    version = PROJECT["version"]
    assert metadata.version("v2vsim") == version, "the installed metadata is stale: pip install -e ."
    assert v2vsim.__version__ == version
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"v2vsim {version}"
    quoted = re.compile(rf"""["']{re.escape(version)}["']""")
    written = [p for p in (ROOT / "v2vsim").rglob("*.py") if quoted.search(p.read_text(encoding="utf-8"))]
    assert written == []  # no second copy of the version in the package


def test_changelog_keeps_a_changelog_and_starts_at_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/" in text
    releases = re.findall(r"^## (.*)$", text, flags=re.M)
    assert releases
    for heading in releases:
        assert re.fullmatch(r"\[(Unreleased|\d+\.\d+\.\d+)\]( - (\d{4}-\d{2}-\d{2}|Unreleased))?", heading), heading
    versions = [m for h in releases for m in re.findall(r"^\[(\d+\.\d+\.\d+)\]", h)]
    assert versions[0] == PROJECT["version"]
    kinds = set(re.findall(r"^### (.*)$", text, flags=re.M))
    assert kinds and kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


# --------------------------------------------------------------------------- the bundled files


def test_the_bundled_files_are_the_checkout_folders_and_the_package_data() -> None:
    for folder in BUNDLED_FOLDERS:
        link = BUNDLED_DIR / folder
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), folder
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]["v2vsim.bundled"]
    assert tuple(package_data) == STUDY_FILES
    # Nothing in the folders is left out of the bundle by a missing glob.
    on_disk = {p.relative_to(ROOT) for folder in BUNDLED_FOLDERS for p in (ROOT / folder).rglob("*")
               if p.is_file() and not any(part.startswith((".", "__")) for part in p.parts[len(ROOT.parts):])}
    assert set(study_files()) == on_disk
    assert scenario_names() == sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))


def test_scenarios_lists_every_bundled_scenario_with_its_title_and_file() -> None:
    result = invoke("scenarios")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        title = v2vsim.load_scenario(path).name
        assert any(line.split() and line.split()[0] == path.stem and line.endswith(title)
                   for line in lines), (path.stem, title)
        assert str(BUNDLED_DIR / "scenarios" / path.name) in lines[lines.index(next(
            line for line in lines if line.split() and line.split()[0] == path.stem)) + 2]
    result = invoke("scenarios", "--help")
    assert "Examples:" in result.output and "v2vsim run local" in result.output


def test_a_bare_name_runs_the_bundled_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no file called `local` here
    by_name = invoke("run", "local", "-n", 3, "-o", tmp_path / "by_name", "--no-figures")
    assert by_name.exit_code == 0, by_name.output
    by_file = invoke("run", ROOT / "scenarios" / "local.yaml", "-n", 3, "-o", tmp_path / "by_file", "--no-figures")
    assert by_file.exit_code == 0, by_file.output
    for table in ("summary.csv", "replications.csv", "scenario.yaml", "scenario_source.yaml"):
        assert (tmp_path / "by_name" / table).read_bytes() == (tmp_path / "by_file" / table).read_bytes()
    import json

    manifest = json.loads((tmp_path / "by_name" / "manifest.json").read_text())
    assert manifest["scenario_file"].endswith("local.yaml") and manifest["scenario_sha256"]


def test_validate_takes_a_bundled_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("validate", "local", "economics_local")
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == 2


def test_a_file_of_that_name_wins_over_the_bundled_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(ROOT / "scenarios" / "slot_shortage.yaml", tmp_path / "local")
    result = invoke("run", "local", "-n", 1, "-o", tmp_path / "out", "--no-figures")
    assert result.exit_code == 0, result.output
    written = YAML(typ="safe").load((tmp_path / "out" / "scenario.yaml").read_text(encoding="utf-8"))
    assert written["name"] == v2vsim.load_scenario(ROOT / "scenarios" / "slot_shortage.yaml").name


def test_an_unknown_name_says_which_bundled_scenarios_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "no_such_scenario", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.startswith("no_such_scenario: no such file, nor a bundled scenario")
    assert all(name in result.output for name in scenario_names())
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    # Written as a path, it is a path: the loader's own message, no guessing.
    result = invoke("run", "elsewhere/local.yaml", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "elsewhere/local.yaml: no such file" in result.output


def test_every_loading_helper_takes_a_bundled_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The economic scenario's life table is found beside the bundled file, not in the cwd.
    assert common._load(Path("economics_local")).economics is not None
    assert common._source(Path("hybrid")).path == BUNDLED_DIR / "scenarios" / "hybrid.yaml"
    assert common.load_cli(Path("local"), ["sites.hkib.slots=3"]).sites["hkib"].slots == 3


# --------------------------------------------------------------------------- v2vsim init


def test_init_copies_a_study_whose_scenarios_and_cases_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = tmp_path / "study"
    result = invoke("init", study)
    assert result.exit_code == 0, result.output
    copied = {p.relative_to(study) for p in study.rglob("*") if p.is_file()}
    assert copied == set(study_files()) | {Path("README.md")}
    for rel in study_files():  # the files as written, comments and all
        assert (study / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
    monkeypatch.chdir(study)
    files = sorted(str(p) for p in [*Path("scenarios").glob("*.yaml"), *Path("validation/scenarios").glob("*.yaml")])
    result = invoke("validate", *files)
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == len(files) == len(scenario_names()) + 3
    for case in Path("validation").glob("*.yaml"):  # each case's scenario is the study's copy
        assert load_case(case).source.path.resolve().is_relative_to(study.resolve())
    readme = (study / "README.md").read_text(encoding="utf-8")
    assert f"v2vsim {PROJECT['version']}" in readme
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    to_run = re.findall(r"^ {4}(v2vsim (\w+) .*)$", readme, flags=re.M)
    assert to_run and {command for _, command in to_run} <= commands
    for line, _ in to_run:  # every file the commands name is in the study
        for path in re.findall(r"\b((?:scenarios|validation)/[\w/]+\.yaml)\b", line):
            assert (study / path).is_file(), line


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    (study / "notes.txt").write_text("mine")
    result = invoke("init", study)
    assert result.exit_code == 2
    assert "not empty" in result.output and "--force" in result.output
    assert [p.name for p in study.iterdir()] == ["notes.txt"]
    (tmp_path / "a_file").write_text("x")
    result = invoke("init", tmp_path / "a_file")
    assert result.exit_code == 2 and "not a folder" in result.output
    assert (tmp_path / "a_file").read_text() == "x"


def test_init_with_force_names_every_file_it_replaces(tmp_path: Path) -> None:
    study = tmp_path / "study"
    assert invoke("init", study).exit_code == 0
    (study / "scenarios" / "local.yaml").write_text("name: my edit\n")
    (study / "scenarios" / "mine.yaml").write_text("name: mine\n")
    result = invoke("init", study, "--force")
    assert result.exit_code == 0, result.output
    replaced = [line for line in result.output.splitlines() if line.startswith("replaced ")]
    assert replaced == [f"replaced {study / 'scenarios' / 'local.yaml'}"]
    assert (study / "scenarios" / "local.yaml").read_bytes() == (ROOT / "scenarios" / "local.yaml").read_bytes()
    assert (study / "scenarios" / "mine.yaml").read_text() == "name: mine\n"
    (study / "validation" / "zuma1.yaml").unlink()
    (study / "validation" / "zuma1.yaml").mkdir()  # a folder where the study has a file
    result = invoke("init", study, "--force")
    assert result.exit_code == 2 and "is a folder" in result.output
    assert (study / "scenarios" / "local.yaml").read_bytes() == (ROOT / "scenarios" / "local.yaml").read_bytes()


# --------------------------------------------------------------------------- cli.py without dependencies


def test_cli_py_without_the_dependencies_says_how_to_install_them(tmp_path: Path) -> None:
    # -S: no site-packages, so none of the dependencies can be imported; -I: no PYTHONPATH.
    probe = subprocess.run([sys.executable, "-S", "-I", "-c", "import typer"], capture_output=True)
    assert probe.returncode != 0
    done = subprocess.run([sys.executable, "-S", "-I", str(ROOT / "cli.py"), "run", "local"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert INSTALL in done.stderr and "'typer'" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_cli_py_says_so_for_a_dependency_a_command_imports(tmp_path: Path) -> None:
    # Typer is there; pydantic, which `validate` imports when it runs, fails to import.
    fake = tmp_path / "fake" / "pydantic"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'pydantic\'", name="pydantic")\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake")}
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "validate", str(ROOT / "scenarios" / "local.yaml")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == 1
    assert INSTALL in done.stderr and "'pydantic'" in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- the wheel


def _setuptools_major() -> int:
    try:
        import setuptools
    except ModuleNotFoundError:
        return 0
    return int(setuptools.__version__.split(".")[0])


def _run(*args: object, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


def test_a_wheel_installed_outside_the_checkout_runs_the_bundled_study(tmp_path: Path) -> None:
    """The wheel as a user gets it: built from the checkout's files, installed with --no-deps in
    a fresh venv that sees this environment's dependencies, and run from a folder elsewhere."""
    if _setuptools_major() < 77:  # the test extra installs it; CI must not skip
        if os.environ.get("CI"):
            pytest.fail("setuptools>=77 is needed to build the wheel (pip install -e '.[test]')")
        pytest.skip("setuptools>=77 is not installed (pip install -e '.[test]')")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")

    # The checkout's files, so that the build writes its build/ and egg-info here, not there.
    src = tmp_path / "src"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        src.mkdir(exist_ok=True)
        shutil.copyfile(ROOT / name, src / name)
    for name in ("v2vsim", *BUNDLED_FOLDERS):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=junk)  # v2vsim/bundled/* stay links
    _run(sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", tmp_path / "dist", cwd=tmp_path, env=env)
    (wheel,) = (tmp_path / "dist").glob("v2vsim-*.whl")
    assert wheel.name == f"v2vsim-{PROJECT['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        metadata = whl.read(f"v2vsim-{PROJECT['version']}.dist-info/METADATA").decode()
    assert {n for n in names if n.startswith("v2vsim/bundled/")} == {f"v2vsim/bundled/{p.as_posix()}" for p in study_files()}
    assert f"v2vsim-{PROJECT['version']}.dist-info/licenses/LICENSE" in names
    assert "License-Expression: MIT" in metadata

    # A venv of this interpreter; its dependencies are this environment's (a .pth line adds this
    # environment's site directories after the venv's own, so the wheel's v2vsim comes first).
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp_path, env=env)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                        cwd=tmp_path, env=env).stdout.strip())
    sites = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    (purelib / "_v2vsim_test_env.pth").write_text("".join(f"{p}\n" for p in sites))
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel,
         cwd=tmp_path, env=env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    v2vsim_cmd = python.parent / "v2vsim"
    where = _run(python, "-c", "import v2vsim; print(v2vsim.__file__)", cwd=elsewhere, env=env).stdout.strip()
    assert Path(where).is_relative_to(purelib), where  # the wheel's copy, not the checkout's

    _run(v2vsim_cmd, "run", "local", "-n", 3, "-o", tmp_path / "out", cwd=elsewhere, env=env)
    assert (tmp_path / "out" / "figures").is_dir()
    reference = invoke("run", ROOT / "scenarios" / "local.yaml", "-n", 3, "-o", tmp_path / "ref", "--no-figures")
    assert reference.exit_code == 0, reference.output
    assert (tmp_path / "out" / "summary.csv").read_bytes() == (tmp_path / "ref" / "summary.csv").read_bytes()

    listed = _run(v2vsim_cmd, "scenarios", cwd=elsewhere, env=env).stdout
    for name in scenario_names():
        assert str(purelib / "v2vsim" / "bundled" / "scenarios" / f"{name}.yaml") in listed

    _run(v2vsim_cmd, "init", "study", cwd=elsewhere, env=env)
    scenarios = sorted(str(p.relative_to(elsewhere)) for p in (elsewhere / "study" / "scenarios").glob("*.yaml"))
    assert len(scenarios) == len(scenario_names())
    checked = _run(v2vsim_cmd, "validate", *scenarios, cwd=elsewhere, env=env).stdout
    assert checked.count(": ok") == len(scenarios)
