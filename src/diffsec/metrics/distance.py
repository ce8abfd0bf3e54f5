"""Pixel-space distances between image sets, per sample.

Papers mix pixel scales (a budget of 8/255 on [0, 1] is 8 on [0, 255] and 16/255 on [-1, 1]),
so every function takes the scale the result is expressed in explicitly, and the scale of its
inputs (uint8 image sets are [0, 255]).
"""

from __future__ import annotations

import numpy as np

SCALES = {"[0,1]": (0.0, 1.0), "[-1,1]": (-1.0, 1.0), "[0,255]": (0.0, 255.0)}


def _width(scale: str) -> float:
    if scale not in SCALES:
        raise ValueError(f"unknown pixel scale {scale!r}; use one of {', '.join(SCALES)}")
    lo, hi = SCALES[scale]
    return hi - lo


def difference(a, b, scale: str, input_scale: str = "[0,255]") -> np.ndarray:
    """(a - b) as float64, expressed in pixel scale `scale`; a, b are in `input_scale`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return (a - b) * (_width(scale) / _width(input_scale))


def mse(a, b, scale: str, input_scale: str = "[0,255]") -> np.ndarray:
    """Per-sample mean squared error over all pixels and channels."""
    d = difference(a, b, scale, input_scale)
    return (d ** 2).reshape(len(d), -1).mean(1)


def l2(a, b, scale: str, input_scale: str = "[0,255]") -> np.ndarray:
    """Per-sample Euclidean norm of the difference."""
    d = difference(a, b, scale, input_scale)
    return np.sqrt((d ** 2).reshape(len(d), -1).sum(1))


def linf(a, b, scale: str, input_scale: str = "[0,255]") -> np.ndarray:
    """Per-sample maximum absolute difference."""
    d = difference(a, b, scale, input_scale)
    return np.abs(d).reshape(len(d), -1).max(1)
