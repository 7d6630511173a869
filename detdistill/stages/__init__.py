"""The workflow's stages: one function per rule, grouped by what they work on. Each takes keyword
arguments only (paths and plain config dicts; rules' scripts pass `snakemake.input/params/output`
by name, tests call them directly) and writes its outputs atomically (`detdistill.io`).

| module | stages (rule) | and |
|---|---|---|
| `manifest` | `prepare_data` | |
| `generation` | `prepare_generator`, `encode_latents`, `compute_prototypes`, `synthesize_initial`, `generate_candidates` | `generate_chunks`, `candidate_rows`, the image-cache writer |
| `classifiers` | `train_classifier` (detector, judge), `score_initial`, `score_train_features`, `label_consistency` | `score_images` |
| `anomalies` | `detect_anomalies` | `flag_anomalies` (the flagging rule) |
| `sets` | `build_refined_set`, `select_random_subset`, `select_feature_subset` | |
| `evaluation` | `evaluate`, `evaluate_full`, `aggregate` (aggregate_results) | `epochs_for` (the epoch tables) |

`detdistill.quality.set_quality` is the set_quality rule's stage. Helpers on tables and images
(train split, row chunks, label tensors, PNG and set loading, latent stacking) live in
`detdistill.data`.
"""
