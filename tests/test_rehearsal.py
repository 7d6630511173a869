"""bench/rehearsal.py end to end at --tiny size on CPU: dataset, SD-shaped model, the calibration
and main Snakemake runs, and the report (the figures themselves are a smoke test's)."""

import json
import subprocess
import sys

import pytest
import yaml
from PIL import Image

from conftest import REPO

#: every rule with a benchmark file, as the workflow runs them for one dataset and IPC
BENCHMARKED_RULES = {"prepare_data", "prepare_generator", "encode_latents", "compute_prototypes", "synthesize_initial",
                     "train_classifier", "score_initial", "detect_anomalies", "generate_candidates", "build_refined_set",
                     "select_random_subset", "evaluate", "evaluate_full", "label_consistency", "set_quality", "refinement_figures", "gradcam",
                     "learning_curves", "aggregate_results"}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    workdir, out = tmp_path_factory.mktemp("rehearsal"), tmp_path_factory.mktemp("measurements")
    cmd = [sys.executable, str(REPO / "bench" / "rehearsal.py"), "--tiny", "--workdir", str(workdir), "--out-dir", str(out),
           "--cores", "2", "--gpus", "2", "--workers", "2", "--logs-archive", str(out / "logs.tar.gz")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    report = json.loads((out / "rehearsal_cpu_tiny.json").read_text())
    return workdir, out, report, proc.stdout


def test_dataset_has_the_imagenette2_layout(rehearsal):
    workdir, _, report, _ = rehearsal
    root = workdir / "imagenette2-tiny"
    wnids = report["dataset"]["wnids"]
    assert wnids == ["n01440764", "n02102040"]  # the first rows of resources/classes/imagenette.csv
    for split, per_class in [("train", 12), ("val", 4)]:
        assert sorted(p.name for p in (root / split).iterdir()) == wnids
        files = sorted((root / split / wnids[0]).glob("*.JPEG"))
        assert len(files) == per_class
        with Image.open(files[0]) as image:
            assert image.size == (32, 32) and image.mode == "RGB"


def test_generator_folder_is_laid_out_like_sd15(rehearsal):
    workdir, *_ = rehearsal
    folder = workdir / "sd15-shaped-tiny"
    index = json.loads((folder / "model_index.json").read_text())
    for component in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert index[component][0] is not None and (folder / component).is_dir()
    assert (folder / "tokenizer" / "tokenizer_config.json").is_file()


def test_every_stage_is_measured(rehearsal):
    _, _, report, _ = rehearsal
    stages = {s["rule"]: s for s in report["stages"] if s["rule"]}
    assert set(stages) == BENCHMARKED_RULES
    for s in report["stages"]:
        if s["images"] is not None:
            assert s["images"] > 0 and s["images_per_s"] > 0, s
    # images from the artifacts: 2 x 12 train images encoded, IPC 10 x 2 classes generated
    assert stages["encode_latents"]["images"] == 24
    assert stages["synthesize_initial"]["images"] == 20
    assert stages["generate_candidates"]["images"] == 4 * report["flagged"]["flagged"]
    assert report["runs"]["main"]["returncode"] == 0 and report["runs"]["calibration"]["returncode"] == 0


def test_projection_scales_the_training_part_by_the_epochs(rehearsal):
    _, _, report, _ = rehearsal
    paper = yaml.safe_load((REPO / "config" / "imagenette.yaml").read_text())["datasets"]["imagenette"]
    expected_epochs = {
        ("train_classifier", "detector"): (2, paper["detector"]["train"]["epochs"]),
        ("train_classifier", "judge"): (2, paper["judge"]["train"]["epochs"]),
        ("evaluate", "convnet"): (2, 2000),  # epochs_by_ipc at IPC 10 x epoch_scale 1.0
        ("evaluate_full", "convnet"): (2, paper["evaluation"]["full_epochs"]),
        ("gradcam", "convnet"): (2, 2000),  # one ConvNet run per compared set, the evaluation's epochs
    }
    training = {(s["rule"], s["kind"]): s for s in report["stages"] if s["projection"] == "projected"}
    assert set(training) == set(expected_epochs)
    for key, s in training.items():
        assert (s["epochs"], s["paper_epochs"]) == expected_epochs[key]
        assert 0 <= s["fixed_s_per_job"] * s["jobs"] <= s["wall_s"] + 1e-9
        assert s["train_s"] == pytest.approx(s["wall_s"] - s["jobs"] * s["fixed_s_per_job"])
        assert s["projected_s"] == pytest.approx(s["jobs"] * s["fixed_s_per_job"] + s["train_s"] * s["paper_epochs"] / s["epochs"])
        # every training job logs its epochs: the per-epoch time comes from their timestamps
        assert s["fixed_method"].startswith("epoch timestamps"), (key, s["fixed_method"])
    # stages doing the paper's work already are not scaled
    for s in report["stages"]:
        if s["projection"] != "projected":
            assert s["projected_s"] == s["wall_s"]
    totals = report["totals"]
    full = sum(s["projected_s"] for s in report["stages"] if s["rule"] == "evaluate_full")
    assert totals["projected_full_data_s"] == pytest.approx(full)
    assert totals["projected_without_full_data_s"] == pytest.approx(sum(s["projected_s"] for s in report["stages"]) - full)
    # two jobs at a time: the walls were measured while another job shared the machine, so the sums
    # give no verdict on the targets even though the run finished
    assert totals["complete"] and not totals["serial"]
    assert totals["meets_without_full_data"] is None and totals["meets_full_data"] is None


def test_markdown_names_machine_command_and_labels_projections(rehearsal):
    _, out, report, stdout = rehearsal
    text = (out / "rehearsal_cpu_tiny.md").read_text()
    assert "tiny smoke test, not a benchmark" in text
    assert "CPU only" in text and "torch " in text and "diffusers " in text and "kornia" in text
    assert "bench/rehearsal.py --tiny" in text and "snakemake results/rehearsal_ipc10.csv --cores 2" in text
    assert "**projected s**" in text and "## Projected at the paper's epochs" in text
    assert text.count("no verdict: jobs overlapped, so these sums are not a run time") == 2
    for s in report["stages"]:
        assert f"| {s['stage']} |" in text
    assert text in stdout  # printed as well
    assert (out / "logs.tar.gz").stat().st_size > 0


def test_fixed_part_is_fitted_from_one_epoch_and_the_rehearsal():
    """Hand-made walls: 1 epoch 5 s, 20 epochs 12 s -> 7/19 s per epoch, fixed part 5 - 7/19 s."""
    import pandas as pd

    from detdistill.testing.rehearsal import fit_fixed

    main = pd.DataFrame({"seconds": [11.5, 12.5], "epochs": [20, 20]})
    fit = fit_fixed(main, pd.Series({"seconds": 5.0, "epochs": 1}))
    assert fit["fixed_s"] == pytest.approx(5 - 7 / 19)
    # at 2000 epochs a job takes fixed + 2000 x 7/19 s
    per_job = fit["fixed_s"] + (12 - fit["fixed_s"]) * 2000 / 20
    assert per_job == pytest.approx(fit["fixed_s"] + 2000 * 7 / 19)
    # training too short to resolve: the calibration's wall is all fixed; no calibration: nothing is
    assert fit_fixed(main, pd.Series({"seconds": 13.0, "epochs": 1}))["fixed_s"] == 13.0
    assert fit_fixed(main, None)["fixed_s"] == 0.0


def test_a_job_stopped_by_the_deadline_is_not_counted_as_snakemake_time(tmp_path):
    """A stopped run's job that left no benchmark file (as on the H200, where the candidates job
    ran 171 s when the budget stopped the run) is timed from its start in Snakemake's log to the
    end of the run; finished jobs and unstopped runs give no such row."""
    import datetime

    from detdistill.testing.workflow_run import unfinished_jobs

    (tmp_path / "benchmarks" / "detect_anomalies").mkdir(parents=True)
    (tmp_path / "benchmarks" / "detect_anomalies" / "r_ipc10.tsv").write_text("s\n3.8\n")
    log = tmp_path / "snakemake_main.log"
    log.write_text(
        "Building DAG of jobs...\n"
        "[Fri Dec  4 06:56:26 2026]\nlocalrule detect_anomalies:\n    log: logs/detect_anomalies/r_ipc10.log\n"
        "    benchmark: benchmarks/detect_anomalies/r_ipc10.tsv\n"
        "[Fri Dec  4 06:56:29 2026]\nFinished jobid: 8 (Rule: detect_anomalies)\n"
        "[Fri Dec  4 06:56:29 2026]\nrule generate_candidates:\n    output: results/r/ipc10/candidates/part0\n"
        "    benchmark: benchmarks/generate_candidates/r_ipc10_part0.tsv\n"
        "Will exit after finishing currently running jobs (scheduler).\n")
    started = datetime.datetime(2026, 12, 4, 6, 52, 56).timestamp()
    run = {"log": str(log), "stopped_by_budget": True, "started_at": started, "seconds": 384.5}
    assert unfinished_jobs(run, tmp_path / "benchmarks") == [
        {"rule": "generate_candidates", "job": "r_ipc10_part0", "seconds": pytest.approx(171.5)}]
    assert unfinished_jobs({**run, "stopped_by_budget": False}, tmp_path / "benchmarks") == []


def test_epoch_seconds_time_each_run_after_its_first_epoch(tmp_path):
    """The steady rate from a job log's epoch lines (tqdm's bar shares their line): per run, the
    time from its first logged epoch to its last over the epochs between, summed over the runs;
    None when a run logged one epoch only, or for no log."""
    from detdistill.testing.rehearsal import epoch_seconds

    log = tmp_path / "job.log"
    log.write_text(
        "2026-12-04 06:54:06,405 INFO detdistill: rule evaluate\n"
        "\rbar 0/3 [00:03]2026-12-04 06:54:25,500 INFO detdistill: d4m/convnet seeds [0] epoch 1/3 loss 1.19 lr 0.01\n"
        "2026-12-04 06:54:27,500 INFO detdistill: d4m/convnet seeds [0] epoch 2/3 loss 0.78 lr 0.0075\n"
        "2026-12-04 06:54:29,500 INFO detdistill: d4m/convnet seeds [0] epoch 3/3 loss 0.73 lr 0.0025\n"
        "2026-12-04 06:54:40,000 INFO detdistill: d4m/convnet seeds [1] epoch 1/3 loss 1.2 lr 0.01\n"
        "2026-12-04 06:54:43,000 INFO detdistill: d4m/convnet seeds [1] epoch 3/3 loss 0.7 lr 0.0025\n")
    assert epoch_seconds(log) == pytest.approx(2.0 + 1.5)
    log.write_text("2026-12-04 06:54:25,500 INFO detdistill: resnet18 epoch 1/1 loss 1.19 lr 0.01\n")
    assert epoch_seconds(log) is None
    assert epoch_seconds(tmp_path / "missing.log") is None


def test_train_compile_reaches_every_training_and_passes_the_schema(tmp_path):
    """`--train-compile cuda-graphs` sets train.compile for the detector, the judge and the
    evaluations of the rehearsal's config, which the workflow's schema accepts (and rejects a
    wrong word); without it the paper config's value stays."""
    from detdistill.testing.rehearsal import DATASET, paper_settings, rehearsal_settings
    from detdistill.train import COMPILE_WORDS
    from detdistill.workflow import check_config

    paper = paper_settings(REPO / "config" / "imagenette.yaml")
    graphs = rehearsal_settings(paper, tmp_path, tmp_path, 0.01, train_compile=COMPILE_WORDS["cuda-graphs"])
    assert [graphs[r]["train"]["compile"] for r in ("detector", "judge")] == ["cuda-graphs"] * 2
    assert graphs["evaluation"]["train"]["compile"] == "cuda-graphs"
    def full_config(settings):  # the workflow's default config with the rehearsal's dataset added
        config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        config["datasets"][DATASET] = settings
        return config

    check_config(full_config(graphs), REPO / "config" / "schema.yaml")  # stops on a rejected key
    plain = rehearsal_settings(paper, tmp_path, tmp_path, 0.01)
    assert plain["evaluation"]["train"].get("compile") == paper["evaluation"]["train"].get("compile")
    graphs["evaluation"]["train"]["compile"] = "graphs"
    with pytest.raises(SystemExit):
        check_config(full_config(graphs), REPO / "config" / "schema.yaml")


def test_peak_gpu_memory_is_logged_by_cuda_jobs_and_tabled_per_rule(monkeypatch, tmp_path):
    """A job that initialised CUDA ends its log with its peak allocator memory; one that did not
    logs nothing; the rehearsal reads the lines back and keeps each rule's largest job."""
    import torch

    from detdistill.testing.rehearsal import peak_gpu_memory
    from detdistill.workflow import peak_gpu_line

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert peak_gpu_line() is None
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)

    def broken():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", broken)
    assert peak_gpu_line() is None  # no second traceback after the job's own error
    lines = {}
    for job, (allocated, reserved) in {"a": (3, 5), "b": (7, 11)}.items():
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda a=allocated: a * 2**20)
        monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda r=reserved: r * 2**20)
        lines[job] = peak_gpu_line()
    for rule, job in (("evaluate", "a"), ("evaluate", "b"), ("generate_candidates", "a")):
        (tmp_path / rule).mkdir(exist_ok=True)
        (tmp_path / rule / f"x_{job}.log").write_text(f"2026-12-04 10:00:00,000 INFO detdistill: {lines[job]}\n")
    (tmp_path / "prepare_data").mkdir()
    (tmp_path / "prepare_data" / "x.log").write_text("no CUDA here\n")
    assert peak_gpu_memory(tmp_path) == [
        {"rule": "evaluate", "job": "x_b", "allocated_mib": 7.0, "reserved_mib": 11.0},
        {"rule": "generate_candidates", "job": "x_a", "allocated_mib": 3.0, "reserved_mib": 5.0},
    ]
