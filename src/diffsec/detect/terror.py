"""SeDID's stepwise error (the "t-error" of SecMI) on a grid of step k.

Timesteps t_i = i k. The clean image enters as the state at timestep 0, and deterministic DDIM
inversion moves it up the grid, the noise predicted at the source step
(`diffusion.inversion.step`):

    x_{t_i} = step(x_{t_(i-1)}, t_(i-1) -> t_i),    x_{t_0} = x_0

At t_SEC = t_i, one denoising step comes back down, with the noise predicted at t_i:

    x_hat_{t_(i-1)} = step(x_{t_i}, t_i -> t_(i-1))
    E_t_SEC(x)      = ((x_{t_(i-1)} - x_hat_{t_(i-1)}) / 2) ** 2     (per pixel, on the [0, 1] scale)

This is SecMI's `ddim_singlestep` pattern (invert to t, one more step to t + k, one step back,
compare at t) with t_SEC = t + k. It is also the SeDID reference code's `SeDID_stat` with k =
165, whose grid 165, 330, ..., 990 are the rows of the paper's Table 1. SeDID_Stat scores an
image by -sum(E): a small error means the model is familiar with the image, hence
"generated". The direction is fixed, never chosen per t, so a t where real images have the
smaller error gives AUC < 0.5 (the paper's CelebA rows).
"""

from __future__ import annotations

import torch

from diffsec.detect.grid import check_grid
from diffsec.diffusion.inversion import EpsModel, invert, step


@torch.no_grad()
def error_maps(eps_model: EpsModel, abar: torch.Tensor, x0: torch.Tensor, k: int,
               t_secs: list[int]) -> dict[int, torch.Tensor]:
    """t_SEC -> E_t_SEC(x0) per pixel (N x C x H x W, float32); x0 in [-1, 1]."""
    check_grid(k, t_secs, len(abar))
    grid = list(range(k, max(t_secs) + 1, k))
    chain = dict(zip(grid, invert(eps_model, abar, x0, grid), strict=True))
    chain[0] = x0
    out = {}
    for t in t_secs:
        back = step(eps_model, abar, chain[t], t, t - k)
        out[t] = ((chain[t - k] - back) / 2).square().float()
    return out


def stat_scores(maps: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """SeDID_Stat's score per t_SEC: -sum of the error map (higher = more likely generated)."""
    return {t: -m.flatten(1).sum(1) for t, m in maps.items()}
