"""The extension points (detdistill.registry): config/schema.yaml's name lists are the registered
components', a component added from outside the package (tests/toy_components.py, and no other
file) runs through the package's entry points, and an unknown name fails at the look-up in one line."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from detdistill.baselines import BASELINES, select
from detdistill.cache import generator_files, generator_identity
from detdistill.generators import BACKENDS, GeneratorBackend, load_generator
from detdistill.gradcam import cam_layer, class_activation_maps
from detdistill.models import MODELS, build_model
from detdistill.refine import METHODS, refine_set
from detdistill.registry import Registry, UnknownName
from detdistill.stages import generation
from detdistill.train import TrainConfig, fit_classifier, load_model, save_model

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())


def _enums(node, path=""):
    """(path, enum) of every `enum` in the schema."""
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list):
            yield path, node["enum"]
        for key, value in node.items():
            yield from _enums(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _enums(value, f"{path}/{i}")


def _enums_naming(names) -> list[tuple[str, list]]:
    """The schema's enums that list any of `names`."""
    found = [(path, enum) for path, enum in _enums(SCHEMA) if set(enum) & set(names)]
    assert found, f"no enum of config/schema.yaml lists any of {names}"
    return found


# --------------------------------------------------------------------------- (a) schema = registries
def test_schema_model_enums_are_the_registered_models():
    found = _enums_naming(MODELS)
    assert len(found) >= 5  # classifier.model, gradcam.model, sweeps, evaluation, best-epoch models
    for path, enum in found:
        assert sorted(enum) == sorted(MODELS), path
    # the per-model width settings: the models the width reaches
    width = SCHEMA["$defs"]["dataset"]["properties"]["evaluation"]["properties"]["width"]["properties"]
    assert sorted(width) == sorted(name for name in MODELS if MODELS.get(name).takes_width)


def test_schema_backend_enum_is_the_registered_backends():
    for path, enum in _enums_naming(BACKENDS):
        assert sorted(enum) == sorted(BACKENDS), path
    for name in BACKENDS:  # each backend's settings section exists, and its defaults come from it
        from detdistill import schema

        assert schema.section(BACKENDS.get(name).schema_section)["properties"]


def test_schema_method_enums_are_the_registered_methods_and_baselines():
    found = _enums_naming([*METHODS, *BASELINES])
    assert {path for path, _ in found} >= {"/$defs/dataset/properties/gradcam/properties/methods/items"}
    for path, enum in found:
        expected = sorted(BASELINES) if path.endswith("/baselines/items") else sorted([*METHODS, *BASELINES])
        assert sorted(enum) == expected, path


# --------------------------------------------------------------------------- (b) components from outside
@pytest.fixture
def toy(monkeypatch):
    """tests/toy_components.py imported afresh: it registers a model and a backend; the
    registries are restored afterwards, so the other tests see the package's components only."""
    for registry in (MODELS, BACKENDS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.delitem(sys.modules, "toy_components", raising=False)
    module = importlib.import_module("toy_components")
    module.IMG2IMG_CALLS.clear()
    yield module
    sys.modules.pop("toy_components", None)


def test_a_toy_model_is_built_by_name_trained_and_shown_by_grad_cam(toy, tmp_path):
    torch.manual_seed(0)
    model = build_model(toy.TOY_MODEL, 2, 8, width=4)
    before = [p.detach().clone() for p in model.parameters()]
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.1, crop_size=8, flip=False, cutmix_alpha=0.0, crop_scale=(1.0, 1.0))
    fit_classifier(model, images, labels, cfg, torch.device("cpu"))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # one step moved it
    assert cam_layer(model) is model.backbone[1]
    maps = class_activation_maps(model, images.float() / 255, labels)
    assert maps.shape == (4, 8, 8) and np.isfinite(maps).all()
    # a saved toy model loads back by its name
    save_model(model, tmp_path / "toy.safetensors")
    loaded = load_model(tmp_path / "toy.safetensors", "cpu")
    assert loaded.build_args["name"] == toy.TOY_MODEL
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_a_model_without_a_cam_layer_stops_grad_cam_in_one_line(toy):
    model = build_model("toynet_nocam", 2, 8, width=4)  # builds and trains like any other
    with pytest.raises(ValueError, match=r"^evaluation model 'toynet_nocam' declares no Grad-CAM layer") as error:
        cam_layer(model)
    assert "\n" not in str(error.value)


def _prototypes(path: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"label": [0, 0, 1, 1], "prototype_id": [0, 1, 0, 1], "class_name": ["a", "a", "b", "b"]})
    frame["latent"] = list(rng.standard_normal((4, 4 * 4 * 4)).astype(np.float32))
    frame["latent_shape"] = [[4, 4, 4]] * 4
    frame.to_parquet(path)
    return path


def test_a_toy_backend_runs_through_the_generation_stages_and_its_outside_weights_key_the_cache(toy, tmp_path):
    manifest = pd.DataFrame({"image_id": ["x", "y", "z"], "label": [0, 1, 1], "class_name": ["a", "b", "b"],
                             "split": ["train", "train", "test"]})
    manifest.to_parquet(tmp_path / "manifest.parquet")
    weights = tmp_path / "elsewhere" / "toy_weights.json"
    weights.parent.mkdir()
    weights.write_text(json.dumps({"scale": 2.0}))
    generator_cfg = {"backend": toy.TOY_BACKEND, "model": str(weights)}
    BACKENDS.get(toy.TOY_BACKEND).check(generator_cfg)  # the check the workflow runs before its DAG
    gen_dir = tmp_path / "generator"
    generation.prepare_generator(manifest_path=tmp_path / "manifest.parquet", source_cfg={}, image_size=8,
                                 generator_cfg=generator_cfg, out_dir=gen_dir)
    assert json.loads((gen_dir / "generator.json").read_text())["class_names"] == ["a", "b"]
    assert isinstance(load_generator(gen_dir, "cpu", batch_size=3), toy.ToyGenerator)
    assert generator_files(gen_dir)["toy-weights"] == weights.resolve()

    prototypes = _prototypes(tmp_path / "prototypes.parquet")
    synthesis = {"strength": 0.5, "guidance": 1.0, "steps": 1, "batch_size": 2}

    def synthesize(out: str) -> dict[str, bytes]:
        generation.synthesize_initial(prototypes_path=prototypes, labels=[0, 1], generator_dir=gen_dir,
                                      synthesis_cfg=synthesis, seed=0, out_dir=tmp_path / out, cache_dir=tmp_path / "cache")
        return {p.name: p.read_bytes() for p in sorted((tmp_path / out).glob("*.png"))}

    first = synthesize("first")
    assert len(first) == 4 and toy.IMG2IMG_CALLS == [2, 2]
    assert synthesize("again") == first and toy.IMG2IMG_CALLS == [2, 2]  # all four from the cache
    identity = generator_identity(gen_dir)
    weights.write_text(json.dumps({"scale": -3.0}))  # other weights, the checkpoint folder unchanged
    assert generator_identity(gen_dir) != identity
    retrained = synthesize("retrained")
    assert toy.IMG2IMG_CALLS == [2, 2, 2, 2]  # regenerated, not taken from the cache
    assert retrained.keys() == first.keys() and all(retrained[k] != first[k] for k in first)


def test_a_backend_that_does_not_declare_its_cache_files_cannot_register(monkeypatch):
    monkeypatch.setattr(BACKENDS, "_entries", dict(BACKENDS._entries))

    class Forgetful(GeneratorBackend):
        name = "forgetful"
        schema_section = "dataset.generator"

        def check(self, generator_cfg):
            pass

        def prepare(self, **kwargs):
            pass

        def load(self, path, device, **speed_options):
            pass

    with pytest.raises(TypeError, match="key_files") as error:
        BACKENDS.register(Forgetful)
    assert "\n" not in str(error.value) and "forgetful" not in BACKENDS


# --------------------------------------------------------------------------- (c) unknown names
@pytest.mark.parametrize("lookup, message", [
    (lambda: build_model("vgg", 2, 8), r"^unknown evaluation model 'vgg' \(build_model's name\); known: convnet, "),
    (lambda: select(np.zeros((3, 2)), 1, "mystery", 0, 0), r"^unknown selection method 'mystery' \(evaluation\.baselines\); known: random, herding, kcenter$"),
    (lambda: refine_set(pd.DataFrame(columns=["label", "prototype_id"]), pd.DataFrame(), method="best", beta=0.5, top_k=1),
     r"^unknown refinement method 'best' \(.*\); known: d4m, conf, sim, conf_sim$"),
    (lambda: generation.prepare_generator(manifest_path="unread.parquet", source_cfg={}, image_size=8,
                                          generator_cfg={"backend": "sdxl"}, out_dir="unused"),
     r"^unknown generator backend 'sdxl' \(generator\.backend\); known: embedded, sd15$"),
])
def test_an_unknown_name_fails_at_the_look_up_in_one_line(lookup, message):
    """Nothing falls through to a default: not even a refinement of a set without defective images."""
    with pytest.raises(UnknownName, match=message) as error:
        lookup()
    assert "\n" not in str(error.value)


def test_the_cache_key_of_an_unknown_backend_fails_rather_than_hash_the_folder_alone(tmp_path):
    (tmp_path / "generator.json").write_text(json.dumps({"backend": "elsewhere"}))
    with pytest.raises(UnknownName, match=r"'elsewhere' \(.*generator\.json\)"):
        generator_identity(tmp_path)


def test_registry_names_its_conflicts():
    registry = Registry("widget", "widgets")

    @registry.register
    class One:
        name = "one"

    class Other:
        name = "one"

    with pytest.raises(ValueError, match="widget 'one' is registered twice"):
        registry.register(Other)
    with pytest.raises(TypeError, match="declares its `name`"):
        registry.register(type("Nameless", (), {}))
    assert list(registry) == ["one"] and isinstance(registry.get("one"), One)


def test_components_register_at_import_and_the_package_stays_light():
    """Importing a registry's module registers the package's components (no import order to
    know), and none of it imports diffusers."""
    code = (
        "import sys, detdistill; assert 'torch' not in sys.modules\n"
        "from detdistill.generators.base import BACKENDS\n"
        "from detdistill.models.base import MODELS\n"
        "from detdistill.cache import generator_files\n"
        "import detdistill.stages.generation, detdistill.gradcam\n"
        "assert list(BACKENDS) == ['embedded', 'sd15'], list(BACKENDS)\n"
        "assert sorted(MODELS) == ['convnet', 'resnet18', 'resnetap10'], list(MODELS)\n"
        "assert 'diffusers' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
