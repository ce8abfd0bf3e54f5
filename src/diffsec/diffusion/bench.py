"""Sampling throughput of a pixel DDPM: seconds per reverse step, images per second for DDPM
(all T steps) and DDIM (k steps). The UNet call dominates every step, so images/s for a sampler
is batch / (its step count x measured s/step); one full DDIM run per batch size checks this."""

from __future__ import annotations

import time

import torch


@torch.no_grad()
def sampling_throughput(unet, scheduler_config: dict, batch_sizes, timed_steps: int = 10, ddim_steps=(50, 100),
                        device: str = "cpu") -> list[dict]:
    from diffsec.diffusion.sampling import sample
    from diffsec.models.ddpm import unet_eps

    unet = unet.to(device).eval()
    eps, res = unet_eps(unet), unet.config.sample_size
    T = scheduler_config["num_train_timesteps"]
    rows = []
    for b in batch_sizes:
        x = torch.randn(b, 3, res, res, device=device)
        sample(eps, scheduler_config, x, "ddim", 2, progress=False)   # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        sample(eps, scheduler_config, x, "ddim", timed_steps, progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        per_step = (time.perf_counter() - t0) / timed_steps
        row = {"batch": b, "s_per_step": per_step, "ddpm_images_per_s": b / (T * per_step)}
        for k in ddim_steps:
            row[f"ddim{k}_images_per_s"] = b / (k * per_step)
        rows.append(row)
    return rows
