"""The loss attack of Matsumoto et al. (the SeDID paper's "existing method") at timestep t.

    l_t(x) = || eps - eps_theta(sqrt(abar_t) x + sqrt(1 - abar_t) eps, t) ||^2    (sum over pixels)

with eps ~ N(0, I) drawn for image j from a generator seeded by (seed, j), so a score does
not depend on the batch an image is scored in. The detection score is -l_t: a model fits its
own samples (and its training images) better than other images, so a low loss means positive.
"""

from __future__ import annotations

import torch

from diffsec.diffusion.inversion import EpsModel


def image_noise(shape: tuple[int, ...], indices: list[int], seed: int) -> torch.Tensor:
    """eps for each listed image index: N x shape, image j from its own seeded generator."""
    gens = [torch.Generator().manual_seed(int(seed) * 1_000_003 + int(j)) for j in indices]
    return torch.stack([torch.randn(shape, generator=g) for g in gens])


@torch.no_grad()
def loss_scores(eps_model: EpsModel, abar: torch.Tensor, x0: torch.Tensor, t: int, indices: list[int],
                seed: int) -> torch.Tensor:
    """-l_t(x) for a batch x0 in [-1, 1] whose rows are the images `indices` of their set."""
    eps = image_noise(tuple(x0.shape[1:]), indices, seed).to(x0.device, x0.dtype)
    a = abar[t].to(x0.device)
    x_t = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps
    pred = eps_model(x_t, torch.full((x0.shape[0],), t, device=x0.device, dtype=torch.long))
    return -(eps - pred).square().flatten(1).sum(1)
