"""A data source kind added from outside the package, as a user adds one: `toy`, registered here
at import and nowhere else (tests/test_data_sources.py drives it through detdistill.data).

Its images are held in an array: image i of class k is a flat square of grey level
`TOY_LEVELS[k] + i` (so every image differs), 4x4 pixels, resized on load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from detdistill.data import MANIFEST_COLUMNS
from detdistill.data.sources import SOURCE_KINDS, DataSource, Fingerprint

TOY_KIND = "toy"
TOY_CLASSES = ["dark", "mid", "light"]
TOY_LEVELS = [20, 110, 200]
#: (train, test) images per class
TOY_COUNTS = (8, 3)


def toy_pixels(label: int, index: int, size: int) -> torch.Tensor:
    """What `load_images` gives for image `index` of class `label` at `size` px."""
    return torch.full((3, size, size), TOY_LEVELS[label] + index, dtype=torch.uint8)


@SOURCE_KINDS.register
class ToySource(DataSource):
    name = TOY_KIND
    config_keys = ()

    def manifest(self, source_cfg: dict, seed: int) -> pd.DataFrame:
        rows = []
        for label, class_name in enumerate(TOY_CLASSES):
            for split, count in zip(("train", "test"), TOY_COUNTS):
                for i in range(count):
                    index = i if split == "train" else TOY_COUNTS[0] + i
                    rows.append({"image_id": f"{split}/{class_name}/{index}", "label": label, "class_name": class_name,
                                 "split": split, "source": f"{label}/{index}"})
        return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)

    def reads_files(self, rows: pd.DataFrame, source_cfg: dict) -> bool:
        return False

    def load_arrays(self, rows: pd.DataFrame, source_cfg: dict, image_size: int) -> torch.Tensor:
        pixels = np.array([TOY_LEVELS[int(label)] + int(index) for label, index in rows.source.str.split("/")])
        flat = torch.from_numpy(pixels.astype(np.uint8)).view(-1, 1, 1, 1)
        return flat.expand(-1, 3, image_size, image_size).contiguous()

    def classes_without_folders(self, source_cfg: dict, fingerprint: Fingerprint) -> list[str]:
        return [str(c) for c in source_cfg.get("classes") or TOY_CLASSES]
