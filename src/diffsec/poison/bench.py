"""Throughput of SPD's two costly steps: universal-PGD iterations and img2img edits.

One SPD iteration is the exact mean gradient over the n training images
(`universal.universal_gradient`): n / b VAE encoder forward + backward passes of b images, so
iterations/s = 1 / (seconds per full pass) and per-image gradients/s = n x iterations/s. A PGD or
Adam update adds one sign or moment step on a 3 x H x W tensor, which is negligible next to it.
An edit is one img2img call: ceil(strength x steps) denoising steps, each with classifier-free
guidance (two UNet rows per image), then the VAE decoder; edits/s = images / seconds per batch.
Both are timed after one warm-up call.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from diffsec.poison.universal import target_latent, universal_gradient


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, repeats: int, device) -> float:
    fn()  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeats


def universal_throughput(vae, images01: torch.Tensor, batch_sizes, objective: str = "encoder",
                         repeats: int = 2) -> list[dict]:
    """Rows {batch, n_images, s_per_iter, iters_per_s, image_grads_per_s} for one exact universal
    gradient over `images01` (n x 3 x H x W in [0, 1]) at each minibatch size."""
    device = next(vae.parameters()).device
    x = images01.to(device)
    z_targ = target_latent(vae, tuple(x.shape[-2:]), "grey") if objective == "encoder" else None
    delta = torch.zeros(x.shape[1:], device=device)
    rows = []
    for b in batch_sizes:
        s = _timed(lambda b=b: universal_gradient(vae, x, delta, objective, z_targ, b), repeats, device)
        rows.append({"batch": b, "n_images": len(x), "s_per_iter": s, "iters_per_s": 1 / s,
                     "image_grads_per_s": len(x) / s})
    return rows


def edit_throughput(pipe, images: np.ndarray, batch_sizes, strength: float, guidance: float, steps: int,
                    repeats: int = 1, prompt: str = "a photo") -> list[dict]:
    """Rows {batch, s_per_batch, edits_per_s, unet_steps} for img2img edits of the first `batch`
    uint8 NHWC `images` (repeated when there are fewer) with one prompt, seeded per call."""
    device = pipe.device
    rows = []
    for b in batch_sizes:
        take = np.resize(images, (b, *images.shape[1:]))
        x = torch.from_numpy(np.ascontiguousarray(take)).permute(0, 3, 1, 2).float().div(255).to(device)

        def edit(b=b, x=x):
            pipe(prompt=[prompt] * b, image=x, strength=strength, guidance_scale=guidance,
                 num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(0), output_type="np")

        s = _timed(edit, repeats, device)
        rows.append({"batch": b, "s_per_batch": s, "edits_per_s": b / s, "unet_steps": int(strength * steps)})
    return rows
