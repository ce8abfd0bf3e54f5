"""Shared plumbing of the purifiers: input checks, batching, float resizing."""

from __future__ import annotations

from typing import Iterator

import numpy as np


def check_images(images) -> np.ndarray:
    """The image set as a uint8 N x H x W x C array, or ValueError saying what is wrong."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"need uint8 N x H x W x C images with C in (1, 3), got "
                         f"{images.dtype} {images.shape}")
    return images


def batches(n: int, batch_size: int) -> Iterator[slice]:
    for i in range(0, n, max(1, batch_size)):
        yield slice(i, min(n, i + batch_size))


def resize(x: "torch.Tensor", size: tuple[int, int]) -> "torch.Tensor":  # noqa: F821
    """Float NCHW resize (bicubic, antialiased when shrinking); a no-op at the same size.

    Resizing in float keeps the purifiers to ONE final uint8 quantisation.
    """
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
