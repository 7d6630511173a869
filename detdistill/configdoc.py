"""config/README.md from config/schema.yaml: every configuration key with its type, default and
description, so the documentation cannot drift from what the workflow validates.

    python -m detdistill.configdoc > config/README.md

Each `$defs` entry is one section, listed once however many keys refer to it; a key without a
`description` is an error (tests/test_configdoc.py checks the committed file is this output).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from .schema import DEF_PREFIX, SCHEMA

ROOT = "Top level"


class UndocumentedKeys(ValueError):
    """Schema properties without a `description`."""


def _def_name(node: dict) -> str | None:
    ref = node.get("$ref")
    if ref is None:
        return None
    if not ref.startswith(DEF_PREFIX):
        raise ValueError(f"only local {DEF_PREFIX}<name> references are documented, not {ref!r}")
    return ref[len(DEF_PREFIX) :]


def _code(value) -> str:
    return f"`{json.dumps(value)}`"


def _bounds(node: dict) -> str:
    marks = [("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")]
    return ", ".join(f"{symbol} {node[key]}" for key, symbol in marks if key in node)


def _counts(node: dict) -> list[str]:
    least = node.get("minItems", node.get("minProperties"))
    most = node.get("maxItems", node.get("maxProperties"))
    if least is not None and least == most:
        return [f"{least} items"]
    return [f"{least} or more"] * (least is not None) + [f"{most} or fewer"] * (most is not None)


def _type(node: dict) -> str:
    """What a value must be, in words: `integer, >= 1`, `one of "a", "b"`, `[train](#train)`."""
    name = _def_name(node)
    if name:
        return f"[{name}](#{name})"
    if "enum" in node:
        return "one of " + ", ".join(_code(value) for value in node["enum"])
    if "const" in node:
        return _code(node["const"])
    for key in ("oneOf", "anyOf"):
        if key in node:
            return " or ".join(_type(option) for option in node[key])
    types = node.get("type", "any")
    text = " or ".join([types] if isinstance(types, str) else types)
    if isinstance(node.get("items"), dict):
        text = f"array of {_type(node['items'])}"
    if isinstance(node.get("additionalProperties"), dict) and "properties" not in node:
        text = f"mapping of names to {_type(node['additionalProperties'])}"
    return ", ".join(part for part in [text, _bounds(node), *_counts(node)] if part)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(node: dict, prefix: str, section: str, references: list, missing: list):
    """Table rows of `node`'s properties, nested objects flattened to dotted keys. Appends to
    `references` (section, key, definition) for each key holding a definition (`key.<name>` for a
    mapping of them) and to `missing` each key without a description."""
    required = set(node.get("required", []))
    for key, child in node.get("properties", {}).items():
        dotted = f"{prefix}{key}"
        if "description" not in child:
            missing.append(f"{section}: {dotted}")
        default = _code(child["default"]) if "default" in child else ""
        cells = [f"`{dotted}`", _type(child), "yes" if key in required else "", default, child.get("description", "")]
        yield "| " + " | ".join(_cell(cell) for cell in cells) + " |"
        if _def_name(child):
            references.append((section, dotted, _def_name(child)))
        mapped = child.get("additionalProperties")
        if isinstance(mapped, dict) and _def_name(mapped):
            references.append((section, f"{dotted}.<name>", _def_name(mapped)))
        if "properties" in child:
            yield from _rows(child, f"{dotted}.", section, references, missing)


def render(schema: dict) -> str:
    """The Markdown document; raises UndocumentedKeys listing every property without a description."""
    definitions = schema.get("$defs", {})
    sections = {ROOT: schema, **definitions}
    references: list[tuple[str, str, str]] = []
    missing = [f"$defs: {name}" for name, node in definitions.items() if "description" not in node]
    tables = {name: list(_rows(node, "", name, references, missing)) for name, node in sections.items()}
    if missing:
        raise UndocumentedKeys(
            "add a `description` to " + "; ".join(missing) + " (then re-run python -m detdistill.configdoc > config/README.md)"
        )

    def paths_to(name: str) -> list[str]:
        """Key paths from the top of the configuration to the definition `name`."""
        if name == ROOT:
            return [""]
        return [
            f"{parent}.{key}" if parent else key
            for section, key, target in references
            if target == name
            for parent in paths_to(section)
        ]

    order = [ROOT]  # definitions in the order they are first referred to, unused ones last
    for section in order:  # grows while iterated: breadth first
        for referring, _, target in references:
            if referring == section and target not in order:
                order.append(target)
    order += [name for name in definitions if name not in order]

    lines = [
        "# Configuration keys",
        "",
        "Generated from `config/schema.yaml` by `python -m detdistill.configdoc > config/README.md`: edit the",
        "schema's `description` fields and re-run it, not this file (`tests/test_configdoc.py` checks it is",
        "up to date). The workflow validates the configuration against the schema when it starts; a missing",
        "key takes its `default`.",
        "",
        "Nested keys are written with dots: `source.kind` is `kind:` under `source:`.",
    ]
    for name in order:
        node = sections[name]
        lines += ["", f"## {name}", ""]
        description = node.get("description", "")
        if name != ROOT:
            description += " Used at " + ", ".join(f"`{path}`" for path in paths_to(name)) + "."
        lines += [_cell(description), "", "| key | type | required | default | description |", "|---|---|---|---|---|"]
        lines += tables[name]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else SCHEMA
    try:
        sys.stdout.write(render(yaml.safe_load(path.read_text())))
    except ValueError as error:  # UndocumentedKeys, or a reference it cannot document
        print(f"{argv[0] if argv else 'config/schema.yaml'}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
