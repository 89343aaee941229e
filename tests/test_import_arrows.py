"""The package layout's one-way arrows (STYLE.md, "Our layout"), read from the source.

Every import counts, also one inside a function or under ``TYPE_CHECKING``: outputs read result
frames and never import the engine, the experiments or the command line; each command module of
the CLI imports only ``cli.common``; and no module of ``outputs`` or ``cli`` imports a module
that imports it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "v2vsim"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) of every module of v2vsim."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imports() -> dict[str, set[str]]:
    """Dotted name -> the v2vsim modules it imports (a submodule, not its package, for
    ``from package import submodule``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names]
                if not all(s in modules for s in subs):
                    targets.add(target)
                targets.update(s for s in subs if s in modules)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def test_outputs_never_import_the_engine_the_experiments_or_the_cli() -> None:
    graph = _imports()
    bad = sorted((m, t) for m, targets in graph.items() if m.startswith("v2vsim.outputs")
                 for t in targets if t.split(".")[1] in ("engine", "experiments", "cli"))
    assert bad == []


def test_cli_command_modules_import_only_common() -> None:
    graph = _imports()
    for module in ("v2vsim.cli.run", "v2vsim.cli.compare", "v2vsim.cli.experiments"):
        assert {t for t in graph[module] if t.startswith("v2vsim.cli")} == {"v2vsim.cli.common"}
    assert not any(t.startswith("v2vsim.cli") for t in graph["v2vsim.cli.common"])


def test_no_module_of_outputs_or_cli_imports_a_module_that_imports_it() -> None:
    graph = _imports()
    mine = [m for m in graph if m.startswith(("v2vsim.outputs", "v2vsim.cli"))]
    assert len(mine) > 10  # the walk found the subpackages
    assert [m for m in mine if m in _reaches(graph, m)] == []
