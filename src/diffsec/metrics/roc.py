"""ROC figures for membership-inference / detection scores (higher score = positive class).

The exact figures use every distinct score as a threshold (sklearn). Several papers instead
sweep a fixed grid of thresholds between the smallest and largest score, which can differ a
little (coarser TPR at low FPR, and no (0, 0) end point); `grid_roc_metrics` reproduces that.
"""

from __future__ import annotations

import numpy as np

FPR_TARGETS = {"tpr@1%fpr": 0.01, "tpr@0.1%fpr": 0.001}


def _check(scores, labels):
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(int)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"need 1-d scores and labels of one length, got {scores.shape}, {labels.shape}")
    if set(np.unique(labels)) != {0, 1}:
        raise ValueError("labels must contain both classes 0 and 1")
    return scores, labels


def scores_labels(positive, negative) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate positive (e.g. member) and negative scores with labels 1 and 0."""
    positive, negative = np.ravel(positive), np.ravel(negative)
    return np.concatenate([positive, negative]), np.r_[np.ones(len(positive)), np.zeros(len(negative))]


def _summary(fpr, tpr, n_pos: int, n_neg: int, auc: float) -> dict[str, float]:
    acc = (tpr * n_pos + (1 - fpr) * n_neg) / (n_pos + n_neg)
    out = {"auc": float(auc), "acc": float(acc.max())}
    for key, target in FPR_TARGETS.items():
        ok = fpr <= target + 1e-12
        out[key] = float(tpr[ok].max()) if ok.any() else 0.0
    return out


def roc_metrics(scores, labels) -> dict[str, float]:
    """Exact AUC, best accuracy over thresholds, and TPR at 1% / 0.1% FPR (the largest TPR of
    any threshold whose FPR does not exceed the target)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores, labels = _check(scores, labels)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return _summary(fpr, tpr, int(labels.sum()), int((1 - labels).sum()), roc_auc_score(labels, scores))


def grid_roc_metrics(scores, labels, n_grid: int = 1000) -> dict[str, float]:
    """The papers' variant: thresholds t on np.linspace(min, max, n_grid), positive iff
    score >= t; AUC by the trapezoid rule over those points only."""
    from sklearn.metrics import auc

    scores, labels = _check(scores, labels)
    pos, neg = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])
    t = np.linspace(scores.min(), scores.max(), n_grid)
    # counts of scores >= t via binary search: O((N + grid) log N)
    tpr = (len(pos) - np.searchsorted(pos, t, side="left")) / len(pos)
    fpr = (len(neg) - np.searchsorted(neg, t, side="left")) / len(neg)
    return _summary(fpr, tpr, len(pos), len(neg), auc(fpr, tpr))


def roc_report(scores, labels, n_grid: int = 1000) -> dict[str, float]:
    """Exact figures, and the grid variant beside them under a `grid_` prefix."""
    out = roc_metrics(scores, labels)
    out.update({f"grid_{k}": v for k, v in grid_roc_metrics(scores, labels, n_grid).items()})
    return out
