"""Sign-gradient PGD in pixel space, and its run over an image set in batches.

Each image draws its timesteps, noises and posterior samples from its own generator, seeded by
(seed, image index): an image's poison does not depend on which batch it sits in, so a run
resumed after a kill, or rerun with another --batch-size, makes the same images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from diffsec.poison.budget import Budget, quantize
from diffsec.poison.ldm import LatentDiffusion
from diffsec.poison.objectives import Batch


def image_generators(seed: int, indices) -> list[torch.Generator]:
    """CPU generators (same draws on any device), one independent stream per image index."""
    return [torch.Generator("cpu").manual_seed(int(np.random.SeedSequence([seed, int(i)])
                                                   .generate_state(1, np.uint64)[0]))
            for i in indices]


def pgd(ldm: LatentDiffusion, x0: torch.Tensor, objective, batch: Batch, budget: Budget,
        steps: int, on_step: Callable[[torch.Tensor], None] | None = None):
    """`steps` signed steps of budget.step01 against d objective / dx, each followed by the
    projection onto the L-inf ball of radius budget.eps01 around x0 and onto [0, 1].

    Returns (x_adv float in [0, 1], reported loss per image and step: B x steps, float64);
    the loss at step k is measured at the iterate the step starts from.
    """
    delta = torch.zeros_like(x0)
    losses = []
    for _ in range(steps):
        with torch.enable_grad():  # callers may sit under no_grad; the pixels need a graph
            x = (x0 + delta).requires_grad_(True)
            minimize, reported = objective(ldm, x, batch)
            # Per-image objectives summed: each image's gradient is its own, whatever the batch.
            (grad,) = torch.autograd.grad(minimize.sum(), x)
        delta = (delta - budget.step01 * grad.sign()).clamp(-budget.eps01, budget.eps01)
        delta = (x0 + delta).clamp(0, 1) - x0
        losses.append(reported.detach().double().cpu())
        if on_step:
            on_step(reported.detach())
    return (x0 + delta).detach(), torch.stack(losses, 1).numpy()


def poison_images(ldm: LatentDiffusion, images: np.ndarray, prompts: list[str], objective,
                  budget: Budget, steps: int, batch_size: int, seed: int, start: int = 0,
                  on_batch: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                  on_step: Callable[[torch.Tensor], None] | None = None, uncond: bool = False):
    """Poison images[start:] (uint8 NHWC) in batches.

    Calls on_batch(end, adv_uint8, losses) after each batch so the caller can
    checkpoint. Returns (adv uint8 for images[start:], losses (N - start) x steps).
    """
    advs, curves = [], []
    empty = ldm.embed([""])[0] if uncond else None
    for lo in range(start, len(images), batch_size):
        idx = np.arange(lo, min(lo + batch_size, len(images)))
        clean = images[idx]
        x0 = torch.from_numpy(clean).permute(0, 3, 1, 2).to(ldm.device, torch.float32) / 255
        batch = Batch(cond=ldm.embed([prompts[i] for i in idx]), generators=image_generators(seed, idx),
                      uncond=None if empty is None else empty.expand(len(idx), -1, -1))
        x_adv, losses = pgd(ldm, x0, objective, batch, budget, steps, on_step)
        advs.append(quantize(x_adv, clean, budget))
        curves.append(losses)
        if on_batch:
            on_batch(int(idx[-1]) + 1, advs[-1], losses)
    if not advs:
        return images[:0].copy(), np.zeros((0, steps))
    return np.concatenate(advs), np.concatenate(curves)
