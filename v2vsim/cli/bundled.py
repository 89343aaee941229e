"""The ``scenarios`` and ``init`` commands: list the bundled scenarios, copy a starter study.
Thin wrappers over :mod:`v2vsim.scenario.bundled`.

Exit status: 0 success, 2 a target ``init`` refuses (nothing is written).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from .common import _fail, err, out

__all__ = ["init", "scenarios"]


def scenarios() -> None:
    """List the scenarios bundled with v2vsim: name, title, description and file. A NAME is
    accepted wherever a scenario file is, when no file of that name is in the current folder.

    Examples:

    \b
      v2vsim scenarios
      v2vsim run local -n 50
      v2vsim compare local overseas
    """
    from ..scenario.bundled import bundled_scenarios

    found = bundled_scenarios()
    width = max(len(s.name) for s in found) + 2
    pad = " " * (width + 2)
    lines = ["Bundled scenarios (run one by name, e.g. `v2vsim run local`; `v2vsim init DIR` copies them):", ""]
    for s in found:
        lines += [f"  {s.name:<{width}}{s.title}", f"{pad}{s.description}", f"{pad}{s.path}", ""]
    for line in lines[:-1]:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to create (or an empty one).")],
    force: Annotated[bool, typer.Option("--force", help="Copy into a non-empty DIR; files of the same name are replaced, and each one is named.")] = False,
) -> None:
    """Copy a starter study into DIR: the bundled scenarios with their comments and data/, the
    external-validation cases, a notebook, and a README.md saying what to run next.

    Examples:

    \b
      v2vsim init my-study
      cd my-study && v2vsim validate scenarios/*.yaml
      v2vsim init my-study --force
    """
    from .._version import __version__
    from ..scenario.bundled import StudyError, init_study

    try:
        copy = init_study(directory, force=force, version=__version__)
    except StudyError as exc:
        _fail(f"error: {exc}")
        raise
    except OSError as exc:
        _fail(f"error: cannot write the study into {directory}: {exc}")
        raise
    for rel in copy.replaced:
        err.print(f"replaced {directory / rel}", markup=False, highlight=False, soft_wrap=True)
    folders = sorted({rel.parts[0] + "/" for rel in copy.written if len(rel.parts) > 1})
    out.print(f"Copied a study of {len(copy.written)} files into {directory}/ ({', '.join(folders)}, "
              f"README.md). Next: cd {shlex.quote(str(directory))} && v2vsim validate scenarios/*.yaml, then see README.md.",
              markup=False, highlight=False, soft_wrap=True)
