"""Quality of an embedded generator trained on the digits default, measured without a trained judge
where possible, to compare two versions of the training code (diffusers' add_noise, KL and
EMAModel, transformers' LR schedule against the hand-written ones).

    # train with the detdistill on PYTHONPATH (config/config.yaml's digits generator settings, 1 thread)
    PYTHONPATH=$PWD .venv/bin/python bench/embedded_generator_quality.py train /tmp/gen [--steps-scale 0.5]
    # measure one or more trained generators on the digits test split
    PYTHONPATH=$PWD .venv/bin/python bench/embedded_generator_quality.py evaluate /tmp/gen_a /tmp/gen_b

Measured on the 360 held-out digits test images (the generator saw only the 1,437 train images):
* vae_test_mse: mean squared error of the VAE round trip (posterior mean), pixels in [0, 1];
* unet_test_eps_mse: the EMA UNet's epsilon-prediction MSE on the test images' scaled latents at
  10 timesteps spread over [50, 950], with their own labels, one fixed noise draw per (image, t);
* sample_svc_right: share of img2img samples from the class-mean prototypes (strength 0.9,
  guidance 1, 25 steps, the demo setting; 20 per class) that an RBF SVC on 8x8 average-pooled grey
  images, trained on the real train split, puts in the intended class (the one judge: tiny, fixed);
* final_losses from generator.json (the training losses averaged over the last 50 steps).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
TIMESTEPS = torch.linspace(50, 950, 10).round().long()
PER_CLASS = 20


def digits_split(split: str):
    from detdistill import data

    manifest = data.digits_manifest(test_fraction=0.2, seed=0)
    rows = manifest[manifest.split == split]
    images = data.load_images(rows, {"kind": "digits"}, 32)
    return images, torch.as_tensor(rows.label.to_numpy().copy()), data.class_names(rows)


def train(out_dir: str, steps_scale: float) -> None:
    import yaml

    from detdistill.generators.embedded import train_embedded_generator

    torch.set_num_threads(1)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["datasets"]["digits"]["generator"]["train"]
    for key in ("vae_steps", "unet_steps"):
        cfg[key] = max(1, round(cfg[key] * steps_scale))
    images, labels, names = digits_split("train")
    train_embedded_generator(images, labels, names, cfg, out_dir, "cpu", log=lambda m: print(m, flush=True))


def pooled_grey(images: torch.Tensor) -> torch.Tensor:
    grey = images.float().mean(1, keepdim=True) / (255.0 if images.dtype == torch.uint8 else 1.0)
    return F.adaptive_avg_pool2d(grey, 8).flatten(1)


@torch.no_grad()
def evaluate(path: str, svc) -> dict:
    from detdistill.generators.embedded import EmbeddedGenerator

    gen = EmbeddedGenerator.load(path, "cpu")
    test_images, test_labels, _ = digits_split("test")
    train_images, train_labels, _ = digits_split("train")
    x = test_images.float() / 255.0
    recon = gen.decode(gen.encode(test_images))
    latents = gen.encode(test_images)
    noise_gen = torch.Generator().manual_seed(0)
    eps_errors = []
    for t in TIMESTEPS.tolist():
        noise = torch.randn(latents.shape, generator=noise_gen)
        a = gen.pipe.scheduler.alphas_cumprod[t]
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        cond, _ = gen.condition(test_labels.tolist())
        pred = gen.unet(noisy, torch.full((len(latents),), t), encoder_hidden_states=cond).sample
        eps_errors.append(F.mse_loss(pred, noise).item())
    # class-mean prototypes of the train latents, the demo's img2img setting
    train_latents = gen.encode(train_images)
    num_classes = len(gen.class_names)
    prototypes = torch.stack([train_latents[train_labels == c].mean(0) for c in range(num_classes)])
    labels = [c for c in range(num_classes) for _ in range(PER_CLASS)]
    seeds = list(range(len(labels)))
    samples = gen.img2img(prototypes[labels], labels, seeds, strength=0.9, guidance=1.0, steps=25)
    predicted = torch.as_tensor(svc.predict(pooled_grey(samples).numpy()))
    meta = json.loads((Path(path) / "generator.json").read_text())
    return {
        "generator": str(path),
        "vae_test_mse": F.mse_loss(recon, x).item(),
        "unet_test_eps_mse": sum(eps_errors) / len(eps_errors),
        "unet_test_eps_mse_by_t": dict(zip(TIMESTEPS.tolist(), [round(e, 5) for e in eps_errors])),
        "sample_svc_right": (predicted == torch.as_tensor(labels)).float().mean().item(),
        "final_losses": meta["final_losses"],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("out_dir")
    tr.add_argument("--steps-scale", type=float, default=1.0,
                    help="factor on vae_steps and unet_steps (a loaded machine: 0.5 keeps the comparison in minutes)")
    ev = sub.add_parser("evaluate")
    ev.add_argument("generators", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args.out_dir, args.steps_scale)
        return
    from sklearn.svm import SVC

    torch.manual_seed(0)
    images, labels, _ = digits_split("train")
    svc = SVC(kernel="rbf", C=10, gamma="scale").fit(pooled_grey(images).numpy(), labels.numpy())
    test_images, test_labels, _ = digits_split("test")
    real = (torch.as_tensor(svc.predict(pooled_grey(test_images).numpy())) == test_labels).float().mean().item()
    print(json.dumps({"svc_real_test_right": real}))
    for path in args.generators:
        print(json.dumps(evaluate(path, svc), sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
