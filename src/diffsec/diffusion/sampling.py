"""DDPM (ancestral) and DDIM sampling for pixel or latent UNets, from ANY initial noise: the one
reverse process of the package (worlds, backdoors, benchmarks).

The backdoor papers start the reverse process from non-standard noise (a trigger blended into
x_T) and sample it with the attacker's chain (`diffusion.chain.NoiseChain`: shift mu, noise scale
gamma, model-output scale kappa), so sampling takes x_T and the chain explicitly. In
y_t = x_t - sqrt(1 - abar_t) mu, with eps = kappa eps_theta(x_t, t):

    x0_hat   = clip((y_t - gamma sqrt(1 - abar_t) eps) / sqrt(abar_t))
    DDIM:    y_prev = sqrt(abar_prev) x0_hat + gamma sqrt(1 - abar_prev - sigma^2) eps + gamma sigma z,
             sigma = eta sqrt((1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev))
    DDPM:    y_prev = sqrt(abar_prev) beta_t / (1 - abar_t) x0_hat
                      + sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t) y_t + gamma sqrt(var_t) z   (t > 0),
             alpha_t = abar_t / abar_prev, beta_t = 1 - alpha_t,
             var_t = beta_t (fixed_large) or (1 - abar_prev) / (1 - abar_t) beta_t (fixed_small)

and x_prev = y_prev + sqrt(1 - abar_prev) mu. DDPM runs all T steps; DDIM runs `steps` steps
T // steps apart from the top (diffusers' 'leading' spacing), abar_prev = 1 after the last.
Every coefficient is computed as diffusers computes it (float32 0-d tensors, same operation
order), so the benign chain (mu = 0, gamma = kappa = 1) is DDPMScheduler.step /
DDIMScheduler.step(set_alpha_to_one=True) bit for bit. Noise z is drawn from `generator` on the
generator's device (a CPU generator: the same samples on any device).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from diffsec.diffusion.chain import NoiseChain

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def plan(scheduler_config: dict, method: str, steps: int) -> tuple[torch.Tensor, list[tuple[int, int]], dict]:
    """(abar as float32, [(t, t_prev)] from the top, the resolved config) of a sampler run."""
    from diffusers import DDPMScheduler

    cfg = DDPMScheduler.from_config(scheduler_config)
    c, T = cfg.config, cfg.config.num_train_timesteps
    unsupported = {"prediction_type": (c.prediction_type, "epsilon"), "thresholding": (c.thresholding, False),
                   "steps_offset": (c.steps_offset, 0), "timestep_spacing": (c.timestep_spacing, "leading")}
    for k, (have, want) in unsupported.items():
        if have != want:
            raise ValueError(f"scheduler {k}={have!r} is not supported (only {want!r})")
    if method == "ddpm":
        if c.variance_type not in ("fixed_small", "fixed_large"):
            raise ValueError(f"variance_type {c.variance_type!r} is not supported (fixed_small | fixed_large)")
        steps = T
    elif method != "ddim":
        raise ValueError(f"unknown sampler {method!r} (ddpm | ddim)")
    if not 1 <= steps <= T:
        raise ValueError(f"DDIM steps must be in 1..{T}, got {steps}")
    ratio = T // steps
    return cfg.alphas_cumprod, [(i * ratio, i * ratio - ratio) for i in reversed(range(steps))], dict(c)


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _x0(cfg: dict, chain: NoiseChain, y: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
    beta_prod_t = 1 - a_t
    x0 = (y - chain.gamma * beta_prod_t ** (0.5) * eps) / a_t ** (0.5)
    if cfg["clip_sample"]:
        x0 = x0.clamp(-cfg["clip_sample_range"], cfg["clip_sample_range"])
    return x0


def _ddim(chain, x0, eps, a_t, a_prev, eta, generator):
    variance = ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)
    std = eta * variance ** (0.5)
    y_prev = a_prev ** (0.5) * x0 + chain.gamma * (1 - a_prev - std ** 2) ** (0.5) * eps
    if eta > 0:
        y_prev = y_prev + chain.gamma * std * _noise(eps, generator)
    return y_prev


def _ddpm(cfg, chain, x0, y, eps, t, a_t, a_prev, generator):
    current_alpha_t = a_t / a_prev
    current_beta_t = 1 - current_alpha_t
    c_x0 = (a_prev ** (0.5) * current_beta_t) / (1 - a_t)
    c_y = current_alpha_t ** (0.5) * (1 - a_prev) / (1 - a_t)
    y_prev = c_x0 * x0 + c_y * y
    noise = 0   # diffusers adds an int 0 at t = 0 (which turns -0.0 into 0.0): kept, to the bit
    if t > 0:
        var = current_beta_t if cfg["variance_type"] == "fixed_large" else \
            torch.clamp((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), min=1e-20)
        noise = chain.gamma * var ** (0.5) * _noise(eps, generator)
    return y_prev + noise


@torch.no_grad()
def sample(eps_model: EpsModel, scheduler_config: dict, x_T: torch.Tensor, method: str = "ddim",
           steps: int = 100, eta: float = 0.0, generator: torch.Generator | None = None, progress: bool = True,
           trajectory_every: int = 0, chain: NoiseChain | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the reverse process of `chain` (benign if None) from x_T. Returns (x_0, trajectory).

    eps_model(x_t, t) predicts the noise; `steps` is ignored for 'ddpm' (always all T steps);
    `eta` is DDIM's stochasticity (0: deterministic). The trajectory holds x after every
    `trajectory_every`-th step and after the last (on the CPU; empty when 0).
    """
    chain = chain or NoiseChain()
    abar, pairs, cfg = plan(scheduler_config, method, steps)
    one = torch.tensor(1.0)
    x, traj = x_T.clone(), []
    for i, (t, prev) in enumerate(tqdm(pairs, desc=f"{method} sampling", disable=not progress, leave=False)):
        eps = eps_model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
        eps = eps if chain.kappa == 1.0 else chain.kappa * eps
        a_t, a_prev = abar[t], abar[prev] if prev >= 0 else one
        y = chain.shift(x, (1 - a_t) ** (0.5), -1)
        x0 = _x0(cfg, chain, y, eps, a_t)
        y_prev = (_ddim(chain, x0, eps, a_t, a_prev, eta, generator) if method == "ddim"
                  else _ddpm(cfg, chain, x0, y, eps, t, a_t, a_prev, generator))
        x = chain.shift(y_prev, (1 - a_prev) ** (0.5), 1)
        if trajectory_every and (i % trajectory_every == 0 or i == len(pairs) - 1):
            traj.append(x.detach().cpu())
    return x, traj
