#!/usr/bin/env bash
# The GPU figures of the "Paper-scale speed" issue in one device call (bench/README.md: "Run it on a
# GPU machine"), from the checkout's root, with the wheels of bench/README.md in .whl/ (installed
# into /tmp/site when present); results go to $OUT (default bench/measurements/device).
#
#     bash bench/device_checks.sh [SECONDS] [PARTS]
#
# SECONDS: the whole script's budget (default 585). PARTS, comma-separated, run in the order given
# (the rehearsal's deadline keeps ENGINE_SECONDS, default 150, for a later engine part and 120 s for a later sd part):
#   engine     bench/engine_profile.py: where an IPC-10 training step goes, tensor operations per
#              step, the kornia pipeline compiled (~2-3 min)
#   sd         bench/sd_img2img_speed.py at the workflow's settings (~2 min)
#   concurrency bench/engine_concurrency.py: 1, 2, 4, 6, 8 IPC-10 trainings at once (~2 min)
#   concurrency-full  the same at the full-data rows' size (9,469 images, 2 epochs), 1 and 3 at once,
#              per model (FULL_MODELS, default "resnet18 resnetap10 convnet"; ~1 min each): does
#              evaluation.full_data_jobs: per_seed pay on one GPU
#   rehearsal  bench/rehearsal.py with the time left; REHEARSAL_ARGS adds flags, e.g.
#              "--cores 12 --gpus 6 --skip-calibration" to finish inside one call (jobs then overlap;
#              37 of 38 jobs in 399 s on an H200), "--train-compile cuda-graphs" for the CUDA-graph engine
# Default: sd,rehearsal (the 2026-12-04 run).
set -u
budget=${1:-585}
parts=${2:-sd,rehearsal}
out=${OUT:-bench/measurements/device}
started=$(date +%s)
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
# detdistill (with detdistill.testing, which the scripts import) from this checkout, first: the
# machine's python3 has no install of it; Snakemake and the jobs inherit the path
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# the checkout's virtual environment where there is one (README), else the machine's python3
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
nvidia-smi -L | tee "$out/nvidia_smi.txt"
"$python" -c 'import torch, diffusers, kornia, snakemake; print("torch", torch.__version__, "diffusers", diffusers.__version__, "kornia", kornia.__version__, "snakemake", snakemake.__version__)'

# seconds each part needs at most; the rehearsal gets what the parts after it leave
declare -A needs=([engine]=${ENGINE_SECONDS:-150} [sd]=120 [concurrency]=150 [concurrency-full]=$((80 * $(wc -w <<<"${FULL_MODELS:-resnet18 resnetap10 convnet}"))))
left() { echo $((budget - ($(date +%s) - started))); }
# at most $1 seconds, and no more than the time left less what the later parts keep
capped() { local t=$(($(left) - reserve)); echo $((t < $1 ? t : $1)); }
IFS=, read -r -a order <<<"$parts"
for i in "${!order[@]}"; do
    reserve=0
    for later in "${order[@]:i+1}"; do reserve=$((reserve + ${needs[$later]:-0})); done
    case ${order[$i]} in
    engine)
        # ENGINE_ARGS adds flags, e.g. "--models convnet,resnet18"
        # shellcheck disable=SC2086
        timeout "$(capped 240)" "$python" bench/engine_profile.py \
            --out "$out/engine_profile.json" ${ENGINE_ARGS:-} 2>&1 | grep -v "it/s" | tee "$out/engine_profile.log" ;;
    sd)
        # a whole job's candidates as config/imagenette.yaml makes them: fp16, channels-last, chunks of
        # 100 across defective images; the fp32 batch-1 loop on a few images for the speed-up
        timeout 120 "$python" bench/sd_img2img_speed.py --prototypes 5 --batch 100 --channels-last --repeats 3 \
            --reference-images 3 --out "$out/sd_img2img_job.json" 2>&1 | tee "$out/sd_img2img.log" ;;
    concurrency)
        # several IPC-10 trainings at once (one process each, as gpu=N runs jobs); CONCURRENCY_ARGS
        # adds flags, e.g. "--compile cuda-graphs"
        # shellcheck disable=SC2086
        timeout "$(capped 150)" "$python" bench/engine_concurrency.py \
            --workers 1,2,4,6,8 --out "$out/engine_concurrency.json" ${CONCURRENCY_ARGS:-} 2>&1 | grep -v "it/s" \
            | tee "$out/engine_concurrency.log" ;;
    concurrency-full)
        for model in ${FULL_MODELS:-resnet18 resnetap10 convnet}; do
            # shellcheck disable=SC2086
            timeout "$(capped 80)" "$python" bench/engine_concurrency.py --model "$model" --images 9469 --epochs 2 \
                --workers 1,3 --out "$out/engine_concurrency_full_$model.json" ${CONCURRENCY_ARGS:-} 2>&1 \
                | grep -v "it/s" | tee "$out/engine_concurrency_full_$model.log"
        done ;;
    rehearsal)
        deadline=$(($(left) - reserve))
        echo "rehearsal: ${deadline} s (${reserve} s kept for the parts after it)"
        # shellcheck disable=SC2086  # REHEARSAL_ARGS is a list of flags
        "$python" bench/rehearsal.py --deadline "$deadline" --out-dir "$out" --logs-archive "$out/rehearsal_logs.tar.gz" \
            ${REHEARSAL_ARGS:-} 2>&1 | tee "$out/rehearsal.log" ;;
    *) echo "unknown part: ${order[$i]} (engine, sd, concurrency, concurrency-full or rehearsal)" >&2; exit 2 ;;
    esac
done
