"""Loss masking for textual inversion (SZT Sec. 4.5, Appendix I Eqs. 12-15; Appendix J dilation).

Objectives, with z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps and target = eps (or v for
v-prediction schedulers):

  nominal  ||eps_theta(z_t, t, c) - target||^2
  lm       ||(eps_theta(z_t, t, c) - target) ⊙ M_z||^2               (Eq. 12, SZT's choice)
  im       ||eps_theta(z_tM, t, c) - target||^2, z_tM from E(x ⊙ M_x)  (Eq. 13)
  lim      ||(eps_theta(z_tM, t, c) - target) ⊙ M_z||^2                (Eq. 14)
  zm       ||eps_theta(z_t ⊙ M_z, t, c) - target||^2                   (Eq. 15)

Conventions chosen here:
- Normalisation `norm="all"` (default): the masked squared error summed and divided by ALL its
  elements, i.e. diffusers' `F.mse_loss(pred * M, target * M)`: Eq. 12 up to a constant, no
  division by a data-dependent count (an empty mask gives loss 0, not 0/0), objects of different
  size weigh by their area. `norm="masked"` divides by the number of masked elements instead
  (per-element loss independent of the mask's area). Both equal the nominal loss for M = 1.
- M_z = latent_mask(M_x): area-average M_x down to the latent grid, keep cells >= `threshold`
  (0.5: a latent cell is in the mask when at least half its pixels are; for aligned blocks this
  is a majority vote, unlike nearest-neighbour which reads one pixel of the block).
- IM/LIM multiply the image in the VAE's [-1, 1] input scale, so masked-out pixels become 0
  (mid-grey), the literal E(x ⊙ M_x) on diffusers' `pixel_values`.
- Masks are binary (1 = concept). They broadcast over channels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

OBJECTIVES = ("nominal", "lm", "im", "lim", "zm")
NORMS = ("all", "masked")


def _nchw(mask) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask)
    if m.ndim == 2:
        m = m[None]
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1:
        raise ValueError(f"mask must be HxW, NxHxW or Nx1xHxW, got {tuple(m.shape)}")
    return m.float()


def latent_mask(mask_x, size: tuple[int, int], threshold: float = 0.5) -> torch.Tensor:
    """Pixel mask (HxW / NxHxW / Nx1xHxW, bool or {0,1}) -> float {0,1} N x 1 x h x w."""
    m = _nchw(mask_x)
    area = F.adaptive_avg_pool2d(m, tuple(size))  # exact area average, also for uneven ratios
    return (area >= threshold - 1e-6).float()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
               norm: str = "all") -> torch.Tensor:
    """Mean squared error with an optional {0,1} mask broadcast over channels (see module doc)."""
    se = (pred.float() - target.float()).pow(2)
    if mask is None:
        return se.mean()
    m = mask.to(se.device, se.dtype).expand_as(se)
    if norm == "all":
        return (se * m).mean()
    if norm == "masked":
        return (se * m).sum() / m.sum().clamp_min(1.0)
    raise ValueError(f"unknown norm {norm!r} ({' | '.join(NORMS)})")


def _target(scheduler, z0, noise, t):
    if scheduler.config.get("prediction_type", "epsilon") == "v_prediction":
        return scheduler.get_velocity(z0, noise, t)
    return noise


def training_loss(objective: str, *, eps_model: Callable, scheduler, noise: torch.Tensor,
                  t: torch.Tensor, cond, z0: torch.Tensor | None = None,
                  x: torch.Tensor | None = None, encode: Callable | None = None,
                  mask_x=None, norm: str = "all", threshold: float = 0.5) -> torch.Tensor:
    """One of OBJECTIVES for a batch.

    eps_model(z_t, t, cond) -> prediction; scheduler: a diffusers scheduler (add_noise,
    alphas_cumprod, config.prediction_type); z0: the clean scaled latent E(x) (nominal, lm, zm);
    x: the image in [-1, 1] and encode(x) -> scaled latent (im, lim mask x BEFORE encoding, so
    they need both; encode is typically `vae.encode(x).latent_dist.sample() * scaling_factor`
    under no_grad). mask_x: the pixel-space mask at x's resolution (not needed for nominal).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r} ({' | '.join(OBJECTIVES)})")
    if objective != "nominal" and mask_x is None:
        raise ValueError(f"objective {objective!r} needs mask_x")
    if objective in ("im", "lim"):
        if x is None or encode is None:
            raise ValueError(f"objective {objective!r} masks the input image: give x and encode")
        mx = _nchw(mask_x).to(x.device, x.dtype)
        z0 = encode(x * mx)
    elif z0 is None:
        if x is None or encode is None:
            raise ValueError(f"objective {objective!r} needs z0 (or x and encode)")
        z0 = encode(x)
    mz = latent_mask(mask_x, z0.shape[-2:], threshold).to(z0.device, z0.dtype) \
        if objective != "nominal" else None
    zt = scheduler.add_noise(z0, noise, t)
    if objective == "zm":
        zt = zt * mz
    pred = eps_model(zt, t, cond)
    target = _target(scheduler, z0, noise, t)
    loss_mask = mz if objective in ("lm", "lim") else None
    return masked_mse(pred, target, loss_mask, norm)


def dilation_pixels(pixels_at_512: int, resolution: int) -> int:
    """The paper's dilation (8/16/24 px on 512 px masks) at `resolution`, rounded half up."""
    return int(np.floor(pixels_at_512 * resolution / 512 + 0.5))


def dilate_mask(mask, pixels_at_512: int, resolution: int | None = None) -> np.ndarray:
    """Grow binary masks (HxW or NxHxW) with PIL's ImageFilter.MaxFilter, as Appendix J does.

    "d pixels of dilation" is read as the mask growing by d px on every side, i.e. MaxFilter of
    size 2d+1: PIL only takes odd sizes and the paper's 8/16/24 are even, so the number cannot be
    the filter size itself. d is scaled from 512 px to `resolution` (default: the mask's width)
    and rounded half up (16 @ 512 -> 1 @ 32, 8 @ 512 -> 1 @ 32, 24 @ 512 -> 2 @ 32); d = 0 is a
    no-op.
    """
    from PIL import Image, ImageFilter

    m = np.asarray(mask).astype(bool)
    single = m.ndim == 2
    m = m[None] if single else m
    d = dilation_pixels(pixels_at_512, resolution or m.shape[-1])
    if d > 0:
        filt = ImageFilter.MaxFilter(2 * d + 1)
        m = np.stack([np.asarray(Image.fromarray(k.astype(np.uint8) * 255).filter(filt)) > 127
                      for k in m])
    return m[0] if single else m


def paired_hflip(image: torch.Tensor, mask: torch.Tensor, p: float = 0.5,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each (image, mask) pair horizontally with probability p, the SAME draw for both.

    image N x C x H x W, mask N x H x W or N x 1 x H x W; returns the pair (augmentation that keeps
    the loss mask on the concept)."""
    flip = torch.rand(image.shape[0], generator=generator) < p
    fi = flip.to(image.device).view(-1, *([1] * (image.ndim - 1)))
    fm = flip.to(mask.device).view(-1, *([1] * (mask.ndim - 1)))
    return torch.where(fi, image.flip(-1), image), torch.where(fm, mask.flip(-1), mask)
