"""Fréchet distance between Gaussians fitted to two feature sets (FID when the features are
Inception pool3; the backbone is the caller's choice and is recorded beside the number)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N-1) covariance of N x D features, as every FID implementation uses."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need an N x D feature array with N >= 2, got shape {feats.shape}")
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Dowson & Landau 1982)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two feature statistics have different dimensions")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns on near-singular products; handled below
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            # singular product (fewer samples than dimensions): regularize as pytorch-fid does
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # numerical error leaves a tiny imaginary part; a large one means a real problem
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between the Gaussian fits of two N x D feature sets."""
    return frechet_distance(*feature_stats(feats_a), *feature_stats(feats_b))


def fid_report(backbone, fake: np.ndarray, real: np.ndarray, k: int = 3, device="cpu") -> dict:
    """FID and k-NN precision/recall of uint8 image sets `fake` vs `real` on `backbone`'s features,
    with the backbone's name and both sample counts; too few images is a DiffsecError up front."""
    from diffsec.errors import DiffsecError
    from diffsec.metrics.prdc import precision_recall

    for name, images in (("generated", fake), ("reference", real)):
        if len(images) <= max(k, 1):
            raise DiffsecError(f"the {name} set holds {len(images)} images; FID and k-NN precision/recall "
                               f"need more than max(k={k}, 1)")
    ff, fr = backbone.features(fake, progress=True), backbone.features(real, progress=True)
    pr = precision_recall(fr, ff, k=k, device=str(device))
    return {"fid": fid(ff, fr), "precision": pr["precision"], "recall": pr["recall"], "backbone": backbone.name,
            "n_fake": int(len(fake)), "n_real": int(len(real))}
