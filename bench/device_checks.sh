#!/usr/bin/env bash
# The GPU figures of the "Paper-scale speed" issue in one device call (bench/README.md: "Run it on a
# GPU machine"): the candidate-generation benchmark at the workflow's settings, then the ImageNette
# rehearsal with the time left. Run from the checkout's root with the wheels of bench/README.md in
# .whl/ (installed into /tmp/site when present); results go to $OUT (default bench/measurements/device).
#
#     bash bench/device_checks.sh [SECONDS]     # SECONDS: the whole script's budget, default 585
set -u
budget=${1:-585}
out=${OUT:-bench/measurements/device}
started=$(date +%s)
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
# the checkout's virtual environment where there is one (README), else the machine's python3
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
nvidia-smi -L | tee "$out/nvidia_smi.txt"
"$python" -c 'import torch, diffusers, kornia, snakemake; print("torch", torch.__version__, "diffusers", diffusers.__version__, "kornia", kornia.__version__, "snakemake", snakemake.__version__)'

# a whole job's candidates as config/imagenette.yaml makes them: fp16, channels-last, chunks of 100
# across defective images; the fp32 batch-1 loop on a few images for the speed-up
timeout 120 "$python" bench/sd_img2img_speed.py --prototypes 5 --batch 100 --channels-last --repeats 3 \
    --reference-images 3 --out "$out/sd_img2img_job.json" 2>&1 | tee "$out/sd_img2img.log"

left=$((budget - ($(date +%s) - started)))
echo "rehearsal: ${left} s left"
"$python" bench/rehearsal.py --deadline "$left" --out-dir "$out" --logs-archive "$out/rehearsal_logs.tar.gz" 2>&1 \
    | tee "$out/rehearsal.log"
