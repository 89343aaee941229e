"""The package's layout shows its architecture, and keeps it: arrows one way, no cycles.

    cli -> experiments -> engine -> scenario        outputs -> (metrics, scenario)
    cli -> app -> scenario (the web app runs the command line in processes of its own)
    (every layer may use _workers, the worker processes, which imports nothing of v2vsim;
    the command line sets its process up with _memory, which imports nothing either)

Read from the source: every import counts, at module level, inside a function or under
``TYPE_CHECKING``, so a lazy import cannot hide a wrong arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "v2vsim"

#: What each layer may import besides itself (top-level modules are layers of their own).
ALLOWED = {
    "scenario": set(),
    "metrics": {"scenario"},
    "_version": set(),
    "_workers": set(),  # worker processes, below every layer (the figures use them too)
    "_memory": set(),  # the process's memory settings for large arrays (the command line's)
    "engine": {"scenario", "metrics", "_version", "_workers"},
    "experiments": {"engine", "scenario", "metrics", "_version", "_workers"},
    "outputs": {"scenario", "metrics", "_version", "_workers"},
    "cli": {"experiments", "engine", "scenario", "metrics", "outputs", "app", "_version", "_workers", "_memory"},
    # The web app runs the command line in processes of its own and reads what it writes.
    "app": {"scenario", "_version"},
    "__init__": {"experiments", "engine", "scenario", "_version"},
    "__main__": {"cli"},
}
#: Single imports across the layers, each with its reason: ``Results.save`` writes the results
#: directory ``v2vsim run`` writes (imported in the method; the outputs never import the engine,
#: so this makes no cycle).
EXCEPTIONS = {("v2vsim.engine.runner", "v2vsim.outputs.run_dir")}
#: Longest module without a written reason (the reason says "one piece" in its docstring).
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports (``from package import module`` is the
    module, not the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_every_layer_imports_only_the_layers_below_it() -> None:
    wrong = []
    for module, targets in _graph().items():
        layer = _layer(module)
        assert layer in ALLOWED, f"{module}: a new layer; say where it sits in ALLOWED"
        for target in targets:
            other = _layer(target)
            if other != layer and other not in ALLOWED[layer] and (module, target) not in EXCEPTIONS:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_a_module_that_imports_it() -> None:
    graph = _graph()
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    # A package's __init__ re-exporting its own modules is not a cycle of ideas: leave those
    # edges out, keep every other.
    edges = {m: {t for t in ts if not (m in packages and m != "v2vsim" and t.startswith(m + "."))}
             for m, ts in graph.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_cli_command_modules_import_only_the_common_helpers() -> None:
    graph = _graph()
    commands = [m for m in graph if m.startswith("v2vsim.cli.") and m != "v2vsim.cli.common"]
    assert len(commands) >= 3
    for module in commands:
        assert {t for t in graph[module] if t.startswith("v2vsim.cli")} == {"v2vsim.cli.common"}, module
    assert not any(t.startswith("v2vsim.cli") for t in graph["v2vsim.cli.common"])


def test_long_modules_say_why_they_are_one_piece() -> None:
    long = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "one piece" not in doc.lower():
                long.append(f"{name}: {text.count(chr(10))} lines")
    assert not long, "split these, or say at the top why each is one piece:\n" + "\n".join(long)


def test_the_checker_sees_every_kind_of_import() -> None:
    # The checks above are only as good as the import reading: relative, absolute, lazy.
    graph = _graph()
    assert "v2vsim.scenario.compile" in graph["v2vsim.engine.replication"]
    assert "v2vsim.engine.runner" in graph["v2vsim.experiments.compare"]
    assert "v2vsim.scenario.compile" in graph["v2vsim.scenario.loading"]  # imported in a function
    assert "v2vsim.metrics" in graph["v2vsim.engine.runner"]  # `from .. import metrics`
    assert _layer("v2vsim.engine.pools") == "engine" and _layer("v2vsim") == "__init__"
