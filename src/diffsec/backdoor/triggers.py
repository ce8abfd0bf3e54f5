"""Trigger images of the backdoor attacks, all on the model's [-1, 1] data scale.

* InvisibleDiffusion's fixed "invisible" triggers are noise images drawn once from a seeded
  generator: Gaussian (std 0.5, clipped to [-1, 1]), Uniform on [-1, 1], and Poisson (rate 4,
  centred and scaled by 1/4, clipped). With lambda = 0.5 the Gaussian one adds
  ||lambda phi||_2 = 3.4e3 and ||lambda phi||_inf = 127.5 on the 0-255 scale at 32 px, near the
  magnitudes the paper prints (3555.44, 127.50), which is how std 0.5 was chosen.
* "free" is the trigger without a fixed image: phi ~ N(0, I) drawn anew for every sample.
* TrojDiff's blend trigger is the Hello Kitty image, which is not available offline; we blend
  the MIST target image (mirror `mist/MIST.png`) instead and say so in the tables.
* BadDiffusion's trigger (`grey_box`) is its code's BOX_14 (IBM/BadDiffusion, dataset.py): a
  *filled* 14 x 14 px square of grey, (vmin + vmax) / 2 = 0 on [-1, 1], 2 px from the bottom-right
  corner, on a vmin = -1 background; its sampler adds the whole image to the noise
  (x_T = eps + trigger), so the pattern added to x_T is -1 everywhere but the box, where it is 0.
  `box_outline` is the white (+1) 2 px outline on a 0 background this project used before
  (issue 19, item 11), kept as a named variant.

Stealth norms: `l2` is the Euclidean norm of the added pattern over all C x H x W values and
`linf` its largest magnitude, both x 255 of the [-1, 1] values (the scale of InvisibleDiffusion's
3555.44 / 127.50 and TrojDiff's 4791.96 / 102.00); `l2_rms` is the root mean square over the same
values x 255, the one convention that comes near BadDiffusion's printed 228.39 (its BOX_14
pattern: sqrt(2484 / 3072) x 255 = 229.30; a sum-L2 cannot lie below its L-inf of 255).
"""

from __future__ import annotations

import numpy as np
import torch

FIXED_NOISE = ("gaussian", "uniform", "poisson")
KINDS = (*FIXED_NOISE, "free", "mist", "grey_box", "box_outline")
BOX_GAP = 2   # BadDiffusion's TRIGGER_GAP_X / _Y: px between its box and the image corner


def noise_image(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A fixed noise trigger in [-1, 1], the same bytes for the same seed on every machine."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        x = rng.normal(0.0, 0.5, shape)
    elif kind == "uniform":
        x = rng.uniform(-1.0, 1.0, shape)
    elif kind == "poisson":
        x = (rng.poisson(4.0, shape) - 4.0) / 4.0
    else:
        raise ValueError(f"{kind!r} is not a fixed noise trigger ({', '.join(FIXED_NOISE)})")
    return torch.from_numpy(np.clip(x, -1.0, 1.0).astype(np.float32))


def image_trigger(image_uint8: np.ndarray, resolution: int) -> torch.Tensor:
    """An RGB uint8 H x W x 3 picture resized (antialiased) to a C x res x res trigger in [-1, 1]."""
    import torch.nn.functional as F

    x = torch.as_tensor(image_uint8).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp(-1.0, 1.0)


def grey_box_trigger(resolution: int, size: int = 14, gap: int = BOX_GAP) -> torch.Tensor:
    """BadDiffusion's BOX_<size>: -1 everywhere but a filled size x size square of 0 (grey) whose
    bottom-right corner is `gap` px from the image's; the whole image is added to the noise."""
    if not 1 <= size <= resolution - gap:
        raise ValueError(f"box size {size} with a {gap} px gap does not fit in {resolution} px")
    r = torch.full((3, resolution, resolution), -1.0)
    r[:, resolution - gap - size:resolution - gap, resolution - gap - size:resolution - gap] = 0.0
    return r


def box_outline_trigger(resolution: int, size: int = 14, thickness: int = 2) -> torch.Tensor:
    """The earlier variant: a white (+1) square outline of side `size` px at the bottom-right
    corner, 0 elsewhere (the trigger is added to the noise, so 0 means 'unchanged')."""
    if not 2 * thickness < size <= resolution:
        raise ValueError(f"box size {size} must exceed 2 x thickness {thickness} and fit in {resolution} px")
    r = torch.zeros(3, resolution, resolution)
    top = resolution - size
    r[:, top:, top:] = 1.0
    r[:, top + thickness:resolution - thickness, top + thickness:resolution - thickness] = 0.0
    return r


def stealth_norms(added: torch.Tensor | None) -> dict[str, float]:
    """L2, L-inf and RMS of what a trigger adds to x_T, on the papers' 0-255 scale (x 255 of the
    [-1, 1] values: TrojDiff's 0.4-weighted blend then has L-inf 102, as in its tables).
    A trigger without a fixed image adds no fixed pattern: all 0, as the paper reports."""
    if added is None:
        return {"l2": 0.0, "linf": 0.0, "l2_rms": 0.0}
    a = added.double() * 255.0
    return {"l2": float(a.flatten().norm()), "linf": float(a.abs().max()), "l2_rms": float(a.pow(2).mean().sqrt())}
