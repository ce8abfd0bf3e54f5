"""Fréchet distance between Gaussians fitted to two feature sets (FID when the features are
Inception pool3; the backbone is the caller's choice and is recorded beside the number).

Its noise from the generated side (`fid_bootstrap_se`): the sd (n - 1) of the FID over b resamples
with replacement of the generated features A, the reference B held fixed (every row of a table
shares it, so rows differ by their own samples). A resample's trace term needs no sqrtm: the
eigenvalues of S_A S_B are those of the symmetric PSD matrix S_B^(1/2) S_A S_B^(1/2) (for square
X, Y the products XY and YX share eigenvalues), so

    Tr((S_A S_B)^(1/2)) = sum_i sqrt(max(lambda_i, 0)),  lambda = eig(S_B^(1/2) S_A S_B^(1/2)),

one symmetric eigendecomposition per resample with S_B^(1/2) computed once. A bootstrap FID sits
above the plain one (a resample repeats images, which shrinks its covariance); only its spread is
used."""

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


def bootstrap_indices(n: int, b: int, seed: int = 0) -> np.ndarray:
    """b resamples of range(n) with replacement (b x n), from numpy's PCG64 seeded with `seed`."""
    return np.random.default_rng(seed).integers(0, n, (b, n))


def fid_bootstrap_se(feats_a: np.ndarray, feats_b: np.ndarray, b: int = 100, seed: int = 0) -> float:
    """Standard error of fid(feats_a, feats_b) from resampling feats_a (module docstring); NaN for
    b < 2."""
    if b < 2:
        return float("nan")
    a = np.asarray(feats_a, np.float64)
    mu_b, s_b = feature_stats(feats_b)
    w, v = np.linalg.eigh(s_b)
    root_b = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_b = np.trace(s_b)
    out = np.empty(b)
    for k, idx in enumerate(bootstrap_indices(len(a), b, seed)):
        mu_a, s_a = feature_stats(a[idx])
        lam = np.linalg.eigvalsh(root_b @ s_a @ root_b)
        d = mu_a - mu_b
        out[k] = d @ d + np.trace(s_a) + tr_b - 2 * np.sqrt(np.clip(lam, 0, None)).sum()
    return float(np.std(out, ddof=1))


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
