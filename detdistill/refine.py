"""Detector-guided selection (the paper's Algorithm 1) and its ablations.

Per class, images are walked in ascending `prototype_id` order (the order of the initial set).
Each replaced image's chosen candidate joins the class's normal set, so later choices see earlier
ones: the order is part of the method and is fixed here.

Normal set (`refinement.normal_set`)
- ``all`` (default): the normal set starts with every non-defective image of the class; chosen
  candidates join it as they are picked. A defective image is compared with all the class's
  normal images, also those after it in the walk.
- ``sequential`` (the paper's Algorithm 1, literally): the normal set starts empty; a normal
  image joins it when the walk meets it, a chosen candidate when it is picked. A defective image
  is compared only with what came before it.

Methods (one class each below, registered in `METHODS` in the order the tables show them)
- ``d4m``: no refinement, the initial set as generated.
- ``conf``: the candidate with the highest target softmax (ties: lowest candidate index).
- ``sim``: the candidate with the lowest summed cosine similarity to the normal set, ignoring p.
- ``conf_sim`` (ours): pool = candidates predicted as the target with p > beta, the top-k by p;
  if the pool is empty, the single argmax-p candidate; from the pool, the member with the lowest
  summed cosine similarity to the normal set (ties: higher p, then lower index).
Their settings (`beta`, `top_k`, `normal_set`) and defaults: config/schema.yaml, `dataset.refinement`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from .registry import Registry

NORMAL_SETS = ("all", "sequential")
#: config/schema.yaml's section of the refinement settings and their defaults
SCHEMA_SECTION = "dataset.refinement"


@dataclass(frozen=True)
class Choice:
    index: int  # chosen candidate's position in the candidate arrays
    pool: tuple[int, ...]  # candidate positions that were eligible
    fallback: bool  # conf_sim only: no candidate passed the beta filter
    sim_sum: float  # summed cosine similarity of the choice to the normal set


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def cosine_sums(features: np.ndarray, normal_set: np.ndarray) -> np.ndarray:
    """Sum over the normal set of cosine similarities, one value per feature row."""
    if len(normal_set) == 0:
        return np.zeros(len(features))
    return (_unit(features) @ _unit(normal_set).T).sum(axis=1)


def confidence_pool(p_target: np.ndarray, predicted: np.ndarray, target: int, *, beta: float, top_k: int) -> tuple[np.ndarray, bool]:
    """conf_sim's pool (positions): the candidates predicted as `target` with p > beta, the top-k
    by p (ties: lower index); if none passes, the single argmax-p candidate (fallback True)."""
    p_target = np.asarray(p_target, dtype=np.float64)
    predicted = np.asarray(predicted)
    order_by_p = np.lexsort((np.arange(len(p_target)), -p_target))  # p descending, index ascending
    valid = [i for i in order_by_p if predicted[i] == target and p_target[i] > beta]
    fallback = not valid
    return np.array([order_by_p[0]] if fallback else valid[:top_k]), fallback


class RefinementMethod:
    """One way of building the synthetic set: its `name` (a set's name, `gradcam.methods` entry),
    whether it replaces defective images and, if it does, how it picks a candidate. Register a
    subclass with `@METHODS.register`."""

    name: ClassVar[str]
    #: False: the initial set as generated (no candidates needed)
    refines: ClassVar[bool] = True
    #: whether `refinement.top_k` changes its choices (`refinement.beta` reaches every method
    #: that refines, through the images it flags)
    uses_top_k: ClassVar[bool] = False

    def choose(self, p_target: np.ndarray, predicted: np.ndarray, sims: np.ndarray, order_by_p: np.ndarray, target: int,
               *, beta: float, top_k: int) -> tuple[int, tuple[int, ...], bool]:
        """(chosen position, eligible positions, fallback) among one defective image's candidates;
        `sims`: each candidate's summed cosine similarity to the normal set, `order_by_p` the
        positions by p descending (ties: lower position)."""
        raise ValueError(f"refinement method {self.name!r} does not choose candidates")


METHODS: Registry[RefinementMethod] = Registry("refinement method", "the set's method")


@METHODS.register
class D4M(RefinementMethod):
    name = "d4m"
    refines = False


@METHODS.register
class Conf(RefinementMethod):
    name = "conf"

    def choose(self, p_target, predicted, sims, order_by_p, target, *, beta, top_k):
        return int(order_by_p[0]), tuple(range(len(p_target))), False


def _least_similar(pool, sims: np.ndarray, p_target: np.ndarray) -> int:
    return int(min(pool, key=lambda i: (sims[i], -p_target[i], i)))


@METHODS.register
class Sim(RefinementMethod):
    name = "sim"

    def choose(self, p_target, predicted, sims, order_by_p, target, *, beta, top_k):
        pool = tuple(range(len(p_target)))
        return _least_similar(pool, sims, p_target), pool, False


@METHODS.register
class ConfSim(RefinementMethod):
    name = "conf_sim"
    uses_top_k = True

    def choose(self, p_target, predicted, sims, order_by_p, target, *, beta, top_k):
        pool, fallback = confidence_pool(p_target, predicted, target, beta=beta, top_k=top_k)
        return _least_similar(pool, sims, p_target), tuple(int(i) for i in pool), fallback


def select_candidate(
    p_target: np.ndarray,
    predicted: np.ndarray,
    features: np.ndarray,
    target: int,
    normal_set: np.ndarray,
    *,
    method: str,
    beta: float,
    top_k: int,
) -> Choice:
    """Pick one of the candidates generated for a defective image of class `target`."""
    chooser = METHODS.get(method)
    p_target = np.asarray(p_target, dtype=np.float64)
    predicted = np.asarray(predicted)
    order_by_p = np.lexsort((np.arange(len(p_target)), -p_target))  # p descending, index ascending
    sims = cosine_sums(features, normal_set)
    best, pool, fallback = chooser.choose(p_target, predicted, sims, order_by_p, target, beta=beta, top_k=top_k)
    return Choice(best, pool, fallback, float(sims[best]))


def refine_set(
    scored_initial: pd.DataFrame,
    candidates: pd.DataFrame,
    *,
    method: str,
    beta: float | Mapping[int, float],
    top_k: int,
    normal_set: str = "all",
) -> pd.DataFrame:
    """Apply one method to every class.

    beta: the candidates' acceptance threshold (conf_sim), one value or one per label: the betas
      that flagged the defective images.
    normal_set: "all" or "sequential" (module docstring).
    scored_initial: one row per initial image with image_id, label, prototype_id, image_path,
      predicted, p_target, feature (array), defective (bool).
    candidates: one row per candidate with source_image_id, candidate_index, image_path, seed,
      predicted, p_target, feature.
    Returns the final set: one row per initial image, in the initial order, with the image kept or
    the candidate that replaced it and how it was chosen.
    """
    refines = METHODS.get(method).refines
    if normal_set not in NORMAL_SETS:
        raise ValueError(f"unknown normal set {normal_set!r}; expected one of {NORMAL_SETS}")
    rows = []
    for label, group in scored_initial.sort_values(["label", "prototype_id"]).groupby("label", sort=True):
        class_beta = beta[label] if isinstance(beta, Mapping) else beta
        normal = [np.asarray(f) for f in group.loc[~group.defective, "feature"]] if normal_set == "all" else []
        for item in group.itertuples(index=False):
            if normal_set == "sequential" and not item.defective:
                normal.append(np.asarray(item.feature))  # met in the walk: later choices see it
            row = {
                "image_id": item.image_id,
                "label": int(label),
                "prototype_id": int(item.prototype_id),
                "image_path": item.image_path,
                "origin": "initial",
                "replaced_image_id": None,
                "candidate_index": -1,
                "p_target": float(item.p_target),
                "predicted": int(item.predicted),
                "pool_size": 0,
                "fallback": False,
                "sim_sum": float("nan"),
            }
            if item.defective and refines:
                cands = candidates[candidates.source_image_id == item.image_id].sort_values("candidate_index")
                if cands.empty:
                    raise ValueError(f"no candidates for defective image {item.image_id}")
                feats = np.stack([np.asarray(f) for f in cands.feature])
                choice = select_candidate(
                    cands.p_target.to_numpy(),
                    cands.predicted.to_numpy(),
                    feats,
                    int(label),
                    np.stack(normal) if normal else np.empty((0, feats.shape[1])),
                    method=method,
                    beta=class_beta,
                    top_k=top_k,
                )
                chosen = cands.iloc[choice.index]
                normal.append(feats[choice.index])  # the paper adds the choice to the normal set
                row.update(
                    image_id=f"{item.image_id}/cand{int(chosen.candidate_index):02d}",
                    image_path=chosen.image_path,
                    origin="candidate",
                    replaced_image_id=item.image_id,
                    candidate_index=int(chosen.candidate_index),
                    p_target=float(chosen.p_target),
                    predicted=int(chosen.predicted),
                    pool_size=len(choice.pool),
                    fallback=choice.fallback,
                    sim_sum=choice.sim_sum,
                )
            rows.append(row)
    result = pd.DataFrame(rows)
    result.insert(0, "method", method)
    return result
