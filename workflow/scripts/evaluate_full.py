from detdistill.stages.evaluation import evaluate_full, merge_seed_runs
from detdistill.workflow import setup

setup(snakemake)
seed_runs = getattr(snakemake.input, "seed_runs", [])
if seed_runs:  # rule evaluate_full with evaluation.full_data_jobs: per_seed
    merge_seed_runs(list(seed_runs), seeds=snakemake.params.evaluation["seeds"], out_path=snakemake.output.scores)
else:  # rule evaluate_full (per_model: every seed) or evaluate_full_seed (its seed)
    evaluate_full(
        manifest_path=snakemake.input.manifest,
        source_cfg=snakemake.params.source,
        model_name=snakemake.wildcards.model,
        eval_cfg=snakemake.params.evaluation,
        out_path=snakemake.output.scores,
        seeds=[int(snakemake.wildcards.seed)] if hasattr(snakemake.wildcards, "seed") else None,
    )
