"""D4M's prototype step: per-class K-means on VAE latent means."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from .data import check_class_sizes, latent_matrix


def kmeans_prototypes(latents: pd.DataFrame, ipc: int, seed: int, n_init: int = 10) -> pd.DataFrame:
    """Full (not mini-batch) K-means with `ipc` clusters per class; centroids are the prototypes."""
    check_class_sizes(latents, ipc)
    rows = []
    for label, group in latents.groupby("label", sort=True):
        kmeans = KMeans(n_clusters=ipc, n_init=n_init, random_state=seed).fit(latent_matrix(group))
        sizes = np.bincount(kmeans.labels_, minlength=ipc)
        for proto, centre in enumerate(kmeans.cluster_centers_.astype(np.float32)):
            rows.append(
                {
                    "label": int(label),
                    "class_name": group.class_name.iloc[0],
                    "prototype_id": proto,
                    "cluster_size": int(sizes[proto]),
                    "latent": centre,
                    "latent_shape": list(group.latent_shape.iloc[0]),
                }
            )
    return pd.DataFrame(rows)
