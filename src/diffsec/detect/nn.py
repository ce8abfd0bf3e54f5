"""SeDID_NNs: a CIFAR-style ResNet-18 that tells generated from real images by their error map.

Input: the t-error map E_t_SEC (3 x H x W, `detect.terror`), standardised by one mean and one
standard deviation taken from the training images' maps. Output: two logits (0 = real,
1 = generated); the detection score is logit_1 - logit_0. The network is CIFAR ResNet-18
(3 x 3 stem, no max-pool; BasicBlocks [2, 2, 2, 2] at 64-512 channels), as the reference code's
`resnet.ResNet18`, trained with cross-entropy (the reference code regresses one logit with MSE).

Split (`split`): a seeded, class-stratified `train_frac` of all images is the NN's data; within
it, `val_frac` is carved out to select the epoch (the best validation accuracy). Everything else
is the test split, which the network never sees, and on which every figure is computed. The
reference code keeps the epoch with the best *test* accuracy, which leaks the test set; we do not.
Paper: 10% for training, 20 epochs, SGD lr 1e-3, momentum 0.9, weight decay 5e-4, batch 128.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffsec.models import checks
from diffsec.models.celeba_net import Block  # conv-BN-ReLU-conv-BN + (projected) shortcut


class ResNet18(nn.Module):
    """CIFAR ResNet-18 over standardised error maps; `predict` takes raw maps (N x C x H x W)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, width: int = 64):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2 ** i
            layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        x = (maps - self.mean) / self.std
        return self.linear(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))

    @torch.no_grad()
    def scores(self, maps: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """logit_generated - logit_real for each map (eval mode)."""
        self.eval()
        maps = torch.as_tensor(maps)
        dev = self.mean.device
        out = [self(maps[i:i + batch_size].to(dev)) for i in range(0, len(maps), batch_size)]
        logits = torch.cat(out).float().cpu()
        return (logits[:, 1] - logits[:, 0]).numpy()

    def predict(self, maps: np.ndarray | torch.Tensor) -> np.ndarray:
        return (self.scores(maps) > 0).astype(np.int64)


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices the network is fitted on
    val: np.ndarray    # indices that select its epoch
    test: np.ndarray   # everything else: never seen, all figures come from here


def split(labels: np.ndarray, train_frac: float, val_frac: float, seed: int) -> Split:
    """Seeded, class-stratified split of the indices of `labels` (0/1)."""
    if not 0 < train_frac < 1 or not 0 < val_frac < 1:
        raise ValueError(f"train and validation fractions must be in (0, 1), got {train_frac}, {val_frac}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_fit = max(2, int(round(train_frac * len(idx))))
        n_val = max(1, int(round(val_frac * n_fit)))
        if n_fit >= len(idx):
            raise ValueError(f"class {c} has {len(idx)} images: too few to keep a test split")
        parts["val"].append(idx[:n_val])
        parts["train"].append(idx[n_val:n_fit])
        parts["test"].append(idx[n_fit:])
    return Split(**{k: np.sort(np.concatenate(v)) for k, v in parts.items()})


@dataclass(frozen=True)
class NNConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    width: int = 64
    seed: int = 0

    def __post_init__(self):
        checks.positive(self, "epochs", "batch_size", "lr", "width")


def train_detector(maps: np.ndarray, labels: np.ndarray, s: Split, cfg: NNConfig,
                   device: str | torch.device = "cpu") -> tuple[ResNet18, list[dict], int]:
    """Fit on s.train, keep the epoch with the best accuracy on s.val. Returns the model (best
    epoch's weights), the training curve and that epoch."""
    from diffsec.models.classifier_fit import FitConfig, fit

    torch.manual_seed(cfg.seed)
    model = ResNet18(maps.shape[1], 2, cfg.width).to(device)
    fitting = torch.as_tensor(maps[s.train])
    model.mean.fill_(float(fitting.mean()))
    model.std.fill_(float(fitting.std()) or 1.0)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    best = {"acc": -1.0, "epoch": 0, "state": None}

    def keep_best(epoch: int, acc: float | None) -> None:
        if acc is not None and acc > best["acc"]:
            best.update(acc=acc, epoch=epoch, state=copy.deepcopy(model.state_dict()))

    y = torch.as_tensor(labels[s.train], dtype=torch.long, device=device)
    curve = fit(model, lambda idx: fitting[idx].to(device), y, opt, sched,
                FitConfig(cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed),
                torch.Generator().manual_seed(cfg.seed), "SeDID_NNs", heldout=(maps[s.val], labels[s.val]),
                after_epoch=keep_best)
    model.load_state_dict(best["state"])
    return model.eval(), curve, int(best["epoch"])
