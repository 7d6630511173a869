"""Bad input stops the workflow with one line naming the cause and the fix: no traceback, and
nothing already computed deleted or overwritten. Checks that need no image decoded run while the
DAG is built (tested with -n); the others inside the job (prepare_data here, on tiny image folders)."""

import copy
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from detdistill import data as data_module
from detdistill.workflow import check_config

from conftest import REPO, assert_stops_with, copy_workflow, markdown_table_rows, snakemake

TINY = yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())["datasets"]["tiny"]
# awkward folder names: a space, quotes, non-ASCII letters, markdown's table separator
AWKWARD = ["my class", "it's \"quoted\"", "café ñandú", "a|b"]


def make_image_folder(root: Path, classes, per_class=(4, 2)) -> Path:
    """root/{train,test}/<class>/<i>.png: tiny images of different sizes and modes (RGB, L, RGBA)."""
    for split, count in zip(("train", "test"), per_class):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                mode, size = [("RGB", (8, 8)), ("L", (12, 9)), ("RGBA", (10, 10))][i % 3]
                Image.new(mode, size, color=(40 * c + 10 * i) % 256 if mode == "L" else (40 * c, 10 * i, 90)).save(folder / f"{i}.png")
    return root


def dataset(root, **changes) -> dict:
    """The tiny test dataset read from the image folder `root`; `changes` replace whole sections."""
    entry = copy.deepcopy(TINY)
    entry["source"] = {"kind": "imagefolder", "root": str(root)}
    entry.update(changes)
    return entry


def run(workdir: Path, target: str, datasets: dict, *args: str, top: dict | None = None) -> subprocess.CompletedProcess:
    config = workdir / f"{target.replace('/', '_')}.yaml"
    config.write_text(yaml.safe_dump({**(top or {}), "datasets": datasets}, allow_unicode=True))
    return snakemake(workdir, target, *args, "--configfile", config.name, check=False)


def assert_job_stops_with(proc: subprocess.CompletedProcess, log: Path, *expected: str) -> str:
    """A job ended by bad input: a non-zero exit, one ERROR line in its log holding every expected
    text, shown in Snakemake's output (the profile's show-failed-logs); no traceback in either.
    Snakemake's own lines about the failed job (RuleException, CalledProcessError) stay."""
    output, text = proc.stdout + proc.stderr, log.read_text()
    assert proc.returncode != 0, output[-3000:]
    assert "Traceback" not in output and "Traceback" not in text, output[-3000:]
    lines = [line for line in text.splitlines() if " ERROR " in line]
    assert len(lines) == 1, text
    for part in expected:
        assert part in lines[0], lines[0]
    assert lines[0] in output
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("badinput"))


# --------------------------------------------------------------------------- while the DAG is built
def make_case(workdir: Path, case: str):
    """(datasets, target, top-level config, expected texts) of one bad-input case."""
    data = make_image_folder(workdir / "data" / case, ["cat", "dog", "owl"])
    ok = dataset(data)
    target = f"results/{case}_ipc1.csv"
    refinement = TINY["refinement"]
    cases = {
        "missing_folder": ({case: dataset(workdir / "no" / "such" / "folder")}, target, None,
                           ["dataset 'missing_folder'", "no/such/folder/train does not exist", "source.root"]),
        "empty_class": ({case: ok}, target, None, ["class folder", "holds no images", "add images"]),
        "ipc_too_large": ({case: ok}, f"results/{case}_ipc5.csv", None, ["IPC 5 is more than the 4 train images of class 'cat'"]),
        "ipc_zero": ({case: ok}, f"results/{case}_ipc0.csv", None, ["IPC 0", "1 image per class or more"]),
        "unknown_dataset": ({case: ok}, "results/nosuch_ipc1.csv", None, ["dataset 'nosuch' is not configured", case]),
        "missing_sd_weights": ({case: dataset(data, generator={"backend": "sd15", "model": str(workdir / "no_weights")})}, target, None,
                               ["no_weights", "does not exist"]),
        "misspelled_key": ({case: {**{k: v for k, v in ok.items() if k != "refinement"}, "refinment": refinement}}, target, None,
                           [f"unknown config key `datasets.{case}.refinment`", "did you mean `refinement`?"]),
        "hyphen-name": ({case: ok}, target, None, ["dataset name 'hyphen-name'", "underscores"]),
        "too_few_num_classes": ({case: dataset(data, num_classes=2)}, target, None,
                                [f"`datasets.{case}.num_classes` is 2 but its source has 3 classes ('cat', 'dog', 'owl')",
                                 "set it to 3 or leave it out"]),
        "too_many_num_classes": ({case: dataset(data, num_classes=10)}, target, None, ["num_classes` is 10 but its source has 3 classes"]),
        "class_only_in_test": ({case: ok}, target, None,
                               [f"class folder(s) ['yak'] are in {data / 'test'} but not in {data / 'train'}",
                                "add train images of them", "`source.classes`"]),
        "class_only_in_train": ({case: ok}, target, None,
                                [f"class folder(s) ['yak'] are in {data / 'train'} but not in {data / 'test'}", "add test images of them"]),
    }
    if case.startswith("class_only_in_"):
        (data / case.removeprefix("class_only_in_") / "yak").mkdir()
        Image.new("RGB", (8, 8)).save(data / case.removeprefix("class_only_in_") / "yak" / "0.png")
    if case == "empty_class":
        shutil.rmtree(data / "test" / "owl")
        (data / "test" / "owl").mkdir()
        (data / "test" / "owl" / "notes.txt").write_text("not an image")
    return cases[case]


@pytest.mark.parametrize(
    "case",
    ["missing_folder", "empty_class", "ipc_too_large", "ipc_zero", "unknown_dataset", "missing_sd_weights",
     "misspelled_key", "hyphen-name", "too_few_num_classes", "too_many_num_classes", "class_only_in_test", "class_only_in_train"],
)
def test_dag_time_errors_are_one_line(workdir, case):
    datasets, target, top, expected = make_case(workdir, case)
    assert_stops_with(run(workdir, target, datasets, "-n", top=top), *expected)


def stop_on_config(config: dict) -> None:
    """check_config, the workflow's first statement, ends Snakemake (exit status 1)."""
    with pytest.raises(SystemExit) as stopped:
        check_config(config, REPO / "config" / "schema.yaml")
    assert stopped.value.code == 1


def with_dataset(**changes) -> dict:
    return {"seed": 0, "datasets": {"mine": {**copy.deepcopy(TINY), **changes}}}


@pytest.mark.parametrize(
    "config, expected",
    [
        (with_dataset(evaluation={**TINY["evaluation"], "models": ["convnet", "vgg16"]}),
         "`datasets.mine.evaluation.models.1` = 'vgg16' is not allowed: 'vgg16' is not one of ['convnet', 'resnetap10', 'resnet18']"),
        (with_dataset(generator={"backend": "dalle"}), "`datasets.mine.generator.backend` = 'dalle' is not allowed: 'dalle' is not one of"),
        (with_dataset(refinement={**TINY["refinement"], "beta": 0}),
         "`datasets.mine.refinement.beta` = 0 is not allowed: 0 is less than or equal to the minimum of 0"),
        (with_dataset(refinement={**TINY["refinement"], "beta": 1.5}), "`datasets.mine.refinement.beta` = 1.5 is not allowed: 1.5 is greater than the maximum of 1"),
        (with_dataset(refinement={**TINY["refinement"], "top_k": 0}), "`datasets.mine.refinement.top_k` = 0 is not allowed: 0 is less than the minimum of 1"),
        ({**with_dataset(), "seeed": 1}, "unknown config key `seeed`: did you mean `seed`?"),
        (with_dataset(detector={**TINY["detector"], "train": {**TINY["detector"]["train"], "epoch": 1}}),
         "unknown config key `datasets.mine.detector.train.epoch`: did you mean `epochs`?"),
        (with_dataset(prototypes={"n_init": 2, "colour": 1}), "unknown config key `datasets.mine.prototypes.colour`: remove it (keys allowed there: n_init)"),
        ({"seed": 0, "datasets": {"mine": {k: v for k, v in TINY.items() if k != "judge"}}}, "config key `datasets.mine.judge` is missing: add it"),
        ({**with_dataset(), "device": "gpu"}, "config key `device` = 'gpu' is not allowed"),
    ],
)
def test_config_errors_are_one_line(config, expected, capsys):
    stop_on_config(config)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expected in err


@pytest.mark.parametrize("overlay", [None, "tests/config/tiny.yaml", "config/retrain_digits_generator.yaml", "config/bench/cifar10_embedded.yaml"])
def test_shipped_configs_pass_the_schema(overlay):
    """The Snakefile's config files, merged as Snakemake merges them, alone and under each overlay."""
    from snakemake.utils import update_config

    config = {}
    for name in ["config.yaml", "imagenette.yaml", "imagewoof.yaml", "cifar10.yaml"]:
        update_config(config, yaml.safe_load((REPO / "config" / name).read_text()))
    if overlay:
        update_config(config, yaml.safe_load((REPO / overlay).read_text()))
    check_config(config, REPO / "config" / "schema.yaml")


def test_num_classes_comes_from_the_folders_when_left_out(workdir):
    data = make_image_folder(workdir / "data" / "no_num_classes", AWKWARD)
    config = dataset(data, synthesis={**TINY["synthesis"], "classes_per_job": 1})
    proc = run(workdir, "results/no_num_classes_ipc1.csv", {"no_num_classes": config}, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one synthesis job per class: the DAG knows all four classes before any job runs
    assert proc.stdout.count("rule synthesize_initial:") == len(AWKWARD), proc.stdout[-3000:]


def test_unwritable_results_folder(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    results = workdir / "results"
    results.mkdir()
    locked = lock_folder(results)
    try:
        proc = run(workdir, "results/digits_ipc2.csv", {}, "-n")
    finally:
        unlock_folder(results, locked)
    assert_stops_with(proc, f"folder {results} is not writable")


def lock_folder(folder: Path) -> bool:
    """Make `folder` unwritable, also for root (which ignores permissions): the immutable attribute."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return False
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        folder.chmod(0o755)
        pytest.skip("running as root on a file system without chattr +i: cannot make a folder unwritable")
    return True


def unlock_folder(folder: Path, locked: bool) -> None:
    if locked:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


# --------------------------------------------------------------------------- inside the jobs
def manifest_target(name: str) -> str:
    return f"results/{name}/data/manifest.parquet"


def test_corrupt_image_is_found_by_prepare_data_and_its_removal_rebuilds_the_manifest(workdir):
    data = make_image_folder(workdir / "data" / "corrupt", ["cat", "dog"])
    good = data / "train" / "dog" / "0.png"
    broken = data / "train" / "dog" / "broken.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(broken, quality=90)
    broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) // 2])  # a cut-off download
    (data / "test" / "cat" / "fake.png").write_text("not a png")
    datasets = {"corrupt": dataset(data)}

    proc = run(workdir, manifest_target("corrupt"), datasets)
    log = workdir / "logs" / "prepare_data" / "corrupt.log"
    listing = "results/corrupt/data/unreadable.txt"
    assert_job_stops_with(proc, log, "2 of 14 image files cannot be read", f"listed with the reason in {listing}", str(broken),
                          "fake.png", "Delete or replace them and re-run")
    assert not (workdir / manifest_target("corrupt")).exists()
    unreadable = pd.read_csv(workdir / listing, sep="\t")  # a log of the job: kept though it failed
    assert unreadable.file.tolist() == [str(broken), str(data / "test" / "cat" / "fake.png")]  # manifest order
    assert unreadable.reason.str.contains("Error").all()

    broken.unlink()
    (data / "test" / "cat" / "fake.png").unlink()
    proc = run(workdir, manifest_target("corrupt"), datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = pd.read_parquet(workdir / manifest_target("corrupt"))
    assert len(manifest) == 12 and str(good) in set(manifest.source)


def test_a_folder_as_it_comes_from_a_mac_a_phone_and_a_camera(workdir):
    """AppleDouble files beside every image, .DS_Store, a hidden notebook folder, a sub-folder of
    a class and a 16-bit scientific-camera PNG: the images are taken (the nested ones as part of
    their class), the system files skipped by name and counted, the 16-bit image scaled."""
    data = make_image_folder(workdir / "data" / "from_mac", ["cat", "dog"])
    for image in sorted(data.rglob("*.png")):
        (image.parent / f"._{image.name}").write_bytes(b"\0\x05\x16\x07\0\x02\0\0Mac OS X")
    for folder in [data, data / "train", data / "train" / "cat"]:
        (folder / ".DS_Store").write_bytes(b"\0\0\0\x01Bud1")
    (data / "train" / ".ipynb_checkpoints").mkdir()
    (data / "train" / "dog" / "batch2").mkdir()
    for i in range(2):
        Image.new("RGB", (9, 9), (0, 200, 0)).save(data / "train" / "dog" / "batch2" / f"{i}.png")
    gradient = np.linspace(0, 65535, 8).astype(np.uint16)[None, :].repeat(8, axis=0)
    deep = data / "train" / "cat" / "camera.png"
    Image.fromarray(gradient).save(deep)
    datasets = {"from_mac": dataset(data)}

    proc = run(workdir, manifest_target("from_mac"), datasets)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    manifest = pd.read_parquet(workdir / manifest_target("from_mac"))
    assert not manifest.source.str.contains("/\\._|DS_Store|ipynb", regex=True).any()
    assert {"train/dog/batch2/0", "train/dog/batch2/1", "train/cat/camera"} <= set(manifest.image_id)
    assert manifest.groupby(["split", "class_name"]).size().to_dict() == {
        ("test", "cat"): 2, ("test", "dog"): 2, ("train", "cat"): 5, ("train", "dog"): 6}
    log = (workdir / "logs" / "prepare_data" / "from_mac.log").read_text()
    assert "skipped 13 system entries by name, never decoded: 12 AppleDouble ._*, 1 .DS_Store" in log  # in the class folders
    assert "took 2 images in 1 sub-folder as part of their class folder" in log and "train/dog/batch2 (2)" in log
    assert "decoded as a viewer shows them: 1 16-bit grey scaled from 0..65535" in log
    pixels = data_module.load_images(manifest[manifest.image_id == "train/cat/camera"], {"kind": "imagefolder"}, 8)
    # round(v * 255 / 65535) of linspace(0, 65535, 8): 0, 36.4, 72.9, ... (was 0 then 255 everywhere: clipped)
    assert pixels[0, 0, 0].tolist() == [0, 36, 73, 109, 146, 182, 219, 255]


def test_manifest_follows_the_class_folders(workdir):
    data = make_image_folder(workdir / "data" / "changing", AWKWARD)
    (data / "train" / "a|b" / "README.txt").write_text("a stray file")
    datasets = {"changing": dataset(data)}
    manifest_path = workdir / manifest_target("changing")

    proc = run(workdir, manifest_target("changing"), datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (workdir / "logs" / "prepare_data" / "changing.log").read_text()
    assert "skipped 1 entry that is not an image file" in log and "train/a|b/README.txt" in log
    assert "running on the CPU" in log
    assert pd.read_parquet(manifest_path).class_name.unique().tolist() == sorted(AWKWARD)  # names as written

    assert "Nothing to be done" in run(workdir, manifest_target("changing"), datasets, "-n").stdout
    (data / "train" / "a|b" / "another.txt").write_text("still not an image")  # not in the manifest
    assert "Nothing to be done" in run(workdir, manifest_target("changing"), datasets, "-n").stdout

    added = data / "train" / "café ñandú" / "new.png"
    Image.new("RGB", (8, 8)).save(added)
    (data / "test" / "my class" / "0.png").unlink()
    proc = run(workdir, manifest_target("changing"), datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sources = set(pd.read_parquet(manifest_path).source)
    assert str(added) in sources and str(data / "test" / "my class" / "0.png") not in sources


def test_gpu_asked_for_where_there_is_none(workdir):
    """`device: cuda` without a GPU stops the first job that claims one (rule `gpu` resource) with
    one line; the jobs before it, which claim none and so run on the CPU as they would on a
    cluster's CPU allocation, run and keep their outputs."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    data = make_image_folder(workdir / "data" / "on_gpu", ["cat", "dog"])
    proc = run(workdir, "results/on_gpu/latents.parquet", {"on_gpu": dataset(data)}, top={"device": "cuda"})
    # the tiny config trains its generator: prepare_generator is the first job claiming a GPU
    log = workdir / "logs" / "prepare_generator" / "on_gpu.log"
    assert_job_stops_with(proc, log, "config `device: cuda` but torch sees no CUDA GPU", "set `device: auto`")
    assert (workdir / manifest_target("on_gpu")).is_file()  # prepare_data claims no GPU: it ran
    assert not (workdir / "results" / "on_gpu" / "generator").exists()


def test_bad_input_leaves_computed_artifacts_untouched(workdir):
    """Bad input found while the DAG is built stops a real run (not -n) before anything is written."""
    data = make_image_folder(workdir / "data" / "kept", ["cat", "dog", "owl"])
    good = dataset(data)
    assert run(workdir, manifest_target("kept"), {"kept": good}).returncode == 0
    results = workdir / "results" / "kept"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in results.rglob("*") if p.is_file()}

    bad_configs = [
        {**good, "num_classes": 4},
        {**good, "refinement": {**TINY["refinement"], "beta": 0}},
        {**{k: v for k, v in good.items() if k != "judge"}, "judges": TINY["judge"]},
    ]
    for config in bad_configs:
        assert_stops_with(run(workdir, "results/kept_ipc1.csv", {"kept": config}))
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in results.rglob("*") if p.is_file()}
    assert after == before


# --------------------------------------------------------------------------- class names in reports
def test_class_names_are_escaped_in_the_anomaly_report(tmp_path):
    from detdistill.report import anomaly_markdown

    names = ["a|b", "x*y_z", "café [1]", "007"]
    frame = pd.DataFrame({
        "image_id": [f"c{i}-p000" for i in range(4)], "label": [0, 1, 2, 3], "prototype_id": [0, 0, 0, 0],
        "predicted": [1, 1, 2, 3], "p_target": [0.1, 0.99, 0.5, 0.98],
        "reason": ["label_mismatch", "normal", "low_confidence", "normal"],
        "defective": [True, False, True, False], "image_path": [str(tmp_path / f"c{i}-p000.png") for i in range(4)],
    })
    real = frame.assign(defective=False, reason="normal")
    report = anomaly_markdown(frame, real, 0.9, names, tmp_path)

    rows = markdown_table_rows(report)
    assert len(rows) == 2 + 4 + 2  # two headers, four classes, two flagged images
    assert all(len(row) == 5 for row in rows)  # escaped pipes in names do not add cells
    assert ["a\\|b", "1", "1", "1", "0"] in rows and ["x\\*y\\_z", "1", "0", "0", "0"] in rows
    assert ["café \\[1\\]", "1", "1", "0", "1"] in rows
    assert ["007", "1", "0", "0", "0"] in rows  # text stays text: not parsed into the number 7
    flagged = next(row for row in rows if "`c0-p000`" in row[0])
    assert flagged[1:] == ["a\\|b", "x\\*y\\_z", "0.100", "label_mismatch"]


# --------------------------------------------------------------------------- generated images
def test_unreadable_generated_png_is_named(tmp_path):
    """A truncated PNG in a synthetic set (a disk filled while it was copied) is named with the fix,
    the same error as an unreadable dataset image, not PIL's bare exception."""
    from detdistill.data import DataError, load_png_images

    good, broken = tmp_path / "c0-p000.png", tmp_path / "c0-p001.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(good)
    broken.write_bytes(good.read_bytes()[:20])
    assert load_png_images([good], 4).shape == (1, 3, 4, 4)
    with pytest.raises(DataError, match=r"cannot read image .*c0-p001\.png: .*Delete or replace"):
        load_png_images([good, broken])
