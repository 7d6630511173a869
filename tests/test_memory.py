"""Bounded memory: the streamed paths give the results of the load-everything ones, each job logs
its exact peak RSS, and bench/memory_cifar10.py (detdistill.testing.memory) reads and reports it (on hand-made files)."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from detdistill import io
from detdistill.stages.classifiers import SCORE_CHUNK, score_images
from detdistill.testing import memory
from detdistill.workflow import PEAK_RSS_PREFIX

from conftest import REPO


@pytest.fixture
def scored_images(tmp_path):
    """A saved ConvNet and seven 16 px PNGs of labels 0..2 (not a multiple of the chunk)."""
    from detdistill.models import build_model
    from detdistill.train import save_model

    torch.manual_seed(0)
    model_path = tmp_path / "model.safetensors"
    save_model(build_model("convnet", 3, 16, 8), model_path)
    generator = torch.Generator().manual_seed(1)
    rows = []
    for i in range(7):
        path = tmp_path / f"img{i}.png"
        io.write_png(torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=generator), path)
        rows.append({"image_id": f"img{i}", "label": i % 3, "image_path": str(path)})
    return model_path, pd.DataFrame(rows)


def test_chunked_scoring_equals_scoring_all_at_once(scored_images):
    model_path, frame = scored_images
    whole = score_images(model_path, frame, batch_size=len(frame))
    chunked = score_images(model_path, frame, batch_size=3)  # chunks of 3, 3 and 1
    assert chunked.image_id.tolist() == frame.image_id.tolist()
    assert chunked.predicted.tolist() == whole.predicted.tolist()
    np.testing.assert_allclose(chunked.p_target, whole.p_target, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.stack(chunked.feature), np.stack(whole.feature), rtol=1e-5, atol=1e-6)
    # the frame's own rows are scored (not a chunk's repeated): images differ, so do the features
    assert len({tuple(f) for f in np.stack(chunked.feature).round(5)}) == len(frame)


def test_score_chunk_keeps_predict_batches():
    # one call of predict() batches by 256: a chunk that is a multiple of it feeds the model the
    # same batches as one call would, so the chunked scores are bit-identical at scale too
    assert SCORE_CHUNK % 256 == 0


def test_vae_trained_on_uint8_batches_equals_training_on_a_float_copy():
    """The VAE draws each batch from uint8 images and converts it; the values are those of
    converting the whole set up front (a [0, 1] float input takes that path)."""
    from detdistill.generators.embedded import DEFAULT_CONFIG, _train_vae

    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cfg = {**DEFAULT_CONFIG, "vae_steps": 3, "batch_size": 4, "vae_channels": [8, 8, 8]}
    streamed, streamed_loss = _train_vae(images, cfg, "cpu", log=lambda _: None)
    float_copy, float_loss = _train_vae(images.float() / 255.0, cfg, "cpu", log=lambda _: None)
    assert streamed_loss == float_loss
    for (name, a), (_, b) in zip(streamed.state_dict().items(), float_copy.state_dict().items()):
        assert torch.equal(a, b), name
    assert streamed.config.scaling_factor == float_copy.config.scaling_factor


def test_job_log_ends_with_its_peak_rss(tmp_path):
    """A script set up like a rule's logs the kernel's high-water mark at exit, in MiB: 300 MiB
    touched and freed must show (a sampled figure taken after the free would not), and the 1.5 GiB
    its parent holds when it spawns the job must not (getrusage's ru_maxrss keeps the RSS of the
    image exec replaced: a job spawned by a large Snakemake or pytest process reported the parent)."""
    log = tmp_path / "job.log"
    job = textwrap.dedent(f"""
        from types import SimpleNamespace
        import numpy as np
        from detdistill.workflow import setup
        setup(SimpleNamespace(log=[{str(log)!r}], threads=1, rule="r", wildcards={{}}, config={{}}))
        block = np.ones(300 * 2**20, dtype=np.uint8)
        del block
    """)
    large_parent = textwrap.dedent(f"""
        import subprocess, sys
        import numpy as np
        held = np.ones(1536 * 2**20, dtype=np.uint8)
        subprocess.run([sys.executable, "-c", {job!r}], check=True)
    """)
    subprocess.run([sys.executable, "-c", large_parent], check=True, cwd=REPO, timeout=180)
    last = log.read_text().strip().splitlines()[-1]
    assert PEAK_RSS_PREFIX in last
    assert 300 < memory.exact_peak_mib(log) < 1536


BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _job(workdir, rule, job, sampled_mib, peak_mib=None, seconds=10):
    (workdir / "benchmarks" / rule).mkdir(parents=True, exist_ok=True)
    (workdir / "benchmarks" / rule / f"{job}.tsv").write_text(
        BENCHMARK_HEADER + f"{seconds}\t0:00:{seconds}\t{sampled_mib}\t0\t0\t0\t0\t0\t1\t{seconds}\n")
    (workdir / "logs" / rule).mkdir(parents=True, exist_ok=True)
    text = "2026-01-01 00:00:00 INFO detdistill: rule started\n"
    if peak_mib is not None:
        text += f"2026-01-01 00:00:09 INFO detdistill: {PEAK_RSS_PREFIX} {peak_mib} MiB\n"
    (workdir / "logs" / rule / f"{job}.log").write_text(text)


def test_rule_table_takes_each_rules_largest_job(tmp_path):
    _job(tmp_path, "evaluate", "cifar10_ipc10_d4m_convnet", 900, 1200.5)
    _job(tmp_path, "evaluate", "cifar10_ipc50_d4m_resnet18", 1000, 1500.0)
    _job(tmp_path, "evaluate", "digits_ipc10_d4m_convnet", 9000, 9000.0)  # another dataset: left out
    _job(tmp_path, "prepare_generator", "cifar10", 4000, 4200.0)
    _job(tmp_path, "aggregate_results", "cifar10_ipc10", 300)  # no peak line: the job did not finish
    rules = memory.rule_table(memory.memory_jobs(tmp_path)).set_index("rule")
    # pipeline order, not alphabetical
    assert rules.index.tolist() == ["prepare_generator", "evaluate", "aggregate_results"]
    assert rules.loc["evaluate", "jobs"] == 2
    assert rules.loc["evaluate", "peak_rss_mib"] == 1500.0
    assert rules.loc["evaluate", "sampled_max_rss_mib"] == 1000
    assert rules.loc["evaluate", "largest_job"] == "cifar10_ipc50_d4m_resnet18"
    assert rules.loc["evaluate", "under_4_gib"] and not rules.loc["prepare_generator", "under_4_gib"]
    assert rules.loc["aggregate_results", "under_4_gib"] is None


def test_evaluation_peaks_are_raised_to_the_configs_seeds(tmp_path):
    _job(tmp_path, "evaluate_full", "cifar10_resnet18", 1000, 1000.0)
    _job(tmp_path, "evaluate_full", "cifar10_convnet", 1020, 1020.0)
    _job(tmp_path, "encode_latents", "cifar10", 1100, 1100.0)
    settings = {"evaluation": {"models": ["convnet", "resnet18"], "seeds": [0], "image_size": 16, "width": 64}}
    bench_config = yaml.safe_load((REPO / "config" / "bench" / "cifar10_embedded.yaml").read_text())
    config_seeds = len(bench_config["datasets"]["cifar10"]["evaluation"]["seeds"])
    assert config_seeds == 3
    jobs = memory.with_config_seeds(memory.memory_jobs(tmp_path), settings, 10, config_seeds).set_index("job")
    resnet18 = memory.seed_model_mib("resnet18", 10, settings["evaluation"])
    assert 40 < resnet18 < 45  # 11.2 M float32 parameters
    # config/bench/cifar10_embedded.yaml trains 3 seeds: two more models than measured
    assert jobs.loc["cifar10_resnet18", "peak_at_config_seeds_mib"] == pytest.approx(1000 + 2 * resnet18)
    assert jobs.loc["cifar10", "peak_at_config_seeds_mib"] == 1100.0
    rules = memory.rule_table(jobs.reset_index()).set_index("rule")
    assert rules.loc["evaluate_full", "largest_job"] == "cifar10_resnet18"  # by the figure at 3 seeds
    assert rules.loc["evaluate_full", "peak_at_config_seeds_mib"] == pytest.approx(1000 + 2 * resnet18, abs=0.1)


def test_imagenette_projection_of_resident_images():
    resident = memory.resident_images(memory.IMAGENETTE)
    # 9,469 train images at 256 px as uint8: 1.86 GB, with the 3,925 test images beside them
    assert resident["evaluate_full"][0] * 2**20 == pytest.approx((9_469 + 3_925) * 3 * 256 * 256)
    assert resident["evaluate"][0] * 2**20 == pytest.approx(3_925 * 3 * 256 * 256)
    rules = pd.DataFrame({"rule": ["evaluate_full"], "peak_rss_mib": [1000.0]})
    cifar = {"train": 50_000, "test": 10_000, "image_size": 32, "eval_load_size": 16}
    row = next(r for r in memory.projection(rules, cifar) if r["rule"] == "evaluate_full")
    cifar_images = 60_000 * 3 * 16 * 16 / 2**20
    assert row["cifar10_rest_mib"] == pytest.approx(1000 - cifar_images, abs=0.1)
    assert row["projected_peak_mib"] == pytest.approx(1000 - cifar_images + resident["evaluate_full"][0], abs=0.2)
