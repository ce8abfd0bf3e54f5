"""Shared plumbing of the purifiers: input checks, batching, float resizing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from diffsec.errors import DiffsecError

if TYPE_CHECKING:
    import torch


def check_images(images) -> np.ndarray:
    """The image set as a uint8 N x H x W x C array, or ValueError saying what is wrong."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"need uint8 N x H x W x C images with C in (1, 3), got "
                         f"{images.dtype} {images.shape}")
    return images


def check_aligned(data: dict, where: str) -> None:
    """Every array of an image set besides `images` has one row per image (so it can travel along)."""
    n = len(data["images"])
    bad = [k for k, v in data.items() if k != "images" and (v.ndim == 0 or len(v) != n)]
    if bad:
        raise DiffsecError(f"{where}: arrays {bad} are not aligned with the {n} images")


def load_sets(files: dict[str, str | os.PathLike], where: str, like: tuple | None = None) -> dict[str, dict]:
    """name -> loaded image set, each of uint8 RGB images of one shape (that of `like`, if given):
    poisoned or purified versions of the same rows."""
    from diffsec.imageset import load_images

    out = {}
    for k, path in files.items():
        out[k] = load_images(path, f"{where} {k}")
        shape = out[k]["images"].shape
        like = like or shape
        if shape != like:
            raise DiffsecError(f"{where} {k}: shape {shape} differs from {like}; the sets must hold the same rows")
    return out


def batches(n: int, batch_size: int) -> Iterator[slice]:
    for i in range(0, n, max(1, batch_size)):
        yield slice(i, min(n, i + batch_size))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float NCHW resize (bicubic, antialiased when shrinking); a no-op at the same size.

    Resizing in float keeps the purifiers to ONE final uint8 quantisation.
    """
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
