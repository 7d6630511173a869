"""Data source kinds (detdistill.data.sources): the schema's `source.kind` names are the registered
kinds and its `source` keys the ones they read; a kind added from outside the package
(tests/toy_sources.py, and no other file) runs through manifest, stage, load and inspection; an
unknown kind fails at the look-up in one line."""

from __future__ import annotations

import importlib
import sys

import pandas as pd
import pytest
import torch

from detdistill import data, schema
from detdistill.data.sources import COMMON_CONFIG_KEYS, SOURCE_KIND_NAMES, SOURCE_KINDS
from detdistill.stages.manifest import prepare_data


def test_schema_kind_enum_is_the_registered_kinds_and_its_keys_the_ones_they_read():
    source = schema.section("dataset.source")
    assert sorted(source["properties"]["kind"]["enum"]) == sorted(SOURCE_KIND_NAMES)
    read = set(COMMON_CONFIG_KEYS)
    for name in SOURCE_KIND_NAMES:
        keys = set(SOURCE_KINDS.get(name).config_keys)
        assert keys <= set(source["properties"]), name
        read |= keys
    assert read == set(source["properties"])  # every key of the schema is read by some kind


@pytest.fixture
def toy(monkeypatch):
    """tests/toy_sources.py imported afresh: it registers the `toy` kind; the registry is restored
    afterwards, so the other tests see the package's kinds only."""
    monkeypatch.setattr(SOURCE_KINDS, "_entries", dict(SOURCE_KINDS._entries))
    monkeypatch.delitem(sys.modules, "toy_sources", raising=False)
    yield importlib.import_module("toy_sources")
    sys.modules.pop("toy_sources", None)


def test_a_toy_kind_builds_its_manifest_and_loads_its_images_through_the_package(toy, tmp_path):
    cfg = {"kind": toy.TOY_KIND, "classes": ["light", "dark"], "validation_fraction": 0.25}
    prepare_data(source_cfg=cfg, seed=0, out_manifest=tmp_path / "manifest.parquet", out_unreadable=tmp_path / "unreadable.txt")
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert manifest.equals(data.build_manifest(cfg, seed=0))
    # the package's post-processing ran on the toy's rows: classes kept in the order given, relabelled,
    # and the validation split carved (floor(0.25 x 8) = 2 of each class's 8 train images)
    assert data.class_names(manifest) == ["light", "dark"]
    assert manifest.groupby(["class_name", "split"]).size().to_dict() == {
        ("dark", "test"): 3, ("dark", "train"): 6, ("dark", "val"): 2,
        ("light", "test"): 3, ("light", "train"): 6, ("light", "val"): 2}
    assert (tmp_path / "unreadable.txt").read_text() == "file\treason\n"  # images in arrays: no file listed
    expected = torch.stack([toy.toy_pixels(toy.TOY_CLASSES.index(name), int(source.split("/")[1]), 6)
                            for name, source in zip(manifest.class_name, manifest.source)])
    assert torch.equal(data.load_images(manifest, cfg, 6), expected)
    assert torch.equal(torch.cat(list(data.image_chunks(manifest, cfg, 6, 4))), expected)
    summary = data.inspect_source(cfg)
    assert summary.class_names == ["light", "dark"] and summary.train_counts is None


@pytest.mark.parametrize("run", [
    lambda cfg: data.build_manifest(cfg, seed=0),
    lambda cfg: data.inspect_source(cfg),
    lambda cfg: data.load_images(pd.DataFrame({"source": ["0"]}), cfg, 8),
])
def test_an_unknown_kind_fails_at_the_look_up_in_one_line(run):
    with pytest.raises(data.DataError) as error:
        run({"kind": "toy"})  # not registered outside the fixture
    assert str(error.value) == f"unknown data source kind 'toy' (source.kind); known: {', '.join(SOURCE_KINDS)}"
