"""Full-reference image quality through piq: PSNR, SSIM, VIFp, FSIM.

Inputs are uint8 NHWC image sets (same shape); they are scaled to [0, 1] with data_range=1, which
gives the same numbers as data_range=255 on raw pixels. Each function returns one value per
image pair (float64); average them for a table cell.
"""

from __future__ import annotations

import numpy as np

from diffsec.errors import DiffsecError


def _run(fn, a, b, batch_size: int, device, min_size: int = 1, **kw) -> np.ndarray:
    import torch

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4 or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise DiffsecError(f"need two uint8 NHWC image sets of one shape, got {a.dtype}{a.shape} "
                           f"and {b.dtype}{b.shape}")
    if min(a.shape[1:3]) < min_size:
        raise DiffsecError(f"{fn.__name__} needs images of at least {min_size}x{min_size}, "
                           f"got {a.shape[1]}x{a.shape[2]}")

    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2).double() / 255

    out = []
    with torch.no_grad():
        for i in range(0, len(a), batch_size):
            out.append(fn(t(a[i:i + batch_size]), t(b[i:i + batch_size]),
                          data_range=1.0, reduction="none", **kw).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def psnr(a, b, batch_size: int = 256, device="cpu") -> np.ndarray:
    """Peak signal-to-noise ratio in dB (MSE over all channels of each image)."""
    import piq

    return _run(piq.psnr, a, b, batch_size, device)


def ssim(a, b, batch_size: int = 256, device="cpu") -> np.ndarray:
    """SSIM (Wang et al. 2004): Gaussian window 11, sigma 1.5, averaged over colour channels;
    piq's default downsampling of images larger than 256 px follows the reference MATLAB code."""
    import piq

    return _run(piq.ssim, a, b, batch_size, device, min_size=11)


def vif_p(a, b, batch_size: int = 256, device="cpu") -> np.ndarray:
    """Pixel-domain visual information fidelity (Sheikh & Bovik 2006)."""
    import piq

    return _run(piq.vif_p, a, b, batch_size, device, min_size=41)


def fsim(a, b, batch_size: int = 256, device="cpu") -> np.ndarray:
    """Feature similarity index (Zhang et al. 2011), FSIMc on colour images."""
    import piq

    return _run(piq.fsim, a, b, batch_size, device, chromatic=np.asarray(a).shape[-1] == 3)
