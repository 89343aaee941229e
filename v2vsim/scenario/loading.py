"""Loading a scenario: YAML with line numbers, validated strictly, every problem reported at once.

``load_scenario`` reads a YAML file safely (:mod:`.yaml_io`), validates it against the models
(:mod:`.schema`) and the cross-references (:mod:`.references`), checks that the engine can run
it (:mod:`.compile`), and reports *every* problem as ``FILE:LINE: key.path: message`` in one
:class:`~.errors.ScenarioError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .economics import read_life_table
from .errors import Problem, ScenarioError, format_path
from .messages import clean_loc, error_message
from .references import reference_problems
from .schema import Scenario
from .yaml_io import UnreadableFile, line_of, read_text_file, read_yaml, tag_problems, to_plain

__all__ = ["load_scenario", "scenario_from_dict"]


def _read_life_table(raw: Any, file: str, base: Path | None) -> str | None:
    """Replace a life table named by its CSV's path with the CSV's rows; the problem, if any."""
    eco = raw.get("economics")
    if not isinstance(eco, Mapping) or not isinstance(eco.get("life_table"), str):
        return None
    name = eco["life_table"]
    folder = base if base is not None else (Path(file).parent if not file.startswith("<") else Path.cwd())
    path = Path(name) if Path(name).is_absolute() else folder / name
    try:
        text = read_text_file(path, what="a life table (CSV)")
    except UnreadableFile as exc:
        return f"no such file: {path}" if str(exc) == "no such file" else f"{name}: {exc}"
    try:
        eco["life_table"] = read_life_table(text, name)
    except ValueError as exc:
        return str(exc)
    return None


def scenario_from_dict(data: Any, file: str = "<scenario>", tree: Any = None, base: Path | None = None) -> Scenario:
    """Validate plain data (as loaded from YAML) into a :class:`Scenario`. A life table named by
    a CSV's path is read relative to ``base`` (default: the folder of ``file``)."""
    raw = to_plain(data)
    tree = data if tree is None else tree
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise ScenarioError([Problem(file, 1, "", "a scenario must be a mapping of keys to values")])
    table_problem = _read_life_table(raw, file, base)
    if table_problem:
        path = ["economics", "life_table"]
        raise ScenarioError([Problem(file, line_of(tree, path), format_path(path), table_problem)])
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = clean_loc(raw, err["loc"])
            problems.append(Problem(file, line_of(tree, path), format_path(path),
                                    error_message(err, raw, path)))
    for path, msg in reference_problems(raw):
        problems.append(Problem(file, line_of(tree, path), format_path(path), msg))
    if scenario is not None and not problems:
        for path, msg in scenario.economics_problems():
            problems.append(Problem(file, line_of(tree, path), format_path(path), msg))
    if scenario is not None and not problems:
        # What validates must also run: the engine's preconditions (see .compile).
        from .compile import precondition_problems
        for path, msg in precondition_problems(scenario):
            problems.append(Problem(file, line_of(tree, path), format_path(path), msg))
    tagged = tag_problems(tree)
    if tagged:
        # The tag is the problem; what pydantic says about the tagged value is noise.
        prefixes = [format_path(path) for path, _ in tagged]
        problems = [p for p in problems if p.message.startswith("unknown key")
                    or not any(p.path == q or p.path.startswith((q + ".", q + "[")) for q in prefixes)]
        problems += [Problem(file, line_of(tree, path), format_path(path), msg)
                     for path, msg in tagged]
    if problems:
        # One line per problem, in file order.
        unique = list(dict.fromkeys(problems))
        unique.sort(key=lambda p: (p.line if p.line is not None else 0))
        raise ScenarioError(unique)
    assert scenario is not None
    return scenario


def load_scenario(path: str | Path, text: str | None = None) -> Scenario:
    """Load and validate a scenario file; raises :class:`ScenarioError` listing every problem."""
    file = str(path)
    if text is None:
        try:
            text = read_text_file(path)
        except UnreadableFile as exc:
            raise ScenarioError([Problem(file, None, "", str(exc))]) from None
    tree = read_yaml(text, file)
    if tree is None:
        raise ScenarioError([Problem(file, 1, "", "the file is empty")])
    return scenario_from_dict(tree, file, tree)
