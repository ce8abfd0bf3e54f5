"""Target detectors: the judges of BadT2I's attack success (paper 001's removal accuracy).

A detector f answers "does this image show the backdoor's target?": kind `patch` (the pixel
backdoor: the target patch in the top-left corner, `badt2i.paste_patch`) or `gray` (the style
backdoor: black and white, `badt2i.grayscale`). ASR of a generation set = the share of its images
with f(x) = 1; removal accuracy = 1 - ASR after a defense.

Data. From real images x_1..x_n (CIFAR-10 train; the held-out set from CIFAR-10 test) a seeded
permutation picks floor(n / 2) images to carry the target, y_i = 1, x_i <- T(x_i) (T = paste_patch
with the given patch, or grayscale); the rest keep y_i = 0. With a VAE (`vae`), a second seeded
subset, a share `vae_share` of the examples drawn independently of the labels, goes through the
world's encode/decode round trip (`models.t2i.vae_roundtrip`): generated images carry the VAE's
blur and tint, so a detector must know the target through it, and since blur is independent of
the label it cannot stand in for the target. Faded patches (`min_contrast` c_min < 1): the backdoored
world draws the patch as it learned it, often a low-contrast square of the patch's colour (on the
tiny world the exact-patch judge missed 43 of 200 triggered generations that all showed it, at
p 0.00-0.49). Each positive patch example i then gets its own contrast c_i ~ U[c_min, 1] from a
generator seeded apart from the labels, and its s x s corner becomes m_i + c_i (P - m_i), P the
pasted patch and m_i its mean colour per channel: c = 1 is the exact patch, c -> 0 a flat square of
its mean colour. Negatives are untouched, so the judge still needs the square where the patch goes
(its false alarms are measured on held-out images and on an unattacked world's generations).
(All examples through the VAE, the first design,
reached 1.0 / 0.987 held-out accuracy on round trips but only 0.943 / 0.702 on the same sharp
images: the grayscale judge missed 58 % of exactly gray images, having learned the VAE's tint of
gray.) Held-out accuracy is reported on the held-out set with every image round-tripped (what
generations look like) and with none. Each image appears once, with or without the target, so the
detector cannot compare an image with its own twin.

Model. A small CNN (uint8 NHWC in, x / 127.5 - 1): [conv3x3 - ReLU] x 2 at w channels, 2x2
max-pool, the same at 2w, max-pool, conv3x3 at 4w - ReLU, then global average and global max pool
side by side (the mean serves a whole-image property like grayscale, the max a local one like a
patch, which an average over the image would dilute to 1/16), and a linear layer to two logits
(0 = no target, 1 = target); p(target) = softmax(logits)_1, f(x) = 1[p > 0.5]. No batch norm: an
image's answer never depends on the batch it is judged in, and a short run leaves no gap between
batch and running statistics (with BN, a 30-step run scored 1.0 in train mode and 0.5 in eval
mode). Trained with cross-entropy and Adam for a fixed number of epochs
(`models.classifier_fit.fit`, resumable per epoch); the held-out set only measures the final
model, it selects nothing. The same design serves both kinds: grayscale is a per-pixel property
(R = G = B) that a linear model on chroma statistics would catch on exact targets, but a generated
"black and white" image is only nearly gray after the VAE, and one trained network judges both on
the images generations look like.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffsec.backdoor.badt2i import PATCH_FRAC, grayscale, paste_patch, patch_side
from diffsec.errors import DiffsecError
from diffsec.models import checks

KINDS = ("patch", "gray")
BACKDOOR_OF = {"patch": "pixel", "gray": "style"}   # detector kind -> BadT2I backdoor it judges
WEIGHTS, CONFIG = "model.safetensors", "detector.json"


@dataclass(frozen=True)
class DetectorConfig:
    kind: str = "patch"
    width: int = 16
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    patch_frac: float = PATCH_FRAC
    min_contrast: float = 1.0   # kind patch: positives' patch contrast c ~ U[min_contrast, 1] (1: exact patch)
    vae_share: float = 0.0   # share of training examples sent through the VAE round trip (the CLI does it)
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DiffsecError(f"unknown detector kind {self.kind!r} (choose from {', '.join(KINDS)})")
        checks.positive(self, "width", "epochs", "batch_size", "lr", "patch_frac")
        if not 0 <= self.min_contrast <= 1:
            raise DiffsecError(f"min_contrast {self.min_contrast}: must lie in [0, 1]")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())


class TargetDetector(nn.Module):
    """The small CNN of the module docstring; `predict(uint8 NHWC) -> int64 labels`."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(_block(3, w), _block(w, w), nn.MaxPool2d(2), _block(w, 2 * w),
                                      _block(2 * w, 2 * w), nn.MaxPool2d(2), _block(2 * w, 4 * w))
        self.head = nn.Linear(8 * w, 2)
        self.num_classes = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([F.adaptive_avg_pool2d(h, 1), F.adaptive_max_pool2d(h, 1)], 1).flatten(1))

    @torch.no_grad()
    def probability(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """p(target) per uint8 NHWC image (eval mode)."""
        self.eval()
        dev = next(self.parameters()).device
        out = [F.softmax(self(to_input(images[i:i + batch_size], dev)), 1)[:, 1].cpu()
               for i in range(0, len(images), batch_size)]
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return (self.probability(images) > 0.5).astype(np.int64)


def to_input(images: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 NHWC (3 channels) -> float NCHW in [-1, 1]."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise DiffsecError(f"the detector needs uint8 N x H x W x 3 images, got {x.dtype} {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def with_target(images: np.ndarray, kind: str, patch: np.ndarray | None, frac: float = PATCH_FRAC) -> np.ndarray:
    """T(images): the pixel backdoor's patch pasted top-left, or the style backdoor's grayscale."""
    if kind == "patch":
        if patch is None:
            raise DiffsecError("a patch detector needs the patch image")
        return paste_patch(images, patch, frac)
    return grayscale(images)


def fade_corner(images: np.ndarray, contrast: np.ndarray, frac: float = PATCH_FRAC) -> np.ndarray:
    """A copy of uint8 NHWC `images` whose top-left s x s square (s = `badt2i.patch_side`) becomes
    m_i + c_i (x - m_i), m_i its mean colour per channel and c_i = contrast[i]; rounded, in [0, 255]."""
    c = np.asarray(contrast, np.float64)
    if c.shape != (len(images),) or not np.all((c >= 0) & (c <= 1)):
        raise DiffsecError(f"fade_corner: need one contrast in [0, 1] per image, got shape {c.shape}")
    s = patch_side(images, frac)
    out = images.copy()
    sq = images[:, :s, :s].astype(np.float64)
    m = sq.mean(axis=(1, 2), keepdims=True)
    out[:, :s, :s] = np.rint(m + c[:, None, None, None] * (sq - m)).clip(0, 255).astype(np.uint8)
    return out


def examples(images: np.ndarray, kind: str, patch: np.ndarray | None, seed: int,
             frac: float = PATCH_FRAC, min_contrast: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(images with the target on a seeded half, labels); kind patch with min_contrast < 1 fades
    each positive's patch to a contrast drawn from a second generator (module docstring)."""
    y = np.zeros(len(images), np.int64)
    y[np.random.default_rng(seed).permutation(len(images))[:len(images) // 2]] = 1
    x = images.copy()
    if y.any():
        x[y == 1] = with_target(images[y == 1], kind, patch, frac)
        if kind == "patch" and min_contrast < 1:
            c = np.random.default_rng([seed, 1]).uniform(min_contrast, 1.0, int(y.sum()))
            x[y == 1] = fade_corner(x[y == 1], c, frac)
    return x, y


def roundtrip_share(images: np.ndarray, roundtrip, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images with a seeded share of them replaced by roundtrip(those), bool mask of which)."""
    if not 0 <= share <= 1:
        raise DiffsecError(f"the round-trip share must lie in [0, 1], got {share}")
    mask = np.zeros(len(images), bool)
    mask[np.random.default_rng(seed).permutation(len(images))[:round(share * len(images))]] = True
    out = images.copy()
    if mask.any():
        out[mask] = roundtrip(images[mask])
    return out, mask


def train(x: np.ndarray, y: np.ndarray, cfg: DetectorConfig, heldout: tuple[np.ndarray, np.ndarray],
          device="cpu", ckpt=None) -> tuple[TargetDetector, list[dict]]:
    """Fit the detector on (x, y) for cfg.epochs; the curve records held-out accuracy per epoch."""
    from diffsec.models.classifier_fit import FitConfig, fit

    torch.manual_seed(cfg.seed)
    model = TargetDetector(cfg.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    inputs = torch.from_numpy(np.ascontiguousarray(x))
    curve = fit(model, lambda idx: to_input(inputs[idx].numpy(), device),
                torch.as_tensor(y, dtype=torch.long, device=device), opt, sched,
                FitConfig(cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed), torch.Generator().manual_seed(cfg.seed),
                f"{cfg.kind} detector", heldout=heldout, ckpt=ckpt)
    return model.eval(), curve


def report(model: TargetDetector, x: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, false-alarm rate (targetless images called positive), miss rate and counts."""
    pred = model.predict(x)
    neg, pos = y == 0, y == 1
    return {"accuracy": float((pred == y).mean()), "false_alarm_rate": float(pred[neg].mean()) if neg.any() else None,
            "miss_rate": float(1 - pred[pos].mean()) if pos.any() else None, "n": int(len(y)),
            "n_positive": int(pos.sum())}


def detect(detector: TargetDetector, images: np.ndarray) -> np.ndarray:
    """Bool per uint8 NHWC image: does the detector find its target (p > 0.5)?"""
    return detector.predict(images).astype(bool)


def save(model: TargetDetector, cfg: DetectorConfig, directory: str | os.PathLike, **extra) -> Path:
    from safetensors.torch import save_file

    d = Path(directory)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(d / WEIGHTS))
    (d / CONFIG).write_text(json.dumps({**asdict(cfg), **extra}, indent=2, sort_keys=True))
    return d


def load(directory: str | os.PathLike, flag: str = "--detector", device="cpu") -> tuple[TargetDetector, dict]:
    """(the detector, its detector.json) of a t2i-detector artifact, or one line naming `flag`."""
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / WEIGHTS).is_file() or not (d / CONFIG).is_file():
        raise DiffsecError(f"{flag} {directory}: not a t2i-detector artifact (needs {WEIGHTS} and {CONFIG})")
    cfg = json.loads((d / CONFIG).read_text())
    model = TargetDetector(int(cfg["width"]))
    try:
        model.load_state_dict(load_file(str(d / WEIGHTS)))
    except (RuntimeError, OSError) as e:
        raise DiffsecError(f"{flag} {directory}: cannot load the detector ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), cfg
