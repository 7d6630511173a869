"""The benchmark report scripts on hand-made benchmark and result files (no timing is asserted)."""

import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO

BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _run(script: str, *args: str, cwd) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_stage_times_keeps_one_datasets_jobs(tmp_path):
    for rule, job, seconds in [("evaluate", "cifar10_ipc10_d4m_convnet", 10), ("evaluate", "cifar10_ipc50_d4m_convnet", 30),
                               ("evaluate", "digits_ipc10_d4m_convnet", 1000), ("encode_latents", "cifar10", 5)]:
        (tmp_path / "benchmarks" / rule).mkdir(parents=True, exist_ok=True)
        (tmp_path / "benchmarks" / rule / f"{job}.tsv").write_text(BENCHMARK_HEADER + f"{seconds}\t0:00:{seconds}\t900\t0\t0\t0\t0\t0\t1\t{seconds}\n")
    _run("stage_times.py", "--dataset", "cifar10", "--run-seconds", "60", "--command", "x", "--note", "a note",
         "--out", "times.md", cwd=tmp_path)
    text = (tmp_path / "times.md").read_text()
    evaluate = next(line for line in text.splitlines() if line.startswith("| evaluate "))
    assert [cell.strip() for cell in evaluate.split("|")[2:4]] == ["2", "40"]  # the digits job is left out
    assert "| encode_latents" in text and "a note" in text and "whole run, wall clock: 60 s" in text


def test_results_table_pivots_summary_and_consistency(tmp_path):
    (tmp_path / "results").mkdir()
    summary = pd.DataFrame({"model": ["convnet"] * 3, "method": ["conf_sim", "d4m", "random"], "mean": [35.81, 31.16, 28.86],
                            "std": [0.6, 0.59, 0.54], "seeds": [3, 3, 3]})
    summary.to_csv(tmp_path / "results" / "cifar10_ipc10_summary.csv", index=False)
    pd.DataFrame({"method": ["d4m"], "images": [100], "judge_wrong_label_pct": [42.0]}).to_csv(
        tmp_path / "results" / "cifar10_ipc10_consistency.csv", index=False)
    _run("results_table.py", "--dataset", "cifar10", "--ipc", "10", "--out", "tables.md", cwd=tmp_path)
    text = (tmp_path / "tables.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert [c.strip() for c in header.split("|")[1:-1]] == ["model", "random", "d4m", "conf_sim"]  # paper order
    assert "35.81 ± 0.60" in text and "| d4m" in text and "42" in text


def test_noise_paired_pairs_arms_by_seed_and_takes_random_from_the_plain_arm(tmp_path):
    """Seeds are matched, not rows: the trust-aware d4m table is written in another seed order and
    still gives trust - plain = +10, +11, +9 (mean +10.00); the trust-aware arm's random row is the
    plain arm's (it has none of its own) and is not compared with itself; a method not run shows `-`
    and no comparison."""
    def write(arm: str, method: str, accuracies: dict[int, float]) -> None:
        folder = tmp_path / "results" / f"noisy{arm}" / "ipc10" / "eval" / method
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"seed": list(accuracies), "test_accuracy": list(accuracies.values())}).to_parquet(folder / "convnet.parquet")

    write("", "random", {0: 0.15, 1: 0.16, 2: 0.17})
    write("", "d4m", {0: 0.20, 1: 0.21, 2: 0.22})
    write("", "conf", {0: 0.25, 1: 0.27, 2: 0.26})
    write("_trust", "d4m", {2: 0.31, 0: 0.30, 1: 0.32})
    out = _run("noise_paired.py", "--dataset", "noisy", cwd=tmp_path)
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line.split("|")[-2].strip()
            for line in out.splitlines() if line.startswith("| ")}
    assert "| trust | convnet | 16.00 ± 1.00 | 31.00 ± 1.00 | - | - | - |" in out
    assert rows[("trust - plain", "convnet", "d4m")] == "+10.00 [+7.52, +12.48]"
    assert rows[("plain", "convnet", "conf - d4m")] == "+5.00 [+2.52, +7.48]"
    assert ("trust - plain", "convnet", "conf") not in rows and ("trust - plain", "convnet", "random") not in rows


def test_trust_per_class_reads_each_arm_and_refuses_one_without_truth(tmp_path):
    # arm "a": class cat (label 0) observed on 4 images (3 right), dog on 2; one dog image recalibrated to cat
    for name, truth in [("a", True), ("b", False)]:
        (tmp_path / "results" / name / "trust").mkdir(parents=True)
        (tmp_path / "results" / name / "data").mkdir(parents=True)
        samples = pd.DataFrame({"observed_label": [0, 0, 0, 0, 1, 1], "label": [0, 0, 0, 0, 1, 0],
                                "trusted": [True, True, False, True, True, True],
                                "recalibrated": [False] * 5 + [True], "clean_label": [0, 0, 0, 1, 1, 0]})
        samples.drop(columns=[] if truth else ["clean_label"]).to_parquet(tmp_path / "results" / name / "trust" / "samples.parquet")
        pd.DataFrame({"image_id": ["x", "y"], "label": [0, 1], "class_name": ["cat", "dog"], "split": "train",
                      "source": ""}).to_parquet(tmp_path / "results" / name / "data" / "manifest.parquet")
    text = _run("trust_per_class.py", "a", "--out", "t.md", cwd=tmp_path)
    cat = next(line for line in text.splitlines() if line.startswith("| cat"))
    # observed 4, trusted 4 (3 kept + 1 recalibrated in), 75% observed right, precision 3/4, recall 2/3, 1 in, all right
    assert [c.strip() for c in cat.split("|")[1:-1]] == ["cat", "4", "4", "75", "75", "66.67", "1", "100"]
    assert (tmp_path / "t.md").read_text().strip() == text.strip()
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "trust_per_class.py"), "b"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "has no clean_label" in proc.stderr and "Traceback" not in proc.stderr


def test_engine_profile_times_each_variant_and_writes_the_profile(tmp_path):
    """bench/engine_profile.py at --tiny size on the CPU: a step time per model and protocol variant,
    the parts alone, and the profiler's table in the markdown; variant names that hold a comma are
    parsed whole, in the order asked."""
    import json

    from detdistill.testing.engine import DEFAULT_VARIANTS, parse_variants

    assert parse_variants("model compiled, CUDA graphs,protocol,no augmentation, no CutMix") == [
        "model compiled, CUDA graphs", "protocol", "no augmentation, no CutMix"]
    assert parse_variants("model compiled") == ["model compiled"]  # not the CUDA-graph variant's prefix alone
    with pytest.raises(ValueError, match="unknown 'no CutMix'"):
        parse_variants("protocol,no CutMix")

    out = tmp_path / "profile.json"
    _run("engine_profile.py", "--tiny", "--device", "cpu", "--threads", "1", "--models", "convnet", "--profile-model", "convnet",
         "--no-compiled-augment", "--out", str(out), cwd=tmp_path)
    report = json.loads(out.read_text())
    assert [(s["model"], s["variant"]) for s in report["steps"]] == [("convnet", v) for v in DEFAULT_VARIANTS]
    assert all(isinstance(s["ms_per_step"], float) for s in report["steps"])  # no timing is asserted
    # host work: the protocol's augmentation and CutMix add tensor operations to every step
    ops = {s["variant"]: s["ops_per_step"] for s in report["steps"]}
    assert ops["protocol"] > ops["no colour jitter"] > ops["no augmentation, no CutMix"] > 0
    assert set(report["parts_ms_per_call"]) == {"kornia pipeline (crop, jitter, flip)", "kornia pipeline without jitter", "CutMix"}
    text = out.with_suffix(".md").read_text()
    assert "| convnet | no augmentation, no CutMix |" in text and "top operations by self CPU time" in text
    assert "aten::" in text  # the profiler saw the training's operators


def test_engine_concurrency_releases_workers_together_and_counts_their_steps(tmp_path):
    """bench/engine_concurrency.py at --tiny size on the CPU: per worker count, that many processes
    warmed up, released at a barrier, their steps (epochs x 2 batches of an IPC-10 set each) summed
    over the common span, and the speed-up over one worker."""
    import json

    out = tmp_path / "concurrency.json"
    _run("engine_concurrency.py", "--tiny", "--device", "cpu", "--model", "convnet", "--workers", "1,2", "--epochs", "2",
         "--out", str(out), cwd=tmp_path)
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["workers"], r["steps"], len(r["ms_per_step_per_worker"])) for r in rows] == [(1, 4, 1), (2, 8, 2)]
    assert rows[0]["speed_up_over_one"] == 1.0 and rows[1]["speed_up_over_one"] > 0  # no timing is asserted
    for r in rows:  # the span covers every worker's training, so the total cannot exceed the sum of their rates
        assert r["steps_per_s"] == pytest.approx(r["steps"] / r["span_s"], rel=0.01)
        assert r["steps_per_s"] <= sum(1000 / ms for ms in r["ms_per_step_per_worker"]) * 1.01
    assert rows[0]["steps_per_s"] == pytest.approx(1000 / rows[0]["ms_per_step_per_worker"][0], rel=0.01)  # one: its own rate
    assert "| 2 |" in out.with_suffix(".md").read_text()


def test_pixel_cache_bench_checks_bytes_and_projects_imagenette(tmp_path):
    """`bench/pixel_cache.py --imagenette-like`: photo-shaped JPEGs made from a CIFAR-10-like tree,
    every split decoded, stored and read back by a new process, and the per-image seconds
    projected to ImageNette's split sizes."""
    import json

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        folder = tmp_path / "cifar" / "train" / name
        folder.mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
    out = tmp_path / "pc"
    _run("pixel_cache.py", "--root", str(tmp_path / "cifar"), "--imagenette-like", "8", "--out", str(out), cwd=tmp_path)
    report = json.loads((tmp_path / "pc.json").read_text())
    assert [(row["split"], row["images"], row["image_size"]) for row in report["rows"]] == [("train", 8, 256), ("test", 3, 256)]
    for row in report["rows"]:
        assert row["stored_mib"] > 0 and row["later_jobs_read_s"] > 0
        assert row["projected_imagenette_decode_s"] == round(row["decode_s"] / row["images"] * (9469 if row["split"] == "train" else 3925), 1)
    assert "projected_imagenette_decode_s" in (tmp_path / "pc.md").read_text()


ZEN1_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 fma avx avx2 bmi2

processor\t: 1
model name\t: another block, never read
flags\t\t: avx512f
"""


def test_cpu_description_tells_apart_cpus_with_one_model_name():
    """Two 2-core VMs both read "AMD EPYC", "x86_64, 2 cores" and ran the same default 3.3x apart:
    the description carries family, model and the widest vector instructions of the first core."""
    from detdistill.testing.machine import cpu_description

    assert cpu_description(ZEN1_CPUINFO, cores=2) == "AMD EPYC (family 23, model 1; AVX2), 2 cores"
    zen4 = ZEN1_CPUINFO.replace("model\t\t: 1", "model\t\t: 17").replace("cpu family\t: 23", "cpu family\t: 25")
    zen4 = zen4.replace("avx2 bmi2", "avx2 avx512f avx512_bf16 bmi2")
    assert cpu_description(zen4, cores=2) == "AMD EPYC (family 25, model 17; AVX-512 with BF16), 2 cores"
    assert "AMX" in cpu_description(zen4.replace("bmi2", "bmi2 amx_tile"), cores=8)
    # no /proc/cpuinfo (not Linux): the platform's name, and the cores
    assert cpu_description("", cores=4).endswith(", 4 cores")
