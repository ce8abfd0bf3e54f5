"""SPD (paper 003): one universal perturbation delta_u, shared by every image, that immunizes them
against latent-diffusion img2img editing; PhotoGuard's per-image encoder attack is its upper bound.

Notation. x: an image, 3 x H x W in [0, 1] (the VAE reads 2x - 1, `posterior`); q(z | x) =
N(mu(x), diag sigma^2(x)) the VAE encoder's posterior over the d = C x h x w unscaled latent
entries; E(x) = mu(x), the posterior mean, the latent PhotoGuard attacks (`latent_dist.mean`);
X = {x_1 .. x_n} the training images; eps = budget.eps01.

Applying delta: x~ = clip(x + delta, 0, 1). delta is shared, so it cannot be projected onto every
image's valid range at once: the clip happens where it is applied, and the losses below are
measured at x~ (the image that is published), so the optimiser sees the clip (zero gradient where
it binds). `apply_universal` rounds x~ to uint8 through `budget.quantize`, which keeps every pixel
within budget.max_levels of the clean one.

Per-image losses L(x, delta), each minimised:
  encoder  ||E(x~) - z_targ||_2^2 (summed over the d entries). z_targ = E(grey), the posterior mean
           of a flat 0.5 image (target "grey": PhotoGuard's demo app pulls toward the posterior
           mean of a flat gray test image), or 0 (target "zero": their img2img notebook minimises
           ||latent_dist.mean||). PhotoGuard minimises the unsquared norm per image; squared
           (as the SPD paper writes it) the sign of a per-image gradient is the same.
  pca+     -KL(q(z | x~) || N(0, I)),  KL = 1/2 sum_i (mu_i^2 + sigma_i^2 - ln sigma_i^2 - 1):
           PCA+ maximises the KL to the prior, driving mu^2 and sigma^2 out of distribution.
  pca-     sum_i (mu_i^2 + sigma_i^2). The paper minimises KL(q || N(0, v I)) "with v ~ 0" and
           approximates it by sum_i (sigma_i^2 + mu_i^2) / v: the exact KL is
           1/2 sum_i ((sigma_i^2 + mu_i^2) / v - 1 + ln v - ln sigma_i^2), whose 1/v term dominates
           as v -> 0+; times the positive constant v (argmin unchanged, and sign-PGD and Adam are
           blind to the scale) it is this loss, which drives sigma^2 -> 0 and mu^2 -> 0, the
           collapse to a Dirac at 0 the paper describes. (The v = 1 KL, minimised, would instead
           pull sigma^2 toward 1.)

Universal objective: delta_u = argmin_{||delta||_inf <= eps} (1/n) sum_j L(x_j, delta). Its
gradient g = (1/n) sum_j grad_delta L(x_j, delta) is exact: per-minibatch gradient sums are
added (in float64) and divided by n, so it does not depend on the minibatch size.

Optimisers (the paper's Algorithms 1 and 2), from a uniform random start delta_0 ~ U[-eps, eps]^D
(PhotoGuard's start) drawn from a CPU generator seeded with cfg.seed; for k = 0 .. iters-1:
  pgd   delta <- Pi(delta - alpha_k sign(g))
  adam  m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,  m^ = m / (1 - b1^(k+1)),
        v^ = v / (1 - b2^(k+1)),  delta <- Pi(delta - alpha_k m^ / (sqrt(v^) + 1e-8)),  b = (0.9, 0.999)
with Pi the clip onto [-eps, eps] and alpha_k PhotoGuard's schedule alpha_k = alpha (1 - 0.99 k / iters)
(their encoder attack's `actual_step_size`: linear from alpha toward alpha / 100), or alpha fixed.
alpha = budget.step01 (PhotoGuard's img2img demo: eps 0.06, step 0.02 on [-1, 1] pixels, so
alpha = eps / 3). Adam's first update is alpha sign(g) per pixel too (m^ / sqrt(v^) = g / |g|), so
one step size serves both. The SPD paper gives neither its step nor its Adam rate.

Upper bound (`photoguard_per_image`): the same loss and optimiser with one delta per image, each
stepped on its own gradient and projected onto the eps ball and onto x + delta in [0, 1] (as
PhotoGuard clamps X_adv). Baseline (`random_baseline`): uniform noise in the eps ball (the paper's
Table 1 "Baseline").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from diffsec.errors import DiffsecError
from diffsec.poison.budget import Budget, quantize

OBJECTIVES = ("encoder", "pca+", "pca-")
OPTIMIZERS = ("pgd", "adam")
TARGETS = ("grey", "zero")
SCHEDULES = ("photoguard", "fixed")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
GREY = 0.5  # the flat target image, in [0, 1] pixels


@dataclass(frozen=True)
class UniversalConfig:
    objective: str = "encoder"      # one of OBJECTIVES
    optimizer: str = "pgd"          # one of OPTIMIZERS
    iters: int = 500                # the paper: 500 per eps
    batch_size: int = 8             # images per forward pass; the gradient is exact whatever it is
    target: str = "grey"            # the encoder objective's z_targ: E(flat 0.5 image) or zero
    schedule: str = "photoguard"    # step size: PhotoGuard's linear decay to 1/100, or fixed
    seed: int = 0                   # the random start

    def __post_init__(self):
        for name, value, choices in (("objective", self.objective, OBJECTIVES),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("target", self.target, TARGETS), ("schedule", self.schedule, SCHEDULES)):
            if value not in choices:
                raise DiffsecError(f"universal perturbation: unknown {name} {value!r} (choose from "
                                   f"{', '.join(choices)})")
        for name, value, low in (("iters", self.iters, 1), ("batch_size", self.batch_size, 1),
                                 ("seed", self.seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DiffsecError(f"universal perturbation: {name} must be an integer >= {low}, got {value!r}")


def posterior(vae, x01: torch.Tensor):
    """The VAE's diagonal Gaussian posterior q(z | x), unscaled latents, of [0, 1] pixels read in
    [-1, 1] as `LatentDiffusion.encode` reads them; `.mean` and `.logvar` keep their graph."""
    return vae.encode((x01 * 2 - 1).to(vae.dtype)).latent_dist


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per row: KL(N(mean, exp(logvar)) || N(0, I)) = 1/2 sum (mean^2 + exp(logvar) - logvar - 1)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1).flatten(1).sum(1)


def _device(vae) -> torch.device:
    return next(vae.parameters()).device


def target_latent(vae, size: tuple[int, int], target: str) -> torch.Tensor:
    """z_targ, 1 x C x h x w (unscaled): the posterior mean of a flat grey H x W image, or zeros."""
    with torch.no_grad():
        mu = posterior(vae, torch.full((1, 3, *size), GREY, device=_device(vae))).mean.float()
    return mu if target == "grey" else torch.zeros_like(mu)


def objective_loss(vae, x01: torch.Tensor, delta: torch.Tensor, objective: str,
                   z_targ: torch.Tensor | None = None) -> torch.Tensor:
    """The per-image loss minimised (module docstring) at clip(x01 + delta, 0, 1); delta is
    3 x H x W (universal, broadcast) or B x 3 x H x W (per image)."""
    post = posterior(vae, (x01 + delta).clamp(0, 1))
    mean, logvar = post.mean.float(), post.logvar.float()
    if objective == "encoder":
        if z_targ is None:
            raise DiffsecError("the encoder objective needs a target latent z_targ")
        return (mean - z_targ).pow(2).flatten(1).sum(1)
    if objective == "pca+":
        return -kl_to_standard_normal(mean, logvar)
    if objective == "pca-":
        return (mean.pow(2) + logvar.exp()).flatten(1).sum(1)
    raise DiffsecError(f"unknown objective {objective!r} (choose from {', '.join(OBJECTIVES)})")


def _losses_and_grad(vae, images01: torch.Tensor, delta: torch.Tensor, objective: str,
                     z_targ: torch.Tensor | None, batch_size: int, shared: bool):
    """(per-image losses: n float64 on CPU, gradient). shared: delta is universal and the gradient
    is the exact mean over the n images; otherwise delta holds one row per image, and so does the
    gradient (each row its own image's)."""
    losses, grads = [], []
    total = torch.zeros(delta.shape, dtype=torch.float64, device=delta.device)
    for lo in range(0, len(images01), batch_size):
        x = images01[lo:lo + batch_size].to(delta.device, torch.float32)
        d = (delta if shared else delta[lo:lo + len(x)]).detach().requires_grad_(True)
        with torch.enable_grad():  # callers may sit under no_grad; delta needs a graph
            loss = objective_loss(vae, x, d, objective, z_targ)
            (g,) = torch.autograd.grad(loss.sum(), d)  # a sum of per-image losses: per-image grads
        losses.append(loss.detach().double().cpu())
        if shared:
            total += g.double()
        else:
            grads.append(g)
    losses = torch.cat(losses)
    return losses, (total / len(losses)).float() if shared else torch.cat(grads)


def universal_gradient(vae, images01: torch.Tensor, delta: torch.Tensor, objective: str,
                       z_targ: torch.Tensor | None = None, batch_size: int = 8) -> tuple[float, torch.Tensor]:
    """(mean loss, mean gradient w.r.t. the universal delta) over all n images, exact."""
    losses, grad = _losses_and_grad(vae, images01, delta, objective, z_targ, batch_size, shared=True)
    return float(losses.mean()), grad


def random_baseline(shape, budget: Budget, seed: int) -> torch.Tensor:
    """Uniform noise in the L-inf ball of radius budget.eps01 (float32, CPU, same bytes per seed)."""
    g = torch.Generator("cpu").manual_seed(int(seed))
    return (torch.rand(tuple(shape), generator=g) * 2 - 1) * budget.eps01


def step_sizes(alpha: float, iters: int, schedule: str) -> list[float]:
    """alpha_k for k = 0 .. iters-1: PhotoGuard's alpha (1 - 0.99 k / iters), or alpha throughout."""
    if schedule == "fixed":
        return [alpha] * iters
    return [alpha - (alpha - alpha / 100) * k / iters for k in range(iters)]


class _Adam:
    """The paper's Algorithm 2 update direction m^ / (sqrt(v^) + eps_adam), written out."""

    def __init__(self, like: torch.Tensor):
        self.m, self.v, self.k = torch.zeros_like(like), torch.zeros_like(like), 0

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        (b1, b2), self.k = ADAM_BETAS, self.k + 1
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        return (self.m / (1 - b1 ** self.k)) / ((self.v / (1 - b2 ** self.k)).sqrt() + ADAM_EPS)


def _optimise(delta: torch.Tensor, losses_and_grad: Callable, project: Callable, budget: Budget,
              cfg: UniversalConfig, progress: bool, desc: str):
    """Run cfg.optimizer from delta; returns (delta, losses per iterate: iters + 1 rows, the last at
    the final delta, each row the per-image losses)."""
    from tqdm.auto import tqdm

    adam = _Adam(delta) if cfg.optimizer == "adam" else None
    rows = []
    bar = tqdm(step_sizes(budget.step01, cfg.iters, cfg.schedule), desc=desc, disable=not progress, leave=False)
    for alpha in bar:
        losses, grad = losses_and_grad(delta)
        rows.append(losses)
        bar.set_postfix(loss=f"{float(losses.mean()):.5g}")
        delta = project(delta - alpha * (adam.direction(grad) if adam else grad.sign()))
    rows.append(losses_and_grad(delta)[0])
    return delta.detach(), torch.stack(rows).numpy()


def _check_images(images01: torch.Tensor) -> None:
    if images01.ndim != 4 or images01.shape[1] != 3 or len(images01) == 0:
        raise DiffsecError(f"need n >= 1 images as n x 3 x H x W in [0, 1], got shape {tuple(images01.shape)}")


def fit_universal(vae, images01: torch.Tensor, budget: Budget, cfg: UniversalConfig,
                  progress: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """SPD: the universal delta (3 x H x W, [0, 1] pixel units, on the VAE's device) for n images
    (n x 3 x H x W in [0, 1]), and the mean loss at each of its iters + 1 iterates."""
    _check_images(images01)
    z_targ = target_latent(vae, images01.shape[2:], cfg.target) if cfg.objective == "encoder" else None
    delta = random_baseline(images01.shape[1:], budget, cfg.seed).to(_device(vae))
    delta, curve = _optimise(
        delta, lambda d: _losses_and_grad(vae, images01, d, cfg.objective, z_targ, cfg.batch_size, True),
        lambda d: d.clamp(-budget.eps01, budget.eps01), budget, cfg, progress, f"universal {cfg.objective}")
    return delta, curve.mean(1)


def photoguard_per_image(vae, images01: torch.Tensor, budget: Budget, cfg: UniversalConfig,
                         progress: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """The per-image upper bound: one delta per image (n x 3 x H x W) stepped on its own gradient,
    kept in the eps ball and with x + delta in [0, 1]; and each image's loss per iterate
    (n x (iters + 1)). An image's delta does not depend on cfg.batch_size."""
    _check_images(images01)
    x = images01.to(_device(vae), torch.float32)
    z_targ = target_latent(vae, images01.shape[2:], cfg.target) if cfg.objective == "encoder" else None

    def project(d):
        return (x + d.clamp(-budget.eps01, budget.eps01)).clamp(0, 1) - x

    delta = project(random_baseline(images01.shape, budget, cfg.seed).to(x.device))
    delta, curves = _optimise(
        delta, lambda d: _losses_and_grad(vae, x, d, cfg.objective, z_targ, cfg.batch_size, False),
        project, budget, cfg, progress, f"per-image {cfg.objective}")
    return delta, curves.T


def apply_universal(images_uint8: np.ndarray, delta: torch.Tensor, budget: Budget) -> np.ndarray:
    """Immunized images: clip(x + delta, 0, 1) rounded to uint8 NHWC by `quantize`, so every pixel is
    within budget.max_levels of the clean one. delta: 3 x H x W (or one per image), [0, 1] units."""
    from diffsec.metrics.backbones import to_tensor

    x01 = to_tensor(images_uint8)
    if tuple(delta.shape[-3:]) != tuple(x01.shape[1:]):
        raise DiffsecError(f"a {tuple(delta.shape)} perturbation does not fit {tuple(x01.shape[1:])} images")
    # float32 slack only: (x + d).clamp(0, 1) - x can exceed |d| by an ulp of x (~6e-8), far below
    # one uint8 level (1/255), and quantize holds every pixel to budget.max_levels regardless
    if float(delta.abs().max()) > budget.eps01 + 1e-6:
        raise DiffsecError(f"perturbation L-inf {float(delta.abs().max()):.6g} exceeds eps {budget.eps01:.6g}")
    return quantize((x01 + delta.detach().float().cpu()).clamp(0, 1), np.asarray(images_uint8), budget)
