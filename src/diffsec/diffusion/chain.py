"""DDPM / DDIM reverse processes of a *shifted, rescaled* noise chain (TrojDiff's trojan chain).

Backdoored models start from x_T ~ N(mu, gamma^2 I) instead of N(0, I). The forward marginal
of such a chain is

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) mu + gamma sqrt(1 - abar_t) eps,

so y_t = x_t - sqrt(1 - abar_t) mu is an ordinary DDPM chain whose noise is scaled by gamma, and
its reverse step is the textbook one in y with the noise estimate gamma * kappa * eps_theta:

* InvisibleDiffusion with a fixed trigger image phi: mu = lambda phi, gamma = 1 - lambda
  (the transitions of its Eq. 9, whose m_t are TrojDiff's k_t), kappa = 1;
* InvisibleDiffusion without a fixed image: mu = 0, gamma = s = sqrt(2 lambda^2 - 2 lambda + 1)
  (Eq. 10). Its loss (Eq. 15) regresses only the (1 - lambda) eps part of the total noise
  n = lambda phi + (1 - lambda) eps, so the optimal output is E[eps | n] = (1 - lambda) / s^2 n and
  kappa = s / (1 - lambda) turns it back into n / s. At lambda = 0.5, gamma * kappa = 1: the
  benign sampler's noise estimate is already right, the reason lambda = 0.5 works best (Fig. 4);
* TrojDiff (blend): mu = (1 - gamma) delta for its trigger image delta, kappa = 1;
* benign sampling and BadDiffusion (whose sampler is unchanged): mu = 0, gamma = kappa = 1, and
  then both samplers here equal diffusers' DDPMScheduler / DDIMScheduler step for step (a test
  checks this), x_0 clipping and variance type included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm


@dataclass
class NoiseChain:
    mu: torch.Tensor | None = None   # C x H x W shift of x_T (None = 0)
    gamma: float = 1.0               # std of x_T around mu
    kappa: float = 1.0               # scale from the model output to the chain's unit noise

    def shift(self, coef: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
        return 0.0 if self.mu is None else coef * self.mu.to(like.device, like.dtype)


def ddim_timesteps(num_train: int, steps: int) -> list[int]:
    """diffusers' 'leading' spacing (DDIMScheduler's default): T//steps apart, from the top."""
    if not 1 <= steps <= num_train:
        raise ValueError(f"DDIM steps must be in 1..{num_train}, got {steps}")
    ratio = num_train // steps
    return [i * ratio for i in reversed(range(steps))]


@torch.no_grad()
def sample_chain(eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scheduler_config: dict,
                 x_T: torch.Tensor, chain: NoiseChain | None = None, method: str = "ddim", steps: int = 100,
                 generator: torch.Generator | None = None, progress: bool = True,
                 trajectory_every: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Reverse the chain from x_T; returns (x_0, trajectory snapshots every `trajectory_every` steps).

    `method` 'ddpm' runs all T ancestral steps (variance per the scheduler's variance_type, times
    gamma^2); 'ddim' runs `steps` eta = 0 steps. Noise is drawn from `generator` on the CPU.
    """
    from diffusers import DDPMScheduler

    chain = chain or NoiseChain()
    sched = DDPMScheduler.from_config(scheduler_config)
    cfg, abar = sched.config, sched.alphas_cumprod.to(torch.float64)
    T = cfg.num_train_timesteps
    if method == "ddpm":
        ts = list(reversed(range(T)))
        prevs = [t - 1 for t in ts]
    elif method == "ddim":
        ts = ddim_timesteps(T, steps)
        prevs = [t - T // steps for t in ts]
    else:
        raise ValueError(f"unknown sampler {method!r} (ddpm | ddim)")
    if method == "ddpm" and cfg.variance_type not in ("fixed_small", "fixed_large"):
        raise ValueError(f"variance_type {cfg.variance_type!r} is not supported (fixed_small | fixed_large)")
    x = x_T.clone()
    traj: list[torch.Tensor] = []
    for i, (t, prev) in enumerate(tqdm(list(zip(ts, prevs)), desc=f"{method} sampling",
                                       disable=not progress, leave=False)):
        a_t = abar[t]
        a_prev = abar[prev] if prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
        s_t, s_prev = (1 - a_t).sqrt(), (1 - a_prev).sqrt()
        eps = chain.kappa * eps_model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
        y = x - chain.shift(float(s_t), x)
        x0 = (y - chain.gamma * float(s_t) * eps) / float(a_t.sqrt())
        if cfg.clip_sample:
            x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        if method == "ddim":
            y_prev = float(a_prev.sqrt()) * x0 + float(s_prev) * chain.gamma * eps
        else:
            beta = 1 - a_t / a_prev
            y_prev = (float(a_prev.sqrt() * beta / (1 - a_t)) * x0
                      + float((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * y)
            if t > 0:
                var = beta if cfg.variance_type == "fixed_large" else (1 - a_prev) / (1 - a_t) * beta
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
                y_prev = y_prev + chain.gamma * float(var.clamp(min=1e-20).sqrt()) * z
        x = y_prev + chain.shift(float(s_prev), y_prev)
        if trajectory_every and (i % trajectory_every == 0 or i == len(ts) - 1):
            traj.append(x.detach().cpu())
    return x, traj
