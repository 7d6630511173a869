from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


validate(config, schema="../../config/schema.yaml")


wildcard_constraints:
    dataset="[a-z][a-z0-9_]*",
    ipc="[0-9]+",
    part="[0-9]+",
    method="|".join(["d4m", "conf", "sim", "conf_sim", "random"]),
    role="detector|judge",


SYNTHETIC_METHODS = ["d4m", "conf", "sim", "conf_sim"]
EVAL_METHODS = ["random"] + SYNTHETIC_METHODS


def dataset_config(wildcards):
    try:
        return config["datasets"][wildcards.dataset]
    except KeyError:
        raise ValueError(
            f"dataset {wildcards.dataset!r} is not configured: add it under `datasets:` in "
            f"config/config.yaml (configured: {sorted(config['datasets'])})"
        )


def canonical(value):
    """Mappings with sorted keys, recursively: Snakemake compares params as stored, so reordering
    keys in a YAML file must not look like a change and re-run jobs."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def get_source(wildcards):
    return canonical(dataset_config(wildcards)["source"])


def get_image_size(wildcards):
    return dataset_config(wildcards)["image_size"]


def get_num_classes(wildcards):
    """Known before any job runs, so per-class jobs can be listed: the `source.classes` subset, else `num_classes`."""
    classes = get_source(wildcards).get("classes")
    return len(classes) if classes else dataset_config(wildcards)["num_classes"]


def get_labels(wildcards):
    return list(range(get_num_classes(wildcards)))


def get_generator(wildcards):
    """The shipped/pretrained weights folder when configured, else the one the workflow prepares."""
    generator = dataset_config(wildcards)["generator"]
    if generator["backend"] == "sd15":
        check_sd_weights(generator["model"])
    shipped = generator.get("checkpoint")
    if not shipped:
        return f"results/{wildcards.dataset}/generator"
    if not Path(shipped, "generator.json").is_file():
        raise ValueError(
            f"generator checkpoint folder {shipped!r} (datasets.{wildcards.dataset}.generator.checkpoint) "
            "has no generator.json: restore it from the repository (git checkout -- resources/), "
            "or set the key to null to train the generator in the run"
        )
    return shipped


_checked_weights = {}


def check_sd_weights(model):
    """Fail while the DAG is built, before any job starts, when Stable Diffusion weights are missing."""
    if model not in _checked_weights:
        from detdistill.generators.sd15 import MissingWeightsError, resolve_weights

        try:
            _checked_weights[model] = resolve_weights(model)
        except MissingWeightsError as error:
            raise WorkflowError(str(error))
    return _checked_weights[model]


def get_class_parts(wildcards):
    """The class groups of the synthesis and candidate jobs, `synthesis.classes_per_job` classes
    each (0: all classes in one job): part p holds labels [p*k, (p+1)*k)."""
    labels = get_labels(wildcards)
    per_job = dataset_config(wildcards)["synthesis"].get("classes_per_job", 0) or len(labels)
    return [labels[start : start + per_job] for start in range(0, len(labels), per_job)]


def get_part_labels(wildcards):
    parts = get_class_parts(wildcards)
    part = int(wildcards.part)
    if part >= len(parts):
        raise ValueError(
            f"part{part} does not exist: datasets.{wildcards.dataset}.synthesis.classes_per_job "
            f"makes {len(parts)} parts (part0..part{len(parts) - 1})"
        )
    return parts[part]


def get_part_dirs(step):
    """An input function listing the class-group folders of `step` (initial, candidates)."""

    def part_dirs(wildcards):
        return expand(
            "results/{dataset}/ipc{ipc}/{step}/part{part}",
            dataset=wildcards.dataset,
            ipc=wildcards.ipc,
            step=step,
            part=range(len(get_class_parts(wildcards))),
        )

    part_dirs.__name__ = f"get_{step}_dirs"
    return part_dirs


get_initial_dirs = get_part_dirs("initial")
get_candidate_dirs = get_part_dirs("candidates")


def get_synthetic_sets(wildcards):
    return expand(
        "results/{dataset}/ipc{ipc}/sets/{method}.parquet",
        dataset=wildcards.dataset,
        ipc=wildcards.ipc,
        method=SYNTHETIC_METHODS,
    )


def get_eval_tables(wildcards):
    models = dataset_config(wildcards)["evaluation"]["models"]
    return expand(
        "results/{dataset}/ipc{ipc}/eval/{method}/{model}.parquet",
        dataset=wildcards.dataset,
        ipc=wildcards.ipc,
        method=EVAL_METHODS,
        model=models,
    ) + expand(
        "results/{dataset}/eval_full/{model}.parquet",
        dataset=wildcards.dataset,
        model=models,
    )


def get_classifier_config(wildcards):
    return canonical(dataset_config(wildcards)[wildcards.role])


def get_section(name):
    """An input function returning one section of the dataset's config (keeps params narrow, so
    changing one section re-runs only the rules that read it)."""

    def section(wildcards):
        return canonical(dataset_config(wildcards)[name])

    section.__name__ = f"get_{name}_config"
    return section


get_generator_config = get_section("generator")
get_synthesis_config = get_section("synthesis")
get_prototype_config = get_section("prototypes")
get_evaluation_config = get_section("evaluation")


def get_beta(wildcards):
    return dataset_config(wildcards)["refinement"]["beta"]


def get_top_k(wildcards):
    """Only conf_sim uses top-k: the other sets must not re-run when it changes."""
    if wildcards.method != "conf_sim":
        return None
    return dataset_config(wildcards)["refinement"]["top_k"]


def get_n_candidates(wildcards):
    return dataset_config(wildcards)["refinement"]["n_candidates"]


# Scheduling priority of the jobs on the path to the distilled sets (generator, latents, detector,
# synthesis, candidates). The evaluations are leaves: left at 0 they fill the cores these leave
# idle, instead of a long full-data training starting first and holding a core while the
# two-thread generator waits for both.
SET_PATH_PRIORITY = 10
