"""Models trained from scratch on each set (and on the whole train split) and tested on the real
test split, and the tables of their accuracies."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
import torch

from .. import data, io
from ..device import pick_device, seed_everything

log = logging.getLogger("detdistill")


def epochs_for(eval_cfg: dict, ipc: int | None, model: str) -> int:
    """Minimax-style epochs by IPC: `epochs_by_ipc` is a list of [max IPC, epochs] pairs, the first
    pair whose max IPC >= IPC applies (else the last), times `epoch_scale`; without a table,
    `train.epochs`. The full-data run (ipc None) uses `full_epochs`. `model_epoch_scale` then
    shortens costly models to fit a time budget (reported with the results)."""
    if ipc is None:
        epochs = eval_cfg.get("full_epochs") or eval_cfg["train"]["epochs"]
    elif eval_cfg.get("epochs_by_ipc"):
        epochs = _by_ipc(eval_cfg["epochs_by_ipc"], ipc) * eval_cfg.get("epoch_scale", 1.0)
    else:
        epochs = eval_cfg["train"]["epochs"]
    return max(1, round(epochs * eval_cfg.get("model_epoch_scale", {}).get(model, 1.0)))


def batch_size_for(eval_cfg: dict, ipc: int | None) -> int:
    """RDED-style batch size by IPC: `batch_size_by_ipc` is a list of [max IPC, batch size] pairs
    read as `epochs_by_ipc` is; without it (and for the full-data run), `train.batch_size`."""
    if ipc is None or not eval_cfg.get("batch_size_by_ipc"):
        return eval_cfg["train"]["batch_size"]
    return _by_ipc(eval_cfg["batch_size_by_ipc"], ipc)


def _by_ipc(table: list, ipc: int):
    """The value of the first [max IPC, value] pair (by max IPC) with max IPC >= `ipc`, else the last's."""
    table = sorted(table)
    return next((value for max_ipc, value in table if ipc <= max_ipc), table[-1][1])


def evaluate(*, set_path, manifest_path, source_cfg: dict, model_name: str, eval_cfg: dict, ipc: int, out_path) -> None:
    """Train `model_name` from scratch on a distilled or baseline set of `ipc` images per class,
    once per seed; final-epoch accuracy on the real test split (see `_train_and_test`). With
    `evaluation.teacher` (a file: the workflow resolves `detector` to its checkpoint), the runs
    learn the teacher's soft labels."""
    _train_and_test(pd.read_parquet(set_path), pd.read_parquet(manifest_path), source_cfg=source_cfg,
                    model_name=model_name, eval_cfg=eval_cfg, ipc=ipc, out_path=out_path,
                    teacher_path=eval_cfg.get("teacher"))


def load_teacher(path, num_classes: int, device):
    """The soft-label teacher, a classifier saved by detdistill (the detector, or a user's file)."""
    from ..train import load_model, read_model_meta

    try:
        classes = read_model_meta(path)["build_args"]["num_classes"]
    except Exception as error:
        raise data.DataError(f"evaluation.teacher {path}: not a classifier saved by detdistill ({error}); give "
                             "`detector` or a .safetensors file written by detdistill.train.save_model") from None
    if classes != num_classes:
        raise data.DataError(f"evaluation.teacher {path} predicts {classes} classes, the dataset has {num_classes}: "
                             "give a teacher trained on this dataset's classes")
    return load_model(path, device)


def evaluate_full(*, manifest_path, source_cfg: dict, model_name: str, eval_cfg: dict, out_path,
                  seeds: list[int] | None = None) -> None:
    """The full-data upper bound: `model_name` trained on the whole real train split for
    `evaluation.full_epochs`, once per seed (see `_train_and_test`); `seeds` (default
    `evaluation.seeds`) picks some of them, as rule evaluate_full_seed's one seed a job."""
    manifest = pd.read_parquet(manifest_path)
    set_frame = data.train_split(manifest).assign(kind="real", method="full")
    _train_and_test(set_frame, manifest, source_cfg=source_cfg, model_name=model_name, eval_cfg=eval_cfg, ipc=None,
                    out_path=out_path, seeds=seeds)


def merge_seed_runs(paths: list, *, seeds: list[int], out_path) -> None:
    """The per-seed tables of `evaluate_full(seeds=[s])` as one table, rows in `seeds` order: the
    table `evaluate_full` writes when it trains those seeds itself (a run depends on its seed only).
    A table that is not one row of its seed stops the merge, naming the file."""
    frames = [pd.read_parquet(path) for path in paths]
    if len(frames) != len(seeds):
        raise data.DataError(f"{out_path}: {len(frames)} per-seed tables for the seeds {list(seeds)}; re-run the "
                             "full-data jobs (rule evaluate_full_seed)")
    for path, frame, seed in zip(paths, frames, seeds):
        if "seed" not in frame or len(frame) != 1 or int(frame.seed.iloc[0]) != int(seed):
            found = frame.seed.tolist() if "seed" in frame else "no seed column"
            raise data.DataError(f"{path}: expected the full-data run of seed {seed} alone, found seeds {found}; "
                                 "delete the file and re-run (rule evaluate_full_seed)")
    io.write_parquet(pd.concat(frames, ignore_index=True), out_path)


def _train_and_test(set_frame: pd.DataFrame, manifest: pd.DataFrame, *, source_cfg: dict, model_name: str, eval_cfg: dict,
                    ipc: int | None, out_path, teacher_path=None, seeds: list[int] | None = None) -> None:
    """Train `model_name` from scratch on a set, once per seed; final-epoch accuracy on the real
    test split (and, with `evaluation.report_best_epoch`, the test-selected best epoch's), and each
    run's learning curve (detdistill.learning_curves)."""
    from ..learning_curves import run_columns
    from ..train import accuracy

    method = set_frame.method.iloc[0]
    trained = train_on_set(set_frame, manifest, source_cfg=source_cfg, model_name=model_name, eval_cfg=eval_cfg,
                           ipc=ipc, teacher_path=teacher_path, seeds=seeds,
                           track_best=bool(eval_cfg.get("report_best_epoch")))
    rows = []
    for run, (seed, model) in enumerate(zip(trained.seeds, trained.models)):
        acc = accuracy(model, trained.test_images, trained.test_labels, trained.device)
        log.info("%s %s seed %d: final-epoch test accuracy %.4f", method, model_name, seed, acc)
        rows.append({"method": method, "model": model_name, "seed": seed, "train_images": len(set_frame),
                     "epochs": trained.epochs, "test_accuracy": acc,
                     **(trained.tracker.best(run) if trained.tracker else {}),
                     **run_columns(trained.histories[run], trained.tracker.curves[run] if trained.tracker else None, acc,
                                   trained.epochs)})
    io.write_parquet(pd.DataFrame(rows), out_path)


@dataclass
class TrainedOnSet:
    """Models trained on one set (`train_on_set`), with the test split as they see it."""

    seeds: list[int]
    models: list
    test_images: torch.Tensor  # uint8 (N,3,crop,crop), centre-cropped as the evaluation tests
    test_labels: torch.Tensor
    epochs: int
    device: torch.device
    tracker: object | None  # best_epoch.BestEpochTracker when asked for
    histories: list[list[dict]]  # per run, train_classifiers' per-epoch history (loss, lr)


def evaluation_model(eval_cfg: dict, model_name: str, num_classes: int):
    """A freshly initialised `model_name` as an evaluation builds it: at `image_size`, at its own
    width (`evaluation.width`, one integer or a mapping model -> width), in the configured
    architecture variant and input normalisation."""
    from ..models import build_model, model_width

    return build_model(model_name, num_classes, eval_cfg["image_size"], model_width(eval_cfg.get("width"), model_name),
                       architecture=eval_cfg.get("architecture", "detdistill"),
                       normalization=eval_cfg.get("normalization", "half"))


def train_on_set(set_frame: pd.DataFrame, manifest: pd.DataFrame, *, source_cfg: dict, model_name: str, eval_cfg: dict,
                 ipc: int | None, teacher_path=None, seeds: list[int] | None = None,
                 track_best: bool = False, test: tuple[torch.Tensor, torch.Tensor] | None = None) -> TrainedOnSet:
    """The evaluation protocol's training: `model_name` from scratch on a set, one run per seed
    (`evaluation.seeds` unless `seeds` is given: a run's weights depend on its seed only, so the
    run of seed s is the evaluation's run of seed s, bit for bit on the CPU). Images are loaded at
    `load_size` (short side, centre-cropped; Minimax and RDED: `image_size`, no larger load);
    training crops (RandomResizedCrop) and the test centre crop are `image_size`. `test`: the
    (images, labels) of an earlier call on the same manifest, so a job training on several sets
    reads the test split once. The models are `evaluation_model`'s."""
    from torchvision.transforms.v2 import functional as TF

    from ..train import EngineOptions, TrainConfig, accuracy, train_classifiers

    crop_size = eval_cfg["image_size"]
    load_size = eval_cfg.get("load_size") or crop_size
    method = set_frame.method.iloc[0]
    images = data.load_set_images(set_frame, source_cfg, load_size)
    labels = data.label_tensor(set_frame)
    if test is None:
        test_rows = manifest[manifest.split == "test"]
        test = TF.center_crop(data.load_images(test_rows, source_cfg, load_size), [crop_size, crop_size]), data.label_tensor(test_rows)
    test_images, test_labels = test
    num_classes = manifest.label.nunique()
    device = pick_device()
    epochs = epochs_for(eval_cfg, ipc, model_name)
    seeds = [int(s) for s in (eval_cfg["seeds"] if seeds is None else seeds)]
    # the seed field is per run: train_classifiers seeds each run's data order and augmentation
    cfg = TrainConfig.from_dict({**eval_cfg["train"], "epochs": epochs, "crop_size": crop_size,
                                 "batch_size": batch_size_for(eval_cfg, ipc)})
    models = []
    for seed in seeds:
        seed_everything(seed)  # each model's initialisation
        models.append(evaluation_model(eval_cfg, model_name, num_classes))
    # evaluation.report_best_epoch: test accuracy at some epochs too (test-selected, reported apart)
    tracker = measured = None
    if track_best:
        from ..best_epoch import BestEpochTracker, measured_epochs

        tracker = BestEpochTracker(len(models), lambda i: accuracy(models[i], test_images, test_labels, device))
        measured = measured_epochs(eval_cfg, epochs)
    teacher = None if teacher_path is None else load_teacher(teacher_path, num_classes, device)
    options = EngineOptions(stack=eval_cfg.get("stack_seeds", "auto"), desc=f"{method}/{model_name}", log=log.info,
                            on_evaluate=tracker, evaluate_at=measured, teacher=teacher,
                            temperature=eval_cfg.get("teacher_temperature", 1.0))
    histories = train_classifiers(models, seeds, images, labels, cfg, device, options)
    return TrainedOnSet(seeds, models, test_images, test_labels, epochs, device, tracker, histories)


def gradcam(*, set_paths: dict, manifest_path, source_cfg: dict, eval_cfg: dict, gradcam_cfg: dict, ipc: int,
            title: str, out_png, out_table) -> None:
    """Grad-CAM of `gradcam.model` trained on each set of `set_paths` (method -> set file) by the
    evaluation protocol with the first evaluation seed (the evaluation's own run of that seed),
    on the first `images_per_class` test images of each class: the picture, and per image and
    method the model's prediction and softmax of the true class, beside the model's accuracy on
    the whole test split (as the evaluation table reports it for that seed)."""
    from ..gradcam import class_activation_maps, gradcam_figure
    from ..train import accuracy, predict, to_float

    manifest = pd.read_parquet(manifest_path)
    test = manifest[manifest.split == "test"]
    shown = test.groupby("label", sort=True).head(gradcam_cfg["images_per_class"]).sort_values("label", kind="stable")
    positions = [test.index.get_loc(index) for index in shown.index]
    model_name, seed = gradcam_cfg["model"], int(eval_cfg["seeds"][0])
    rows, panel, test_split = [], {}, None
    for method, set_path in set_paths.items():
        trained_on = pd.read_parquet(set_path)
        trained = train_on_set(trained_on, manifest, source_cfg=source_cfg, model_name=model_name,
                               eval_cfg=eval_cfg, ipc=ipc, teacher_path=eval_cfg.get("teacher"), seeds=[seed], test=test_split)
        test_split = trained.test_images, trained.test_labels
        model, device = trained.models[0], trained.device
        test_accuracy = accuracy(model, trained.test_images, trained.test_labels, device)
        images = to_float(trained.test_images[positions])
        labels = trained.test_labels[positions]
        predicted = predict(model, images, device)["probs"]
        p_label = predicted.gather(1, labels.view(-1, 1).to(predicted.device)).squeeze(1).cpu()
        panel[method] = {"cams": class_activation_maps(model, images, labels), "predicted": predicted.argmax(1).cpu(),
                         "p_label": p_label}
        log.info("%s %s seed %d: test accuracy %.4f (Grad-CAM model)", method, model_name, seed, test_accuracy)
        rows += [{"method": method, "model": model_name, "seed": seed, "train_images": len(trained_on),
                  "epochs": trained.epochs, "image_id": image_id, "label": int(label),
                  "predicted": int(pred), "p_label": float(p), "test_accuracy": test_accuracy}
                 for image_id, label, pred, p in zip(shown.image_id, labels, panel[method]["predicted"], p_label)]
    io.write_parquet(pd.DataFrame(rows), out_table)
    figure = gradcam_figure(images, labels.tolist(), data.class_names(manifest), panel, title)
    io.write_png(figure, out_png)


def aggregate(*, eval_paths, out_csv, out_summary, out_paired, out_paired_md, title: str, ipc: int | None = None,
              comparison: dict | None = None, published_path=None) -> None:
    """The per-run table, the per-(model, method) summary, and the paired per-seed differences
    (detdistill.stats) as CSV and markdown. `comparison`: `detdistill.published.counterpart`'s
    answer (the headline figure, and whether the paper has figures for these runs, read from
    `published_path`); the summary gains the headline columns and the published ones beside ours."""
    from .. import best_epoch, published
    from ..learning_curves import without_curves
    from ..stats import paired_by_metric, paired_markdown

    # the learning curves (list columns) are rule learning_curves' long table, not this CSV's
    table = without_curves(pd.concat([pd.read_parquet(p) for p in sorted(map(str, eval_paths))], ignore_index=True))
    table["test_accuracy_pct"] = 100 * table.test_accuracy
    table = best_epoch.add_percent_column(table)
    table = table.sort_values(["model", "method", "seed"]).reset_index(drop=True)
    io.write_csv(table, out_csv)
    summary = (
        table.groupby(["model", "method"], sort=True)
        .test_accuracy_pct.agg(mean="mean", std="std", seeds="count")
        .reset_index()
        .round({"mean": 2, "std": 2})
    )
    test_selected = best_epoch.summary_columns(table, ["model", "method"])
    if test_selected is not None:  # beside the final-epoch columns, never instead of them
        summary = summary.merge(test_selected, on=["model", "method"], how="left", validate="one_to_one")
    comparison = comparison or published.NOT_COMPARED
    summary = published.add_headline(summary, table, comparison["headline"])
    paper = published.load(published_path) if comparison.get("dataset") else None
    summary = published.beside_published(summary, table, comparison, ipc, paper)
    io.write_csv(summary, out_summary)
    paired = paired_by_metric(table)
    io.write_csv(paired, out_paired)
    io.write_text(paired_markdown(paired, title, comparison["headline"], published.published_section(summary, comparison)),
                  out_paired_md)


def replicates(*, dataset: str, ipc: int, seeds: list[int], eval_paths: list[list[str]], out_csv, out_paired, out_md) -> None:
    """`eval_paths[i]`: the evaluation tables of construction seed `seeds[i]` (detdistill.replicates)."""
    from ..replicates import replicate_markdown, replicate_table

    runs = {seed: pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True) for seed, paths in zip(seeds, eval_paths, strict=True)}
    summary, paired = replicate_table(runs)
    io.write_csv(summary, out_csv)
    io.write_csv(paired, out_paired)
    io.write_text(replicate_markdown(dataset, ipc, seeds, summary, paired), out_md)


def learning_curves(*, eval_paths, out_csv, out_png, title: str) -> None:
    """The learning curves of every evaluation run of one dataset and IPC (detdistill.learning_curves):
    the long table and its figure, methods and models in the order of `eval_paths`."""
    from .. import learning_curves as curves

    runs = pd.concat([pd.read_parquet(p) for p in map(str, eval_paths)], ignore_index=True)
    table = curves.long_table(runs)
    not_recorded = table[~table.curve_recorded]
    if len(not_recorded):
        log.info("%d runs without a recorded learning curve (tables written before it)", len(not_recorded))
    io.write_csv(table, out_csv)
    io.write_bytes(curves.figure(table, title, methods=list(dict.fromkeys(runs.method)), models=list(dict.fromkeys(runs.model))),
                   out_png)
