"""AdverseCleaner (lllyasviel/AdverseCleaner, `clean.py`): 64 bilateral filters, then 4 guided
filters that take the ORIGINAL (input) image as guide, to pull the smoothed result back onto the
input's edges. The script calls `cv2.ximgproc.guidedFilter`, which opencv-python-headless lacks, so
the guided filter (He, Sun & Tang, ECCV 2010) is written here with box filters, following
ximgproc's conventions: float images on [0, 255], window (2r+1)^2, reflected borders
(BORDER_REFLECT), `eps` added to the guide's (colour) covariance as is (not squared), full 3x3
covariance for a colour guide.
"""

from __future__ import annotations

import numpy as np

from diffsec.defense.images import check_images


def box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window of each pixel, per channel, borders reflected (fedcba|abc)."""
    import cv2

    k = 2 * radius + 1
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        return cv2.boxFilter(x, -1, (k, k), normalize=True, borderType=cv2.BORDER_REFLECT)
    return np.stack([cv2.boxFilter(np.ascontiguousarray(x[..., c]), -1, (k, k), normalize=True,
                                   borderType=cv2.BORDER_REFLECT) for c in range(x.shape[-1])], -1)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Guided filter of `src` (H x W [x C]) steered by `guide` (H x W [x K]); float64 out, shaped
    like `src`. Per window w: src ~ a_w . guide + b_w by ridge regression (ridge `eps`); the output
    averages the (a, b) of every window covering a pixel."""
    G = np.asarray(guide, np.float64)
    p = np.asarray(src, np.float64)
    flat = p.ndim == 2
    G = G[..., None] if G.ndim == 2 else G
    p = p[..., None] if flat else p
    h, w, k = G.shape
    c = p.shape[-1]
    mG, mp = box_mean(G, radius), box_mean(p, radius)
    cov_GG = box_mean((G[..., :, None] * G[..., None, :]).reshape(h, w, k * k), radius)
    cov_GG = cov_GG.reshape(h, w, k, k) - mG[..., :, None] * mG[..., None, :] + eps * np.eye(k)
    cov_Gp = box_mean((G[..., :, None] * p[..., None, :]).reshape(h, w, k * c), radius)
    cov_Gp = cov_Gp.reshape(h, w, k, c) - mG[..., :, None] * mp[..., None, :]
    a = np.linalg.solve(cov_GG, cov_Gp)                      # h, w, k, c
    b = mp - np.einsum("hwkc,hwk->hwc", a, mG)
    ma = box_mean(a.reshape(h, w, k * c), radius).reshape(h, w, k, c)
    q = np.einsum("hwkc,hwk->hwc", ma, G) + box_mean(b, radius)
    return q[..., 0] if flat else q


def advclean(images: np.ndarray, bilateral_iters: int, diameter: int, sigma_color: float, sigma_space: float,
             guided_iters: int, radius: int, eps: float) -> np.ndarray:
    """AdverseCleaner (the script: 64, 5, 8, 8, 4, 4, 16, the defaults of `diffsec purify`).
    uint8 NHWC in, same shape out.

    Like the script, the result is clipped and TRUNCATED to uint8 (`astype`), not rounded.
    """
    import cv2

    images = check_images(images)
    out = np.empty_like(images)
    for i, im in enumerate(images):
        img = im.astype(np.float32)
        y = img.copy()
        for _ in range(bilateral_iters):
            y = cv2.bilateralFilter(y, diameter, sigma_color, sigma_space)
        y = y.reshape(img.shape).astype(np.float64)
        for _ in range(guided_iters):
            y = guided_filter(img, y, radius, eps)
        out[i] = y.clip(0, 255).astype(np.uint8).reshape(im.shape)
    return out
