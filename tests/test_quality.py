"""Set quality metrics: known answers on hand-made features, the stage on digits with an untrained
judge (both Inception paths), and the rule's table from the tiny workflow run."""

import math
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

from detdistill import io, quality
from detdistill.data import digits_manifest
from detdistill.models import build_model
from detdistill.stages.sets import select_random_subset
from detdistill.train import save_model

METRICS = ["precision", "recall", "density", "coverage"]


def gaussian(n, dim, seed, scale=1.0, shift=0.0):
    return np.random.default_rng(seed).normal(size=(n, dim)) * scale + shift


def test_identical_sets_score_perfectly():
    real = gaussian(200, 8, 0)
    values = quality.feature_metrics(real, real.copy(), nearest_k=5)
    assert abs(values["fid"]) < 1e-9
    # density: each point lies inside its own ball and k-1 neighbours' (strict <), so k/k = 1
    assert [values[m] for m in METRICS] == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_far_disjoint_sets_score_zero_and_fid_is_the_squared_shift():
    real = gaussian(200, 8, 0)
    values = quality.feature_metrics(real, real + 100.0, nearest_k=5)
    assert [values[m] for m in METRICS] == [0.0, 0.0, 0.0, 0.0]
    # equal covariances: the trace term vanishes, FID = ||mean shift||^2 = 8 * 100^2
    assert values["fid"] == pytest.approx(8 * 100.0**2, rel=1e-9)


def test_fid_matches_an_independent_scipy_computation():
    real = gaussian(300, 6, 1)
    fake = gaussian(150, 6, 2, scale=np.linspace(0.5, 2.0, 6), shift=0.3)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    expected = ((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * scipy.linalg.sqrtm(cov_r @ cov_f).real)
    assert quality.frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)


def test_partial_overlap_is_between_the_extremes():
    real = gaussian(300, 4, 3)
    fake = np.concatenate([gaussian(50, 4, 4), gaussian(50, 4, 5, shift=50.0)])  # half on the data
    values = quality.prdc_metrics(real, fake, nearest_k=5)
    assert values["precision"] == pytest.approx(0.5, abs=0.1)
    assert 0 < values["coverage"] < 1


def test_too_few_images_for_nearest_k_names_the_key():
    real = gaussian(50, 4, 0)
    with pytest.raises(ValueError, match=r"quality\.nearest_k = 5 needs at least 7"):
        quality.prdc_metrics(real, real[:6], nearest_k=5, what="set d4m.parquet")


def test_reference_is_a_seeded_train_only_subsample():
    manifest = digits_manifest(0.2, seed=0)
    train_ids = set(manifest.loc[manifest.split == "train", "image_id"])
    picked = quality.reference_subsample(manifest, 100, seed=3)
    assert len(picked) == 100 and set(picked.image_id) <= train_ids
    assert picked.image_id.tolist() == quality.reference_subsample(manifest, 100, seed=3).image_id.tolist()
    assert picked.image_id.tolist() != quality.reference_subsample(manifest, 100, seed=4).image_id.tolist()
    assert set(quality.reference_subsample(manifest, 10**6, seed=3).image_id) == train_ids


@pytest.fixture
def empty_hub(tmp_path):
    """A torch hub cache without Inception weights, restored afterwards."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def test_inception_weights_absent_gives_a_reason(empty_hub):
    path, note = quality.inception_weights(None)
    assert path is None and "no Inception weights offline" in note


def test_configured_inception_weights_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"quality\.inception_weights"):
        quality.inception_weights(str(tmp_path / "missing.pth"))


def random_inception_weights(path):
    """A weights file torch-fidelity loads: its InceptionV3 with random (untrained) parameters,
    so the Inception path runs offline. The values mean nothing; the plumbing is what is tested."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.save({}, path)
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict"):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["64"], feature_extractor_weights_path=str(path))
    torch.save(net.state_dict(), path)
    return path


def digits_sets(tmp_path, ipc=5):
    """A digits manifest, an untrained judge, a random real subset and a 'synthetic' PNG set."""
    manifest = digits_manifest(0.2, seed=0)
    io.write_parquet(manifest, tmp_path / "manifest.parquet")
    save_model(build_model("resnetap10", 10, 16, width=4), tmp_path / "judge.safetensors")
    select_random_subset(manifest_path=tmp_path / "manifest.parquet", ipc=ipc, seed=0, out_path=tmp_path / "random.parquet")
    torch.manual_seed(0)
    names = [str(tmp_path / f"noise{i}.png") for i in range(10 * ipc)]
    for name in names:
        io.write_png(torch.rand(3, 16, 16), name)
    noise = pd.DataFrame({"method": "noise", "label": np.repeat(np.arange(10), ipc), "image_path": names, "kind": "synthetic"})
    io.write_parquet(noise, tmp_path / "noise.parquet")
    return [tmp_path / "random.parquet", tmp_path / "noise.parquet"]


def run_stage(tmp_path, sets, weights, reference_images=40):
    out = tmp_path / "quality.csv"
    quality.set_quality(judge_path=tmp_path / "judge.safetensors", manifest_path=tmp_path / "manifest.parquet", set_paths=sets,
                        source_cfg={"kind": "digits"}, image_size=16, reference_images=reference_images, nearest_k=3, seed=0, inception_weights_path=weights,
                        out_csv=out)
    return pd.read_csv(out, keep_default_na=False, na_values=[""])


def test_stage_without_inception_weights(tmp_path, empty_hub):
    table = run_stage(tmp_path, digits_sets(tmp_path), None, reference_images=10**6)
    assert table.method.tolist() == ["random", "noise"]
    assert table.reference_images.tolist() == [1437, 1437]  # the whole digits train split
    assert table.images.tolist() == [50, 50]
    assert (table.judge_space == "resnetap10 width 4, 32-d penultimate").all()
    assert table.judge_fid.ge(0).all() and table.judge_density.ge(0).all()
    for column in ["judge_precision", "judge_recall", "judge_coverage"]:
        assert table[column].between(0, 1).all(), column
    # the random subset is inside the reference (the whole train split): precision 1 by construction
    assert table.judge_precision[0] == 1.0
    # uniform noise is far from digits, even through an untrained network
    assert table.judge_fid[1] > table.judge_fid[0]
    assert table.inception_fid.isna().all()
    assert table.inception_note.str.contains("no Inception weights offline").all()


def test_stage_with_offline_inception_weights(tmp_path, monkeypatch):
    # Inception's first 64-d layer: the 2048-d FID's eigen-solve costs half a CPU-minute per set
    monkeypatch.setattr(quality, "INCEPTION_FEATURES", 64)
    weights = random_inception_weights(tmp_path / "inception.pth")
    noise = digits_sets(tmp_path, ipc=1)[1]
    # the reference itself as a set: FID ~0 in both spaces, the metric keeping the reference's
    # statistics after the first set
    reference = quality.reference_subsample(pd.read_parquet(tmp_path / "manifest.parquet"), 8, 0)
    io.write_parquet(reference.assign(method="reference", kind="real"), tmp_path / "reference.parquet")
    table = run_stage(tmp_path, [noise, tmp_path / "reference.parquet"], str(weights), reference_images=8)
    assert table.inception_note.isna().all()
    assert table.inception_fid.map(math.isfinite).all()
    assert table.inception_fid[1] == pytest.approx(0, abs=1e-3 * table.inception_fid[0])
    assert table.judge_fid[1] == pytest.approx(0, abs=1e-6)


def test_quality_table_of_the_tiny_workflow(tiny_run):
    table = pd.read_csv(tiny_run / "results" / "tiny_ipc2_quality.csv", keep_default_na=False, na_values=[""])
    manifest = pd.read_parquet(tiny_run / "results" / "tiny" / "data" / "manifest.parquet")
    # the tiny config's baselines, then the synthetic sets, in the order the rule lists them
    assert table.method.tolist() == ["random", "herding", "kcenter", "d4m", "conf", "sim", "conf_sim"]
    assert (table.images == 2 * 3).all()  # IPC 2 x 3 classes
    assert (table.reference_images == (manifest.split == "train").sum()).all()
    assert (table.nearest_k == 3).all()
    assert (table.judge_space == "resnetap10 width 8, 64-d penultimate").all()  # tiny.yaml's judge
    assert table.judge_fid.map(math.isfinite).all() and table.judge_fid.ge(0).all()
    for column in ["judge_precision", "judge_recall", "judge_coverage"]:
        assert table[column].between(0, 1).all(), column
    assert table.judge_density.ge(0).all()
    assert table.set_index("method").judge_precision["random"] == 1.0
    # Inception FID exactly when its weights were found, the reason otherwise
    assert (table.inception_fid.isna() == table.inception_note.notna()).all()
