"""Grad-CAM (detdistill.gradcam): the layer it reads, the maps' meaning, and the picture."""

import numpy as np
import pytest
import torch

from detdistill.gradcam import cam_layer, class_activation_maps, gradcam_figure
from detdistill.models import ARCHITECTURES, build_model
from detdistill.train import TrainConfig, fit_classifier


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("name", ["convnet", "resnetap10", "resnet18"])
def test_cam_layer_is_the_last_spatial_map(name, architecture):
    """The layer read is a (N, C, h, w) map with h, w > 1 at 16 px for ConvNet (the finest last
    map) and the network's last map for the ResNets, never the pooled features."""
    model = build_model(name, 3, 16, 8, architecture=architecture).eval()
    seen = []
    handle = cam_layer(model).register_forward_hook(lambda module, args, out: seen.append(out.shape))
    model(torch.rand(2, 3, 16, 16))
    handle.remove()
    assert len(seen) == 1 and len(seen[0]) == 4
    assert seen[0][2:] == ((8, 8) if name == "convnet" else (2, 2))


def _quadrant_images(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a bright 6x6 square in the top-left quadrant; class 1: in the bottom-right; noise elsewhere."""
    images = (torch.rand(n, 3, 16, 16, generator=generator) * 60).to(torch.uint8)
    labels = torch.arange(n) % 2
    for i, label in enumerate(labels):
        y, x = (1, 1) if label == 0 else (9, 9)
        images[i, :, y:y + 6, x:x + 6] = 255
    return images, labels


def test_maps_point_at_the_evidence_of_the_true_class():
    """A ConvNet taught that the class is where the bright square is: its map for the true class
    is strongest in that quadrant, for both classes (a wrong layer, a wrong target class or maps
    in the wrong orientation break this)."""
    generator = torch.Generator().manual_seed(0)
    images, labels = _quadrant_images(64, generator)
    torch.manual_seed(0)
    model = build_model("convnet", 2, 16, 8)
    fit_classifier(model, images, labels, TrainConfig(epochs=15, batch_size=16, lr=0.01, crop_size=16, flip=False, cutmix_alpha=0.0,
                                                      crop_scale=(1.0, 1.0)), torch.device("cpu"))
    test, test_labels = _quadrant_images(8, generator)
    maps = class_activation_maps(model, test.float() / 255, test_labels)
    assert maps.shape == (8, 16, 16) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    for cam, label in zip(maps, test_labels):
        top_left, bottom_right = cam[:8, :8].mean(), cam[8:, 8:].mean()
        assert (top_left > bottom_right) if label == 0 else (bottom_right > top_left), (label, top_left, bottom_right)


def test_figure_has_a_row_per_method():
    images = torch.rand(4, 3, 16, 16)
    one = {"cams": np.random.default_rng(0).random((4, 16, 16)), "predicted": torch.tensor([0, 1, 0, 0]),
           "p_label": torch.tensor([0.9, 0.8, 0.2, 0.7])}
    two_rows = gradcam_figure(images, [0, 1, 1, 0], ["zero", "one"], {"d4m": one}, "t")
    three_rows = gradcam_figure(images, [0, 1, 1, 0], ["zero", "one"], {"d4m": one, "conf_sim": one}, "t")
    assert three_rows.height - two_rows.height >= 64 and three_rows.width >= 64 + 4 * 64
