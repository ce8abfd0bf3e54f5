"""The backdoor papers' measurements of one sampled model.

Benign functionality: FID, precision and recall of clean-noise samples against CIFAR-10 test.
Attack: attack precision (A-Prec: Kynkaenniemi precision of triggered samples against the target
distribution, TrojDiff's definition), ASR (share of triggered samples the classifier assigns to
the target class), and for one-image targets the MSE to that image on the [0, 1] pixel scale.
"""

from __future__ import annotations

import numpy as np

from diffsec.metrics import fid, precision_recall


def benign_metrics(features, clean: np.ndarray, reference: np.ndarray, k: int = 3, device: str = "cpu") -> dict:
    """FID / precision / recall of generated `clean` against `reference` (uint8 NHWC) on the
    feature function `features` (a backbone's)."""
    ff, fr = features(clean), features(reference)
    pr = precision_recall(fr, ff, k=k, device=device)
    return {"fid": fid(ff, fr), "precision": pr["precision"], "recall": pr["recall"],
            "n_clean": int(len(clean)), "n_reference": int(len(reference))}


def attack_precision(features, triggered: np.ndarray, target_ref: np.ndarray, k: int = 3,
                     device: str = "cpu") -> float:
    """Share of triggered samples inside the k-NN manifold of the target distribution."""
    return precision_recall(features(target_ref), features(triggered), k=k, device=device)["precision"]


def attack_success_rate(predicted: np.ndarray, target_label: int) -> float:
    return float((np.asarray(predicted) == target_label).mean())


def mse_to_image(images: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error on the [0, 1] scale between each image and the one target image."""
    target = np.asarray(target).reshape(images.shape[1:])
    diff = images.astype(np.float64) / 255.0 - target.astype(np.float64)[None] / 255.0
    return float((diff ** 2).mean())
