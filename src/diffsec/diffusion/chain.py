"""The reverse chain a sampler runs: benign, or *shifted and rescaled* (TrojDiff's trojan chain).

Backdoored models start from x_T ~ N(mu, gamma^2 I) instead of N(0, I). The forward marginal
of such a chain is

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) mu + gamma sqrt(1 - abar_t) eps,

so y_t = x_t - sqrt(1 - abar_t) mu is an ordinary DDPM chain whose noise is scaled by gamma, and
its reverse step is the textbook one in y with the noise estimate gamma * kappa * eps_theta
(`diffusion.sampling.sample(..., chain=...)` runs it):

* InvisibleDiffusion with a fixed trigger image phi: mu = lambda phi, gamma = 1 - lambda
  (the transitions of its Eq. 9, whose m_t are TrojDiff's k_t), kappa = 1;
* InvisibleDiffusion without a fixed image: mu = 0, gamma = s = sqrt(2 lambda^2 - 2 lambda + 1)
  (Eq. 10). Its loss (Eq. 15) regresses only the (1 - lambda) eps part of the total noise
  n = lambda phi + (1 - lambda) eps, so the optimal output is E[eps | n] = (1 - lambda) / s^2 n and
  kappa = s / (1 - lambda) turns it back into n / s (our derivation; the paper samples with the
  ordinary sampler). At lambda = 0.5, gamma * kappa = 1: the benign sampler's noise estimate is
  already right (DDIM's attacker chain is then the ordinary sampler), our hypothesis for why
  lambda = 0.5 works best in the paper's Fig. 4, which the lambda sweep with and without kappa tests;
* TrojDiff (blend): mu = (1 - gamma) delta for its trigger image delta, kappa = 1;
* benign sampling and BadDiffusion (whose sampler is unchanged): mu = 0, gamma = kappa = 1, and
  then the sampler is diffusers' DDPMScheduler / DDIMScheduler step for step, to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class NoiseChain:
    mu: torch.Tensor | None = None   # C x H x W shift of x_T (None = 0)
    gamma: float = 1.0               # std of x_T around mu
    kappa: float = 1.0               # scale from the model output to the chain's unit noise

    def shift(self, x: torch.Tensor, coef: torch.Tensor, sign: int) -> torch.Tensor:
        """x + sign * coef * mu (x itself, untouched, for an unshifted chain)."""
        if self.mu is None:
            return x
        return x + sign * (coef * self.mu.to(x.device, x.dtype))
