#!/usr/bin/env bash
# Real-data benchmark on CIFAR-10 (not CI): unpack ../shared/data/cifar10-jpeg.tar.gz into data/
# (ignored), run the workflow with the embedded generator trained on the 50k training images,
# and summarise the stage times. Usage: bash bench/run_cifar10.sh [snakemake targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
archive=../shared/data/cifar10-jpeg.tar.gz
if [ ! -d data/cifar10/train ]; then
  [ -f "$archive" ] || { echo "missing $archive (see ../shared/data/README.md)" >&2; exit 1; }
  mkdir -p data && tar xzf "$archive" -C data/
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(results/cifar10_ipc10.csv results/cifar10_ipc50.csv)
start=$(date +%s)
.venv/bin/snakemake --cores 2 "${targets[@]}" --configfile config/bench/cifar10_embedded.yaml
.venv/bin/python bench/stage_times.py --run-seconds $(( $(date +%s) - start )) \
  --command "bash bench/run_cifar10.sh ${targets[*]}" --out bench/measurements/cifar10_embedded.md
