"""A small residual CNN that labels CelebA faces in InvisibleDiffusion's 8 attribute classes;
its share of generated faces in class 7 is the attack success rate of the CelebA In-D backdoor.

Input convention: uint8 NHWC RGB of any size, resized to the model's working `size` (bilinear,
antialiased) and normalized with per-channel statistics of its own training set, so 32 px and
64 px samples of a diffusion model are classified the way the training faces were. Those
statistics live in config.json next to the weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffsec import resume
from diffsec.errors import DiffsecError
from diffsec.models.classifier_fit import FitConfig

ARCH = "celeba_net"


class Block(nn.Module):
    """Two 3x3 conv + BN layers with a (1x1 projection when the shape changes) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CelebaNet(nn.Module):
    """Stem + four residual stages (width, 2, 4, 8 x width; the last three halve the map), global
    average pooling and a linear head: ~1.2 M parameters at width 32."""

    def __init__(self, num_classes: int = 8, width: int = 32, size: int = 64,
                 mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
                 std: tuple[float, float, float] = (0.25, 0.25, 0.25)):
        super().__init__()
        if width <= 0 or size <= 0:
            raise DiffsecError(f"width and size must be positive, got width {width}, size {size}")
        self.num_classes, self.width, self.size = num_classes, width, size
        self.register_buffer("mean", torch.zeros(3), persistent=False)  # config.json holds them
        self.register_buffer("std", torch.ones(3), persistent=False)
        self.set_normalization(mean, std)
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, c = [], width
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            stages.append(Block(c, mult * width, stride))
            c = mult * width
        self.stages = nn.Sequential(*stages)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(c, num_classes)

    def set_normalization(self, mean, std) -> None:
        """Per-channel mean and std of [0, 1] pixels (see `channel_stats`)."""
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (3,) or std.shape != (3,) or not bool((std > 0).all()):
            raise DiffsecError(f"normalization needs 3 means and 3 positive stds, got {mean.tolist()}, "
                               f"{std.tolist()}")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for already preprocessed (`preprocess`) N x 3 x size x size input."""
        x = self.stages(self.stem(x))
        return self.head(self.drop(F.adaptive_avg_pool2d(x, 1).flatten(1)))

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Labels (int64) for uint8 NHWC RGB images of any size."""
        return predict_logits(self, images, batch_size).argmax(1)


def _check_images(x: torch.Tensor) -> None:
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise DiffsecError(f"expected uint8 NHWC RGB images, got {x.dtype} {tuple(x.shape)}")


def preprocess(model: CelebaNet, images: np.ndarray | torch.Tensor, flip: torch.Tensor | None = None
               ) -> torch.Tensor:
    """uint8 NHWC RGB (any size) -> normalized float N x 3 x size x size on the model's device;
    `flip` (bool per image) mirrors those images left to right."""
    x = torch.as_tensor(images)
    _check_images(x)
    x = x.to(model.mean.device).permute(0, 3, 1, 2).float().div(255.0)
    if flip is not None:
        x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
    if x.shape[-2:] != (model.size, model.size):
        x = F.interpolate(x, size=(model.size, model.size), mode="bilinear", antialias=True,
                          align_corners=False)
    return (x - model.mean.view(1, 3, 1, 1)) / model.std.view(1, 3, 1, 1)


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of [0, 1] pixels, in chunks (the full train set is ~2 GB uint8)."""
    _check_images(torch.as_tensor(images[:1]))
    if len(images) == 0:
        raise DiffsecError("cannot compute pixel statistics of an empty image set")
    s, s2, n = np.zeros(3), np.zeros(3), 0
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].reshape(-1, 3).astype(np.float64) / 255.0
        s, s2, n = s + x.sum(0), s2 + (x * x).sum(0), n + len(x)
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0)).clip(1e-3)  # a flat channel still divides
    return mean.tolist(), std.tolist()


@torch.no_grad()
def predict_logits(model: CelebaNet, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits (N x classes, float32) for uint8 NHWC RGB images; the model is put in eval mode."""
    model.eval()
    out = [model(preprocess(model, images[i:i + batch_size])).float().cpu().numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), np.float32)


def train(model: CelebaNet, images: np.ndarray, labels: np.ndarray, cfg: FitConfig,
          heldout: tuple[np.ndarray, np.ndarray] | None = None, ckpt: resume.Checkpoint | None = None) -> list[dict]:
    """AdamW with a one-cycle schedule and seeded random horizontal flips; fits the model's input
    normalization to `images` first. Returns one curve row per step (held-out accuracy per epoch);
    resumes from `ckpt`, checkpointed at epoch ends.

    Images stay uint8 (on the model's device) and are preprocessed per batch, so the whole CelebA
    train partition fits.
    """
    from diffsec.models.classifier_fit import fit

    if len(images) == 0 or len(images) != len(labels):
        raise DiffsecError(f"training needs matching, non-empty images and labels, got {len(images)} "
                           f"images and {len(labels)} labels")
    model.set_normalization(*channel_stats(images))
    device = model.mean.device
    x_all = torch.as_tensor(np.ascontiguousarray(images)).to(device)
    y_all = torch.as_tensor(labels, dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and flips independent of other RNG use
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.total_steps(len(x_all)),
                                                pct_start=0.15)

    def inputs(idx):  # a flip per image, drawn from the run's generator after the batch order
        flip = torch.rand(len(idx), generator=gen) < 0.5
        return preprocess(model, x_all[idx.to(device)], flip)

    return fit(model, inputs, y_all, opt, sched, cfg, gen, "celeba classifier", heldout, ckpt)


def save_celeba_classifier(model: CelebaNet, directory: str | os.PathLike, **extra) -> None:
    """Write model.safetensors + config.json (arch, num_classes, width, size, mean, std, extra)."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(d / "model.safetensors"))
    config = {"arch": ARCH, "num_classes": model.num_classes, "width": model.width, "size": model.size,
              "mean": model.mean.tolist(), "std": model.std.tolist(), "pixels": "[0, 1]", **extra}
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))


def load_celeba_classifier(directory: str | os.PathLike, device: str | torch.device = "cpu") -> CelebaNet:
    """Load a train-celeba-classifier artifact (or any directory written by save_celeba_classifier)."""
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        raise DiffsecError(f"{d} is not a saved CelebA classifier (needs config.json and model.safetensors)")
    try:
        config = json.loads((d / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DiffsecError(f"{d / 'config.json'}: unreadable ({e})") from None
    if not isinstance(config, dict) or config.get("arch") != ARCH:
        arch = config.get("arch") if isinstance(config, dict) else None
        raise DiffsecError(f"{d} holds a {arch!r} model, not a CelebA classifier ({ARCH!r})")
    try:
        model = CelebaNet(config["num_classes"], config["width"], config["size"], config["mean"], config["std"])
        model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
    except Exception as e:  # missing config key, wrong shapes, a corrupt safetensors file
        why = " ".join(str(e).split())  # load_state_dict's message spans lines
        raise DiffsecError(f"{d}: cannot load the CelebA classifier ({type(e).__name__}: {why})") from None
    return model.to(device).eval()


def write_classifier(model: CelebaNet, curve: list[dict], test: tuple[np.ndarray, np.ndarray], n_train: int,
                     directory: str | os.PathLike) -> dict:
    """model.safetensors + config.json, curve.csv/png and eval.json: test accuracy, confusion, and the
    ASR a clean generator would score (the share of non-target faces called the target class)."""
    from functools import partial

    from diffsec.data.celeba import CLASSES, TARGET_CLASS
    from diffsec.models.classifier_fit import write_report

    def extra(pred: np.ndarray, truth: np.ndarray) -> dict:
        others = truth != TARGET_CLASS
        return {"classes": list(CLASSES), "target_class": TARGET_CLASS,
                "false_target_rate": float((pred[others] == TARGET_CLASS).mean()) if others.any() else None}

    save = partial(save_celeba_classifier, classes=list(CLASSES), target_class=TARGET_CLASS)
    return write_report(model, curve, test, n_train, directory, save, "test", "CelebA attribute classifier", extra)
