"""Training throughput of the evaluation models on this machine (images/s, SGD steps on random
data), the figures behind the per-config sizes of the CPU benchmarks (image size, width, epochs).

Usage: python bench/train_throughput.py [--threads 2] [--seconds 4]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from detdistill.models import build_model

# (model, image size, width, batch): the detector/evaluation shapes of config/bench/cifar10_embedded.yaml
SHAPES = [
    ("convnet", 32, 64, 128),
    ("convnet", 32, 32, 128),
    ("convnet", 16, 64, 128),
    ("resnet18", 32, 64, 64),
    ("resnet18", 16, 64, 64),
    ("resnetap10", 32, 16, 128),
]


def images_per_second(name: str, size: int, width: int, batch: int, seconds: float) -> float:
    model = build_model(name, 10, size, width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):  # warm-up
        step()
    start, seen = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        seen += batch
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | image px | width | batch | train img/s |\n|---|---|---|---|---|")
    for name, size, width, batch in SHAPES:
        print(f"| {name} | {size} | {width} | {batch} | {images_per_second(name, size, width, batch, args.seconds):.0f} |", flush=True)


if __name__ == "__main__":
    main()
