"""Grad-CAM (Selvaraju et al., 2017) of models trained from scratch on two sets, on the same real
test images (the paper's Fig. 3): where each model looks when it scores an image's true class.

The maps come from pytorch-grad-cam (PyPI `grad-cam`): the gradient of the true class's logit,
averaged over each channel of the last spatial feature map, weighs that map; the result is resized
to the input and scaled to [0, 1] per image. This module only picks the layer and draws the panel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageDraw

from .figures import CELL, COLOURS, TEXT, _join, _legend, short_name, upscaled
from .models import MODELS

#: the overlay's weight of the heat map against the image (pytorch-grad-cam's show_cam_on_image)
CAM_WEIGHT = 0.5
ROW_LABEL = 64  # pixels left of each row for its name


def cam_layer(model: nn.Module) -> nn.Module:
    """The module of `model` (a detdistill.models.Classifier) whose output Grad-CAM reads, as its
    model declares it (`EvaluationModel.cam_layer`: the last module whose output is still a spatial
    map); a model that declares none stops here."""
    name = model.build_args["name"]
    component = MODELS.get(name, "the model's build_args")
    if component.cam_layer is None:
        raise ValueError(f"evaluation model {name!r} declares no Grad-CAM layer: give {type(component).__name__} a "
                         "cam_layer(model) method, or show another model (gradcam.model)")
    return component.cam_layer(model)


def class_activation_maps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Grad-CAM of `model` for each image's class in `labels`: float images in [0, 1] (N,3,H,W)
    -> maps (N,H,W) in [0, 1]. The model is left in eval mode; its weights are not changed."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    device = next(model.parameters()).device
    targets = [ClassifierOutputTarget(int(label)) for label in labels]
    with GradCAM(model=model.eval(), target_layers=[cam_layer(model)]) as cam:
        return cam(input_tensor=images.to(device), targets=targets)


def overlay(image: torch.Tensor, cam: np.ndarray) -> Image.Image:
    """One float image (3,H,W) in [0, 1] with its map as a JET heat map on top, CELL pixels wide."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = image.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    blended = show_cam_on_image(rgb, cam.astype(np.float32), use_rgb=True, image_weight=1 - CAM_WEIGHT)
    return upscaled(Image.fromarray(blended))


def _captioned(image: Image.Image, caption: str, colour: tuple[int, int, int]) -> Image.Image:
    cell = Image.new("RGB", (CELL + 4, CELL + 4 + TEXT), (255, 255, 255))
    cell.paste(image, (2, 2))
    ImageDraw.Draw(cell).text((3, CELL + 4), caption, fill=colour)
    return cell


def gradcam_figure(images: torch.Tensor, labels: list[int], class_names: list[str], rows: dict[str, dict],
                   title: str) -> Image.Image:
    """The panel: one column per test image; the first row the image and its class, then one row
    per method (`rows`: method -> {"cams": (N,H,W), "predicted": [N], "p_label": [N]}) with its
    model's map for the true class and, under it, the model's softmax of the true class (red, with
    the predicted class, when the model predicts another)."""
    def short(label: int) -> str:
        return short_name(class_names[label])

    lines = [[_captioned(upscaled(_to_pil(image)), short(label), (0, 0, 0)) for image, label in zip(images, labels)]]
    for row in rows.values():
        cells = []
        for i, (image, label) in enumerate(zip(images, labels)):
            wrong = int(row["predicted"][i]) != label
            caption = f"{row['p_label'][i]:.2f}" + (f">{short(int(row['predicted'][i]))}" if wrong else "")
            colour = COLOURS["wrong_class"] if wrong else (0, 0, 0)
            cells.append(_captioned(overlay(image, row["cams"][i]), caption, colour))
        lines.append(cells)
    lines_of_heading = [title, "rows: the test image, then " + ", ".join(rows) + " (each set's model: Grad-CAM of the "
                        "true class, the softmax of the true class below)"]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(ROW_LABEL + len(images) * (CELL + 4), *(int(measure.textlength(line)) + 4 for line in lines_of_heading))
    heading = Image.new("RGB", (width, 2 * TEXT + 4), (255, 255, 255))
    for i, line in enumerate(lines_of_heading):
        ImageDraw.Draw(heading).text((2, 2 + i * TEXT), line, fill=(0, 0, 0))
    body = [_join(cells, across=True) for cells in lines]
    labelled = [_join([_row_label(name), line], across=True) for name, line in zip(["image", *rows], body)]
    legend = _legend([("wrong_class", "red caption: the model predicts another class (named after >)")], width)
    return _join([heading, *labelled, legend], across=False)


def _row_label(text: str) -> Image.Image:
    label = Image.new("RGB", (ROW_LABEL, CELL + 4 + TEXT), (255, 255, 255))
    ImageDraw.Draw(label).text((2, CELL // 2), text, fill=(0, 0, 0))
    return label


def _to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8))
