"""Peak memory of every workflow stage (bench/memory_cifar10.py): each job's exact peak from its log,
per rule the largest job, evaluations raised to the config's seeds, and the resident images of the
same stages projected to ImageNette's size."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pandas as pd

from detdistill.stages.classifiers import SCORE_CHUNK
from detdistill.workflow import PEAK_RSS_PREFIX

from .workflow_run import RULE_ORDER, job_table

#: the dataset the benchmark runs (its benchmark files' and logs' prefix)
DATASET = "cifar10"
LIMIT_MIB = 4096
#: counts that memory does not depend on, cut to their minimum (merged into the bench config)
MINIMAL_WORK = {
    "generator": {"train": {"vae_steps": 10, "unet_steps": 10}},
    "synthesis": {"steps": 10, "classes_per_job": 0},
    "detector": {"train": {"epochs": 1}},
    "judge": {"train": {"epochs": 1}},
    # 1 epoch for every set (max(1, round(epochs x scale))) and for the full data
    "evaluation": {"epoch_scale": 1e-6, "full_epochs": 1, "model_epoch_scale": {}, "seeds": [0]},
}

#: ImageNette (fastai imagenette2) at config/imagenette.yaml's sizes, for the projection
IMAGENETTE = {"train": 9_469, "test": 3_925, "image_size": 256, "eval_load_size": 256}
#: images the encode stage decodes at a time (detdistill.stages.generation.encode_latents' batch_size)
ENCODE_CHUNK = 256


def deep_merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` merged in, recursively; an empty mapping in `changes` empties the key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def memory_settings(bench_settings: dict, data_root: Path) -> dict:
    """The bench config's dataset entry with every count memory does not depend on at its minimum."""
    settings = deep_merge(bench_settings, MINIMAL_WORK)
    settings["source"]["root"] = str(data_root)
    return settings


# --------------------------------------------------------------------------- measure
def exact_peak_mib(log_path: Path) -> float | None:
    """The kernel high-water mark a job wrote as its log's last line (None: the job did not finish)."""
    if not log_path.is_file():
        return None
    found = re.findall(re.escape(PEAK_RSS_PREFIX) + r" ([0-9.]+) MiB", log_path.read_text())
    return float(found[-1]) if found else None


def memory_jobs(workdir: Path) -> pd.DataFrame:
    """One row per job: rule, job, wall seconds, Snakemake's sampled max_rss and the exact peak (MiB).
    Log files are named as the benchmark files (logs/<rule>/<job>.log)."""
    jobs = job_table(workdir / "benchmarks", DATASET)
    peaks = [exact_peak_mib(workdir / "logs" / rule / f"{job}.log") for rule, job in zip(jobs.rule, jobs.job)]
    jobs["peak_rss_mib"] = pd.Series(peaks, index=jobs.index, dtype="float64")  # NaN: no peak line
    return jobs.rename(columns={"max_rss_mb": "sampled_max_rss_mib"})


def rule_table(jobs: pd.DataFrame) -> pd.DataFrame:
    order = {rule: i for i, rule in enumerate(RULE_ORDER)}
    rows = []
    for rule, group in jobs.groupby("rule"):
        at_config_seeds_by_job = group.get("peak_at_config_seeds_mib", group.peak_rss_mib)
        largest = group.loc[at_config_seeds_by_job.fillna(group.sampled_max_rss_mib).idxmax()]
        peak, at_config_seeds = group.peak_rss_mib.max(), at_config_seeds_by_job.max()
        rows.append({
            "rule": rule, "jobs": len(group), "wall_s": round(float(group.seconds.sum()), 1),
            "sampled_max_rss_mib": round(float(group.sampled_max_rss_mib.max()), 1),
            "peak_rss_mib": None if pd.isna(peak) else round(float(peak), 1),
            "peak_at_config_seeds_mib": None if pd.isna(at_config_seeds) else round(float(at_config_seeds), 1),
            "largest_job": largest.job,
            "under_4_gib": None if pd.isna(at_config_seeds) else bool(at_config_seeds < LIMIT_MIB),
        })
    return pd.DataFrame(rows).sort_values("rule", key=lambda s: s.map(lambda r: order.get(r, len(order)))).reset_index(drop=True)


def seed_model_mib(model: str, num_classes: int, evaluation: dict) -> float:
    """MiB of one evaluation model's float32 parameters: what each further seed adds to an evaluate
    job on the CPU, where a job builds every seed's model and trains them in turn (the optimizer
    state of a finished run is freed)."""
    from detdistill.models import build_model, model_width

    net = build_model(model, num_classes, evaluation["image_size"], model_width(evaluation.get("width"), model))
    return sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20


def with_config_seeds(jobs: pd.DataFrame, settings: dict, num_classes: int, config_seeds: int) -> pd.DataFrame:
    """Add `peak_at_config_seeds_mib` per job: an evaluation job's peak with the bench config's
    `config_seeds` seeds (its model's parameters once more per further seed than `settings` ran);
    any other job's peak as measured."""
    further = config_seeds - len(settings["evaluation"]["seeds"])
    extra = []
    for rule, job in zip(jobs.rule, jobs.job):
        model = next((m for m in settings["evaluation"]["models"] if job.endswith(f"_{m}")), None)
        evaluation = rule in ("evaluate", "evaluate_full") and model and further > 0
        extra.append(further * seed_model_mib(model, num_classes, settings["evaluation"]) if evaluation else 0.0)
    return jobs.assign(peak_at_config_seeds_mib=jobs.peak_rss_mib + extra)


# --------------------------------------------------------------------------- projection
def _images_mib(count: int, size: int) -> float:
    """uint8 RGB images held at once."""
    return count * 3 * size * size / 2**20


def resident_images(counts: dict) -> dict[str, tuple[float, str]]:
    """MiB of images a job of each rule holds at once, and what they are, for a dataset of
    `counts` (train, test, image_size, eval_load_size). Rules not listed hold no images."""
    train, test, size, load = counts["train"], counts["test"], counts["image_size"], counts["eval_load_size"]
    score = _images_mib(SCORE_CHUNK, size)
    return {
        "train_classifier": (_images_mib(train, size) + _images_mib(test, size), f"train {train:,} + test {test:,} at {size} px"),
        "evaluate_full": (_images_mib(train, load) + _images_mib(test, load), f"train {train:,} + test {test:,} at {load} px"),
        "evaluate": (_images_mib(test, load), f"test {test:,} at {load} px (the set itself: IPC x classes)"),
        "encode_latents": (_images_mib(ENCODE_CHUNK, size), f"streamed: {ENCODE_CHUNK} at a time at {size} px"),
        "score_initial": (score, f"streamed: at most {SCORE_CHUNK:,} PNGs at a time at {size} px"),
        "generate_candidates": (score, f"scored {SCORE_CHUNK:,} PNGs at a time at {size} px (+ one generation batch)"),
    }


def projection(rules: pd.DataFrame, cifar_counts: dict) -> list[dict]:
    """ImageNette's resident images per rule, and a projected peak: the CIFAR-10 job's exact peak
    less its own resident images (torch, model, one batch) plus ImageNette's."""
    here, there = resident_images(cifar_counts), resident_images(IMAGENETTE)
    peaks = dict(zip(rules.rule, rules.peak_rss_mib))
    rows = []
    for rule, (mib, what) in there.items():
        peak = peaks.get(rule)
        base = None if peak is None or pd.isna(peak) else peak - here[rule][0]
        rows.append({"rule": rule, "imagenette_images_mib": round(mib, 1), "what": what,
                     "cifar10_rest_mib": None if base is None else round(base, 1),
                     "projected_peak_mib": None if base is None else round(base + mib, 1)})
    return rows


# --------------------------------------------------------------------------- report
def markdown(report: dict) -> str:
    rules = pd.DataFrame(report["rules"])
    largest = rules.peak_at_config_seeds_mib.max()
    lines = [
        "# Peak memory per stage: CIFAR-10, 50,000 training images, CPU",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}",
        f"- command: `{report['command']}` (snakemake: `{report['run']['command']}`, {report['run']['seconds']:.0f} s, exit {report['run']['returncode']})",
        (f"- data: {report['data']['train']:,} train / {report['data']['test']:,} test JPEGs (../shared/data/cifar10-jpeg.tar.gz), "
         f"config/bench/cifar10_embedded.yaml with every training and sampling count at its minimum ({json.dumps(MINIMAL_WORK)}); "
         "memory does not depend on those counts (see the script's docstring)"),
        f"- largest job{' (of those that finished)' if not_reached(rules) else ''}: **{largest:,.0f} MiB** ({'under' if largest < LIMIT_MIB else 'OVER'} the 4 GiB = {LIMIT_MIB} MiB target)",
        "",
        "Per rule, the largest of its jobs (MiB). `peak_rss_mib` is the kernel's high-water mark of the job's process",
        "(exact, from the job's log); `sampled_max_rss_mib` is Snakemake's `benchmark:` file (psutil samples of the job's",
        "process tree, 30 s apart after a job's first 15 s, so it can miss a short peak). The evaluations ran one seed;",
        "`peak_at_config_seeds_mib` adds the parameters of the config's other seeds' models (on the CPU a job builds every",
        "seed's model and trains them in turn), and is the figure held against 4 GiB. Up to two jobs ran at once",
        "(`--cores 2`, one thread each): the machine held the sum of two.",
        "",
        rules.to_markdown(index=False),
        "",
        *not_reached(rules),
        "## Projected at ImageNette's size (9,469 train / 3,925 val images at 256 px)",
        "",
        "Images held at once by the stages that load images, as uint8 (N x 3 x 256 x 256 bytes). Projected peak = the",
        "CIFAR-10 job's exact peak less its own resident images (what is left: Python, torch, the model, one batch)",
        "plus ImageNette's. Not included: activations of 224-256 px batches (larger than at 16-32 px; on a GPU they live",
        "in device memory), and Stable Diffusion's 2 GB of weights in the generation stages (sd15 backend). The rest",
        "carries CIFAR-10 specifics: train_classifier's is the detector's (a ConvNet whose train-accuracy pass holds 1,024",
        "features of each of the 50k images, about 200 MiB, twice while concatenated), more than ImageNette's 9,469 x 512.",
        "A stage over 4 GiB here would get under it by loading the test images only after training, once the train images",
        "are released (train_classifier, evaluate_full: peak = max(train, test) instead of their sum, -736 MiB).",
        "",
        pd.DataFrame(report["imagenette_projection"]).to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)


def not_reached(rules: pd.DataFrame) -> list[str]:
    """A line naming the workflow's rules that finished no job (a stopped or failed run), if any."""
    missing = [rule for rule in RULE_ORDER if rule not in set(rules.rule)]
    if not missing:
        return []
    return [f"**Not measured** (no job of theirs finished: the run was stopped or failed): {', '.join(missing)}.", ""]


