"""A small CNN that labels MNIST digits; the backdoor stages use it to score generated digits.

Input convention: uint8 NHWC of any size with 1 or 3 channels. RGB is turned to gray
(ITU-R 601 luma) and the image resized to 28x28 with antialiasing, so the 3-channel 32x32
samples of a diffusion model are classified the way the 28x28 training digits were.
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

MEAN, STD = 0.1307, 0.3081  # MNIST pixel statistics on [0, 1]
LUMA = (0.299, 0.587, 0.114)


class MnistNet(nn.Module):
    """Two conv + pool stages and a two-layer head (~420k parameters)."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.num_classes, self.width = num_classes, width
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 7 * 7, 128)
        self.fc2 = nn.Linear(128, num_classes)
        self.drop = nn.Dropout(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(self.drop(F.relu(self.fc1(x.flatten(1)))))

    def predict(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Labels (int64) for uint8 NHWC images."""
        return predict_logits(self, images, batch_size).argmax(1)


def preprocess(images: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 NHWC (any size, 1 or 3 channels) -> normalized float N x 1 x 28 x 28."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DiffsecError(f"expected uint8 NHWC images with 1 or 3 channels, got {x.dtype} {tuple(x.shape)}")
    x = x.to(device).permute(0, 3, 1, 2).float().div(255.0)
    if x.shape[1] == 3:
        x = (x * torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if x.shape[-2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    return (x - MEAN) / STD


@torch.no_grad()
def predict_logits(model: MnistNet, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = [model(preprocess(images[i:i + batch_size], device)).float().cpu().numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), np.float32)


def predict(model: MnistNet, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Labels (int64) for uint8 NHWC images; same as `model.predict`."""
    return model.predict(images, batch_size)


def train(model: MnistNet, images: np.ndarray, labels: np.ndarray, cfg: FitConfig,
          heldout: tuple[np.ndarray, np.ndarray] | None = None, ckpt: resume.Checkpoint | None = None) -> list[dict]:
    """Adam with a one-cycle schedule; returns one curve row per step (held-out accuracy per
    epoch). Resumes from `ckpt`, checkpointed at epoch ends."""
    from diffsec.models.classifier_fit import fit

    device = next(model.parameters()).device
    x_all = preprocess(images, device)  # small enough to hold preprocessed
    y_all = torch.as_tensor(labels, dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order independent of other RNG use
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.total_steps(len(x_all)),
                                                pct_start=0.15)
    return fit(model, lambda idx: x_all[idx.to(device)], y_all, opt, sched, cfg, gen, "mnist classifier", heldout,
               ckpt)


def save_mnist_classifier(model: MnistNet, directory: str | os.PathLike, **extra) -> None:
    """Write model.safetensors + config.json."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(d / "model.safetensors"))
    config = {"arch": "mnist_net", "num_classes": model.num_classes, "width": model.width,
              "input": {"size": 28, "channels": 1, "mean": MEAN, "std": STD, "rgb_to_gray": list(LUMA)},
              **extra}
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))


def load_mnist_classifier(directory: str | os.PathLike, device: str | torch.device = "cpu") -> MnistNet:
    """Load a train-mnist-classifier artifact (or any directory written by save_mnist_classifier)."""
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        raise DiffsecError(f"{d} is not a saved MNIST classifier (needs config.json and model.safetensors)")
    config = json.loads((d / "config.json").read_text())
    model = MnistNet(config["num_classes"], config.get("width", 32))
    model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
    return model.to(device).eval()


def write_classifier(model: MnistNet, curve: list[dict], heldout: tuple[np.ndarray, np.ndarray], n_train: int,
                     directory: str | os.PathLike) -> dict:
    """model.safetensors + config.json, curve.csv/png and eval.json (held-out accuracy, confusion)."""
    from diffsec.models.classifier_fit import write_report

    return write_report(model, curve, heldout, n_train, directory, save_mnist_classifier, "heldout",
                        "MNIST digit classifier")
