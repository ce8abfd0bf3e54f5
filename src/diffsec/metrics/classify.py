"""Classifier-based metrics: accuracy and attack success rate (ASR).

Each takes either logits (N x classes) or predicted labels (N,); `predict_labels` turns a
model and uint8 NHWC images into labels first (CIFAR ResNet preprocessing by default).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

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


def class_report(model, images: np.ndarray, labels: np.ndarray, device="cpu",
                 original: np.ndarray | None = None) -> dict:
    """Accuracy and per-class accuracy of a CIFAR ResNet on labelled images; with `original`,
    `images` are those originals after a round trip (e.g. an encode/decode through a latent
    world's VAE: the ceiling of what its samples can show the classifier), and the report adds the
    round trip's PSNR and the accuracy on the originals."""
    extra = {}
    if original is not None:
        from diffsec.metrics.quality import psnr

        extra = {"vae_psnr": float(psnr(images, original).mean()),
                 "accuracy_original": accuracy(predict_labels(model, original, device=str(device)), labels)}
    pred = predict_labels(model, images, device=str(device))
    return {"accuracy": accuracy(pred, labels),
            "per_class": per_class_accuracy(pred, labels, model.num_classes).tolist(),
            "classifier": f"{model.arch}-cifar10", "n": int(len(pred)), **extra}


def accuracy_of(model, images: np.ndarray, labels, **kw) -> float:
    return accuracy(predict_labels(model, images, **kw), labels)


def attack_success_rate_of(model, images: np.ndarray, target, **kw) -> float:
    return attack_success_rate(predict_labels(model, images, **kw), target)


def confusion_png(path, cm: np.ndarray, names: list[str], title: str) -> None:
    """The confusion matrix (rows: true class, columns: predicted) with its counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > cm.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_evaluation(model, images: np.ndarray, labels: np.ndarray, batch_size: int, device,
                     directory: str | os.PathLike, reported_top1) -> dict:
    """eval.json (accuracy, per-class accuracy, n) and confusion.png of `model` on a labelled set."""
    from sklearn.metrics import confusion_matrix

    from diffsec.models.captions import CIFAR10_CLASSES
    from diffsec.models.resnet_cifar import predict_logits

    k = model.num_classes
    names = list(CIFAR10_CLASSES) if k == 10 else [str(c) for c in range(k)]
    pred = predict_logits(model, images, batch_size, device, progress=True).argmax(1)
    acc = accuracy(pred, labels)
    report = {"accuracy": acc, "n": int(len(labels)),
              "per_class": {n: (None if np.isnan(a) else float(a))
                            for n, a in zip(names, per_class_accuracy(pred, labels, k), strict=True)},
              "arch": model.arch, "reported_top1": reported_top1}
    d = Path(directory)
    (d / "eval.json").write_text(json.dumps(report, indent=2))
    confusion_png(d / "confusion.png", confusion_matrix(labels, pred, labels=range(k)), names,
                  f"{model.arch}: accuracy {acc:.4f} (n={len(labels)})")
    return report
