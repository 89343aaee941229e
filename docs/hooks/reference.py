"""MkDocs hook: the reference pages generated from the code, so that they cannot drift from it.

At every build (``mkdocs build``, ``mkdocs serve``) this hook adds two pages that exist in no
file of the repository:

- ``reference/scenario-schema.md``: every key of a scenario file, from the scenario's JSON Schema
  (built by docs/hooks/schema_page.py);
- ``reference/cli.md``: the help text of every command of the Typer app ``v2vsim.cli.app``,
  exactly as ``v2vsim COMMAND --help`` prints it.

``tests/test_docs.py`` imports this file to check that every key of the schema and every command
and option of the command line is on its page.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# MkDocs loads a hook by its path, not as a package: its folder goes on the path for its sibling.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from schema_page import (  # noqa: E402
    ROOT,
    Schema,
    anchor,
    cell,
    prose,
    scenario_schema,
    scenario_schema_page,
    schema_keys,
)

__all__ = ["Schema", "cli_commands", "cli_page", "on_files", "scenario_schema", "scenario_schema_page",
           "schema_keys"]

SCHEMA_PAGE = "reference/scenario-schema.md"
CLI_PAGE = "reference/cli.md"


# --------------------------------------------------------------------------- the CLI page

HELP_WIDTH = 88


def cli_commands() -> list[tuple[str, str]]:
    """``(command, help text)`` for the app and each command, as ``--help`` prints them."""
    group, ctx = _app_context()
    out = [("v2vsim", group.get_help(ctx))]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = command.context_class(command, info_name=name, parent=ctx)
        out.append((f"v2vsim {name}", command.get_help(sub)))
    return out


def _app_context() -> tuple[Any, Any]:
    """The app's command group and a help context of a fixed width (Typer brings its own
    Click, so the context class is the group's own)."""
    import typer

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from v2vsim.cli import app

    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="v2vsim", terminal_width=HELP_WIDTH,
                              max_content_width=HELP_WIDTH, help_option_names=["-h", "--help"])
    return group, ctx


def cli_page() -> str:
    """The command-line reference, as Markdown."""
    commands = cli_commands()
    group, ctx = _app_context()
    out = [
        "# Command-line reference",
        "",
        "<!-- Generated at build time by docs/hooks/reference.py: do not edit. -->",
        "",
        "The help text of every command, exactly as `v2vsim COMMAND --help` prints it "
        "(generated from the Typer app `v2vsim.cli.app` each time the site is built). "
        "Exit status: 0 on success; 2 for a bad scenario or bad options (every problem printed "
        "as `FILE:LINE: key.path: message`); 1 for a failed check (`verify`, or a `capacity` "
        "search with no answer); 130 when interrupted (143 on SIGTERM).",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for name in group.list_commands(ctx):
        short = group.get_command(ctx, name).get_short_help_str(limit=400)
        out.append(f"| [`v2vsim {name}`](#v2vsim-{anchor(name)}) | {cell(prose(short))} |")
    out.append("")
    for title, text in commands:
        ident = anchor(title)
        out += [f"## `{title}` {{#{ident}}}", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- the hook

PAGES = {SCHEMA_PAGE: scenario_schema_page, CLI_PAGE: cli_page}


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for uri, make in PAGES.items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=make()))
    return files
