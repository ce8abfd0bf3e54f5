"""Deterministic DDIM moves between any two timesteps: inversion (up) and denoising (down).

With abar_t the cumulative product of the schedule's alphas and eps = eps_theta(x_s, s) the
noise predicted at the source timestep s, the DDIM (eta = 0) move from s to any u is

    x0_hat = (x_s - sqrt(1 - abar_s) eps) / sqrt(abar_s)
    x_u    = sqrt(abar_u) x0_hat + sqrt(1 - abar_u) eps

Going down (u < s) it is DDIMScheduler.step with eta = 0 and no clipping; going up (u > s) it
is DDIMInverseScheduler.step, given the same eps (tests/test_detect.py checks both).
Where the noise is predicted is the caller's convention. SecMI and SeDID predict it at the
source timestep in both directions. That makes an inversion step followed by the
denoising step back not exact, and that mismatch is what the t-error measures.

A clean image x_0 enters the chain as the state at timestep 0 (abar_0 = 1 - beta_1, not 1),
as in SecMI's `ddim_singlestep` from t_c = 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def alphas_cumprod(scheduler_config: dict) -> torch.Tensor:
    """abar_t for t = 0..T-1 (float32) of a diffusers DDPM scheduler config."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler_config).alphas_cumprod.float()


def ddim_move(x: torch.Tensor, eps: torch.Tensor, abar_from: torch.Tensor, abar_to: torch.Tensor) -> torch.Tensor:
    """The eta = 0 DDIM move of x from a timestep with abar_from to one with abar_to, given eps."""
    x0 = (x - (1 - abar_from) ** 0.5 * eps) / abar_from ** 0.5
    return abar_to ** 0.5 * x0 + (1 - abar_to) ** 0.5 * eps


def step(eps_model: EpsModel, abar: torch.Tensor, x: torch.Tensor, s: int, u: int) -> torch.Tensor:
    """x at timestep s moved to timestep u, the noise predicted at s."""
    eps = eps_model(x, torch.full((x.shape[0],), s, device=x.device, dtype=torch.long))
    return ddim_move(x, eps, abar[s].to(x.device), abar[u].to(x.device))


def invert(eps_model: EpsModel, abar: torch.Tensor, x0: torch.Tensor, timesteps: list[int]) -> list[torch.Tensor]:
    """The inversion chain 0 -> timesteps[0] -> timesteps[1] -> ...: x at each listed timestep."""
    out, x, s = [], x0, 0
    for u in timesteps:
        x = step(eps_model, abar, x, s, u)
        out.append(x)
        s = u
    return out
