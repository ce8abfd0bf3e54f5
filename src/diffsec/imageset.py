"""Image sets as single .npz files (DVC and cluster file systems dislike many small files).

An image set holds `images` (uint8, N x H x W x C) and any aligned arrays (labels, captions,
masks, names) under their own keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diffsec.artifact import atomic_file
from diffsec.errors import DiffsecError


def save_imageset(path: str | os.PathLike, images: np.ndarray, **arrays: np.ndarray) -> Path:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 NHWC, got {images.dtype} {images.shape}")
    for k, v in arrays.items():
        if len(v) != len(images):
            raise ValueError(f"array {k!r} has {len(v)} rows for {len(images)} images")
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:  # np.savez on a file object keeps our temp name
            np.savez(f, images=images, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def load_imageset(path: str | os.PathLike) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise DiffsecError(f"image set {p} does not exist")
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def to_float(images: np.ndarray) -> "torch.Tensor":  # noqa: F821
    """uint8 NHWC -> float NCHW in [-1, 1] (the diffusion models' pixel scale)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: "torch.Tensor") -> np.ndarray:  # noqa: F821
    """float NCHW in [-1, 1] -> uint8 NHWC, rounding to nearest."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def grid(images: np.ndarray, nrow: int) -> np.ndarray:
    """Tile N x H x W x C uint8 images into one image with `nrow` images per row."""
    n, h, w, c = images.shape
    rows = -(-n // nrow)
    out = np.full((rows * (h + 2) + 2, nrow * (w + 2) + 2, c), 255, np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, nrow)
        out[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + col * (w + 2):2 + col * (w + 2) + w] = im
    return out


def save_png(path: str | os.PathLike, image: np.ndarray, scale: int = 1) -> None:
    from PIL import Image

    im = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)
