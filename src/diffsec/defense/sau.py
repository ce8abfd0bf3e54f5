"""Spatial Attention Unlearning (SAU, paper 001): remove a text-triggered backdoor's effect from a
generation at test time by blending its latent with a seed-matched clean latent where the trigger
acts.

Notation. z: a final denoised latent, C x h x w (the UNet's output latent after the last sampler
step, before the VAE decodes it; a batch B x C x h x w works everywhere below). For a prompt y and
a seed s the poisoned model generates z_p = G(triggered(y), s) (trigger prepended) and the clean
counterpart z_c = G(y, s) (same seed, same initial noise). cos(u, v) = <u, v> / (|u| |v|) over the
C channels of one spatial position (0 where either vector is 0); G_sigma: a normalised 2-D Gaussian
blur of standard deviation sigma latent pixels (replicate padding; sigma = 0 is the identity);
s(x; tau, k) = 1 / (1 + exp(-k (x - tau))), the shifted, scaled sigmoid.

Calibration (section 4.1.2) on N seed-matched pairs (z_p^i, z_c^i):
  Delta = (1/N) sum_i z_p^i - (1/N) sum_i z_c^i                       C x h x w, the trigger latent
  A_Delta(i, j) = |Delta(:, i, j)|_2                                   h x w, the activation map

Per generation (z_p, z_c):
  S(i, j) = cos(z_p(:, i, j), Delta(:, i, j))                          similarity map (4.1.3)
  M_p = 1[S > tau]                                                     primary mask, Eq. (1)
  A = A_Delta (source "delta", the paper's) or |z_p - z_c|_2 per position (source "pair")
  B = G_sigma(A) / max G_sigma(A)                                      blurred activation in [0, 1]
  M_s = 1[B > tau_s]                                                   secondary mask, Eq. (2)
  P = s(S; tau, k),  Q = s(B; tau_s, k)                                soft masks (4.1.5)
  Q' = Q (1 - P)                                                       secondary-only region
  w = alpha P + (alpha / 2) Q'                                         clean-latent weight, Eq. (3)
  z_b = (1 - w) z_p + w z_c                                            blended latent
  R = P + Q' = 1 - (1 - P)(1 - Q)                                      blended region, in [0, 1]
  z_f = (1 - R) z_b + R G_sigma_f(z_b)                                 final smoothing, Eq. (4)
and the image is the VAE decoding of z_f. Masks broadcast over the C channels.

Reading of the paper where its symbols were lost:
* The sigmoid "shifted by tau and scaled by k" is applied to the thresholded quantity (S for the
  primary mask, B for the secondary), giving the smooth version of the step 1[x > tau] that it
  tends to as k -> infinity. Applied to the already binary M_p it would only map {0, 1} to two
  constants, with none of the "gradual transitions" the paper wants. M_p and M_s are returned for
  figures; the blend uses P and Q.
* Eq. (3) weights (1 - M_p - M_s) z_p + M_p (alpha z_c + (1 - alpha) z_p) + M_s (alpha/2 z_c + ...):
  that is a convex blend only where the masks do not overlap, so the secondary mask acts where the
  primary does not (Q' = Q (1 - P)). Full masks give w = alpha, empty masks w = 0 (z_p untouched),
  a secondary-only region w = alpha / 2.
* The final blur is applied to the blended region only (weight R), so untouched positions stay
  bit-identical to z_p; sigma_f is its own setting (the paper reuses the symbol sigma).
* Blending happens once, on the final latent before decoding. The paper's latents come "from the
  model's outputs at each timestep"; blending at every sampler step is left to a later stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diffsec.errors import DiffsecError

SOURCES = ("delta", "pair")  # what the secondary mask's activation map is the norm of
EPS = 1e-8


@dataclass(frozen=True)
class SAUConfig:
    """SAU's settings; the paper gives none of their values. Defaults are starting points for a sweep:
    tau = 0.5 (cosine half way between orthogonal and aligned); tau_s = 0.3 of the blurred
    activation's peak (the secondary mask reaches past the primary one); k = 20 (the sigmoid goes
    0.12 -> 0.88 over tau +- 0.1 and is under 0.25 % at 0.3 below tau: the soft masks are never
    exactly 0, so this keeps positions far from the trigger all but untouched); alpha = 1 (the paper
    "replaces" the poisoned latent in the primary region and reports 100 % removal; alpha / 2 = 0.5
    in the secondary one); sigma = 1 and sigma_f = 0.5 latent pixels (8 and 4 image pixels for SD's
    8x VAE)."""

    tau: float = 0.5            # primary threshold on the cosine similarity map, in [-1, 1]
    tau_s: float = 0.3          # secondary threshold on the peak-normalised blurred activation, in [0, 1]
    k: float = 20.0             # sigmoid sharpness, > 0
    alpha: float = 1.0          # blending strength in the primary region, in [0, 1]
    sigma: float = 1.0          # activation-map blur (latent pixels), >= 0
    sigma_f: float = 0.5        # final blur of the blended region (latent pixels), >= 0
    source: str = "delta"       # one of SOURCES

    def __post_init__(self):
        bounds = (("tau", -1.0, 1.0), ("tau_s", 0.0, 1.0), ("k", 0.0, math.inf), ("alpha", 0.0, 1.0),
                  ("sigma", 0.0, math.inf), ("sigma_f", 0.0, math.inf))
        for name, low, high in bounds:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high or (name == "k" and value == 0):
                where = "> 0" if name == "k" else f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
                raise DiffsecError(f"SAU: {name} must be a finite number {where}, got {value!r}")
        if self.source not in SOURCES:
            raise DiffsecError(f"SAU: unknown source {self.source!r} (choose from {', '.join(SOURCES)})")


def _check_latents(name: str, x: torch.Tensor, like: torch.Tensor | None = None) -> None:
    if x.dim() not in (3, 4):
        raise DiffsecError(f"SAU: {name} must be C x h x w or B x C x h x w, got shape {tuple(x.shape)}")
    if like is not None and x.shape[-3:] != like.shape[-3:]:
        raise DiffsecError(f"SAU: {name} is {tuple(x.shape[-3:])} per latent, expected {tuple(like.shape[-3:])}")


def mean_shift(triggered_latents: torch.Tensor, clean_latents: torch.Tensor) -> torch.Tensor:
    """Delta (C x h x w): mean of the triggered latents minus mean of the seed-matched clean ones
    (both N x C x h x w, row i of each from the same seed)."""
    if triggered_latents.dim() != 4 or triggered_latents.shape != clean_latents.shape or not len(clean_latents):
        raise DiffsecError(f"SAU: calibration latents must be two N x C x h x w batches of one shape, got "
                           f"{tuple(triggered_latents.shape)} and {tuple(clean_latents.shape)}")
    return triggered_latents.float().mean(0) - clean_latents.float().mean(0)


def activation_map(diff: torch.Tensor) -> torch.Tensor:
    """|diff(:, i, j)|_2 over the channel axis: (..., C, h, w) -> (..., h, w)."""
    return torch.linalg.vector_norm(diff.float(), dim=-3)


def similarity_map(latent: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """S = cos(latent, Delta) per spatial position over channels: (..., C, h, w) -> (..., h, w)."""
    _check_latents("latent", latent, delta)
    z, d = latent.float(), delta.float()
    return (z * d).sum(-3) / (activation_map(z) * activation_map(d)).clamp_min(EPS)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """G_sigma over the last two axes (separable, radius ceil(3 sigma), replicate padding; the
    kernel sums to 1, so constants are kept). sigma = 0 returns x unchanged."""
    if sigma <= 0:
        return x
    r = math.ceil(3 * sigma)
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32, device=x.device).pow(2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(x.dtype)
    shape = x.shape
    y = F.pad(x.reshape(-1, 1, *shape[-2:]), (r, r, r, r), mode="replicate")
    y = F.conv2d(F.conv2d(y, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return y.reshape(shape)


def soft(x: torch.Tensor, tau: float, k: float) -> torch.Tensor:
    """s(x; tau, k) = sigmoid(k (x - tau)): the smooth step that 1[x > tau] is the k -> inf limit of."""
    return torch.sigmoid(k * (x - tau))


def primary_mask(similarity: torch.Tensor, tau: float) -> torch.Tensor:
    """M_p = 1[S > tau], float (..., h, w)."""
    return (similarity > tau).float()


def blurred_activation(activation: torch.Tensor, sigma: float) -> torch.Tensor:
    """B = G_sigma(A) / max G_sigma(A) per map (..., h, w), in [0, 1] (all zeros for a zero map)."""
    b = gaussian_blur(activation.float(), sigma)
    return b / b.flatten(-2).amax(-1).clamp_min(EPS)[..., None, None]


def secondary_mask(activation: torch.Tensor, sigma: float, tau_s: float) -> torch.Tensor:
    """M_s = 1[B > tau_s] with B the peak-normalised blurred activation map, float (..., h, w)."""
    return (blurred_activation(activation, sigma) > tau_s).float()


def _channels(mask: torch.Tensor) -> torch.Tensor:
    return mask.unsqueeze(-3)


def clean_weight(primary: torch.Tensor, secondary: torch.Tensor, alpha: float) -> torch.Tensor:
    """w = alpha P + (alpha / 2) Q (1 - P): the clean latent's share per position (..., h, w)."""
    return alpha * primary + alpha / 2 * secondary * (1 - primary)


def blend(poisoned: torch.Tensor, clean: torch.Tensor, primary: torch.Tensor, secondary: torch.Tensor,
          alpha: float) -> torch.Tensor:
    """z_b = (1 - w) z_p + w z_c with w = `clean_weight`, masks P, Q in [0, 1] of shape (..., h, w)
    broadcast over channels."""
    _check_latents("clean", clean, poisoned)
    w = _channels(clean_weight(primary, secondary, alpha))
    return (1 - w) * poisoned + w * clean


def blend_region(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """R = P + Q (1 - P): where the blend acts, in [0, 1]."""
    return primary + secondary * (1 - primary)


def final_blur(latent: torch.Tensor, region: torch.Tensor, sigma: float) -> torch.Tensor:
    """z_f = (1 - R) z + R G_sigma(z): the blur only where the region R (..., h, w) is non-zero."""
    r = _channels(region)
    return (1 - r) * latent + r * gaussian_blur(latent, sigma)


def sau_latent(poisoned: torch.Tensor, clean: torch.Tensor, delta: torch.Tensor,
               cfg: SAUConfig | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The defended latent z_f (float32, shape of `poisoned`) and the maps behind it, each (..., h, w):
    similarity S, activation B (blurred, peak-normalised), primary / secondary M_p / M_s (binary),
    primary_soft / secondary_soft P / Q, region R and weight w (the clean latent's share)."""
    cfg = cfg or SAUConfig()
    _check_latents("poisoned", poisoned, delta)
    _check_latents("clean", clean, poisoned)
    zp, zc = poisoned.float(), clean.float()
    sim = similarity_map(zp, delta)
    raw = (activation_map(delta) if cfg.source == "delta" else activation_map(zp - zc)).expand_as(sim)
    act = blurred_activation(raw, cfg.sigma)
    p, q = soft(sim, cfg.tau, cfg.k), soft(act, cfg.tau_s, cfg.k)
    region = blend_region(p, q)
    out = final_blur(blend(zp, zc, p, q, cfg.alpha), region, cfg.sigma_f)
    masks = {"similarity": sim, "activation": act, "primary": primary_mask(sim, cfg.tau),
             "secondary": secondary_mask(raw, cfg.sigma, cfg.tau_s), "primary_soft": p, "secondary_soft": q,
             "region": region, "weight": clean_weight(p, q, cfg.alpha)}
    return out, masks
