"""Checks shared by the backends' tests: a job's images generated in chunks across defective
images and classes are the images the previous code made with one pipeline call per defective
image (initial set: one job per class), because every image has its own seeded CPU generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from detdistill.data import read_image_dirs
from detdistill.device import image_seed
from detdistill.stages import generation

SEED = 0
N_CANDIDATES = 3
PROTOTYPES_PER_CLASS = 2
#: defective (label, prototype_id): classes 0 and 2 twice, class 1 once, so chunks straddle both
DEFECTIVE = [(0, 0), (0, 1), (1, 1), (2, 0), (2, 1)]


def prototype_table(generator, images: torch.Tensor, labels: list[int]) -> pd.DataFrame:
    """A prototypes.parquet-like table: the latents of `images` as prototypes, numbered per class."""
    latents = generator.encode(images)
    frame = pd.DataFrame({"label": np.asarray(labels, dtype=np.int64)})
    frame["prototype_id"] = frame.groupby("label").cumcount().astype(np.int64)
    frame["class_name"] = [generator.class_names[y] for y in labels]
    frame["latent"] = list(latents.reshape(len(latents), -1).numpy())
    frame["latent_shape"] = [list(latents.shape[1:])] * len(frame)
    return frame


def anomaly_table(prototypes: pd.DataFrame) -> pd.DataFrame:
    """An anomalies.parquet-like table: one initial image per prototype, DEFECTIVE flagged."""
    frame = prototypes[["label", "prototype_id"]].copy()
    frame["image_id"] = [f"c{y}-p{p:03d}" for y, p in zip(frame.label, frame.prototype_id)]
    frame["defective"] = [(y, p) in DEFECTIVE for y, p in zip(frame.label, frame.prototype_id)]
    return frame


def per_image_candidates(generator, prototypes: pd.DataFrame, synthesis: dict) -> torch.Tensor:
    """The previous code path: one img2img call of N_CANDIDATES images per defective image."""
    indexed = prototypes.set_index(["label", "prototype_id"])
    out = []
    for label, proto_id in DEFECTIVE:
        row = indexed.loc[(label, proto_id)]
        latent = torch.from_numpy(np.asarray(row.latent, dtype=np.float32)).reshape(1, *row.latent_shape)
        seeds = [image_seed(SEED, label, proto_id, 1 + c) for c in range(N_CANDIDATES)]
        out.append(generator.img2img(latent.expand(N_CANDIDATES, -1, -1, -1), [label] * N_CANDIDATES, seeds,
                                     strength=synthesis["strength"], guidance=synthesis["guidance"], steps=synthesis["steps"]))
    return torch.cat(out)


def batched_candidates(generator, prototypes: pd.DataFrame, synthesis: dict) -> torch.Tensor:
    """The new code path: every (defective image, candidate) row of the job in chunks of batch_size."""
    anomalies = anomaly_table(prototypes)
    rows = generation.candidate_rows(anomalies[anomalies.defective], prototypes, N_CANDIDATES, SEED)
    assert list(zip(rows.label, rows.prototype_id)) == [d for d in DEFECTIVE for _ in range(N_CANDIDATES)]
    assert rows.seed.tolist() == [image_seed(SEED, y, p, 1 + c) for y, p in DEFECTIVE for c in range(N_CANDIDATES)]
    return torch.cat([images for _, images in generation.generate_chunks(generator, rows, synthesis)])


def read_pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def max_png_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> int:
    assert a.keys() == b.keys() and a
    return max(int(np.abs(a[k].astype(int) - b[k].astype(int)).max()) for k in a)


def stage_outputs_by_grouping(tmp_path: Path, generator_dir, prototypes: pd.DataFrame, synthesis: dict, monkeypatch):
    """Run synthesize_initial and generate_candidates once for all classes (chunks of batch_size
    across classes) and once per class (the previous one-job-per-class layout, whole class or
    defective image per call); returns {(step, grouping): (manifest, pngs)}."""

    def fake_score(model_path, frame):  # no detector: scoring is not what is compared here
        return frame.assign(predicted=frame.label, p_target=np.float32(1.0), feature=[np.zeros(2, np.float32)] * len(frame))

    monkeypatch.setattr(generation, "score_images", fake_score)
    prototypes_path, anomalies_path = tmp_path / "prototypes.parquet", tmp_path / "anomalies.parquet"
    prototypes.to_parquet(prototypes_path)
    anomaly_table(prototypes).to_parquet(anomalies_path)
    classes = sorted(prototypes.label.unique().tolist())
    groupings = {"all": [classes], "per_class": [[y] for y in classes]}
    out = {}
    for grouping, parts in groupings.items():
        for step in ("initial", "candidates"):
            folders = []
            for part, labels in enumerate(parts):
                folder = tmp_path / grouping / step / f"part{part}"
                if step == "initial":
                    cfg = synthesis if grouping == "all" else {**synthesis, "batch_size": PROTOTYPES_PER_CLASS}
                    generation.synthesize_initial(prototypes_path=prototypes_path, labels=labels, generator_dir=generator_dir,
                                                  synthesis_cfg=cfg, seed=SEED, out_dir=folder)
                else:
                    cfg = synthesis if grouping == "all" else {**synthesis, "batch_size": N_CANDIDATES}
                    generation.generate_candidates(anomalies_path=anomalies_path, prototypes_path=prototypes_path, labels=labels,
                                                   generator_dir=generator_dir, detector_path="no-detector", synthesis_cfg=cfg,
                                                   n_candidates=N_CANDIDATES, seed=SEED, out_dir=folder)
                folders.append(folder)
            pngs = {name: px for f in folders for name, px in read_pngs(f).items()}
            out[step, grouping] = (read_image_dirs(folders), pngs)
    return out


def check_groupings_agree(outputs: dict) -> int:
    """Same rows, columns and file names whatever the grouping; returns the largest PNG pixel
    difference (in 1/255 steps) between the groupings."""
    worst = 0
    for step in ("initial", "candidates"):
        (whole, whole_png), (split, split_png) = outputs[step, "all"], outputs[step, "per_class"]
        assert list(whole.columns) == list(split.columns)
        strip = lambda frame: frame.drop(columns="image_path").drop(columns="feature", errors="ignore")  # noqa: E731
        pd.testing.assert_frame_equal(strip(whole), strip(split))
        assert [Path(p).name for p in whole.image_path] == [Path(p).name for p in split.image_path]
        assert sorted(Path(p).name for p in whole.image_path) == sorted(whole_png)
        worst = max(worst, max_png_diff(whole_png, split_png))
    candidates = outputs["candidates", "all"][0]
    assert len(candidates) == len(DEFECTIVE) * N_CANDIDATES
    return worst
