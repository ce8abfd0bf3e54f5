"""Improved precision and recall (Kynkäänniemi et al. 2019).

Each set's manifold is the union of balls around its samples with radius the distance to the
k-th nearest neighbour within the same set. Precision is the share of generated samples inside
the real manifold, recall the share of real samples inside the generated manifold. Distances
are computed in row blocks with torch.cdist, so 10k x 10k sets never need an N x M matrix.
"""

from __future__ import annotations

import numpy as np


def _blocks(n: int, batch_size: int):
    return (slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size))


def knn_radii(feats, k: int = 3, batch_size: int = 1024, device="cpu") -> np.ndarray:
    """Distance from each sample to its k-th nearest neighbour in the same set (self excluded)."""
    import torch

    x = torch.as_tensor(np.asarray(feats, np.float64), device=device)
    if len(x) <= k:
        raise ValueError(f"need more than k={k} samples, got {len(x)}")
    # the (k+1)-th smallest distance: the smallest is the sample itself at 0
    out = [torch.cdist(x[s], x).kthvalue(k + 1, dim=1).values for s in _blocks(len(x), batch_size)]
    return torch.cat(out).cpu().numpy()


def _coverage(queries, points, radii, batch_size: int, device) -> np.ndarray:
    """For each query: is it within radii[j] of some points[j]?"""
    import torch

    q = torch.as_tensor(np.asarray(queries, np.float64), device=device)
    p = torch.as_tensor(np.asarray(points, np.float64), device=device)
    r = torch.as_tensor(radii, device=device)
    out = [(torch.cdist(q[s], p) <= r[None]).any(1) for s in _blocks(len(q), batch_size)]
    return torch.cat(out).cpu().numpy()


def precision_recall(real, fake, k: int = 3, batch_size: int = 1024, device="cpu") -> dict[str, float]:
    """{'precision', 'recall'} of generated features `fake` against real features `real`."""
    r_real = knn_radii(real, k, batch_size, device)
    r_fake = knn_radii(fake, k, batch_size, device)
    return {"precision": float(_coverage(fake, real, r_real, batch_size, device).mean()),
            "recall": float(_coverage(real, fake, r_fake, batch_size, device).mean())}
