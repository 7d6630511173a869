"""Trust-aware split of a mislabeled training set (after Trust-Aware Diversion, TAD; Wu et al., 2025).

TAD's dual loop, as built here (no public code exists; the choices below are ours and documented):

- Warm-up: a classifier (the detector's architecture and training settings) trains on every
  training image with its observed label for `warmup_epochs`.
- Outer loop, each round: the per-sample cross-entropy of the current model on the un-augmented
  images, against each sample's current label; per class, a two-component Gaussian mixture on those
  losses (scikit-learn; losses scaled to [0, 1] per class, as DivideMix does) gives each sample the
  posterior of the low-loss component: its *trust probability*. Samples above `trust_threshold` are
  trusted this round.
- Inner loop, each round: class anchors are the mean penultimate features of the trusted samples
  of each class, with one shared covariance (Ledoit-Wolf shrinkage, scikit-learn). An untrusted
  sample is *reliable* when the anchor nearest by Mahalanobis distance, the anchor most similar by
  cosine, and the model's prediction name the same class, with softmax at least
  `recalibration_confidence`; it is recalibrated to that class and joins the trusted set for good
  (the trusted set only grows by recalibration; the mixture re-decides the others each round). When
  that class is the sample's own label, the sample is *confirmed*: it joins the trusted set for good
  with its label unchanged, and is not counted as recalibrated.
- The model then trains `epochs_per_round` more epochs on the trusted set with its labels (observed,
  or recalibrated), and the next round starts.

- Consistency (`consistency_weight` w > 0): each round's training adds w times a consistency term
  on the images left untrusted that round, used without their labels: the KL divergence between the
  model's softmax on two augmentations of each image, the first's gradient stopped (UDA / FixMatch's
  form; TAD names a consistency-regularisation term in its outer loop without public code, so this
  form is our choice). It keeps the model's view of the untrusted images stable while it fits the
  trusted ones. Off by default (w = 0: the rounds train exactly as before it existed).

Each round's training restarts the optimiser and schedule.

`split_by_trust` returns the per-sample table and one row per round; `trusted_manifest` the manifest
the downstream stages train on: train rows = the final trusted set with its labels, test rows as
they were. Where the manifest knows the true labels (`clean_label`, detdistill.data.label_noise), the rounds
report the trusted set's precision and recall and the recalibration accuracy against them; they are
never used to decide anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

log = logging.getLogger("detdistill")


@dataclass(frozen=True)
class TrustConfig:
    """`trust` settings; config/schema.yaml (`dataset.trust`) holds their defaults and meaning."""

    rounds: int
    warmup_epochs: int
    epochs_per_round: int
    trust_threshold: float
    recalibration_confidence: float
    min_class_samples: int  # below this a class's mixture is not fitted: all its samples trusted
    consistency_weight: float  # 0: no consistency term on the untrusted images

    @classmethod
    def from_dict(cls, d: dict | None) -> TrustConfig:
        from .schema import with_defaults

        values = with_defaults("dataset.trust", d, "trust")
        values.pop("enabled")  # whether the rule runs, not how
        return cls(**values)


def per_sample_loss(model, images: torch.Tensor, labels: torch.Tensor, device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cross-entropy per sample against `labels`, softmax probabilities, penultimate features)."""
    from .train import predict

    out = predict(model, images, device)
    loss = F.cross_entropy(out["logits"], labels, reduction="none")
    return loss.numpy(), out["probs"].numpy(), out["features"].numpy()


def trust_probability(loss: np.ndarray, labels: np.ndarray, seed: int, min_class_samples: int) -> np.ndarray:
    """Per class, the posterior of the low-loss component of a 2-component Gaussian mixture fitted
    to the class's losses scaled to [0, 1]."""
    from sklearn.mixture import GaussianMixture

    prob = np.ones(len(loss))
    for y in np.unique(labels):
        rows = np.flatnonzero(labels == y)
        values = loss[rows]
        spread = values.max() - values.min()
        if len(rows) < min_class_samples or spread <= 0:
            continue
        scaled = ((values - values.min()) / spread).reshape(-1, 1)
        gmm = GaussianMixture(n_components=2, max_iter=50, tol=1e-3, reg_covar=5e-4, random_state=seed).fit(scaled)
        clean_component = int(np.argmin(gmm.means_.ravel()))
        prob[rows] = gmm.predict_proba(scaled)[:, clean_component]
    return prob


def recalibrate(features: np.ndarray, probs: np.ndarray, labels: np.ndarray, trusted: np.ndarray, confidence: float,
                num_classes: int) -> np.ndarray:
    """The class each untrusted sample is reliably recalibrated to, else -1 (see the module doc)."""
    from sklearn.covariance import LedoitWolf

    result = np.full(len(labels), -1, dtype=np.int64)
    classes = [y for y in range(num_classes) if (trusted & (labels == y)).any()]
    candidates = np.flatnonzero(~trusted)
    if len(classes) < 2 or len(candidates) == 0 or trusted.sum() <= features.shape[1] // 8:
        return result
    anchors = np.stack([features[trusted & (labels == y)].mean(0) for y in classes])
    centred = features[trusted] - anchors[np.searchsorted(classes, labels[trusted])]
    precision = LedoitWolf().fit(centred).precision_
    x = features[candidates]
    diff = x[:, None, :] - anchors[None, :, :]
    mahalanobis = np.einsum("nkd,de,nke->nk", diff, precision, diff)
    cosine = (x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)) @ (
        anchors / np.linalg.norm(anchors, axis=1, keepdims=True).clip(1e-12)
    ).T
    by_distance = np.asarray(classes)[mahalanobis.argmin(1)]
    by_cosine = np.asarray(classes)[cosine.argmax(1)]
    by_model = probs[candidates].argmax(1)
    sure = probs[candidates].max(1) >= confidence
    agree = (by_distance == by_cosine) & (by_cosine == by_model) & sure
    result[candidates[agree]] = by_model[agree]
    return result


def label_scores(observed: np.ndarray, clean: np.ndarray, used: np.ndarray, kept: np.ndarray) -> dict:
    """How right the labels a stage trains on are. `observed`: the noisy labels of every train
    image; `clean`: their true labels; `used`: the labels trained on (observed, or recalibrated);
    `kept`: which images are trained on. Precision: the share of kept images whose used label is
    right; recall: the share of rightly labelled images (observed == clean) kept with that label (a
    right label recalibrated to a wrong one is lost, not kept; per_class_table counts the same way)."""
    observed, clean, used, kept = np.asarray(observed), np.asarray(clean), np.asarray(used), np.asarray(kept, dtype=bool)
    was_right = observed == clean
    return {
        "train_images": int(kept.sum()),
        "train_images_pct": round(100 * float(kept.mean()), 2),
        "observed_wrong_pct": round(100 * float(1 - was_right.mean()), 2),
        "label_precision_pct": round(100 * float((used == clean)[kept].mean()), 2) if kept.any() else float("nan"),
        "label_recall_pct": round(100 * float((kept & (used == clean))[was_right].mean()), 2) if was_right.any() else float("nan"),
    }


def _round_row(round_index: int, trusted: np.ndarray, labels: np.ndarray, observed: np.ndarray, clean: np.ndarray | None,
               recalibrated: np.ndarray, confirmed: np.ndarray) -> dict:
    row = {"round": round_index, "trusted": int(trusted.sum()), "trusted_pct": round(100 * float(trusted.mean()), 2),
           "recalibrated": int((recalibrated >= 0).sum())}
    if clean is not None:
        scores = label_scores(observed, clean, labels, trusted)
        row["trusted_precision_pct"] = scores["label_precision_pct"]
        row["trusted_recall_pct"] = scores["label_recall_pct"]
        moved = recalibrated >= 0
        row["recalibration_accuracy_pct"] = round(100 * float((recalibrated[moved] == clean[moved]).mean()), 2) if moved.any() else float("nan")
    row["confirmed"] = int(confirmed.sum())
    return row


def split_by_trust(model, images: torch.Tensor, observed: np.ndarray, clean: np.ndarray | None, num_classes: int, train_cfg,
                trust_cfg: TrustConfig, device, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-sample table, per-round table); `model` is trained in place. Rows of the sample table
    follow `images`: loss, trust_probability, trusted, label (the one trained on: observed or
    recalibrated), recalibrated (bool), confirmed (bool: trusted for good by the inner loop with its
    own label) and joined_round (the round since which it is trusted; -1: not trusted)."""
    import dataclasses

    from .train import EngineOptions, fit_classifier, train_classifiers

    observed = np.asarray(observed, dtype=np.int64)
    labels = observed.copy()
    recalibrated = np.full(len(labels), -1, dtype=np.int64)
    joined = np.full(len(labels), -1, dtype=np.int64)
    fit_classifier(model, images, torch.from_numpy(labels), dataclasses.replace(train_cfg, epochs=trust_cfg.warmup_epochs, seed=seed),
                   device, desc="trust warm-up")
    confirmed = np.zeros(len(labels), dtype=bool)
    rounds = []
    for r in range(1, trust_cfg.rounds + 1):
        loss, probs, features = per_sample_loss(model, images, torch.from_numpy(labels), device)
        trust_prob = trust_probability(loss, labels, seed + r, trust_cfg.min_class_samples)
        trusted = (trust_prob > trust_cfg.trust_threshold) | (recalibrated >= 0) | confirmed
        agreed = recalibrate(features, probs, labels, trusted, trust_cfg.recalibration_confidence, num_classes)
        confirmed |= (agreed >= 0) & (agreed == labels)  # reliable with its own label: no relabelling
        moved = np.where(agreed != labels, agreed, -1)
        recalibrated = np.where(moved >= 0, moved, recalibrated)
        labels = np.where(recalibrated >= 0, recalibrated, observed)
        trusted = trusted | (agreed >= 0)
        joined = np.where(trusted, np.where(joined < 0, r, joined), -1)  # the round its current trusted streak began
        rounds.append(_round_row(r, trusted, labels, observed, clean, recalibrated, confirmed))
        log.info("trust round %d: %s", r, rounds[-1])
        keep = np.flatnonzero(trusted)
        round_cfg = dataclasses.replace(train_cfg, epochs=trust_cfg.epochs_per_round, seed=seed + r)
        options = EngineOptions(desc=f"trust round {r}", unlabeled=images[np.flatnonzero(~trusted)],
                                consistency_weight=trust_cfg.consistency_weight)
        train_classifiers([model], [round_cfg.seed], images[keep], torch.from_numpy(labels[keep]), round_cfg, device, options)
    loss, _, _ = per_sample_loss(model, images, torch.from_numpy(labels), device)
    samples = pd.DataFrame({"observed_label": observed, "label": labels, "loss": loss.astype(np.float32),
                            "trust_probability": trust_prob.astype(np.float32), "trusted": trusted,
                            "recalibrated": recalibrated >= 0, "confirmed": confirmed, "joined_round": joined})
    if clean is not None:
        samples.insert(1, "clean_label", np.asarray(clean, dtype=np.int64))
    return samples, pd.DataFrame(rounds)


def trusted_manifest(manifest: pd.DataFrame, samples: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """The manifest downstream stages train on: trusted train rows with their (possibly
    recalibrated) labels, then the test rows unchanged. `samples` has image_id, label, trusted."""
    train = manifest[manifest.split == "train"].merge(samples[["image_id", "label", "trusted"]].rename(columns={"label": "trust_label"}),
                                                      on="image_id", how="left", validate="one_to_one")
    train = train[train.trusted.fillna(False).astype(bool)].copy()
    train["label"] = train.trust_label.astype(np.int64)
    train["class_name"] = [class_names[y] for y in train.label]
    train = train.drop(columns=["trust_label", "trusted"])
    return pd.concat([train, manifest[manifest.split != "train"]], ignore_index=True)


def per_class_table(samples: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """After the last round, per class: the train images observed with its label, those trusted
    with it (after recalibration), the images recalibrated into and out of it; with the truth
    (`clean_label` in `samples`), how right each of these is. A global precision can hide a class
    the split cannot clean (two classes swapped into each other look like one hard class)."""
    has_truth = "clean_label" in samples.columns
    if has_truth:  # per image, not per class
        right = samples.label == samples.clean_label
        was_right = samples.observed_label == samples.clean_label
    rows = []
    for label, name in enumerate(names):
        observed = samples.observed_label == label
        trusted = samples.trusted & (samples.label == label)
        moved_in = samples.recalibrated & (samples.label == label)
        row = {"class": name, "observed": int(observed.sum()), "trusted": int(trusted.sum()),
               "recalibrated_in": int(moved_in.sum()), "recalibrated_out": int((samples.recalibrated & observed).sum())}
        if has_truth:
            observed_right = observed & was_right
            row["observed_right_pct"] = _pct(observed_right.sum(), observed.sum())
            row["trusted_precision_pct"] = _pct((trusted & right).sum(), trusted.sum())
            row["trusted_recall_pct"] = _pct((observed_right & samples.trusted & right).sum(), observed_right.sum())
            row["recalibrated_in_right_pct"] = _pct((moved_in & right).sum(), moved_in.sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _pct(part, whole) -> float:
    return round(100 * float(part) / float(whole), 2) if whole else float("nan")


def rounds_markdown(rounds: pd.DataFrame, has_truth: bool, dataset: str, per_class: pd.DataFrame | None = None) -> str:
    lines = [f"# Trust-aware split: {dataset}", "",
             "Per round: trusted training images (the Gaussian-mixture split of per-sample losses, plus the",
             "recalibrated ones), how many untrusted images were recalibrated to another class so far, and",
             "(`confirmed`) how many the inner loop found reliable with their own label and trusted for good."]
    if has_truth:
        lines += ["Against the true labels (known here because the noise was put on by the workflow): the",
                  "trusted set's precision (its labels that are right) and recall (the rightly labelled images",
                  "it keeps with their right label), and the share of recalibrated labels that are right. The judge trains on the true",
                  "labels, so the label-consistency figures stay an honest measurement."]
    else:
        lines += ["The true labels are unknown here: precision and recall cannot be measured."]
    lines += ["", rounds.to_markdown(index=False), ""]
    if per_class is not None:
        lines += ["## Per class, after the last round", "",
                  "`observed`: train images carrying the class's label as given; `trusted`: images trained on with",
                  "it (recalibrated ones included); `recalibrated_in` / `_out`: images whose label the inner loop",
                  "changed to / from it." + (" Right: the label equals the true one; recall: the rightly labelled"
                                             " images of the class that stay trusted." if has_truth else ""),
                  "", per_class.to_markdown(index=False), ""]
    return "\n".join(lines)
