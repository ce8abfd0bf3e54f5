"""Datasets read from fetched source archives into image sets (see `diffsec.imageset`).

Shared here: the seeded, class-stratified subset every data stage uses.
"""

from __future__ import annotations

import numpy as np

from diffsec.errors import DiffsecError


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a seeded subset of size n whose class proportions follow `labels`.

    Per-class counts use largest-remainder rounding, so a balanced set (CIFAR-10) gives
    exactly equal counts when n divides evenly. The result is shuffled with the same seed,
    so any prefix of it is still roughly class-balanced (downstream stages take prefixes).
    n <= 0 or n >= len(labels) means all indices, shuffled.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if n <= 0 or n == len(labels):
        return rng.permutation(len(labels))
    if n > len(labels):
        raise DiffsecError(f"asked for {n} items but the split has only {len(labels)}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    # Hand the leftover slots to the classes with the largest fractional parts (ties by class id).
    order = np.lexsort((classes, -(quota - take)))
    take[order[: n - take.sum()]] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
              for c, k in zip(classes, take, strict=True)]
    return rng.permutation(np.concatenate(picked))
