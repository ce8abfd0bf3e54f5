"""The six poisons of the paper's Table 3 as PGD objectives, plus a targeted DA variant.

An objective maps pixels x (B x 3 x H x W in [0, 1], requiring grad) and the batch context to
(to_minimize, reported), both per image: PGD steps against the sign of d to_minimize / dx, and
the loss curve records `reported`, the quantity the method claims to move.

The two diffusion attacks run PhotoGuard's differentiable img2img chain g (encode, noise to the
img2img strength, the last `steps` DDIM steps with guidance, decode):

  da           the paper's DA (Table 3: ascent, untargeted, objective "DM sampling"):
               maximise ||g(x) - sg(x)||^2 / D, the edit's pixel distance from the image it edits
               (sg = stop-gradient; x stays within eps of the clean image, so this is the
               distance to the clean image up to eps)
  da-targeted  PhotoGuard's own form: minimise ||g(x) - x_target||^2 / D toward a target image
               (MIST), the DA this project used before (kept as a named variant)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffsec.errors import DiffsecError
from diffsec.poison.ldm import LatentDiffusion

METHODS = ("adm+", "adm-", "sds+", "sds-", "ea", "da", "da-targeted")
TARGETED = ("ea", "da-targeted")
DIFFUSION_ATTACKS = ("da", "da-targeted")  # need the img2img chain (DAConfig)
REPORTED = {  # what the loss curve shows, per method
    "adm": "noise-prediction MSE at the drawn (t, eps)",
    "sds": "noise-prediction MSE at the drawn (t, eps)",
    "ea": "latent MSE to the target's latent",
    "da": "pixel MSE of the img2img output to the image it edits (ascended)",
    "da-targeted": "pixel MSE of the img2img output to the target",
}


@dataclass(frozen=True)
class DAConfig:
    """PhotoGuard's diffusion attack, as an img2img chain: encode, noise to `strength`, run the
    last `steps` DDIM steps of a ceil(steps/strength)-step schedule with gradient, decode."""
    steps: int        # PhotoGuard's num_inference_steps=4; memory grows with it
    strength: float   # img2img strength in (0, 1) (PhotoGuard: 0.5); at 1 the output ignores the image
    guidance: float   # classifier-free guidance (PhotoGuard: 7.5)

    def __post_init__(self):
        if int(self.steps) < 1 or not 0 < self.strength < 1:
            raise DiffsecError(f"diffusion attack: need steps >= 1 and strength in (0, 1): at 1 the "
                               f"output ignores the image (got steps {self.steps}, strength {self.strength:g})")


@dataclass
class Batch:
    cond: torch.Tensor                 # text embeddings, one per image
    generators: list[torch.Generator]  # one random stream per image
    uncond: torch.Tensor | None = None  # empty-prompt embeddings (DA with guidance)


def noise_loss(ldm: LatentDiffusion, z0, t, eps, cond) -> torch.Tensor:
    """Per-image E||eps_theta(z_t, t, c) - eps||^2 (mean over latent entries), Eq. 4."""
    return (ldm.eps_pred(ldm.noisy(z0, t, eps), t, cond) - eps).pow(2).flatten(1).mean(1)


def _adm(sign: float):
    def objective(ldm: LatentDiffusion, x, b: Batch):
        z0 = ldm.encode(x, b.generators)
        t, eps = ldm.draw(b.generators, z0.shape[1:])
        loss = noise_loss(ldm, z0, t, eps, b.cond)
        return -sign * loss, loss
    return objective


def sds_surrogate(ldm: LatentDiffusion, x, b: Batch):
    """(<stopgrad(eps_theta(z_t) - eps), z0> per image, the noise MSE): the surrogate's pixel
    gradient is the SDS gradient J_E^T (eps_theta - eps), the DM-loss gradient with the UNet
    Jacobian dropped (Xue et al. 2023, as in their code: no sqrt(abar_t) or w(t) weight)."""
    z0 = ldm.encode(x, b.generators)
    t, eps = ldm.draw(b.generators, z0.shape[1:])
    with torch.no_grad():  # no UNet graph: this is what makes SDS cheap
        g = ldm.eps_pred(ldm.noisy(z0.detach(), t, eps), t, b.cond) - eps
    return (g * z0).flatten(1).sum(1), g.pow(2).flatten(1).mean(1)


def _sds(sign: float):
    def objective(ldm: LatentDiffusion, x, b: Batch):
        surrogate, loss = sds_surrogate(ldm, x, b)
        return -sign * surrogate, loss
    return objective


def _ea(target_latent: torch.Tensor):
    def objective(ldm: LatentDiffusion, x, b: Batch):
        d = (ldm.encode(x) - target_latent).pow(2).flatten(1).mean(1)  # posterior means, Eq. 5
        return d, d
    return objective


def da_schedule(ldm: LatentDiffusion, cfg: DAConfig):
    """(timesteps, scheduler): the img2img tail of a DDIM schedule from the model's own config."""
    import math

    from diffusers import DDIMScheduler

    # Latents are not in [-1, 1]: never clip x0 (DDIM's default when a config, e.g. PNDM's, omits it).
    sched = DDIMScheduler.from_config(ldm.scheduler.config, clip_sample=False, thresholding=False)
    sched.set_timesteps(max(cfg.steps, math.ceil(cfg.steps / cfg.strength)))
    return [int(t) for t in sched.timesteps[-cfg.steps:]], sched


def img2img_chain(ldm: LatentDiffusion, x, b: Batch, timesteps: list[int], sched, cfg: DAConfig):
    """g(x): encode (posterior mean), noise to timesteps[0], the DDIM tail with guidance, decode.
    Every step keeps its graph: the memory-heavy part."""
    z0 = ldm.encode(x)
    noise = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in b.generators]).to(z0)
    z = ldm.noisy(z0, torch.full((len(x),), timesteps[0], device=ldm.device), noise)
    for t in timesteps:
        tt = torch.full((len(x),), t, device=ldm.device)
        if b.uncond is not None and cfg.guidance != 1:
            e_u, e_c = ldm.eps_pred(torch.cat([z, z]), torch.cat([tt, tt]),
                                    torch.cat([b.uncond, b.cond])).chunk(2)
            e = e_u + cfg.guidance * (e_c - e_u)
        else:
            e = ldm.eps_pred(z, tt, b.cond)
        z = sched.step(e, t, z, eta=0.0).prev_sample
    return ldm.decode(z)


def _da(target01: torch.Tensor | None, timesteps: list[int], sched, cfg: DAConfig):
    """Targeted (toward `target01`, descent) or, with target01 None, untargeted (away from the
    image itself, ascent)."""
    def objective(ldm: LatentDiffusion, x, b: Batch):
        out = img2img_chain(ldm, x, b, timesteps, sched, cfg)
        if target01 is None:
            d = (out - x.detach()).pow(2).flatten(1).mean(1)
            return -d, d
        d = (out - target01).pow(2).flatten(1).mean(1)
        return d, d
    return objective


def make_objective(method: str, ldm: LatentDiffusion, target01: torch.Tensor | None = None,
                   da: DAConfig | None = None):
    """The objective for `method`; `target01` (3 x H x W in [0, 1]) is needed by ea and
    da-targeted, the img2img chain `da` by both diffusion attacks."""
    if method not in METHODS:
        raise ValueError(f"unknown poison {method!r}; choose from {METHODS}")
    if method in TARGETED and target01 is None:
        raise ValueError(f"{method} needs a target image")
    if method in DIFFUSION_ATTACKS and da is None:
        raise ValueError(f"{method} needs its img2img chain (DAConfig)")
    if method in ("adm+", "adm-"):
        return _adm(1.0 if method == "adm+" else -1.0)
    if method in ("sds+", "sds-"):
        return _sds(1.0 if method == "sds+" else -1.0)
    if method == "da":
        return _da(None, *da_schedule(ldm, da), da)
    target01 = target01.to(ldm.device, torch.float32)[None]
    if method == "ea":
        with torch.no_grad():
            return _ea(ldm.encode(target01))
    return _da(target01, *da_schedule(ldm, da), da)
