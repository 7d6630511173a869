"""The extension points' registries: the schema's enums name exactly the package's components, an
unknown name is one line at look-up, and components defined outside the package (tests/toy_components.py,
no other file touched) are built and used through the package's own entry points."""

from __future__ import annotations

import json

import pytest
import torch

from detdistill.baselines import BASELINES
from detdistill.generators.base import BACKENDS
from detdistill.models import MODELS, build_model
from detdistill.refine import METHODS
from detdistill.registry import UnknownName
from detdistill.schema import load_schema


def _enums(node, found):
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list):
            found.append(node["enum"])
        for value in node.values():
            _enums(value, found)
    elif isinstance(node, list):
        for value in node:
            _enums(value, found)
    return found


def _builtin(registry) -> set[str]:
    # the toy module registers into the same registries: only the package's own components count here
    return {name for name in registry if type(registry.get(name)).__module__.startswith("detdistill.")}


ENUMS = _enums(load_schema(), [])


def test_every_schema_enum_of_models_names_the_registered_models():
    model_enums = [set(e) for e in ENUMS if "resnetap10" in e]
    assert model_enums, "no model enum found in the schema"
    assert all(e == _builtin(MODELS) for e in model_enums), (model_enums, _builtin(MODELS))


def test_the_backend_enum_names_the_registered_backends():
    backend_enums = [set(e) for e in ENUMS if "sd15" in e]
    assert backend_enums == [_builtin(BACKENDS)]


def test_method_enums_name_registered_methods_and_baselines():
    methods = _builtin(METHODS) | _builtin(BASELINES)
    assert {"d4m", "conf_sim", "random", "kcenter"} <= methods
    for enum in (set(e) for e in ENUMS if "conf_sim" in e or "herding" in e):
        assert enum <= methods, enum - methods
    assert any(set(e) == methods for e in ENUMS), "no enum lists every method and baseline"


@pytest.mark.parametrize("registry", [MODELS, BACKENDS, METHODS, BASELINES])
def test_an_unknown_name_is_one_line_naming_it_and_the_known_ones(registry):
    with pytest.raises(UnknownName) as err:
        registry.get("no_such_component")
    message = str(err.value)
    assert "\n" not in message and "'no_such_component'" in message
    assert all(name in message for name in _builtin(registry))


def test_a_model_from_a_test_module_builds_trains_and_has_its_gradcam_layer():
    import toy_components

    from detdistill.gradcam import cam_layer, class_activation_maps

    model = build_model(toy_components.TOY_MODEL, num_classes=3, image_size=8, width=4)
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert cam_layer(model) is model.backbone[1]
    maps = class_activation_maps(model.eval(), x[:2], y[:2])
    assert maps.shape[0] == 2 and maps.shape[-2:] == (8, 8)


def test_a_model_without_a_gradcam_layer_is_refused_not_given_a_guessed_one():
    import toy_components  # noqa: F401

    from detdistill.gradcam import cam_layer

    model = build_model("toynet_nocam", num_classes=3, image_size=8, width=4)
    with pytest.raises(Exception, match="toynet_nocam"):
        cam_layer(model)


def test_a_backend_from_a_test_module_prepares_loads_and_keys_its_outside_weights(tmp_path):
    import pandas as pd
    import toy_components

    weights = tmp_path / "toy.json"
    weights.write_text(json.dumps({"scale": 2.0}))
    backend = BACKENDS.get(toy_components.TOY_BACKEND)
    manifest = pd.DataFrame({"label": [1, 0], "class_name": ["b", "a"]})
    out = tmp_path / "generator"
    out.mkdir()
    backend.prepare(train_manifest=manifest, source_cfg={}, image_size=8, generator_cfg={"model": str(weights)},
                    out_dir=out)
    generator = backend.load(out, "cpu")
    assert generator.class_names == ["a", "b"]
    images = generator.img2img(generator.encode(torch.rand(2, 3, 8, 8)), [0, 1], [5, 6], strength=0.7,
                               guidance=1.0, steps=2)
    assert images.shape == (2, 3, 8, 8)
    keys = backend.key_files(out, json.loads((out / "generator.json").read_text()))
    assert keys["toy-weights"] == weights.resolve()
