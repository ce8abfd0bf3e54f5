"""PDM-Pure-style purification with a PIXEL-space diffusion model (Xue & Chen 2024, [77] in the
SZT paper): pixel diffusion models are robust to perturbations crafted against a latent model's
encoder, so noising a protected image to a small t* and denoising it with one washes them out.

How this differs from the original: PDM-Pure (xavihart/PDM-Pure, `pdm_pure.py`) runs DeepFloyd
IF stage II, a TEXT-conditioned (T5, prompt "a picture", CFG 7) 64->256 px super-resolution pixel
diffusion model, as SDEdit on the image resized to 256 px (the IF style-transfer path, noise only
in the lower half of the schedule), then upsamples with the SD x4 upscaler and resizes back.
Here the purifier is any UNCONDITIONAL diffusers pixel DDPM (a DDPMPipeline directory, an
artifact holding one, a hub id, or a bare UNet2DModel directory): noise to t*, denoise (DDPM or
DDIM). There is no text conditioning and no super-resolution cascade, so this is a stand-in for
IF-II, not IF-II.

Resolution: the model must work at the images' resolution (its `sample_size` = the images' H x W).
A mismatch is refused (`check_resolution`) unless resizing is asked for explicitly
(`allow_resize`, `--allow-resize`): then the images are resized (bicubic, antialiased) to the
model's side and back, and all detail above the model's resolution is lost, i.e. the purifier
is then mostly a blur. The profiles:

* `tiny` / `smoke`: the pixel DDPM world trained here (CIFAR-10, 32 px) on the 32 px concept
  images: the resolutions match, no resize.
* `paper`: the concept images are 512 px. google/ddpm-cifar10-32 (the paper profile's DDPM world)
  would be resize-to-32-and-back, so the profile names its own pixel model, `szt.purify.pdmpure.model`:
  an unconditional pixel DDPM at 512 px, as a local DDPMPipeline / UNet2DModel directory
  (`weights/pixel-ddpm-512`), because no such model is published in diffusers format that we
  know of (the hub's google/ddpm-* pixel models stop at 256 px; IF-II itself is not a DDPMPipeline).
  It is a stand-in for IF-II in two ways: no text conditioning, and 512 px where IF-II works at
  256 px. Naming a 256 px model (e.g. google/ddpm-ema-church-256) with `allow_resize: true` is
  the other choice: IF-II's own working resolution, but without its x4 upscaler.
"""

from __future__ import annotations

import numpy as np

from diffsec.defense.images import batches, check_images, resize

DEFAULT_SAMPLER = "ddpm"
DEFAULT_T_STAR = 100  # 0.1 T: a small SDEdit strength


def model_resolution(unet) -> tuple[int, int]:
    """The (H, W) a pixel UNet2DModel works at (its `sample_size`)."""
    res = unet.config.sample_size
    return (res, res) if isinstance(res, int) else tuple(res)


def check_resolution(unet, size: tuple[int, int], allow_resize: bool = False) -> tuple[int, int]:
    """The model's (H, W); ValueError if it is not the images' `size` and resizing was not asked for."""
    res = model_resolution(unet)
    if tuple(size) != res and not allow_resize:
        raise ValueError(f"the pixel model works at {res[0]}x{res[1]} px, the images are {size[0]}x{size[1]} px: "
                         "name a model at the images' resolution, or allow resizing there and back "
                         "(--allow-resize)")
    return res


def pdmpure(images: np.ndarray, unet, scheduler, t_star: int = DEFAULT_T_STAR,
            method: str = DEFAULT_SAMPLER, steps: int | None = None, seed: int = 0,
            batch_size: int = 64, progress: bool = True, allow_resize: bool = False) -> np.ndarray:
    """Purify uint8 NHWC `images` with a pixel UNet2DModel + its training scheduler.

    The images must be at the model's `sample_size` (ValueError otherwise), unless `allow_resize`:
    then they are resized (bicubic, antialiased) to it and back. `steps` defaults to every index
    for DDPM and a 20-index stride for DDIM (see `sdedit`).
    """
    import torch
    from tqdm.auto import tqdm

    from diffsec.defense.sdedit import sdedit
    from diffsec.imageset import to_float, to_uint8

    images = check_images(images)
    if images.shape[-1] != unet.config.in_channels:
        raise ValueError(f"images have {images.shape[-1]} channels, the model takes "
                         f"{unet.config.in_channels}")
    res = check_resolution(unet, images.shape[1:3], allow_resize)
    cfg = scheduler.config
    dev = next(unet.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    out = np.empty_like(images)
    for sl in tqdm(list(batches(len(images), batch_size)), desc="pdmpure", disable=not progress):
        x = to_float(images[sl]).to(dev)
        z = sdedit(lambda xt, t: unet(xt, t).sample, scheduler.alphas_cumprod, resize(x, res),
                   t_star, steps, method, gen, cfg.get("prediction_type", "epsilon"),
                   clip=bool(cfg.get("clip_sample", False)),
                   variance_type=cfg.get("variance_type", "fixed_small"))
        out[sl] = to_uint8(resize(z, images.shape[1:3]))
    return out
