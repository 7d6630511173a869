"""Components added from outside the package, as a user adds one: a toy evaluation model and a
toy generator backend, each registered here at import and nowhere else (tests/test_registries.py
drives them through the package's own entry points)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from detdistill.generators.base import BACKENDS, Generator, GeneratorBackend, GeneratorNotReady, checkpoint_files
from detdistill.io import write_json
from detdistill.models import MODELS, EvaluationModel

TOY_MODEL = "toynet"
TOY_BACKEND = "toy"
#: the toy backend's image size: latents are half of it, 4 channels
TOY_IMAGE_SIZE = 8


@MODELS.register
class ToyNet(EvaluationModel):
    """conv 3x3 -> ReLU -> global average pooling: the ReLU's output is its last spatial map."""

    name = TOY_MODEL

    def backbone(self, image_size: int, width: int, architecture: str) -> tuple[nn.Module, int]:
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), width

    def cam_layer(self, model: nn.Module) -> nn.Module:
        return model.backbone[1]


@MODELS.register
class ToyNetWithoutCam(ToyNet):
    """The same network, declaring no Grad-CAM layer."""

    name = "toynet_nocam"
    cam_layer = None


#: every toy img2img call's image count (the test counts what the image cache spares)
IMG2IMG_CALLS: list[int] = []


class ToyGenerator(Generator):
    """Images made from the latent, the seed and one number read from a weights file."""

    batch_size = 64

    def __init__(self, scale: float, class_names: list[str], device):
        self.scale = scale
        self.class_names = list(class_names)
        self.image_size = TOY_IMAGE_SIZE
        self.device = torch.device(device)
        self.pipe = None

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return F.avg_pool2d(torch.cat([images, images.mean(1, keepdim=True)], 1), 2)

    def condition(self, labels):
        raise NotImplementedError("the toy generator conditions in img2img itself")

    def img2img(self, latents, labels, seeds, *, strength, guidance, steps):
        IMG2IMG_CALLS.append(len(labels))
        images = []
        for latent, label, seed in zip(latents, labels, seeds):
            noise = torch.randn(3, TOY_IMAGE_SIZE, TOY_IMAGE_SIZE, generator=torch.Generator().manual_seed(int(seed)))
            base = F.interpolate(latent[None, :3].float(), scale_factor=2)[0]
            images.append(torch.sigmoid(self.scale * base + strength * noise + int(label)))
        return torch.stack(images)


@BACKENDS.register
class ToyBackend(GeneratorBackend):
    """Its weights (one JSON number) stay outside the checkpoint folder, named by `generator.model`,
    as Stable Diffusion's do."""

    name = TOY_BACKEND
    schema_section = "dataset.generator"  # reads `model` (its weights file) alone

    def check(self, generator_cfg: dict) -> None:
        if not Path(generator_cfg["model"]).is_file():
            raise GeneratorNotReady(f"toy weights {generator_cfg['model']} not found (generator.model)")

    def prepare(self, *, train_manifest, source_cfg: dict, image_size: int, generator_cfg: dict, out_dir) -> None:
        self.check(generator_cfg)
        class_names = train_manifest.drop_duplicates("label").sort_values("label").class_name.tolist()
        meta = {"backend": TOY_BACKEND, "weights": str(Path(generator_cfg["model"]).resolve()), "class_names": class_names}
        write_json(meta, Path(out_dir) / "generator.json")

    def load(self, path, device, **speed_options) -> ToyGenerator:
        meta = json.loads((Path(path) / "generator.json").read_text())
        return ToyGenerator(json.loads(Path(meta["weights"]).read_text())["scale"], meta["class_names"], device)

    def key_files(self, folder: Path, meta: dict) -> dict[str, Path]:
        return {**checkpoint_files(folder), "toy-weights": Path(meta["weights"])}
