"""The configuration schema, the one source of every setting's default: Snakemake's `validate` fills
them into the workflow's config, and the library's own entry points (`TrainConfig`, the embedded
generator's training) read them from here, so a default is written once.

The schema ships inside the package (detdistill/schema.yaml, package data), so an installed wheel
has its defaults; the checkout's config/schema.yaml is a link to it, where users and the workflow
find it beside their configs."""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

SCHEMA = Path(str(importlib.resources.files("detdistill") / "schema.yaml"))
DEF_PREFIX = "#/$defs/"


class UnknownKeys(ValueError):
    """Config keys a schema section does not know."""


@functools.cache
def load_schema(path: Path = SCHEMA) -> dict:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: detdistill reads its defaults from the schema.yaml installed with the "
            "package; reinstall detdistill (pip install .)"
        )
    return yaml.safe_load(path.read_text())


def section(name: str, path: Path = SCHEMA) -> dict:
    """The schema object `$defs/<name>`; a dotted name goes on through `properties`
    (`dataset.generator` is the generator entry of `$defs/dataset`)."""
    first, *rest = name.split(".")
    node = load_schema(path)["$defs"].get(first)
    for key in rest:
        node = (node or {}).get("properties", {}).get(key)
    if node is None:
        raise KeyError(f"{path} has no $defs/{first}{''.join(f' property {key}' for key in rest)}")
    return node


def defaults(name: str, path: Path = SCHEMA) -> dict:
    """{key: default} of every property of `section(name)` that has one (fresh copies: callers may mutate)."""
    import copy

    props = section(name, path)["properties"]
    return {key: copy.deepcopy(prop["default"]) for key, prop in props.items() if "default" in prop}


def with_defaults(name: str, values: dict | None, where: str) -> dict:
    """`values` over the defaults of `$defs/<name>`; a key the section does not know raises
    UnknownKeys naming it, `where` (the config path, e.g. `generator.train`) and the known keys."""
    values = dict(values or {})
    known = section(name)["properties"]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UnknownKeys(
            f"unknown {where} key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))} "
            f"(config/schema.yaml, {name})"
        )
    return {**defaults(name), **values}
