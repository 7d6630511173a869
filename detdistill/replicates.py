"""Repeats of the set construction: the spread that one generation and one
detector hide.

`datasets.<name>.replicates.seeds: [1, 2]` adds the datasets `<name>_rep1`, `<name>_rep2`: the
entry of `<name>` with `construction_seed` set (K-means, the generation noise of the initial
images and candidates) and the detector trained with that seed. The data split, generator (the
main dataset's own when trained in the run), judge (the main dataset's, trained once), evaluation seeds and random subset stay the main run's, so a method's runs pair across
replicates by evaluation seed.

The replicates table puts each synthetic method's accuracy over construction x evaluation seeds,
and the difference to d4m twice: over every (construction, evaluation) pair, and over the
construction seeds (the per-replicate mean difference, one value per set construction). The
second is the interval a claim about the *method* needs: the pairs of one replicate share its
set and are not independent.
"""

from __future__ import annotations

import copy

import pandas as pd

REPLICATE = "{name}_rep{seed}"


class ReplicateError(ValueError):
    """A `replicates` entry that cannot be expanded (the message names the key and the fix)."""


def replicate_names(name: str, entry: dict) -> list[str]:
    """The replicate datasets of `name`, in `replicates.seeds` order."""
    return [REPLICATE.format(name=name, seed=seed) for seed in (entry.get("replicates") or {}).get("seeds", [])]


def expand_replicates(config: dict) -> None:
    """Add every dataset's replicates to `config["datasets"]` (in place). Raises ReplicateError
    for a name already taken."""
    datasets = config["datasets"]
    for name in list(datasets):
        entry = datasets[name]
        seeds = (entry.get("replicates") or {}).get("seeds", [])
        for seed, replicate in zip(seeds, replicate_names(name, entry)):
            if replicate in datasets:
                raise ReplicateError(
                    f"`datasets.{name}.replicates.seeds` would add dataset {replicate!r}, which `datasets:` already has: "
                    "rename that dataset or drop the seed"
                )
            copied = copy.deepcopy(entry)
            copied["replicates"] = {"seeds": []}
            copied["construction_seed"] = seed
            copied["replicate_of"] = name
            copied["judge_of"] = entry.get("judge_of") or name  # same images, labels and judge settings
            if "train" in copied["detector"]:  # a detector loaded from `weights` has no training to seed
                copied["detector"]["train"]["seed"] = seed
            datasets[replicate] = copied


def construction_seed(entry: dict, config: dict) -> int:
    """The seed of K-means and the generation noise of a dataset entry: its `construction_seed`
    (set on the replicates; null by the schema's default), else the top-level `seed`."""
    seed = entry.get("construction_seed")
    return config["seed"] if seed is None else seed


def check_seeds(config: dict) -> None:
    """After the schema filled the defaults: a replicate seed equal to its main run's construction
    seed (the dataset's `construction_seed`, else the top-level `seed`) would rebuild the main set
    and count it twice (too small a spread between constructions), and the replicates table, keyed by
    construction seed, would drop one of the two. Raises ReplicateError naming the key."""
    for name, entry in config["datasets"].items():
        if entry.get("replicate_of") is not None:
            continue
        main_seed = construction_seed(entry, config)
        if main_seed in (entry.get("replicates") or {}).get("seeds", []):
            raise ReplicateError(
                f"`datasets.{name}.replicates.seeds` holds {main_seed}, the main run's construction seed (its "
                f"`construction_seed`, else the top-level `seed`): that construction is already the main run; "
                f"drop {main_seed} or pick another seed"
            )


def replicate_table(runs: dict[int, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`runs`: per construction seed, the per-run evaluation rows (model, method, seed,
    test_accuracy) of its synthetic sets. Returns the per-(model, method) summary over all runs
    and the per-construction means, and the paired differences to d4m."""
    from .stats import paired_row, round_differences, t_interval

    frames = [frame.assign(construction_seed=seed, pct=100 * frame.test_accuracy) for seed, frame in sorted(runs.items())]
    table = pd.concat(frames, ignore_index=True)
    summary_rows, paired_rows = [], []
    for (model, method), group in table.groupby(["model", "method"], sort=True):
        per_construction = group.groupby("construction_seed").pct.mean()
        summary_rows.append({"model": model, "method": method, "constructions": len(per_construction), "runs": len(group),
                             "mean": group.pct.mean(), "std_all_runs": group.pct.std(),
                             "std_between_constructions": per_construction.std(),
                             "per_construction": " ".join(f"{s}:{v:.2f}" for s, v in per_construction.items())})
        if method == "d4m":
            continue
        key = ["construction_seed", "seed"]
        runs_pct = group.set_index(key).pct
        reference_pct = table[(table.model == model) & (table.method == "d4m")].set_index(key).pct
        pairs = paired_row(runs_pct, reference_pct)
        if pairs is None:
            continue
        by_construction = (runs_pct - reference_pct).dropna().groupby(level="construction_seed").mean()
        low, high = t_interval(by_construction.to_numpy())
        paired_rows.append({"model": model, "method": method, "baseline": "d4m", "constructions": len(by_construction),
                            "pairs": pairs["seeds"], "mean_diff": pairs["mean_diff"],
                            "ci_low_constructions": low, "ci_high_constructions": high,
                            "ci_low_pairs": pairs["ci_low"], "ci_high_pairs": pairs["ci_high"],
                            "per_construction": " ".join(f"{s}:{v:+.2f}" for s, v in by_construction.items())})
    summary = round_differences(pd.DataFrame(summary_rows), ["mean", "std_all_runs", "std_between_constructions"])
    paired = round_differences(pd.DataFrame(paired_rows), ["mean_diff", "ci_low_constructions", "ci_high_constructions",
                                                            "ci_low_pairs", "ci_high_pairs"])
    return summary, paired


def replicate_markdown(dataset: str, ipc: int, seeds: list[int], summary: pd.DataFrame, paired: pd.DataFrame) -> str:
    lines = [
        f"# {dataset} IPC {ipc}: {len(seeds)} set constructions (seeds {', '.join(map(str, seeds))})",
        "",
        "Each construction is the whole set path with its own K-means, generation noise and detector seed; the",
        "data split, generator and evaluation seeds are shared. Accuracy in %: mean over construction x evaluation",
        "seeds; `std_between_constructions`: the std of the per-construction means, the spread one run hides.",
        "",
        summary.drop(columns=["per_construction"]).to_markdown(index=False),
        "",
        "## Difference to d4m",
        "",
        "`ci_*_constructions`: 95% t interval over the construction seeds of the per-construction mean difference",
        "(the interval for a claim about the method); `ci_*_pairs`: over every (construction, evaluation seed) pair,",
        "narrower because the pairs of one construction share its set and are not independent.",
        "",
        paired.to_markdown(index=False) if len(paired) else "No d4m runs to compare with.",
        "",
    ]
    return "\n".join(lines)
