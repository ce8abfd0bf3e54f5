"""Noise to t*, denoise back (SDEdit / DiffPure style): the core shared by `regen` and `pdmpure`.

Written against a scheduler's `alphas_cumprod` instead of a diffusers sampler object, because
purification starts mid-schedule at an arbitrary t* with an arbitrary number of steps, and the
same loop must serve a pixel DDPM (x0 clipping, `fixed_large` variance), SD 1.5 (epsilon) and
v-prediction models (SD 2.1-v, Appendix O).

Timesteps: x_{t*} = sqrt(abar_{t*}) x0 + sqrt(1 - abar_{t*}) eps with t* a 0-based DDPM index
(0 .. T-1). The reverse pass visits `steps` indices round(linspace(t*, 0, steps)) (so steps = t*+1
is every index, the ancestral DDPM chain), then jumps from the last one to the clean image
(abar = 1), as diffusers' samplers do at their final step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


def t_star_of(strength: float | None, t_star: int | None, T: int, default: int) -> int:
    """Resolve --strength (fraction of T) / --t-star (index) to an index in [0, T-1]."""
    if strength is not None and t_star is not None:
        raise ValueError("give strength or t_star, not both")
    if strength is not None:
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        return min(T - 1, int(round(strength * T)))
    t = default if t_star is None else int(t_star)
    if not 0 <= t <= T - 1:
        raise ValueError(f"t* must be in 0..{T - 1}, got {t}")
    return t


def default_steps(t_star: int, method: str) -> int:
    """DDPM: every index (t*+1 steps). DDIM: the stride of a 50-step sampler over T=1000
    (20 indices), e.g. 3 steps from Regen's t* = 60, as in its 50-step pipeline."""
    return t_star + 1 if method == "ddpm" else max(1, math.ceil(t_star / 20))


def reverse_timesteps(t_star: int, steps: int) -> list[int]:
    steps = max(1, min(int(steps), t_star + 1))
    if steps == 1:
        return [t_star]
    return sorted({int(round(v)) for v in np.linspace(t_star, 0, steps)}, reverse=True)


def _x0_eps(out, x, ab, prediction_type: str, clip: bool):
    if prediction_type == "epsilon":
        x0 = (x - (1 - ab).sqrt() * out) / ab.sqrt()
    elif prediction_type == "v_prediction":
        x0 = ab.sqrt() * x - (1 - ab).sqrt() * out
    elif prediction_type == "sample":
        x0 = out
    else:
        raise ValueError(f"unknown prediction_type {prediction_type!r}")
    if clip:
        x0 = x0.clamp(-1, 1)
    # eps consistent with the (clipped) x0, as diffusers' DDIM does
    return x0, (x - ab.sqrt() * x0) / (1 - ab).sqrt()


@torch.no_grad()
def sdedit(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], alphas_cumprod: torch.Tensor,
           x0: torch.Tensor, t_star: int, steps: int | None = None, method: str = "ddim",
           generator: torch.Generator | None = None, prediction_type: str = "epsilon",
           clip: bool = False, variance_type: str = "fixed_small") -> torch.Tensor:
    """Noise `x0` (N,C,H,W, model scale) to t*, run `steps` reverse steps, return the clean estimate.

    model(x_t, t) -> network output (epsilon / v / x0 per `prediction_type`). Noise is drawn on
    the CPU from `generator`, so a seed gives the same result on any device.
    """
    if method not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler {method!r} (ddpm | ddim)")
    ac = alphas_cumprod.to(torch.float64)
    ts = reverse_timesteps(t_star, steps or default_steps(t_star, method))
    dev, dt = x0.device, x0.dtype

    def draw():
        return torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(dev, dt)

    ab = ac[t_star].to(dev, dt)
    x = ab.sqrt() * x0 + (1 - ab).sqrt() * draw()
    for i, t in enumerate(ts):
        ab_t = ac[t].to(dev, dt)
        ab_s = ac[ts[i + 1]].to(dev, dt) if i + 1 < len(ts) else torch.ones((), device=dev, dtype=dt)
        out = model(x, torch.full((x.shape[0],), t, device=dev, dtype=torch.long))
        x0_hat, eps = _x0_eps(out.to(dt), x, ab_t, prediction_type, clip)
        if method == "ddim" or i + 1 == len(ts):
            x = ab_s.sqrt() * x0_hat + (1 - ab_s).sqrt() * eps
            continue
        beta = 1 - ab_t / ab_s  # the jump t -> s as one DDPM step (strided ancestral sampling)
        mean = (ab_s.sqrt() * beta * x0_hat + (1 - beta).sqrt() * (1 - ab_s) * x) / (1 - ab_t)
        var = beta if variance_type == "fixed_large" else beta * (1 - ab_s) / (1 - ab_t)
        x = mean + var.sqrt() * draw()
    return x
