"""The scenario schema reference page, generated from the scenario's JSON Schema.

Every key of a scenario file with its type, bounds, default and description, read from
``v2vsim.scenario.json_schema.scenario_json_schema()`` (or, without that module, the pydantic
models' ``Scenario.model_json_schema(by_alias=True)``), with an example taken from the bundled
scenario files (then the schema's own examples, then the YAML examples of the documentation
pages), and one table per distribution. docs/hooks/reference.py adds the page to the site.

One piece, a little over 500 lines: reading the schema, finding the examples and writing the
tables are the steps of one page, and each is only used by the next.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Scenario files whose values are the examples, in the order they are searched.
EXAMPLE_GLOBS = ("scenarios/local.yaml", "scenarios/*.yaml", "validation/scenarios/*.yaml")


# --------------------------------------------------------------------------- the schema


def scenario_schema() -> tuple[dict[str, Any], str]:
    """The scenario's JSON Schema and the expression it came from."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from v2vsim.scenario.json_schema import scenario_json_schema
    except ImportError:
        from v2vsim.scenario import Scenario

        return Scenario.model_json_schema(by_alias=True), "v2vsim.scenario.Scenario.model_json_schema(by_alias=True)"
    return scenario_json_schema(), "v2vsim.scenario.json_schema.scenario_json_schema()"


def _ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    if ref is None and len(node.get("allOf", ())) == 1:
        ref = node["allOf"][0].get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _alternatives(node: dict[str, Any]) -> list[dict[str, Any]] | None:
    alts = node.get("anyOf") or node.get("oneOf")
    if alts is None:
        return None
    return [a for a in alts if a.get("type") != "null"]


class Schema:
    """The JSON Schema with the questions the page asks of it."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.root = schema
        self.defs: dict[str, dict[str, Any]] = schema.get("$defs", {})
        #: Distributions of durations and clocks: the models whose ``dist`` is a constant.
        self.dists = {name: d for name, d in self.defs.items()
                      if "const" in d.get("properties", {}).get("dist", {})}
        #: Named unions of distributions (e.g. ``Distribution``, ``DistributionOrNever``).
        self.dist_unions = {name for name, d in self.defs.items()
                            if any(_ref_name(a) in self.dists for a in _alternatives(d) or ())}

    def _union(self, node: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The alternatives of a union of distributions (inline or named), else None."""
        name = _ref_name(node)
        if name in self.dist_unions:
            return _alternatives(self.defs[name])
        alts = _alternatives(node)
        if alts is None:
            return None
        if any(_ref_name(a) in self.dists for a in alts):
            return alts
        for a in alts:  # e.g. anyOf [{$ref: Distribution}, {type: null}]
            inner = self._union(a) if _ref_name(a) in self.dist_unions else None
            if inner is not None:
                return inner + [b for b in alts if b is not a]
        return None

    def is_distribution(self, node: dict[str, Any]) -> bool:
        return self._union(node) is not None

    def allows_never(self, node: dict[str, Any]) -> bool:
        return any(a.get("const") == "never" for a in self._union(node) or ())

    def targets(self, node: dict[str, Any]) -> list[tuple[str, str]]:
        """The object models a property holds, as ``(path suffix, model name)``."""
        if self.is_distribution(node):
            return []
        name = _ref_name(node)
        if name is not None:
            return [] if name in self.dists or name in self.dist_unions else [("", name)]
        alts = _alternatives(node)
        if alts is not None:
            return [t for a in alts for t in self.targets(a)]
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            return [("[]" + s, n) for s, n in self.targets(node["items"])]
        if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
            return [(".NAME" + s, n) for s, n in self.targets(node["additionalProperties"])]
        return []

    def model(self, name: str) -> dict[str, Any]:
        return self.root if name == "" else self.defs[name]

    def sections(self) -> list[tuple[str, str]]:
        """Every object model reachable from the root, as ``(path, model name)``, depth first;
        a model reached again by another path is listed once, at its first path."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()

        def visit(path: str, name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            out.append((path, name))
            for key, prop in self.model(name).get("properties", {}).items():
                for suffix, child in self.targets(prop):
                    visit(f"{path}.{key}{suffix}" if path else f"{key}{suffix}", child)

        visit("", "")
        return out

    # ---- types and bounds, in words

    def type_md(self, node: dict[str, Any]) -> str:
        if self.is_distribution(node):
            text = "[distribution](#distributions)"
            return text + " or `never`" if self.allows_never(node) else text
        name = _ref_name(node)
        if name is not None:
            return ("[distribution](#distributions)" if name in self.dists or name in self.dist_unions
                    else f"[{name}](#{anchor(name)})")
        alts = _alternatives(node)
        if alts is not None:
            return " or ".join(dict.fromkeys(self.type_md(a) for a in alts))
        if "const" in node:
            return f"`{node['const']}`"
        if "enum" in node:
            return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
        kind = node.get("type")
        if kind == "array":
            if "prefixItems" in node:
                return "[" + ", ".join(self.type_md(i) for i in node["prefixItems"]) + "]"
            items = node.get("items")
            return "list of " + (self.type_md(items) if isinstance(items, dict) else "values")
        if kind == "object" and isinstance(node.get("additionalProperties"), dict):
            return "mapping of names to " + self.type_md(node["additionalProperties"])
        if kind == "string" and node.get("format") == "date":
            return "date (YYYY-MM-DD)"
        if isinstance(kind, list):
            return " or ".join(kind)
        return kind or "any value"

    def bounds_md(self, node: dict[str, Any]) -> str:
        if self.is_distribution(node):
            return ""
        alts = _alternatives(node)
        if alts is not None:
            return "; ".join(b for b in dict.fromkeys(self.bounds_md(a) for a in alts) if b)
        parts = []
        for keys, sign in ((("ge", "minimum"), "≥"), (("gt", "exclusiveMinimum"), ">"),
                           (("le", "maximum"), "≤"), (("lt", "exclusiveMaximum"), "<")):
            for k in keys:
                if k in node and not isinstance(node[k], bool):
                    parts.append(f"{sign} {number(node[k])}")
        parts += _length("", node.get("minLength"), node.get("maxLength"), "character")
        if node.get("minItems") and "prefixItems" not in node:
            parts.append(f"at least {node['minItems']} item{'s' if node['minItems'] > 1 else ''}")
        if "maxItems" in node and "prefixItems" not in node:
            parts.append(f"at most {node['maxItems']} items")
        if node.get("minProperties"):
            parts.append(f"at least {node['minProperties']} entr{'ies' if node['minProperties'] > 1 else 'y'}")
        inner = node.get("items") if isinstance(node.get("items"), dict) else None
        inner = inner or (node.get("additionalProperties")
                          if isinstance(node.get("additionalProperties"), dict) else None)
        if inner is not None and not self.targets(inner) and not self.is_distribution(inner):
            each = self.bounds_md(inner)
            if each:
                parts.append(each if each.startswith("each ") else f"each {each}")
        names = node.get("propertyNames")
        if isinstance(names, dict):
            parts += _length("names ", names.get("minLength"), names.get("maxLength"), "character")
        return ", ".join(parts)


def _length(prefix: str, low: int | None, high: int | None, unit: str) -> list[str]:
    if low is None and high is None:
        return []
    if high is None:
        return [f"{prefix}at least {low} {unit}{'s' if low != 1 else ''}"]
    return [f"{prefix}{low or 0}–{high} {unit}s"]


def number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "top-level"


def prose(text: str | None) -> str:
    """A docstring-style description as one line of Markdown (reST's ``x`` becomes `x`)."""
    if not text:
        return ""
    text = re.sub(r":(?:func|class|mod|data|attr|meth):`~?\.?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- examples


def _example_files() -> list[Path]:
    seen: dict[Path, None] = {}
    for pattern in EXAMPLE_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            seen.setdefault(path, None)
    return list(seen)


def _load_yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def _doc_fragments() -> Iterator[tuple[Any, str]]:
    """The YAML blocks of the hand-written documentation pages, parsed (those that parse)."""
    for path in sorted((ROOT / "docs").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M):
            try:
                docs = [_load_yaml(match.group(1))]
            except Exception:  # not one document: perhaps one form per line (distributions)
                docs = []
                for line in match.group(1).splitlines():
                    try:
                        docs.append({"_line": _load_yaml(line)})
                    except Exception:
                        continue
            for data in docs:
                if isinstance(data, dict):
                    yield data, str(path.relative_to(ROOT))


class Examples:
    """The first value each key takes in the bundled scenario files, then in the YAML examples
    of the documentation pages."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        #: (section path, key) -> (value, file, dotted path in the file)
        self.values: dict[tuple[str, str], tuple[Any, str, str]] = {}
        #: section path -> (object, file, dotted path in the file)
        self.objects: dict[str, tuple[Any, str, str]] = {}
        #: dist name -> (distribution, file, dotted path in the file)
        self.dists: dict[str, tuple[Any, str, str]] = {}
        for path in _example_files():
            data = _load_yaml(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self._walk(data, "", "", str(path.relative_to(ROOT)), "")
        sections = schema.sections()
        for data, file in _doc_fragments():
            line = data.get("_line")
            if isinstance(line, dict) and "dist" in line:
                self.dists.setdefault(str(line["dist"]), (line, file, "a distribution"))
                continue
            # A fragment sits at the first section whose keys include all of the fragment's.
            for path, name in sections:
                if set(data) <= set(schema.model(name).get("properties", {})):
                    self._walk(data, path, name, file, path.replace("[]", "[…]"))
                    break

    def _walk(self, value: dict[str, Any], path: str, name: str, file: str, where: str) -> None:
        self.objects.setdefault(path, (value, file, where))
        props = self.schema.model(name).get("properties", {})
        for key, item in value.items():
            if key not in props:
                continue
            key_path = f"{path}.{key}" if path else key
            key_where = f"{where}.{key}" if where else key
            self.values.setdefault((path, key), (item, file, key_where))
            if self.schema.is_distribution(props[key]) and isinstance(item, dict) and "dist" in item:
                self.dists.setdefault(str(item["dist"]), (item, file, key_where))
            for suffix, child in self.schema.targets(props[key]):
                for sub, sub_where in _instances(item, suffix, key_where):
                    if isinstance(sub, dict):
                        self._walk(sub, key_path + suffix, child, file, sub_where)


def _instances(value: Any, suffix: str, where: str) -> Iterator[tuple[Any, str]]:
    """The values a path suffix (``""``, ``"[]"``, ``".NAME"``, ``"[].NAME"``...) selects."""
    if not suffix:
        yield value, where
    elif suffix.startswith("[]") and isinstance(value, list):
        for i, item in enumerate(value):
            label = item.get("name", i) if isinstance(item, dict) else i
            yield from _instances(item, suffix[2:], f"{where}.{label}")
    elif suffix.startswith(".NAME") and isinstance(value, dict):
        for key, item in value.items():
            yield from _instances(item, suffix[5:], f"{where}.{key}")


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    text = str(v)
    if isinstance(v, str) and (not text or re.search(r"^[\s\[\]{}&*!|>'\"%@`#-]|[:,]\s|\s#|[\[\]{},]", text)):
        return "'" + text.replace("'", "''") + "'"
    return text


def flow(value: Any, limit: int = 70) -> str:
    """A value in YAML flow style, shortened to about ``limit`` characters."""
    def render(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {render(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            shown = [render(x) for x in v[:6]]
            return "[" + ", ".join(shown + (["…"] if len(v) > 6 else [])) + "]"
        return _scalar(v)

    text = render(value)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _is_leaf(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return not any(isinstance(x, (dict, list)) for x in items)


def _block_lines(value: Any, indent: str) -> list[str]:
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item and not (_is_leaf(item) and len(flow(item, 10**6)) <= 60):
                lines.append(f"{indent}{key}:")
                lines += _block_lines(item, indent + "  ")
            else:
                lines.append(f"{indent}{key}: {flow(item, 10**6)}")
    elif isinstance(value, list):
        for item in value:
            sub = _block_lines(item, indent + "  ") if isinstance(item, (dict, list)) and item else []
            if sub:
                lines.append(f"{indent}- {sub[0].lstrip()}")
                lines += sub[1:]
            else:
                lines.append(f"{indent}- {flow(item, 10**6)}")
    return lines


def block(value: Any, max_lines: int = 18) -> str:
    """A value as block YAML (short collections in flow style), cut after ``max_lines`` lines."""
    lines = _block_lines(value, "") if isinstance(value, (dict, list)) else [flow(value, 10**6)]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"# … {len(lines) - max_lines} more lines"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the schema page


def _default_md(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in prop:
        return "optional"
    value = prop["default"]
    if value is None:
        return "none"
    if value == [] or value == {}:
        return "empty"
    return f"`{cell(flow(value, 40))}`"


def _section_title(path: str, name: str) -> str:
    if not path:
        return "Top level"
    return f"`{path}`"


def scenario_schema_page() -> str:
    """The scenario schema reference, as Markdown."""
    raw, source = scenario_schema()
    schema = Schema(raw)
    examples = Examples(schema)
    sections = schema.sections()
    out = [
        # The tables need the width: the sections are linked below the introduction instead.
        "---", "hide:", "  - toc", "---", "",
        "# Scenario schema reference",
        "",
        "<!-- Generated at build time by docs/hooks/reference.py: do not edit. -->",
        "<style>.md-typeset td:first-child code { white-space: nowrap; }</style>",
        "",
        f"Every key a scenario file may hold, generated from the scenario's JSON Schema "
        f"(`{source}`) each time the site is built, so it cannot drift from the code. "
        "`v2vsim schema` prints the same schema for editors; "
        "[the scenario reference](../scenario-reference.md) explains how the keys act on a patient.",
        "",
        "How to read it:",
        "",
        "- A path names where a key sits: `cohorts[]` is each item of the list `cohorts`, "
        "`sites.NAME` each entry of the mapping `sites` (its key is a name you choose), "
        "`pathways.NAME.steps[]` each step of each pathway.",
        "- **Bounds** are checked when the file is loaded; a value outside them is an error "
        "`FILE:LINE: key.path: message` (exit status 2). Unknown keys are errors too.",
        "- **Default** is the value used when the key is absent: *none* means the feature is off, "
        "*optional* that the model supplies a default of its own "
        "(for example a step's duration is 0 and a disease clock is `never`).",
        "- **Example** is the first value the key takes in the bundled scenario files "
        "(`scenarios/`, `validation/scenarios/`), else in the schema's own examples or the YAML "
        "examples of these pages, with where it comes from.",
        "- Durations and disease clocks are [distributions](#distributions).",
        "",
        "Sections: " + " · ".join(
            f"[{'top level' if not p else p}](#{anchor(n) if n else 'top-level'})" for p, n in sections
        ) + " · [distributions](#distributions)",
        "",
    ]
    undocumented: list[str] = []
    for path, name in sections:
        model = schema.model(name)
        ident = anchor(name) if name else "top-level"
        label = f" ({name})" if name else ""
        out += [f"## {_section_title(path, name)}{label} {{#{ident}}}", ""]
        if model.get("description") and name:
            out += [prose(model["description"]), ""]
        required = set(model.get("required", ()))
        out += ["| key | type | bounds | default | description | example |",
                "|---|---|---|---|---|---|"]
        for key, prop in model.get("properties", {}).items():
            desc = prose(prop.get("description"))
            if not desc:
                undocumented.append(f"{path}.{key}" if path else key)
            targets = schema.targets(prop)
            example = _example_md(prop, targets, examples.values.get((path, key)))
            out.append(f"| `{key}` | {cell(schema.type_md(prop))} | {cell(schema.bounds_md(prop))} | "
                       f"{_default_md(prop, key in required)} | {desc or '—'} | {example} |")
        out.append("")
        obj = examples.objects.get(path)
        if obj is not None and path:
            out += [f"Example (`{obj[2]}` in `{obj[1]}`):", "", "```yaml", block(obj[0]), "```", ""]
    out += _distributions_md(schema, examples)
    if undocumented:
        # Shown so that the gap is visible where it is read; the JSON Schema is where to fill it.
        out += ["## Keys without a description", "",
                "These keys have no description in the schema yet: "
                + ", ".join(f"`{k}`" for k in undocumented) + ".", ""]
    return "\n".join(out)


def _example_md(prop: dict[str, Any], targets: list[tuple[str, str]],
                found: tuple[Any, str, str] | None) -> str:
    if found is None and prop.get("examples"):
        found = (prop["examples"][0], "schema", "")
    if found is None:
        return "—"
    if targets and isinstance(found[0], (dict, list)) and any(
            isinstance(x, (dict, list)) for x in (found[0].values() if isinstance(found[0], dict) else found[0])):
        child = targets[0][1]
        return f"see [{child}](#{anchor(child)})"
    if targets and isinstance(found[0], dict):
        child = targets[0][1]
        return f"see [{child}](#{anchor(child)})"
    return f"`{cell(flow(found[0], 48))}` <small>{found[1]}</small>"


def _distributions_md(schema: Schema, examples: Examples) -> list[str]:
    out = [
        "## Distributions {#distributions}",
        "",
        "A duration, a disease clock, an inter-arrival time or an age is one of the forms below. "
        "A bare number `5` is the fixed value 5 (the same as `{dist: fixed, value: 5}`); "
        "`never` (disease clocks only) is a clock that never rings. Every value is in days "
        "(years for `age`), and every draw is made by inversion from the patient's own stream "
        "([randomness](../randomness.md)).",
        "",
        "| `dist` | keys | description | example |",
        "|---|---|---|---|",
    ]
    for name, model in schema.dists.items():
        dist = model["properties"]["dist"]["const"]
        keys = [k for k in model.get("properties", {}) if k != "dist"]
        found = examples.dists.get(dist)
        example = (f"`{cell(flow(found[0], 200))}` <small>{found[1]}, `{found[2]}`</small>"
                   if found else "—")
        out.append(f"| [`{dist}`](#dist-{anchor(dist)}) | {', '.join(f'`{k}`' for k in keys)} | "
                   f"{prose(model.get('description')) or '—'} | {example} |")
    out.append("")
    for name, model in schema.dists.items():
        dist = model["properties"]["dist"]["const"]
        required = set(model.get("required", ()))
        out += [f"### `{dist}` ({name}) {{#dist-{anchor(dist)}}}", ""]
        if model.get("description"):
            out += [prose(model["description"]), ""]
        out += ["| key | type | bounds | default | description |", "|---|---|---|---|---|"]
        for key, prop in model.get("properties", {}).items():
            out.append(f"| `{key}` | {cell(schema.type_md(prop))} | {cell(schema.bounds_md(prop))} | "
                       f"{_default_md(prop, key in required)} | {prose(prop.get('description')) or '—'} |")
        out.append("")
    return out


def schema_keys() -> list[tuple[str, str]]:
    """Every ``(section path, key)`` of the schema, and every ``(dist, key)`` (for the tests)."""
    schema = Schema(scenario_schema()[0])
    keys = [(path, key) for path, name in schema.sections()
            for key in schema.model(name).get("properties", {})]
    keys += [(m["properties"]["dist"]["const"], key) for m in schema.dists.values()
             for key in m.get("properties", {})]
    return keys
