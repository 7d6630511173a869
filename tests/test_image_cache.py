"""The content-addressed image cache of the generating stages (detdistill/cache.py): a changed
defective set generates only the prototypes not generated before, a killed job's finished chunks
are reused, and images taken from the cache are byte for byte those a fresh job makes."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from detdistill.cache import GeneratedImageCache, generator_identity
from detdistill.stages import generation

GENERATOR = Path(__file__).resolve().parents[1] / "resources" / "generators" / "digits"
N_CANDIDATES = 3
SEED = 0
#: 4 rows a chunk against 3 candidates a prototype: chunks straddle prototypes, the last is short
SYNTHESIS = {"strength": 0.7, "guidance": 1.0, "steps": 2, "batch_size": 4}


@pytest.fixture()
def tables(tmp_path):
    """prototypes.parquet (3 classes x 2 random latents) and a writer of anomalies.parquet."""
    rng = np.random.default_rng(0)
    keys = [(y, p) for y in range(3) for p in range(2)]
    prototypes = pd.DataFrame({"label": [y for y, _ in keys], "prototype_id": [p for _, p in keys]})
    prototypes["class_name"] = prototypes.label.astype(str)
    prototypes["latent"] = list(rng.standard_normal((len(keys), 4 * 8 * 8)).astype(np.float32))
    prototypes["latent_shape"] = [[4, 8, 8]] * len(keys)
    prototypes_path = tmp_path / "prototypes.parquet"
    prototypes.to_parquet(prototypes_path)

    def anomalies(defective: set) -> Path:
        frame = prototypes[["label", "prototype_id"]].copy()
        frame["image_id"] = [f"c{y}-p{p:03d}" for y, p in keys]
        frame["defective"] = [k in defective for k in keys]
        path = tmp_path / f"anomalies-{len(list(tmp_path.glob('anomalies-*')))}.parquet"
        frame.to_parquet(path)
        return path

    return prototypes_path, anomalies


@pytest.fixture()
def generated_seeds(monkeypatch):
    """Every seed the generator is asked for (padding rows included), and no detector: scoring is
    not what is tested."""
    seeds: list[int] = []
    load = generation._load_generator

    def counting_load(path, synthesis_cfg=None):
        generator = load(path, synthesis_cfg)
        img2img = generator.img2img

        def counted(latents, labels, batch_seeds, **kw):
            seeds.extend(int(s) for s in batch_seeds)
            return img2img(latents, labels, batch_seeds, **kw)

        generator.img2img = counted
        return generator

    def fake_score(model_path, frame):
        return frame.assign(predicted=frame.label, p_target=np.float32(1.0), feature=[np.zeros(2, np.float32)] * len(frame))

    monkeypatch.setattr(generation, "_load_generator", counting_load)
    monkeypatch.setattr(generation, "score_images", fake_score)
    return seeds


def candidates(anomalies_path, prototypes_path, out_dir, cache_dir, synthesis=SYNTHESIS):
    generation.generate_candidates(anomalies_path=anomalies_path, prototypes_path=prototypes_path, labels=[0, 1, 2],
                                   generator_dir=GENERATOR, detector_path="no-detector", synthesis_cfg=synthesis,
                                   n_candidates=N_CANDIDATES, seed=SEED, out_dir=out_dir, cache_dir=cache_dir)
    return folder_digests(out_dir)


def folder_digests(folder: Path) -> dict[str, str]:
    """The PNGs' SHA-256 by name, and the manifest's content without the folder it names."""
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).glob("*.png"))}
    manifest = pd.read_parquet(Path(folder) / "manifest.parquet")
    manifest["image_path"] = [Path(p).name for p in manifest.image_path]
    digests["manifest"] = hashlib.sha256(pd.util.hash_pandas_object(manifest.drop(columns="feature")).to_numpy().tobytes()).hexdigest()
    return digests


def candidate_seeds(manifest_dir: Path, prototypes: set) -> set[int]:
    table = pd.read_parquet(manifest_dir / "manifest.parquet")
    return {s for y, p, s in zip(table.label, table.prototype_id, table.seed) if (y, p) in prototypes}


def test_changed_defective_set_generates_only_new_prototypes(tmp_path, tables, generated_seeds):
    prototypes_path, anomalies = tables
    cache = tmp_path / "cache"
    first = candidates(anomalies({(0, 0), (1, 1), (2, 0)}), prototypes_path, tmp_path / "first", cache)
    assert len(set(generated_seeds)) == 3 * N_CANDIDATES
    generated_seeds.clear()

    # a new beta drops (0, 0) and flags (0, 1), (2, 1): only those two prototypes are generated
    changed = anomalies({(0, 1), (1, 1), (2, 0), (2, 1)})
    second = candidates(changed, prototypes_path, tmp_path / "second", cache)
    new = candidate_seeds(tmp_path / "second", {(0, 1), (2, 1)})
    assert set(generated_seeds) <= new and len(new) == 2 * N_CANDIDATES
    assert len(set(generated_seeds)) == 2 * N_CANDIDATES
    # every chunk is one full batch (padded), so 6 new rows cost 2 calls of 4
    assert len(generated_seeds) == 8
    kept = [n for n in first if n.startswith(("c1-p001", "c2-p000"))]
    assert kept and all(first[n] == second[n] for n in kept)

    # and the folder is byte for byte the one a job without any cache writes, in other chunks
    generated_seeds.clear()
    fresh = candidates(changed, prototypes_path, tmp_path / "fresh", None)
    assert fresh == second
    assert len(set(generated_seeds)) == 4 * N_CANDIDATES

    # nothing new: the generator is not even loaded
    generated_seeds.clear()
    assert candidates(changed, prototypes_path, tmp_path / "again", cache) == second
    assert generated_seeds == []


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the stage may catch it."""


def test_killed_job_keeps_its_finished_chunks(tmp_path, tables, generated_seeds, monkeypatch):
    prototypes_path, anomalies = tables
    everything = anomalies({(y, p) for y in range(3) for p in range(2)})  # 18 rows: chunks 4,4,4,4,2
    reference = candidates(everything, prototypes_path, tmp_path / "reference", None)
    generated_seeds.clear()

    write_png = generation.io.write_png
    written = []

    def dying_write(image, path, owner=True):
        if len(written) == 9:  # two chunks stored, the third one's first image being written
            raise Killed
        written.append(path)
        write_png(image, path, owner)

    cache, out = tmp_path / "cache", tmp_path / "candidates" / "part0"
    monkeypatch.setattr(generation.io, "write_png", dying_write)
    with pytest.raises(Killed):
        candidates(everything, prototypes_path, out, cache)
    monkeypatch.setattr(generation.io, "write_png", write_png)
    assert not out.exists() and next(p.name for p in out.parent.iterdir()).startswith(".part0.staging-")

    generated_seeds.clear()
    assert candidates(everything, prototypes_path, out, cache) == reference
    assert len(set(generated_seeds)) == 18 - 9  # the 9 stored images are not made again
    assert [p.name for p in out.parent.iterdir()] == ["part0"]  # the killed job's staging folder is gone


def test_key_covers_what_changes_the_bytes(tmp_path):
    latent, shape = np.zeros(256, np.float32), [4, 8, 8]
    cpu = torch.device("cpu")
    base = GeneratedImageCache(tmp_path, GENERATOR, SYNTHESIS, cpu).key(latent, shape, 1, 5)
    assert GeneratedImageCache(tmp_path / "elsewhere", GENERATOR, dict(SYNTHESIS), cpu).key(latent.copy(), shape, 1, 5) == base
    changed = [
        GeneratedImageCache(tmp_path, GENERATOR, {**SYNTHESIS, key: value}, cpu).key(latent, shape, 1, 5)
        for key, value in [("strength", 0.8), ("guidance", 2.0), ("steps", 3), ("batch_size", 8)]
    ]
    cache = GeneratedImageCache(tmp_path, GENERATOR, SYNTHESIS, cpu)
    changed += [cache.key(latent + 1e-7, shape, 1, 5), cache.key(latent, shape, 2, 5), cache.key(latent, shape, 1, 6)]
    retrained = tmp_path / "retrained"
    shutil.copytree(GENERATOR, retrained)
    weights = retrained / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    assert generator_identity(retrained) != generator_identity(GENERATOR)
    changed.append(GeneratedImageCache(tmp_path, retrained, SYNTHESIS, cpu).key(latent, shape, 1, 5))
    assert len({base, *changed}) == 1 + len(changed)


def test_background_writer_finishes_every_write_and_raises_a_failed_one():
    """The PNG writer thread of the generating stages: every submitted chunk is written by the end
    of the block, at most `pending` wait at once, and a failed write stops the job."""
    import threading
    import time

    from detdistill.stages.generation import _BackgroundWriter

    written, most_waiting, lock = [], [0], threading.Lock()

    def write(index):
        time.sleep(0.01)
        with lock:
            written.append(index)

    with _BackgroundWriter(pending=2) as writer:
        for index in range(6):
            writer.submit(write, index)
            most_waiting[0] = max(most_waiting[0], len(writer.futures))
    assert sorted(written) == list(range(6)) and most_waiting[0] <= 2

    def fail(_):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), _BackgroundWriter() as writer:
        writer.submit(fail, 0)
