"""JPEG compression as a purifier (SZT's first component, Sec. 4.4; quality 25 in the paper)."""

from __future__ import annotations

import io

import numpy as np

from diffsec.defense.images import check_images


def jpeg(images: np.ndarray, quality: int = 25) -> np.ndarray:
    """Round-trip every image through an in-memory JPEG at `quality` (PIL/libjpeg, PIL's default
    4:2:0 chroma subsampling below quality 95). uint8 NHWC in, same shape out."""
    from PIL import Image

    images = check_images(images)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    out = np.empty_like(images)
    for i, im in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(buf, format="JPEG",
                                                                       quality=int(quality))
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("L" if im.shape[-1] == 1 else "RGB"))
        out[i] = dec.reshape(im.shape)
    return out
