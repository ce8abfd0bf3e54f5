"""DDPM (ancestral) and DDIM sampling for pixel or latent UNets, from ANY initial noise.

The backdoor papers start the reverse process from non-standard noise (a trigger blended
into x_T), so sampling takes x_T explicitly instead of drawing it inside a pipeline.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm


def make_scheduler(config: dict, method: str):
    """A diffusers scheduler of kind `method` ('ddpm' | 'ddim') with the training schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if method == "ddpm":
        return DDPMScheduler.from_config(config)
    if method == "ddim":
        # eta=0 DDIM; final alpha 1 and no clipping quirks beyond the training config's.
        return DDIMScheduler.from_config(config, set_alpha_to_one=True)
    raise ValueError(f"unknown sampler {method!r} (ddpm | ddim)")


@torch.no_grad()
def sample(eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scheduler_config: dict,
           x_T: torch.Tensor, method: str = "ddim", steps: int = 100, eta: float = 0.0,
           generator: torch.Generator | None = None, progress: bool = True,
           trajectory_every: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the reverse process from x_T. Returns (x_0, trajectory snapshots).

    eps_model(x_t, t) predicts the noise; `steps` is ignored for 'ddpm' (always all T steps).
    """
    sched = make_scheduler(scheduler_config, method)
    sched.set_timesteps(sched.config.num_train_timesteps if method == "ddpm" else steps)
    x = x_T.clone()
    traj: list[torch.Tensor] = []
    for i, t in enumerate(tqdm(sched.timesteps, desc=f"{method} sampling", disable=not progress,
                               leave=False)):
        eps = eps_model(x, t.expand(x.shape[0]).to(x.device))
        kwargs = {"eta": eta} if method == "ddim" else {}
        x = sched.step(eps, t, x, generator=generator, **kwargs).prev_sample
        if trajectory_every and (i % trajectory_every == 0 or i == len(sched.timesteps) - 1):
            traj.append(x.detach().cpu())
    return x, traj
