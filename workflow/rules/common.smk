from pathlib import Path
from types import SimpleNamespace

from snakemake.logging import logger
from snakemake.utils import validate

from detdistill.baselines import BASELINES, SELECTION_METHODS
from detdistill.calibration import QUANTILE_MODES
from detdistill.data import DataError, inspect_source, validation_count
from detdistill.experiments import LABEL_ONLY_METHODS, ExperimentError
from detdistill.experiments import arms as experiment_arms
from detdistill.experiments import expand_noise_experiments
from detdistill.experiments import generator_note as experiment_generator_note
from detdistill.protocols import ProtocolError
from detdistill.published import check_headline
from detdistill.published import counterpart as published_counterpart
from detdistill.refine import METHODS as REFINEMENT_METHODS
from detdistill.protocols import apply_per_dataset as apply_protocols
from detdistill.protocols import differences_notes, protocol_of
from detdistill.replicates import ReplicateError
from detdistill.replicates import check_seeds as check_replicate_seeds
from detdistill.replicates import construction_seed
from detdistill.replicates import expand_replicates
from detdistill.replicates import replicate_names
from detdistill.schema import SCHEMA as SCHEMA_FILE
from detdistill.sweeps import KNOB_METHODS, REFERENCE as SWEEP_REFERENCE, knob_value, point_name
from detdistill.workflow import check_config, check_writable, stop

# Bad input stops the run with one line naming the cause and the fix (detdistill.workflow.stop),
# here while the DAG is built where a check is cheap, else inside the job (detdistill.workflow.setup).
SCHEMA = check_config(config, SCHEMA_FILE)
try:
    # each label-noise experiment adds its arms as datasets (detdistill.experiments)
    expand_noise_experiments(config)
    # each dataset's set-construction replicates too (detdistill.replicates)
    expand_replicates(config)
    # evaluation protocol presets fill the keys the config leaves out (detdistill.protocols); what
    # they say is printed for the datasets the run builds (announce_dataset)
    PROTOCOL_OVERRIDES = apply_protocols(config)
except (ExperimentError, ReplicateError, ProtocolError) as error:
    stop(str(error))
SCHEMA = check_config(config, SCHEMA_FILE)  # the arms too
# the package's schema, as the package's own defaults (config/schema.yaml links to it)
validate(config, schema=str(SCHEMA_FILE))  # valid now: this only fills in the defaults
try:
    check_replicate_seeds(config)  # needs the top-level `seed`'s default
except ReplicateError as error:
    stop(str(error))
check_writable(["results", "logs", "benchmarks"])


wildcard_constraints:
    dataset=SCHEMA["properties"]["datasets"]["propertyNames"]["pattern"].strip("^$"),
    ipc="[0-9]+",
    part="[0-9]+",
    method="|".join([*REFINEMENT_METHODS, *BASELINES]),
    role="detector|judge|teacher",
    # a model's name never holds a slash: keeps eval_full/{model}.parquet off eval_full/{model}/seed{seed}.parquet
    model="[^/]+",
    seed="[0-9]+",
    # sweep points (workflow/rules/sweeps.smk): beta as the config writes it (Python's :g), top-k
    knob="beta|top_k",
    beta="[0-9.e-]+",
    top_k="[0-9]+",
    point="beta[0-9.e-]+|top_k[0-9]+",


SYNTHETIC_METHODS = list(REFINEMENT_METHODS)  # d4m and the three refinements (detdistill.refine)
FEATURE_BASELINES = list(SELECTION_METHODS)  # real images chosen in the detector's feature space
# config/schema.yaml's default of `evaluation.baselines`
DEFAULT_BASELINES = SCHEMA["$defs"]["dataset"]["properties"]["evaluation"]["properties"]["baselines"]["default"]


def get_eval_methods(wildcards):
    """The real-data baselines of `evaluation.baselines`, then the synthetic sets."""
    return dataset_config(wildcards)["evaluation"].get("baselines", DEFAULT_BASELINES) + SYNTHETIC_METHODS


PROTOCOL_DIFFERENCES = differences_notes(config)
_announced = set()


def announce_dataset(name):
    """Once per dataset the DAG builds, before any job runs: the preset keys its config overrides,
    and (once per protocol) how its evaluation protocol differs from the public code on purpose."""
    if name in _announced:
        return
    _announced.add(name)
    protocol = protocol_of(config["datasets"][name])
    lines = PROTOCOL_OVERRIDES.get(name, [])
    if protocol not in _announced:
        _announced.add(protocol)
        lines = lines + PROTOCOL_DIFFERENCES.get(protocol, [])
    for line in lines:
        logger.info(line)


def dataset_config(wildcards):
    if wildcards.dataset not in config["datasets"]:
        stop(
            f"dataset {wildcards.dataset!r} is not configured: add it under `datasets:` in your config file, "
            f"or target one of {sorted(config['datasets'])}"
        )
    announce_dataset(wildcards.dataset)
    return config["datasets"][wildcards.dataset]


_source_summaries = {}


def source_summary(wildcards):
    """The dataset's classes, train images per class and file fingerprint, from a listing of its
    folders (detdistill.data.inspect_source): missing folders, classes or images stop the run here."""
    if wildcards.dataset not in _source_summaries:
        try:
            _source_summaries[wildcards.dataset] = inspect_source(dataset_config(wildcards)["source"])
        except DataError as error:
            stop(f"dataset {wildcards.dataset!r}: {error}")
    return _source_summaries[wildcards.dataset]


def get_source_fingerprint(wildcards):
    """A params value that changes with the image files' names, sizes and modification times, so
    the manifest is rebuilt when a class folder's contents change (a directory's own mtime misses
    files replaced in place, and 10,000 files as declared inputs would slow every DAG)."""
    return source_summary(wildcards).fingerprint


# Keys added after results existed, with the value that means "as before": left out of params at
# that value, so runs made before them keep their params and are not re-run.
LATER_KEYS_AS_BEFORE = {
    "lighting": 0,
    "protocol": "default",
    "architecture": "detdistill",
    "normalization": "half",
    "teacher": "none",
    "best_epoch_evaluations": None,
    "best_epoch_after": 0,
    "consistency_weight": 0,
    "weights": None,
}


def canonical(value):
    """Mappings with sorted keys, recursively: Snakemake compares params as stored, so reordering
    keys in a YAML file must not look like a change and re-run jobs (nor may keys added later at
    their as-before value, LATER_KEYS_AS_BEFORE)."""
    if isinstance(value, dict):
        return {
            key: canonical(value[key])
            for key in sorted(value)
            if key not in LATER_KEYS_AS_BEFORE or value[key] != LATER_KEYS_AS_BEFORE[key]
        }
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def get_source(wildcards):
    source = canonical(dataset_config(wildcards)["source"])
    if not source.get("validation_fraction"):
        # no validation split: the key added with it is left out, so runs made before it keep
        # their params and are not re-run
        source.pop("validation_fraction", None)
    return source


def trust_enabled(wildcards):
    return dataset_config(wildcards).get("trust", {}).get("enabled", False)


def get_train_manifest(wildcards):
    """The manifest the generator, the latents and the detector train on: the trust stage's (its
    trusted images, recalibrated labels) when `trust.enabled`, else the dataset's. The judge and the
    evaluations always read the dataset's manifest."""
    if trust_enabled(wildcards) and getattr(wildcards, "role", "detector") == "detector":
        return f"results/{wildcards.dataset}/trust/manifest.parquet"
    return f"results/{wildcards.dataset}/data/manifest.parquet"


def reused_from(wildcards, key):
    """The dataset whose artifact this one reuses: the one named by `key` (`judge_of`,
    `replicate_of`, `real_runs_of`: set by replicates and noise experiments, whose artifact would
    be that dataset's byte for byte), else the dataset itself."""
    return dataset_config(wildcards).get(key) or wildcards.dataset


def get_judge(wildcards):
    """The judge's weights, shared through `judge_of` (reused_from)."""
    return f"results/{reused_from(wildcards, 'judge_of')}/classifiers/judge/model.safetensors"


def get_image_size(wildcards):
    return dataset_config(wildcards)["image_size"]


def get_generation_size(wildcards):
    """The size Stable Diffusion works at: `generator.image_size` where set, else the dataset's."""
    entry = dataset_config(wildcards)
    return entry["generator"].get("image_size") or entry["image_size"]


def get_num_classes(wildcards):
    """Known before any job runs, so per-class jobs can be listed: the `source.classes` subset, else
    the source's class folders or class table; `num_classes`, where set, must agree."""
    names = source_summary(wildcards).class_names
    expected = dataset_config(wildcards).get("num_classes")
    if expected is not None and expected != len(names):
        shown = ", ".join(map(repr, names[:8])) + (", ..." if len(names) > 8 else "")
        stop(
            f"`datasets.{wildcards.dataset}.num_classes` is {expected} but its source has {len(names)} classes "
            f"({shown}): set it to {len(names)} or leave it out, or list the classes to keep under `source.classes`"
        )
    return len(names)


def check_ipc(wildcards):
    """IPC (images per class) 1 or more, and no more than any class's train images where the
    folders tell before the manifest exists (else the job checks)."""
    ipc = int(wildcards.ipc)
    if ipc < 1:
        stop(f"IPC {ipc} in the target: ask for 1 image per class or more (results/{wildcards.dataset}_ipc10.csv)")
    summary = source_summary(wildcards)
    fraction = dataset_config(wildcards)["source"].get("validation_fraction", 0)
    for name, count in zip(summary.class_names, summary.train_counts or []):
        # the validation split (source.validation_fraction) is carved from the train images
        count -= validation_count(count, fraction)
        if count < ipc:
            stop(
                f"IPC {ipc} is more than the {count} train images of class {name!r} (dataset {wildcards.dataset!r}): "
                f"lower the IPC in the target, add images, lower `source.validation_fraction` where set, "
                f"or drop the class from `source.classes`"
            )
    return ipc


def get_labels(wildcards):
    return list(range(get_num_classes(wildcards)))


def get_generator(wildcards):
    """The shipped/pretrained weights folder when configured, else the one the workflow prepares."""
    generator = dataset_config(wildcards)["generator"]
    check_generator_backend(generator, wildcards.dataset)
    shipped = generator.get("checkpoint")
    if not shipped:
        # a set-construction replicate uses the generator of the dataset it repeats
        return f"results/{reused_from(wildcards, 'replicate_of')}/generator"
    if not Path(shipped, "generator.json").is_file():
        stop(
            f"generator checkpoint folder {shipped!r} (datasets.{wildcards.dataset}.generator.checkpoint) "
            "has no generator.json: restore it from the repository (git checkout -- resources/), "
            "or set the key to null to train the generator in the run"
        )
    return shipped


_checked_generators = set()


def check_generator_backend(generator, dataset):
    """Fail while the DAG is built, before any job starts, when the backend could not prepare its
    generator (sd15: Stable Diffusion weights missing): the backend's own check."""
    key = repr(sorted(generator.items()))
    if key not in _checked_generators:
        from detdistill.generators import BACKENDS, GeneratorNotReady
        from detdistill.registry import UnknownName

        try:
            BACKENDS.get(generator["backend"], f"datasets.{dataset}.generator.backend").check(generator)
        except (UnknownName, GeneratorNotReady) as error:
            stop(str(error))
        _checked_generators.add(key)


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
        stop(
            f"part{part} does not exist: datasets.{wildcards.dataset}.synthesis.classes_per_job "
            f"makes {len(parts)} parts (part0..part{len(parts) - 1})"
        )
    return parts[part]


def get_part_dirs(step, under="", name=None):
    """An input function listing the class-group folders of `step` (initial, candidates), in the
    main tree or, with `under` (wildcards in braces), below it."""

    def part_dirs(wildcards):
        check_ipc(wildcards)
        return expand(
            "results/{dataset}/ipc{ipc}/{under}{step}/part{part}",
            dataset=wildcards.dataset,
            ipc=wildcards.ipc,
            under=under.format(**dict(wildcards.items())),
            step=step,
            part=range(len(get_class_parts(wildcards))),
        )

    part_dirs.__name__ = f"get_{name or step}_dirs"
    return part_dirs


get_initial_dirs = get_part_dirs("initial")
get_candidate_dirs = get_part_dirs("candidates")
get_sweep_candidate_dirs = get_part_dirs("candidates", under="sweep/beta{beta}/", name="sweep_candidate")


def get_synthetic_sets(wildcards):
    return expand(
        "results/{dataset}/ipc{ipc}/sets/{method}.parquet",
        dataset=wildcards.dataset,
        ipc=wildcards.ipc,
        method=SYNTHETIC_METHODS,
    )


def get_eval_tables(wildcards):
    """Every evaluation of the dataset at the IPC, and its full-data runs; a trust-aware arm's
    random-subset and full-data runs are its plain arm's (`real_runs_of`)."""
    check_ipc(wildcards)
    models = dataset_config(wildcards)["evaluation"]["models"]
    real_runs = reused_from(wildcards, "real_runs_of")
    sets = [
        f"results/{real_runs if method in LABEL_ONLY_METHODS else wildcards.dataset}/ipc{wildcards.ipc}/eval/{method}/{model}.parquet"
        for method in get_eval_methods(wildcards)
        for model in models
    ]
    return sets + [f"results/{real_runs}/eval_full/{model}.parquet" for model in models]


def get_classifier_config(wildcards):
    """The `detector` or `judge` section, or the `evaluation.teacher` entry (role teacher); the
    detector of a run with `refinement.beta_mode: temperature` also fits its softmax temperature on
    the validation split (the key is left out otherwise, so other runs keep their params)."""
    entry = dataset_config(wildcards)
    if wildcards.role == "teacher":
        key, section = "evaluation.teacher", entry["evaluation"].get("teacher")
    else:
        key, section = wildcards.role, entry[wildcards.role]
    if not isinstance(section, dict):
        stop(
            f"`datasets.{wildcards.dataset}.evaluation.teacher` is {section!r}, no classifier entry: "
            f"results/{wildcards.dataset}/classifiers/teacher/ is made only for a teacher given as {{model, weights, ...}}"
        )
    section = canonical(section)
    if section.get("weights"):
        section["weights_sha256"] = check_classifier_weights(wildcards, key, section)
    if wildcards.role == "detector" and get_beta_calibration(wildcards)["mode"] == "temperature":
        require_validation_split(wildcards, "temperature")
        section = {**section, "temperature_scaling": True}
    return section


_checked_classifiers = {}


def check_classifier_weights(wildcards, key, section):
    """A classifier section's `weights` file, checked while the DAG is built against the model the
    section describes (detdistill.checkpoints: key names and shapes only); its sha256, which the
    job's params carry so that another file re-runs it while a touched or copied one does not (the
    file is no declared input: its mtime would re-run everything after the classifier)."""
    from detdistill.checkpoints import CheckpointError, check_file, file_sha256
    from detdistill.stages.classifiers import classifier_build

    path = section["weights"]
    where = f"`datasets.{wildcards.dataset}.{key}.weights`"
    if key == "detector" and trust_enabled(wildcards):
        stop(
            f"{where} loads the detector, but `trust.enabled` trains the detector on the trusted images: "
            "set one of them to null/false"
        )
    if not Path(path).is_file():
        stop(
            f"{where} is {path!r}, which is no file: put the classifier file there (RDED's pre-trained observers, "
            "e.g. cifar10_resnet18_modified.pth, are linked from the README of RDED's public code, LINs-lab/RDED; docs/reproduce.md), "
            "or set the key to null to train the classifier in the run"
        )
    build = classifier_build(section, get_num_classes(wildcards), get_image_size(wildcards))
    stat = Path(path).stat()
    cache_key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, tuple(sorted(build.items())))
    if cache_key not in _checked_classifiers:
        try:
            check_file(path, build)
        except CheckpointError as error:
            stop(f"{where}: {error}")
        _checked_classifiers[cache_key] = file_sha256(path)
    return _checked_classifiers[cache_key]


def get_section(name):
    """An input function returning one section of the dataset's config (keeps params narrow, so
    changing one section re-runs only the rules that read it)."""

    def section(wildcards):
        return canonical(dataset_config(wildcards)[name])

    section.__name__ = f"get_{name}_config"
    return section


get_generator_config = get_section("generator")
_synthesis_section = get_section("synthesis")


def get_synthesis_config(wildcards):
    """The `synthesis` section; with `generator.image_size` other than the dataset's, also the
    size the generated images are stored at (`output_size`). Left out otherwise, so runs made
    before the option keep their params."""
    section = _synthesis_section(wildcards)
    entry = dataset_config(wildcards)
    working = entry["generator"].get("image_size")
    if working is not None and entry["generator"]["backend"] != "sd15":
        stop(
            f"`datasets.{wildcards.dataset}.generator.image_size` is for the sd15 backend (Stable Diffusion's working "
            "resolution); the embedded generator works at the dataset's image_size: remove the key"
        )
    if working is not None and working != entry["image_size"]:
        section["output_size"] = entry["image_size"]
    return section


get_prototype_config = get_section("prototypes")


_evaluation_section = get_section("evaluation")


def _evaluation_params(wildcards, model):
    """The `evaluation` section as one training of `model` reads it: less `baselines` and
    `models` (which sets and models are evaluated is no setting of one evaluation, so adding a
    model or a baseline must not re-run the others) and with `model_epoch_scale` cut to the
    model's entry (rescaling one model re-runs only its trainings), and a per-model `width`
    mapping cut to the model's width, one integer as the single-width form writes it (changing one
    model's width re-runs only that model). With `report_best_epoch` off, or the model not in
    `best_epoch_models`, its keys are left out too: evaluations made before the option existed
    are not re-run."""
    from detdistill.models import model_width

    section = _evaluation_section(wildcards)
    if isinstance(section.get("width"), dict):
        section["width"] = model_width(section["width"], model)
    # best_epoch_models: which models measure it is decided here, per model; full_data_jobs: how
    # the full-data runs are split into jobs; headline: which figure the tables lead with; no
    # setting of a training
    unused = {"baselines", "models", "best_epoch_models", "full_data_jobs", "headline"}
    own_scale = section.get("model_epoch_scale", {}).get(model, 1.0)
    if own_scale != 1.0:
        section["model_epoch_scale"] = {model: own_scale}
    else:  # the model trains its configured epochs, as without the key
        unused |= {"model_epoch_scale"}
    best_epoch_models = section.get("best_epoch_models")
    if not section.get("report_best_epoch") or (best_epoch_models is not None and model not in best_epoch_models):
        unused |= {"report_best_epoch", "best_epoch_every", "best_epoch_evaluations", "best_epoch_after"}
    if "teacher" in section:
        # the file itself (also the job's input, get_teacher), so the stage needs no other argument
        section["teacher"] = get_teacher(wildcards)
    else:  # no teacher: hard labels, the temperature is unused
        unused |= {"teacher_temperature"}
    return {key: value for key, value in section.items() if key not in unused}


def get_evaluation_config(wildcards):
    """`evaluation` params of the job training `{model}` on one set."""
    return _evaluation_params(wildcards, wildcards.model)


def get_gradcam_evaluation_config(wildcards):
    """`evaluation` params of the Grad-CAM job, which trains `gradcam.model` on each set."""
    return _evaluation_params(wildcards, get_gradcam_config(wildcards)["model"])


# settings of the IPC evaluations only: the full-data runs train on hard labels at train.batch_size
IPC_ONLY_EVALUATION_KEYS = {"teacher", "teacher_temperature", "batch_size_by_ipc"}


def get_full_evaluation_config(wildcards):
    """The `evaluation` params of the full-data runs: without the keys they do not read, so
    choosing a teacher or batch sizes by IPC re-runs no full-data run. A per-seed job's (rule
    evaluate_full_seed) also without `seeds`: its seed is its wildcard, so adding a seed re-runs
    none of the others."""
    section = get_evaluation_config(wildcards)
    unread = IPC_ONLY_EVALUATION_KEYS | ({"seeds"} if hasattr(wildcards, "seed") else set())
    return {key: value for key, value in section.items() if key not in unread}


def get_full_data_seed_runs(wildcards):
    """With `evaluation.full_data_jobs: per_seed`, the per-seed tables rule evaluate_full merges
    (one per evaluation seed); none with per_model, where it trains the seeds itself."""
    evaluation = dataset_config(wildcards)["evaluation"]
    if evaluation.get("full_data_jobs", "per_model") != "per_seed":
        return []
    return [
        f"results/{wildcards.dataset}/eval_full/{wildcards.model}/seed{seed}.parquet" for seed in evaluation["seeds"]
    ]


def get_teacher(wildcards):
    """`evaluation.teacher`: the detector's checkpoint, a user's file, the classifier rule
    train_classifier makes of a teacher entry, or nothing (no input)."""
    teacher = dataset_config(wildcards)["evaluation"].get("teacher", "none")
    if isinstance(teacher, dict):
        return f"results/{wildcards.dataset}/classifiers/teacher/model.safetensors"
    if teacher == "none":
        return []
    if teacher == "detector":
        return f"results/{wildcards.dataset}/classifiers/detector/model.safetensors"
    if not Path(teacher).is_file():
        stop(
            f"`datasets.{wildcards.dataset}.evaluation.teacher` is {teacher!r}, which is no file: give `detector`, "
            "`none`, the path of a classifier saved by detdistill (.safetensors), or an entry "
            "{model, architecture, normalization, weights} for a file in another format"
        )
    return teacher


def get_beta(wildcards):
    return dataset_config(wildcards)["refinement"]["beta"]


def get_beta_calibration(wildcards):
    """`refinement.beta_mode` and, for a calibrated mode, `beta_quantile` (detdistill.calibration):
    in fixed mode the quantile is unused, and changing it must not re-run anything."""
    refinement = dataset_config(wildcards)["refinement"]
    mode = refinement.get("beta_mode", "fixed")
    return {"mode": mode, "quantile": refinement["beta_quantile"]} if mode in QUANTILE_MODES else {"mode": mode}


def require_validation_split(wildcards, mode):
    """A calibrated `beta_mode` without a validation split stops the run before any job."""
    if not dataset_config(wildcards)["source"].get("validation_fraction"):
        what = "fits the detector's temperature on" if mode == "temperature" else "reads beta off"
        stop(
            f"`datasets.{wildcards.dataset}.refinement.beta_mode` {mode} {what} validation images, but there "
            f"is no validation split: set `datasets.{wildcards.dataset}.source.validation_fraction` (e.g. 0.1), "
            "or use `beta_mode: fixed`"
        )


def get_validation_scores(wildcards):
    """The detector's scores of the validation split when beta is calibrated on them (or the
    report counts the images its temperature was fitted on), else none."""
    mode = get_beta_calibration(wildcards)["mode"]
    if mode == "fixed":
        return []
    require_validation_split(wildcards, mode)
    return f"results/{wildcards.dataset}/classifiers/detector/validation_scores.parquet"


def get_normal_set(wildcards):
    """`refinement.normal_set` (detdistill.refine); d4m replaces nothing, so it has none."""
    if wildcards.method == "d4m":
        return None
    return dataset_config(wildcards)["refinement"].get("normal_set", "all")


def get_top_k(wildcards):
    """Only conf_sim uses top-k: the other sets must not re-run when it changes."""
    if wildcards.method != "conf_sim":
        return None
    return dataset_config(wildcards)["refinement"]["top_k"]


def get_n_candidates(wildcards):
    return dataset_config(wildcards)["refinement"]["n_candidates"]


# Scheduling priority of the jobs on the path to the distilled sets (generator, latents, detector,
# synthesis, candidates). The evaluations are leaves: left at 0 they fill the cores these leave
# idle, instead of a long full-data training starting first on a core the set path needs.
# All rules declare one thread (`threads` of 1). Two reasons, both measured on the 2-core default run: a
# two-thread job waits until both cores are free, and the one-thread evaluations (30-60 s each)
# kept one busy, so synthesis waited 124 s on the critical path (549 s for the run, 491 s with
# every job on one thread); and a job's float results depend on its torch thread count, which
# Snakemake caps at --cores, so the detector (hence the flagged images) differed between
# `--cores 1` and `--cores 2`. Now a run's bytes are the same whatever --cores or executor.
# More threads per job: `--set-threads rule=N` (changes those jobs' results within float noise).
SET_PATH_PRIORITY = 10


def get_eval_sets(wildcards):
    """Every evaluated set: the configured real-data baselines, then the synthetic sets."""
    return expand(
        "results/{dataset}/ipc{ipc}/sets/{method}.parquet",
        dataset=wildcards.dataset,
        ipc=wildcards.ipc,
        method=get_eval_methods(wildcards),
    )


get_quality_config = get_section("quality")
get_gradcam_config = get_section("gradcam")


def get_gradcam_sets(wildcards):
    """The sets compared by Grad-CAM (`gradcam.methods`), named by method."""
    check_ipc(wildcards)
    return {
        method: f"results/{wildcards.dataset}/ipc{wildcards.ipc}/sets/{method}.parquet"
        for method in get_gradcam_config(wildcards)["methods"]
    }


# Label-noise experiments (workflow/rules/experiments.smk)
def experiment_spec(wildcards):
    experiments = config.get("noise_experiments", {})
    if wildcards.experiment not in experiments:
        stop(
            f"noise experiment {wildcards.experiment!r} is not configured: add it under `noise_experiments:` "
            f"(config/noise.yaml has examples), or target one of {sorted(experiments)}"
        )
    return experiments[wildcards.experiment]


def get_experiment_arms(wildcards):
    return experiment_arms(wildcards.experiment, experiment_spec(wildcards))


def get_experiment_inputs(wildcards):
    """Per arm (in get_experiment_arms' order) its accuracy summary, label consistency, per-run
    table and manifest; the trust-aware arms' per-sample trust tables."""
    ipc = experiment_spec(wildcards)["ipc"]
    arms = get_experiment_arms(wildcards)
    names = [arm["dataset"] for arm in arms]
    return {
        "summaries": [f"results/{name}_ipc{ipc}_summary.csv" for name in names],
        "consistencies": [f"results/{name}_ipc{ipc}_consistency.csv" for name in names],
        "runs": [f"results/{name}_ipc{ipc}.csv" for name in names],
        "manifests": [f"results/{name}/data/manifest.parquet" for name in names],
        "trust_samples": [f"results/{arm['dataset']}/trust/samples.parquet" for arm in arms if arm["trust"]],
    }


def get_experiment_generator_note(wildcards):
    return experiment_generator_note(config["datasets"][experiment_spec(wildcards)["dataset"]])


# Sweeps (workflow/rules/sweeps.smk, detdistill.sweeps)
def get_configured_knob_value(wildcards):
    """The value of `wildcards.knob` the main tree was built with: its sweep point is the main
    tree. None for beta when beta is calibrated (no fixed beta made the main sets)."""
    refinement = dataset_config(wildcards)["refinement"]
    if wildcards.knob == "beta":
        return refinement["beta"] if refinement.get("beta_mode", "fixed") == "fixed" else None
    return refinement["top_k"]


def get_sweep_models(wildcards):
    config_ = dataset_config(wildcards)
    return config_["sweeps"].get("models") or config_["evaluation"]["models"]


def get_knob_sweep_inputs(wildcards):
    """Per value of the knob, in config order: its point's evaluation tables (the knob's methods x
    the sweep models, the same order at every point) and anomaly table; d4m's evaluations."""
    check_ipc(wildcards)
    main = f"results/{wildcards.dataset}/ipc{wildcards.ipc}"
    configured = get_configured_knob_value(wildcards)
    models = get_sweep_models(wildcards)
    evals, anomalies = [], []
    for value in dataset_config(wildcards)["sweeps"][wildcards.knob]:
        point = main if value == configured else f"{main}/sweep/{point_name(wildcards.knob, value)}"
        evals += expand(
            "{point}/eval/{method}/{model}.parquet", point=point, method=KNOB_METHODS[wildcards.knob], model=models
        )
        # top-k leaves the flagging as configured
        anomalies.append(f"{point if wildcards.knob == 'beta' else main}/anomalies.parquet")
    return {
        "evals": evals,
        "anomalies": anomalies,
        "reference": expand("{main}/eval/{method}/{model}.parquet", main=main, method=SWEEP_REFERENCE, model=models),
    }


def get_published_comparison(wildcards):
    """The headline figure of the dataset's tables and whether the paper publishes figures for its
    runs (detdistill.published.counterpart); a headline the evaluations cannot give stops the run."""
    entry = dataset_config(wildcards)
    try:
        check_headline(wildcards.dataset, entry["evaluation"])
    except DataError as error:
        stop(str(error))
    return published_counterpart(wildcards.dataset, entry, Path(workflow.basedir, "resources"))


def get_per_ipc_tables(wildcards):
    """Per IPC of `sweeps.ipc` (each its whole results/{dataset}_ipc{N}.csv target): its accuracy
    summary, paired differences, set quality and label consistency tables. An IPC above a class's
    train images stops the run here."""
    ipcs = dataset_config(wildcards)["sweeps"]["ipc"]
    for ipc in ipcs:
        check_ipc(SimpleNamespace(dataset=wildcards.dataset, ipc=str(ipc)))
    return {
        table: [f"results/{wildcards.dataset}_ipc{ipc}_{table}.csv" for ipc in ipcs]
        for table in ["summary", "paired", "quality", "consistency"]
    }


def get_ipc_sweep_summaries(wildcards):
    return get_per_ipc_tables(wildcards)["summary"]


# Set-construction replicates (workflow/rules/replicates.smk, detdistill.replicates)
def get_construction_seed(wildcards):
    """The seed of K-means and the generation noise (detdistill.replicates.construction_seed): the
    main runs' params are as before."""
    return construction_seed(dataset_config(wildcards), config)


def get_replicate_datasets(wildcards):
    """The main dataset, then its replicates; stops when it has none."""
    names = replicate_names(wildcards.dataset, dataset_config(wildcards))
    if not names:
        stop(
            f"dataset {wildcards.dataset!r} has no replicates: set `datasets.{wildcards.dataset}.replicates.seeds` "
            "(for example [1, 2]) to build its set more than once"
        )
    return [wildcards.dataset, *names]


def get_replicate_seeds(wildcards):
    return [get_construction_seed(wildcards), *dataset_config(wildcards)["replicates"]["seeds"]]


def get_replicate_evals(wildcards):
    """Every synthetic set's evaluations per construction (get_replicate_datasets' order), the
    same methods and models each."""
    check_ipc(wildcards)
    return expand(
        "results/{construction}/ipc{ipc}/eval/{method}/{model}.parquet",
        construction=get_replicate_datasets(wildcards),
        ipc=wildcards.ipc,
        method=SYNTHETIC_METHODS,
        model=dataset_config(wildcards)["evaluation"]["models"],
    )
