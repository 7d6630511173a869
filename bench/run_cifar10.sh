#!/usr/bin/env bash
# Real-data benchmark on CIFAR-10 (not CI): unpack ../shared/data/cifar10-jpeg.tar.gz into data/
# (ignored), run the workflow with the embedded generator trained on the 50k training images,
# then write the stage times and the result tables under bench/measurements/.
# Usage: bash bench/run_cifar10.sh [snakemake targets...]   (default: IPC 10 and 50)
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
.venv/bin/snakemake --cores 2 --rerun-incomplete "${targets[@]}" --configfile config/bench/cifar10_embedded.yaml
.venv/bin/python bench/stage_times.py --dataset cifar10 --run-seconds $(( $(date +%s) - start )) \
  --command "bash bench/run_cifar10.sh ${targets[*]}" --out bench/measurements/cifar10_embedded.md
ipcs=$(printf '%s\n' "${targets[@]}" | sed -n 's|results/cifar10_ipc\([0-9]*\)\.csv|\1|p')
.venv/bin/python bench/results_table.py --dataset cifar10 --ipc $ipcs --out bench/measurements/cifar10_embedded_results.md
