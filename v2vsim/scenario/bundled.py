"""The files v2vsim ships: its scenarios, the external-validation cases and a notebook.

They are package data under ``v2vsim/bundled/`` (``scenarios/`` with its ``data/``,
``validation/`` with its ``scenarios/``, ``notebooks/``). In a checkout those three are
symlinks to the top-level folders of the same names, which stay where the documentation, the
tests and every example command name them; a wheel holds real copies (the build follows the
links). :data:`STUDY_FILES` lists what is bundled, and ``pyproject.toml``'s package data says
the same (tests/test_packaging.py holds the two, and a built wheel, to one list).

Three uses: a bare ``NAME`` stands for the bundled ``NAME.yaml`` wherever a scenario file is
expected (:func:`scenario_path`; a file of that name in the current folder wins), ``v2vsim
scenarios`` lists them (:func:`bundled_scenarios`) and ``v2vsim init DIR`` copies them, with
the cases and the notebook, as a starter study (:func:`init_study`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import Problem, ScenarioError
from .yaml_io import read_yaml, to_plain

__all__ = ["BUNDLED_DIR", "STUDY_FILES", "BundledScenario", "StudyCopy", "StudyError",
           "bundled_scenarios", "init_study", "scenario_names", "scenario_path", "study_files"]

#: The bundled files' folder in the installed package (in a checkout: v2vsim/bundled/).
BUNDLED_DIR = Path(__file__).parent.parent / "bundled"

#: What is bundled and what ``v2vsim init`` copies, as globs relative to :data:`BUNDLED_DIR`
#: (the same globs as the package data of ``v2vsim.bundled`` in pyproject.toml).
STUDY_FILES = (
    "scenarios/*.yaml",
    "scenarios/data/*.csv",
    "scenarios/data/*.md",
    "validation/*.yaml",
    "validation/scenarios/*.yaml",
    "notebooks/*.ipynb",
)


def scenario_names() -> list[str]:
    """The bundled scenarios' names (their file names without ``.yaml``), sorted."""
    return sorted(p.stem for p in (BUNDLED_DIR / "scenarios").glob("*.yaml"))


def scenario_path(path: str | Path) -> Path:
    """The scenario file ``path`` stands for: ``path`` itself if it exists or is written as a
    path (with a folder or a suffix), else the bundled scenario of that name.

    Raises :class:`ScenarioError` for a bare name that is neither a file nor a bundled
    scenario, naming the bundled ones.
    """
    given = Path(path)
    if given.exists() or len(given.parts) != 1 or given.suffix:
        return given
    bundled = BUNDLED_DIR / "scenarios" / f"{given.name}.yaml"
    if bundled.is_file():
        return bundled
    raise ScenarioError([Problem(
        str(path), None, "",
        f"no such file, nor a bundled scenario of that name (bundled: {', '.join(scenario_names())}; "
        "`v2vsim scenarios` lists them)")])


@dataclass(frozen=True)
class BundledScenario:
    """One bundled scenario as ``v2vsim scenarios`` lists it."""

    name: str          # what to type: `v2vsim run NAME`
    title: str         # the scenario's own name (its `name:` key)
    description: str   # the first sentence of its `description:`
    path: Path


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat, maxsplit=1)[0]


def bundled_scenarios() -> list[BundledScenario]:
    """Every bundled scenario, by name (read from the files, not validated: see ``validate``)."""
    found = []
    for name in scenario_names():
        path = BUNDLED_DIR / "scenarios" / f"{name}.yaml"
        data = to_plain(read_yaml(path.read_text(encoding="utf-8"), str(path)))
        data = data if isinstance(data, dict) else {}
        found.append(BundledScenario(name, str(data.get("name", name)),
                                     _first_sentence(str(data.get("description", ""))), path))
    return found


def study_files() -> list[Path]:
    """The bundled files ``v2vsim init`` copies, relative to :data:`BUNDLED_DIR`, sorted."""
    return sorted({p.relative_to(BUNDLED_DIR) for pattern in STUDY_FILES
                   for p in BUNDLED_DIR.glob(pattern) if p.is_file()})


class StudyError(ValueError):
    """``init_study`` refused its target (nothing was written)."""


@dataclass(frozen=True)
class StudyCopy:
    """What :func:`init_study` wrote: every file, relative to ``directory``, and those of them
    that replaced a file with other content (only with ``force``)."""

    directory: Path
    written: tuple[Path, ...]
    replaced: tuple[Path, ...]


_README = """\
# A v2vsim study

Copied by `v2vsim init` from v2vsim {version}. Every file here is yours to edit.

- `scenarios/`: the bundled scenarios. Every number has its source in a comment; `data/` holds
  the life table the economic scenarios read and `SOURCES.md`, where their inputs come from.
- `validation/`: external-validation cases (published trials), each naming the scenario in
  `validation/scenarios/` that is built from the trial's published inputs.
- `notebooks/local_vs_overseas.ipynb`: the paired local-against-overseas comparison with the
  Python API (run it from this folder or from `notebooks/`; `pip install jupyterlab` first).

## What to run next

From this folder:

    v2vsim validate scenarios/*.yaml                 # every problem as FILE:LINE: key: message
    v2vsim run scenarios/local.yaml                  # replications, results in results/<name>/
    v2vsim compare scenarios/local.yaml scenarios/overseas.yaml -o results/compare
    v2vsim report results/compare -o report.html     # one self-contained HTML report
    v2vsim validation validation/*.yaml              # predicted against observed, per trial

Copy a scenario to start your own (`cp scenarios/local.yaml scenarios/mine.yaml`), change its
values and their source comments, and compare it with the one it came from. `v2vsim COMMAND
--help` gives each command's options and examples.
"""


def init_study(directory: str | Path, *, force: bool = False, version: str = "") -> StudyCopy:
    """Copy the bundled scenarios (comments and ``data/`` included), the validation cases and
    the notebook into ``directory``, with a README.md saying what to run next.

    ``directory`` is created if it does not exist. A non-empty one is refused unless ``force``;
    with ``force``, files of the same name are replaced and listed in :attr:`StudyCopy.replaced`
    (files the study does not have are left alone). Raises :class:`StudyError`, having written
    nothing, when the copy cannot be made.
    """
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise StudyError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise StudyError(f"{target} is not empty; pass --force to copy the study into it "
                         "(files of the same name are replaced, and each is named)")
    contents = {rel: (BUNDLED_DIR / rel).read_bytes() for rel in study_files()}
    if not contents:
        raise StudyError(f"no bundled files in {BUNDLED_DIR}: this installation of v2vsim is incomplete")
    contents[Path("README.md")] = _README.format(version=version or "(unknown version)").encode("utf-8")
    for rel in contents:  # refuse before writing anything
        dest = target / rel
        if dest.is_dir():
            raise StudyError(f"{dest} is a folder; the study has a file there")
        blocking = next((p for p in dest.parents if p != target and p.is_relative_to(target)
                         and p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise StudyError(f"{blocking} is a file; the study has a folder there")
    replaced = []
    for rel, data in contents.items():
        dest = target / rel
        if dest.is_file():
            if dest.read_bytes() == data:
                continue
            replaced.append(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return StudyCopy(target, tuple(sorted(contents)), tuple(sorted(replaced)))
