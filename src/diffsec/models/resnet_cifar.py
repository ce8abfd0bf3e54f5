"""CIFAR ResNets (He et al. 2016, option-A shortcuts), layer for layer the
akamaster/pytorch_resnet_cifar10 architecture so its pretrained state dicts load strictly.

Input convention of this module: uint8 NHWC images of any size; they are resized to 32x32
(bilinear, antialiased) when needed and normalized with the akamaster statistics (ImageNet
mean/std on [0, 1] pixels), which is what the pretrained weights were trained with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffsec.errors import DiffsecError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# depth = 6n + 2; n basic blocks per stage
ARCHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad the new channels (option A)."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # akamaster names the identity `shortcut` too (an empty Sequential): no state either way
        self.shortcut = ShortcutA(planes) if stride != 1 or in_planes != planes else nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, arch: str = "resnet20", num_classes: int = 10):
        super().__init__()
        if arch not in ARCHS:
            raise DiffsecError(f"unknown CIFAR ResNet {arch!r}; known: {', '.join(ARCHS)}")
        self.arch, self.num_classes = arch, num_classes
        n = ARCHS[arch]
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in = 16
        for i, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(BasicBlock(planes_in, planes, s))
                planes_in = planes
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # akamaster's init, for models trained from scratch
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate 64-d features (after global average pooling) of normalized NCHW input."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def resnet20(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar("resnet20", num_classes)


def resnet56(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar("resnet56", num_classes)


def preprocess(images: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 NHWC (any size, 1 or 3 channels) -> normalized float NCHW at 32x32."""
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise DiffsecError(f"expected uint8 NHWC images, got {x.dtype} {tuple(x.shape)}")
    x = x.to(device).permute(0, 3, 1, 2).float().div(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (32, 32):
        x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def _batched(fn, images: np.ndarray, batch_size: int, device, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    out = []
    starts = range(0, len(images), batch_size)
    for i in tqdm(starts, disable=not progress, desc="resnet", leave=False):
        out.append(fn(preprocess(images[i:i + batch_size], device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def predict_logits(model: ResNetCifar, images: np.ndarray, batch_size: int = 256,
                   device: str | torch.device = "cpu", progress: bool = False) -> np.ndarray:
    """Logits (N x classes) for uint8 NHWC images; the model is put in eval mode."""
    model.eval().to(device)
    return _batched(model, images, batch_size, device, progress)


def extract_features(model: ResNetCifar, images: np.ndarray, batch_size: int = 256,
                     device: str | torch.device = "cpu", progress: bool = False) -> np.ndarray:
    """Penultimate features (N x 64) for uint8 NHWC images."""
    model.eval().to(device)
    return _batched(model.features, images, batch_size, device, progress)


def load_akamaster(path: str | os.PathLike, arch: str | None = None) -> tuple[ResNetCifar, dict]:
    """Load an akamaster checkpoint ({'state_dict', 'best_prec1'}, keys prefixed `module.`).

    `arch` is inferred from the number of blocks when not given. Returns (model, info) where
    info holds the checkpoint's reported top-1 (`best_prec1`).
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DiffsecError(f"weights file {path} does not exist") from None
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        raise DiffsecError(f"cannot read {path} as an akamaster checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise DiffsecError(f"{path} is not an akamaster checkpoint (no 'state_dict')")
    sd = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("layer1.")})
    inferred = next((a for a, n in ARCHS.items() if n == n_blocks), None)
    if arch is None:
        arch = inferred
    if arch is None or arch != inferred:
        raise DiffsecError(f"{path} holds a CIFAR ResNet with {n_blocks} blocks per stage, "
                           f"which does not match --arch {arch}")
    num_classes = sd["linear.weight"].shape[0]
    model = ResNetCifar(arch, num_classes)
    model.load_state_dict(sd, strict=True)
    return model.eval(), {"best_prec1": ckpt.get("best_prec1")}


def save_classifier(model: ResNetCifar, directory: str | os.PathLike, **extra) -> None:
    """Write model.safetensors + config.json (arch, classes, input normalization)."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(d / "model.safetensors"))
    config = {"arch": model.arch, "num_classes": model.num_classes,
              "input": {"size": 32, "mean": list(MEAN), "std": list(STD), "pixels": "[0, 1]"},
              **extra}
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))


def load_classifier(directory: str | os.PathLike) -> ResNetCifar:
    """Load a classifier saved by `save_classifier` (e.g. the classifier-resnet artifact); anything
    else is one DiffsecError."""
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        raise DiffsecError(f"{d} is not a saved classifier (needs config.json and model.safetensors)")
    try:
        config = json.loads((d / "config.json").read_text())
        model = ResNetCifar(config["arch"], config["num_classes"])
        model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
    except Exception as e:  # noqa: BLE001 - bad json, missing keys, wrong shapes, a torn safetensors file
        why = " ".join(str(e).split())
        raise DiffsecError(f"{d}: cannot load the CIFAR ResNet classifier ({type(e).__name__}: {why})") from None
    return model.eval()
