"""Which classes a source holds and in what label order: class tables (`source.classes_file`),
the `source.classes` subset, and the check that every class holds the images an IPC asks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DataError


def read_class_table(path) -> tuple[list[str], list[str]]:
    """(folder ids, human names) in the table's explicit row order: the label order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"class table {path} not found (config key `source.classes_file`)")
    table = pd.read_csv(path, dtype=str)
    key = "wnid" if "wnid" in table.columns else "folder"
    if key not in table.columns or "name" not in table.columns:
        raise DataError(f"class table {path} needs columns `wnid` (or `folder`) and `name`")
    return table[key].tolist(), table["name"].tolist()


def table_classes(source_cfg: dict) -> tuple[list[str], list[str]]:
    """(folders, human names) of `source.classes_file`, cut to `source.classes` (by folder or
    name, in the order given) when that is set."""
    folders, names = read_class_table(source_cfg["classes_file"])
    return subset_classes(folders, names, source_cfg.get("classes"), f"`source.classes_file` {source_cfg['classes_file']}")


def subset_classes(folders: list[str], names: list[str], keep, where: str) -> tuple[list[str], list[str]]:
    """The classes in `keep` (folder or human name each), in that order; all of them when None."""
    if not keep:
        return folders, names
    by_key = {**dict(zip(folders, zip(folders, names))), **dict(zip(names, zip(folders, names)))}
    unknown = [c for c in map(str, keep) if c not in by_key]
    if unknown:
        raise DataError(f"`source.classes` {unknown} are not in {where}: use its folder or class names")
    folders, names = map(list, zip(*(by_key[str(c)] for c in keep)))
    return folders, names


def select_classes(manifest: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """Keep the named classes, relabelled 0..len(keep)-1 in the order given."""
    unknown = sorted(set(keep) - set(manifest.class_name))
    if unknown:
        raise DataError(f"`source.classes` names unknown classes {unknown}; known: {sorted(set(manifest.class_name))}")
    new_label = {name: i for i, name in enumerate(keep)}
    kept = manifest[manifest.class_name.isin(new_label)].copy()
    kept["label"] = kept.class_name.map(new_label).astype("int64")
    return kept.reset_index(drop=True)


def check_class_sizes(train: pd.DataFrame, ipc: int) -> None:
    """Every class of `train` (rows with label and class_name) has at least `ipc` images."""
    counts = train.groupby("label").class_name.agg(["first", "size"])
    for name, count in counts[counts["size"] < ipc].itertuples(index=False):
        raise DataError(
            f"IPC {ipc} is more than the {count} train images of class {name!r}: lower the IPC in the target "
            "(results/<dataset>_ipc<N>.csv), add images, lower `source.validation_fraction` where set, "
            "or drop the class from `source.classes`"
        )
