"""Label-noise experiments: one config entry under `noise_experiments` becomes several
datasets ("arms") that differ only in their training labels and in whether the trust stage runs,
and one table that puts them side by side.

For an experiment `E` on the dataset entry `B` with noise settings S1, S2, ...:

- `E_clean`: B with its true labels, the plain pipeline (the reference row; `clean_arm: false`
  leaves it out);
- `E_S`: B with the noise of setting S on its train split, the plain pipeline;
- `E_S_trust`: the same noisy labels, with the trust stage (detdistill.trust) in front of the
  generator, the prototypes and the detector.

Every arm is B's entry with the experiment's `overrides` merged in (the same sizes for every arm),
so the arms share seeds, image splits, the noise draw of a setting and every setting but the two
under study. The judge is the base dataset's, trained once on the true labels, unless the
overrides change its images or settings. Each arm is an ordinary dataset: its stages, caches and
targets are the usual ones (results/E_S_trust_ipc10.csv, its anomaly report, its trust rounds).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from .baselines import SELECTION_METHODS
from .refine import METHODS as REFINEMENT_METHODS

CLEAN = "clean"
#: a setting's trust-aware arm is its plain arm's dataset name with this suffix (see `arms`)
TRUST_SUFFIX = "_trust"
#: evaluations that read only the images and their observed labels (no detector, no generator): a
#: trust-aware arm reuses its plain arm's (`real_runs_of`, see `same_real_runs`)
LABEL_ONLY_METHODS = ["random"]
#: what a trust-aware arm reports from its plain arm (the label-only sets and the full-data runs):
#: its trust - plain difference is 0 by construction, so the paired table leaves it out
FROM_PLAIN_ARM = [*LABEL_ONLY_METHODS, "full"]
#: the paired table's method order: the refinement methods, then the real-data rows
PAIRED_ORDER = [*REFINEMENT_METHODS, *SELECTION_METHODS, *FROM_PLAIN_ARM]
TRUST_MINUS_PLAIN, CLEAN_MINUS_PLAIN, CLEAN_MINUS_TRUST = "trust - plain", "clean - plain", "clean - trust"
PLAIN, TRUST, CLEAN_LABELS = "plain, noisy labels", "trust-aware, noisy labels", "plain, clean labels"
#: the methods the markdown shows per model (the CSV has every method of the arms' summaries)
SHOWN_METHODS = ["d4m", "conf_sim", "random", "full"]


class ExperimentError(ValueError):
    """A `noise_experiments` entry that cannot be expanded (the message names the key and the fix)."""


def arms(name: str, spec: dict) -> list[dict]:
    """The arms of experiment `name` in table order: the clean reference (unless `clean_arm` is
    false), then per setting the plain and the trust-aware pipeline. Each: dataset name, setting,
    pipeline, noise spec, trust."""
    out = []
    if spec.get("clean_arm", True):
        out.append({"dataset": f"{name}_{CLEAN}", "setting": CLEAN, "pipeline": CLEAN_LABELS, "noise": None, "trust": False})
    for setting, noise in spec["settings"].items():
        out.append({"dataset": f"{name}_{setting}", "setting": setting, "pipeline": PLAIN, "noise": noise, "trust": False})
        out.append({"dataset": f"{name}_{setting}{TRUST_SUFFIX}", "setting": setting, "pipeline": TRUST, "noise": noise, "trust": True})
    return out


def expand_noise_experiments(config: dict) -> None:
    """Add every experiment's arms to `config["datasets"]` (in place). Raises ExperimentError for
    a base dataset that is not configured, a setting named `clean`, or an arm name already taken."""
    from snakemake.utils import update_config

    from .schema import with_defaults

    datasets = config["datasets"]
    experiments = config.get("noise_experiments", {})
    for name in list(experiments):
        # defaults filled here (the rules read `ipc`), from config/schema.yaml as everywhere
        spec = experiments[name] = with_defaults("noise_experiment", experiments[name], f"noise_experiments.{name}")
        base = spec["dataset"]
        if base not in datasets:
            raise ExperimentError(
                f"`noise_experiments.{name}.dataset` is {base!r}, which is not under `datasets:`: name a configured "
                f"dataset ({', '.join(sorted(datasets))}) or add its entry"
            )
        if CLEAN in spec["settings"]:
            raise ExperimentError(
                f"`noise_experiments.{name}.settings.{CLEAN}`: the clean-label arm is always built; give the setting another name"
            )
        for arm in arms(name, spec):
            if arm["dataset"] in datasets:
                raise ExperimentError(
                    f"`noise_experiments.{name}` would add dataset {arm['dataset']!r}, which `datasets:` already has: "
                    "rename the experiment or the dataset"
                )
            entry = copy.deepcopy(datasets[base])
            update_config(entry, copy.deepcopy(spec["overrides"]))
            if "replicates" not in spec["overrides"]:  # an arm is built once unless the experiment asks
                entry.pop("replicates", None)
            entry["source"].pop("label_noise", None)
            if arm["noise"] is not None:
                entry["source"]["label_noise"] = copy.deepcopy(arm["noise"])
            entry["trust"] = {**copy.deepcopy(spec["trust"]), "enabled": arm["trust"]}
            if same_judge(entry, datasets[base]):
                entry["judge_of"] = datasets[base].get("judge_of") or base
            plain = f"{name}_{arm['setting']}"  # built just before its trust-aware arm (arms' order)
            if arm["trust"] and same_real_runs(entry, datasets.get(plain)):
                entry["real_runs_of"] = plain
            datasets[arm["dataset"]] = entry


def same_real_runs(trust_arm: dict, plain_arm: dict | None) -> bool:
    """Whether the trust-aware arm's random-subset and full-data evaluations would be the plain
    arm's, byte for byte: they read the images, the observed labels and the evaluation settings,
    never the trust stage, so the two entries must agree in everything but `trust`."""

    def without_trust(entry: dict) -> dict:
        return {k: v for k, v in entry.items() if k != "trust"}

    return plain_arm is not None and without_trust(trust_arm) == without_trust(plain_arm)


def same_judge(arm: dict, base: dict) -> bool:
    """Whether the arm's judge would be the base dataset's, byte for byte: the judge trains on the
    true labels (`clean_label`) of the train split, so label noise does not reach it; the images,
    split and judge settings must agree (the experiment's `overrides` may change them). A
    validation split is drawn by true class (detdistill.data.carve_validation), so every arm holds
    out the same images whatever its noise."""

    def images(entry: dict) -> dict:
        return {k: v for k, v in entry["source"].items() if k != "label_noise"}

    return (arm["judge"], arm["image_size"], images(arm)) == (base["judge"], base["image_size"], images(base))


def generator_note(entry: dict) -> str:
    """What the arms' generator is, for the experiment's markdown: the caveat differs by backend."""
    generator = entry["generator"]
    if generator["backend"] == "sd15":
        return (f"Stable Diffusion `{generator.get('model')}` in every arm, pretrained elsewhere: it never sees the "
                "dataset's labels, so label noise reaches the set through the prototypes and the detector only.")
    if generator.get("checkpoint"):
        return (f"the fixed checkpoint `{generator['checkpoint']}` in every arm, in Stable Diffusion's place (not "
                "trained on the arm's labels, so label noise reaches the set through the prototypes and the "
                "detector). Unlike Stable Diffusion it was trained on these train images with their true labels: "
                "its class conditioning is clean, which favours the plain noisy arms.")
    return ("trained in each arm on that arm's labels (the trusted ones in the trust-aware arms), so label noise "
            "also reaches its class conditioning.")


def arm_label_scores(manifest: pd.DataFrame, samples: pd.DataFrame | None) -> dict:
    """detdistill.trust.label_scores of one arm: every train image with its observed label (plain
    arms), or the trust stage's trusted images with their labels (`samples`, trust arms). Without
    `clean_label` (the clean arm) the observed labels are the true ones."""
    from .trust import label_scores

    train = manifest[manifest.split == "train"]
    observed = train.label.to_numpy()
    clean = train.clean_label.to_numpy() if "clean_label" in train.columns else observed
    if samples is None:
        return label_scores(observed, clean, observed, np.ones(len(train), dtype=bool))
    samples = samples.set_index("image_id").loc[train.image_id]
    return label_scores(observed, clean, samples.label.to_numpy(), samples.trusted.to_numpy())


def experiment_table(arm_rows: list[dict], summaries: list[pd.DataFrame], consistencies: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per (arm, model, method): the arm's setting, pipeline and label scores, the accuracy
    summary (mean, std, seeds) and, for synthetic sets, the judge's label consistency."""
    frames = []
    for arm, summary, consistency in zip(arm_rows, summaries, consistencies, strict=True):
        frame = summary.merge(consistency[["method", "judge_wrong_label_pct"]], on="method", how="left", validate="many_to_one")
        for key, value in reversed(list(arm.items())):
            frame.insert(0, key, value)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def paired_rows(runs: dict[str, pd.DataFrame], arm_rows: list[dict]) -> pd.DataFrame:
    """Accuracy differences between arms, paired by evaluation seed, with the 95% t interval
    (detdistill.stats), per setting, model and method: trust - plain for every method the
    trust-aware arm builds itself (not `FROM_PLAIN_ARM`), and with the clean arm, clean - plain
    (every method) and clean - trust (the trust-aware arm's own methods). `runs`: the per-run
    tables by arm dataset."""
    from .stats import paired_row, round_differences

    by_key = {(a["setting"], a["pipeline"]): a["dataset"] for a in arm_rows}
    clean = by_key.get((CLEAN, CLEAN_LABELS))
    pairs = []  # (comparison, setting, minuend arm, subtrahend arm, methods left out)
    for (setting, pipeline), dataset in by_key.items():
        if pipeline == TRUST:
            pairs.append((TRUST_MINUS_PLAIN, setting, dataset, by_key[(setting, PLAIN)], FROM_PLAIN_ARM))
    if clean is not None:
        for (setting, pipeline), dataset in by_key.items():
            if pipeline == PLAIN:
                pairs.append((CLEAN_MINUS_PLAIN, setting, clean, dataset, []))
            elif pipeline == TRUST:
                pairs.append((CLEAN_MINUS_TRUST, setting, clean, dataset, FROM_PLAIN_ARM))
    rows = []
    for comparison, setting, first, second, left_out in pairs:
        a, b = runs[first], runs[second]
        for model in sorted(set(a.model) & set(b.model)):
            shared = set(a[a.model == model].method) & set(b[b.model == model].method)
            for method in sorted(shared - set(left_out), key=_paired_position):
                pick = [r[(r.model == model) & (r.method == method)].set_index("seed").test_accuracy_pct for r in (a, b)]
                row = paired_row(*pick)
                if row is not None:
                    rows.append({"comparison": comparison, "setting": setting, "model": model, "method": method, **row})
    columns = ["comparison", "setting", "model", "method", "seeds", "mean_diff", "ci_low", "ci_high"]
    return round_differences(pd.DataFrame(rows, columns=columns))


def _paired_position(method: str) -> tuple[int, str]:
    return (PAIRED_ORDER.index(method) if method in PAIRED_ORDER else len(PAIRED_ORDER), method)


def paired_markdown(paired: pd.DataFrame) -> str:
    """The paired differences for people: a row per comparison, setting and model, a column per
    method, each cell `mean [low, high]`."""
    from .stats import difference_text

    if paired.empty:
        return "No pair of arms shares an evaluation seed."
    paired = paired.assign(cell=[difference_text(*v) for v in paired[["mean_diff", "ci_low", "ci_high"]].itertuples(index=False)])
    keys = ["comparison", "setting", "model"]
    cells = paired.pivot(index=keys, columns="method", values="cell")
    cells = cells[sorted(cells.columns, key=_paired_position)].reset_index()
    # rows in `paired_rows`' order (comparisons, then settings as the arms list them), not sorted
    wide = paired[keys].drop_duplicates().merge(cells, on=keys, how="left", validate="one_to_one")
    return wide.fillna("").to_markdown(index=False)


def experiment_markdown(name: str, table: pd.DataFrame, paired: pd.DataFrame, generator_note: str, ipc: int) -> str:
    """The experiment's tables for people: per model, one row per arm with its label scores, the
    accuracy (mean ± std over the evaluation seeds) of SHOWN_METHODS and the judge's wrong-label
    share of the d4m and conf_sim sets; then the paired differences between arms (`paired_rows`)."""
    label_columns = ["observed_wrong_pct", "train_images", "label_precision_pct", "label_recall_pct"]
    lines = [
        f"# Label-noise experiment `{name}` (IPC {ipc})",
        "",
        "Rows: the plain pipeline on the true labels (reference), then per noise setting the plain pipeline on the"
        if (table.setting == CLEAN).any() else
        "Rows (no clean-label reference: the experiment's `clean_arm` is false): per noise setting the plain pipeline on the",
        "noisy labels and the trust-aware one (detdistill.trust in front of the prototypes and the detector).",
        "`observed_wrong_pct`: train labels the noise made wrong; `train_images`, `label_precision_pct`,",
        "`label_recall_pct`: the images the prototypes and the detector train on, the share of their labels",
        "that are right, and the share of rightly labelled images they keep with that label (every image in the",
        "plain arms; a right label the trust stage recalibrated to a wrong one counts as lost).",
        "Accuracy: mean ± std in % over the evaluation seeds, models trained from scratch on the set and",
        "tested on the real test split (never noisy). `judge wrong %`: the share of the set that the judge,",
        "trained on the true labels in every arm, classifies as another class.",
        f"Generator: {generator_note}",
        "",
    ]
    for model, rows in table.groupby("model", sort=True):
        wide = rows.drop_duplicates("dataset")[["setting", "pipeline", *[c for c in label_columns if c in rows]]].reset_index(drop=True)
        for method in SHOWN_METHODS:
            picked = rows[rows.method == method].set_index("dataset")
            if picked.empty:
                continue
            cells = [f"{picked.at[d, 'mean']:.2f} ± {picked.at[d, 'std']:.2f}" if d in picked.index else "" for d in rows.dataset.unique()]
            wide[method] = cells
        for method in ["d4m", "conf_sim"]:
            picked = rows[rows.method == method].set_index("dataset")
            if not picked.empty:
                wide[f"{method} judge wrong %"] = [picked.judge_wrong_label_pct.get(d, np.nan) for d in rows.dataset.unique()]
        lines += [f"## {model}", "", wide.to_markdown(index=False), ""]
    lines += [
        "## Between arms, paired by evaluation seed",
        "",
        "Per evaluation seed (same seed: same initialisation, data order and augmentation), the accuracy of one",
        "arm minus another's, in points: mean [95% t interval]. `trust - plain`: the trust-aware arm minus the",
        "plain one on the same noisy labels, for the sets the trust-aware arm builds itself (its random subset",
        "and full-data runs are the plain arm's); with the clean arm, `clean - plain` and `clean - trust`: what",
        "the noise costs each pipeline. Each set comes from one generation and one detector per arm, so the",
        "interval leaves out the variance of building the set. Within-arm comparisons (conf_sim - d4m, ...):",
        "each arm's `results/<arm>_ipc<N>_paired.md`.",
        "",
        paired_markdown(paired),
        "",
    ]
    return "\n".join(lines)
