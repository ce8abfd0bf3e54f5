"""The epoch loop and the curve figure both small classifiers trained in the DAG share (the MNIST
digit CNN and the CelebA attribute net); each keeps its own optimizer and input pipeline."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


def fit(model: torch.nn.Module, inputs: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor,
        opt, sched, epochs: int, batch_size: int, gen: torch.Generator, desc: str,
        heldout: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict]:
    """Cross-entropy epochs over a seeded permutation; `inputs(idx)` turns a CPU index batch into
    the model's input (drawing any augmentation from `gen` itself, after the permutation). One
    curve row per step, held-out accuracy (`model.predict`) at each epoch's end."""
    from tqdm import tqdm

    device = labels.device
    steps = epochs * -(-len(labels) // batch_size)
    curve, step, t0 = [], 0, time.time()
    bar = tqdm(total=steps, desc=desc, unit=" step", mininterval=1.0)
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in torch.randperm(len(labels), generator=gen).split(batch_size):
            x = inputs(idx)
            y = labels[idx.to(device)]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            acc = (logits.argmax(1) == y).float().mean().item()
            curve.append({"step": step, "epoch": epoch, "loss": loss.item(), "train_acc": acc,
                          "heldout_acc": None, "seconds": round(time.time() - t0, 3)})
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if heldout is not None:
            curve[-1]["heldout_acc"] = float((model.predict(heldout[0]) == heldout[1]).mean())
    bar.close()
    return curve


def plot_curve(path, curve: list[dict], heldout_label: str, ylim: tuple[float, float],
               chance: float | None = None) -> None:
    """Training loss (log) and accuracy: per-batch values faint, their moving mean, held-out points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in curve])
    k = max(1, len(curve) // 40)  # moving average: per-batch values are too noisy to read

    def smooth(v):
        return np.convolve(v, np.ones(k) / k, mode="valid")

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key in ((a, "loss"), (b, "train_acc")):
        v = np.array([r[key] for r in curve])
        ax.plot(steps, v, lw=0.5, alpha=0.3, color="C0")
        ax.plot(steps[k - 1:], smooth(v), lw=1.5, color="C0", label=f"train batch (mean of {k})")
    a.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="training loss")
    ev = [r for r in curve if r["heldout_acc"] is not None]
    b.plot([r["step"] for r in ev], [r["heldout_acc"] for r in ev], "o-", color="C1", label=heldout_label)
    if chance is not None:
        b.axhline(chance, color="gray", lw=0.8, ls=":", label="chance")
    b.set(xlabel="step", ylabel="accuracy", ylim=ylim, title="accuracy")
    b.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
