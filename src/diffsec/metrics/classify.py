"""Classifier-based metrics: accuracy and attack success rate (ASR).

Each takes either logits (N x classes) or predicted labels (N,); `predict_labels` turns a
model and uint8 NHWC images into labels first (CIFAR ResNet preprocessing by default).
"""

from __future__ import annotations

import numpy as np


def _labels(pred) -> np.ndarray:
    pred = np.asarray(pred)
    return pred.argmax(1) if pred.ndim == 2 else pred.astype(np.int64)


def accuracy(pred, labels) -> float:
    """Share of samples whose predicted class equals the true label."""
    pred, labels = _labels(pred), np.asarray(labels)
    if len(pred) != len(labels):
        raise ValueError(f"{len(pred)} predictions for {len(labels)} labels")
    return float((pred == labels).mean())


def attack_success_rate(pred, target) -> float:
    """Share of samples the classifier assigns to the attacker's target class.

    `target` is one class index or one per sample. Callers usually exclude samples whose true
    class already is the target (as backdoor papers do) before calling this.
    """
    pred = _labels(pred)
    return float((pred == np.broadcast_to(np.asarray(target), pred.shape)).mean())


def per_class_accuracy(pred, labels, num_classes: int | None = None) -> np.ndarray:
    pred, labels = _labels(pred), np.asarray(labels)
    n = num_classes or int(max(pred.max(initial=0), labels.max(initial=0)) + 1)
    return np.array([(pred[labels == c] == c).mean() if (labels == c).any() else np.nan for c in range(n)])


def predict_labels(model, images: np.ndarray, batch_size: int = 256, device="cpu") -> np.ndarray:
    """Predicted class of each uint8 NHWC image under a CIFAR ResNet (or any model taking the
    same normalized 32x32 input)."""
    from diffsec.models.resnet_cifar import predict_logits

    return predict_logits(model, images, batch_size, device).argmax(1)


def accuracy_of(model, images: np.ndarray, labels, **kw) -> float:
    return accuracy(predict_labels(model, images, **kw), labels)


def attack_success_rate_of(model, images: np.ndarray, target, **kw) -> float:
    return attack_success_rate(predict_labels(model, images, **kw), target)
