"""The training-set purifiers behind one shape: settings checked up front, then images -> images.

    jpeg      JPEG round trip at a quality (SZT Sec. 4.4: 25)
    advclean  AdverseCleaner: bilateral filters, then guided filters steered by the input
    regen     SDEdit through a StableDiffusionPipeline's latent space (Zhao et al.: t* = 60, DDIM)
    pdmpure   SDEdit through a pixel DDPM (after PDM-Pure: t* = 100 of 1000, ancestral DDPM), at the
              images' resolution (a mismatch is refused unless resizing is asked for)

Each `*_purifier` call validates everything that depends on its settings, the images or the model
(ranges, channels, the prompt's fields) and returns a function uint8 NHWC -> uint8 NHWC, so a
stage fails with one line before it writes anything. Defaults live in the stage's flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from diffsec.errors import DiffsecError

METHODS = ("jpeg", "regen", "pdmpure", "advclean")
Purifier = Callable[[np.ndarray], np.ndarray]


def jpeg_purifier(quality: int) -> Purifier:
    from diffsec.defense.jpeg import jpeg

    if not 1 <= quality <= 100:
        raise DiffsecError(f"JPEG quality must be in 1..100, got {quality}")
    return partial(jpeg, quality=quality)


@dataclass(frozen=True)
class AdvClean:
    """AdverseCleaner's settings (its script: 64 bilateral filters d 5, sigmas 8, then 4 guided
    filters of radius 4, eps 16)."""

    bilateral_iters: int
    diameter: int
    sigma_color: float
    sigma_space: float
    guided_iters: int
    radius: int
    eps: float

    def __post_init__(self):
        iters = (self.bilateral_iters, self.guided_iters)
        if min(*iters, self.radius) < 0 or sum(iters) < 1:
            raise DiffsecError(f"advclean: iterations and radius must be >= 0 and some filter must run (got "
                               f"{self.bilateral_iters} bilateral, {self.guided_iters} guided, radius {self.radius})")
        if not min(self.sigma_color, self.sigma_space, self.eps) > 0:
            raise DiffsecError("advclean: sigma-color, sigma-space and guided-eps must be positive")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        from diffsec.defense.advclean import advclean

        return advclean(images, self.bilateral_iters, self.diameter, self.sigma_color, self.sigma_space,
                        self.guided_iters, self.radius, self.eps)


@dataclass(frozen=True)
class SDEditSettings:
    """Noise to t*, denoise: t* (an index of the model's T) as `t_star` or `strength` (a fraction
    of T; neither: the purifier's default), `steps` (None: the sampler's default), `sampler`
    ddpm | ddim (None: the purifier's default)."""

    t_star: int | None
    strength: float | None
    steps: int | None
    sampler: str | None
    batch_size: int
    seed: int

    def __post_init__(self):
        if (self.steps is not None and self.steps < 1) or self.batch_size < 1:
            raise DiffsecError(f"steps and batch size must be >= 1 (got {self.steps}, {self.batch_size})")

    def resolve(self, T: int, module) -> tuple[int, str]:
        """(t*, sampler) for a model of T steps; `module`'s DEFAULT_T_STAR / DEFAULT_SAMPLER fill in."""
        from diffsec.defense.sdedit import t_star_of

        try:
            t = t_star_of(self.strength, self.t_star, T, module.DEFAULT_T_STAR)
        except ValueError as e:
            raise DiffsecError(f"strength/t*: {e}") from None
        return t, self.sampler or module.DEFAULT_SAMPLER


def load_model(method: str, name: str, device, flag: str = "--model"):
    """regen: the StableDiffusionPipeline `name`; pdmpure: (pixel UNet, scheduler) of `name` (see
    `load_pixel_ddpm`). One line naming `flag` if it fails."""
    from diffsec.models.pipelines import pipeline_class
    from diffsec.models.t2i import open_pipeline

    want = "StableDiffusionPipeline" if method == "regen" else "DDPMPipeline"
    if not name:
        raise DiffsecError(f"{method} needs {flag} (a {want} directory or hub id)")
    if method == "pdmpure" and _unet_class(name) is not None:
        return load_pixel_ddpm(name, device, flag)
    cls = pipeline_class(name)  # None for a hub id; a local non-pipeline is an error
    if cls is not None and cls != want and not (method == "regen" and "StableDiffusion" in cls):
        raise DiffsecError(f"{flag} {name} is a {cls}; {method} needs a {want}")
    return open_pipeline(name, flag, device) if method == "regen" else load_pixel_ddpm(name, device, flag)


def _unet_class(name: str) -> str | None:
    """`_class_name` of a bare diffusers model directory (config.json, no model_index.json), else None."""
    import json
    from pathlib import Path

    p = Path(name)
    if (p / "model_index.json").is_file() or not (p / "config.json").is_file():
        return None
    try:
        return json.loads((p / "config.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def load_pixel_ddpm(name: str, device, flag: str = "--model"):
    """(unet, scheduler) of a pixel DDPM: a DDPMPipeline directory, an artifact holding one under
    `pipeline/`, a hub id (e.g. google/ddpm-cifar10-32), or a bare UNet2DModel directory (what
    `UNet2DModel.save_pretrained` writes), which carries no scheduler and gets the DDPM schedule of
    Ho et al. (T = 1000, betas linear 1e-4..0.02, as google/ddpm-* and our DDPM world)."""
    from diffsec.errors import first_line
    from diffsec.models.ddpm import build_scheduler, load_ddpm

    cls = _unet_class(name)
    if cls is None:
        return load_ddpm(name, device, flag)
    if cls != "UNet2DModel":
        raise DiffsecError(f"{flag} {name} is a {cls}; pdmpure needs a DDPMPipeline or a UNet2DModel")
    from diffusers import UNet2DModel

    try:
        unet = UNet2DModel.from_pretrained(name)
    except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad directory
        raise DiffsecError(f"{flag} {name}: cannot load a UNet2DModel ({first_line(e)})") from None
    return unet.to(device).eval(), build_scheduler()


def prompts_from(template: str, data: dict) -> list[str]:
    """One prompt per image: `template` formatted with the image's aligned string fields."""
    n = len(data["images"])
    fields = {k: v for k, v in data.items() if k != "images" and v.ndim == 1 and len(v) == n}
    try:
        return [template.format(**{k: str(v[i]) for k, v in fields.items()}) for i in range(n)]
    except (KeyError, IndexError, ValueError) as e:
        raise DiffsecError(f"prompt {template!r} names {e}, not an aligned array of the image set "
                           f"(have: {', '.join(sorted(fields)) or 'none'})") from None


def regen_purifier(pipe, sd: SDEditSettings, prompts: list[str], guidance: float, resolution: int | None,
                   channels: int) -> tuple[Purifier, int]:
    """(Regen through `pipe`, its t*)."""
    from diffsec.defense import regen

    if channels != 3:
        raise DiffsecError(f"regen needs RGB images, got {channels} channel(s)")
    f = pipe.vae_scale_factor
    if resolution is not None and (resolution < f or resolution % f):
        raise DiffsecError(f"resolution must be a positive multiple of {f}, got {resolution}")
    t, sampler = sd.resolve(pipe.scheduler.config.num_train_timesteps, regen)
    return partial(regen.regen, pipe=pipe, t_star=t, steps=sd.steps, prompts=prompts, guidance=guidance,
                   seed=sd.seed, batch_size=sd.batch_size, resolution=resolution, method=sampler), t


def pdmpure_purifier(unet, scheduler, sd: SDEditSettings, shape: tuple[int, int, int],
                     allow_resize: bool = False) -> tuple[Purifier, int]:
    """(PDM-Pure-style SDEdit through the pixel `unet`, its t*) for images of `shape` (H, W, C).

    The model's resolution must be the images' (a 32 px CIFAR DDPM does not purify 512 px photos:
    it blurs them), unless `allow_resize` asks for resizing to the model's side and back."""
    from diffsec.defense import pdmpure

    *size, channels = shape
    if channels != unet.config.in_channels:
        raise DiffsecError(f"images have {channels} channels, the model takes {unet.config.in_channels}")
    try:
        pdmpure.check_resolution(unet, tuple(size), allow_resize)
    except ValueError as e:
        raise DiffsecError(f"pdmpure: {e}") from None
    t, sampler = sd.resolve(scheduler.config.num_train_timesteps, pdmpure)
    return partial(pdmpure.pdmpure, unet=unet, scheduler=scheduler, t_star=t, method=sampler,
                   steps=sd.steps, seed=sd.seed, batch_size=sd.batch_size, allow_resize=allow_resize), t


def distance_stats(method: str, images: np.ndarray, out: np.ndarray) -> dict:
    """Per-image PSNR (dB) and L2 ([0, 1] units) of the purified images to the input, and their means."""
    from diffsec.metrics.distance import l2
    from diffsec.metrics.quality import psnr

    ps, d2 = psnr(images, out), l2(out, images, "[0,1]")
    return {"method": method, "scale_l2": "[0,1]", "psnr_db": ps.round(4).tolist(), "l2": d2.round(6).tolist(),
            "mean_psnr_db": float(ps.mean()), "mean_l2": float(d2.mean())}
