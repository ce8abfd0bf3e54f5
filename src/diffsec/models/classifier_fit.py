"""The epoch loop, checkpointing and reporting both small classifiers trained in the DAG share (the
MNIST digit CNN and the CelebA attribute net); each keeps its own optimizer and input pipeline.

Training minimises the cross-entropy -log softmax(f(x))_y over minibatches of a seeded permutation
of the training set, one permutation per epoch. The state (weights, optimizer, lr schedule, batch
generator, torch's global stream that dropout draws from, the curve so far) is checkpointed at
epoch ends, so a killed run resumes to the same weights. The report is the confusion matrix
C[true, predicted] on held-out images, per-class accuracy C_kk / sum_j C_kj and overall accuracy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffsec import resume
from diffsec.models import checks
from diffsec.models.rng import rng_state, set_rng_state


@dataclass
class FitConfig:
    epochs: int
    batch_size: int
    lr: float
    seed: int

    def __post_init__(self):
        checks.positive(self, "epochs", "batch_size", "lr")

    def total_steps(self, n: int) -> int:
        return self.epochs * -(-n // self.batch_size)


def _epoch(model, inputs, labels, opt, sched, gen, batch_size: int, epoch: int, curve: list[dict], t0: float,
           bar) -> None:
    model.train()
    for idx in torch.randperm(len(labels), generator=gen).split(batch_size):
        x = inputs(idx)
        y = labels[idx.to(labels.device)]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        acc = (logits.argmax(1) == y).float().mean().item()
        curve.append({"step": len(curve) + 1, "epoch": epoch, "loss": loss.item(), "train_acc": acc,
                      "heldout_acc": None, "seconds": round(time.time() - t0, 3)})
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


def fit(model: torch.nn.Module, inputs: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor,
        opt, sched, cfg: FitConfig, gen: torch.Generator, desc: str,
        heldout: tuple[np.ndarray, np.ndarray] | None = None, ckpt: resume.Checkpoint | None = None,
        after_epoch: Callable[[int, float | None], None] | None = None) -> list[dict]:
    """Cross-entropy epochs over a seeded permutation; `inputs(idx)` turns a CPU index batch into
    the model's input (drawing any augmentation from `gen` itself, after the permutation). One
    curve row per step, held-out accuracy (`model.predict`) at each epoch's end, where the state
    is checkpointed (`ckpt.every` epochs) and `after_epoch(epoch, heldout_acc)` is called (e.g. to
    keep the weights of the best epoch)."""
    from tqdm import tqdm

    ckpt, device = ckpt or resume.disabled(), labels.device
    curve: list[dict] = []
    if (state := ckpt.load()) is not None:
        model.load_state_dict(state["model"]), opt.load_state_dict(state["opt"]), sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"]), set_rng_state(state["rng"], device)
        curve = state["curve"]
    t0 = time.time() - (curve[-1]["seconds"] if curve else 0.0)
    bar = tqdm(total=cfg.total_steps(len(labels)), initial=len(curve), desc=desc, unit=" step", mininterval=1.0)
    for epoch in range(ckpt.start_step + 1 if state else 1, cfg.epochs + 1):
        _epoch(model, inputs, labels, opt, sched, gen, cfg.batch_size, epoch, curve, t0, bar)
        if heldout is not None:
            curve[-1]["heldout_acc"] = float((model.predict(heldout[0]) == heldout[1]).mean())
        if after_epoch is not None:
            after_epoch(epoch, curve[-1]["heldout_acc"])
        if ckpt.due(epoch, cfg.epochs):
            ckpt.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                       "gen": gen.get_state(), "rng": rng_state(device), "curve": curve}, epoch)
    bar.close()
    return curve


def confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> dict:
    """Accuracy, per-class accuracy (4 decimals) and the confusion matrix (rows: truth)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (truth, pred), 1)
    return {"accuracy": float((pred == truth).mean()),
            "per_class_accuracy": (cm.diagonal() / cm.sum(1).clip(1)).round(4).tolist(), "confusion": cm.tolist()}


def write_curves(curve: list[dict], directory: str | os.PathLike, title: str) -> None:
    """curve.csv (long: loss, train_acc per step, heldout_acc per epoch) and curve.png."""
    from diffsec.training import write_curves as write

    steps = [r["step"] for r in curve]
    held = [(r["step"], r["heldout_acc"]) for r in curve if r["heldout_acc"] is not None]
    curves = {"loss": (steps, [r["loss"] for r in curve]), "train_acc": (steps, [r["train_acc"] for r in curve])}
    if held:
        curves["heldout_acc"] = tuple(map(list, zip(*held, strict=True)))
    d = Path(directory)
    write(d / "curve.csv", d / "curve.png", curves, title=title, ylabel="")


def write_report(model, curve: list[dict], held: tuple[np.ndarray, np.ndarray], n_train: int,
                 directory: str | os.PathLike, save: Callable, split: str, title: str,
                 extra: Callable[[np.ndarray, np.ndarray], dict] | None = None) -> dict:
    """Evaluate on the held-out split, save the model (`save(model, dir, <split>_accuracy=...)`),
    write curve.csv/png and eval.json; returns the eval dict."""
    import json

    x, y = held
    pred = model.predict(x)
    r = confusion(pred, y, model.num_classes)
    result = {f"{split}_accuracy": r["accuracy"], f"n_{split}": len(y), "n_train": n_train,
              "train_seconds": curve[-1]["seconds"], "per_class_accuracy": r["per_class_accuracy"],
              "confusion": r["confusion"], **(extra(pred, y) if extra else {})}
    d = Path(directory)
    save(model, d, **{f"{split}_accuracy": r["accuracy"]})
    write_curves(curve, d, title)
    (d / "eval.json").write_text(json.dumps(result, indent=2))
    return result
