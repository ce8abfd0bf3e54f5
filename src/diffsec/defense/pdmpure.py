"""PDM-Pure-style purification with a PIXEL-space diffusion model (Xue & Chen 2024, [77] in the
SZT paper): pixel diffusion models are robust to perturbations crafted against a latent model's
encoder, so noising a protected image to a small t* and denoising it with one washes them out.

How this differs from the original: PDM-Pure (xavihart/PDM-Pure, `pdm_pure.py`) runs DeepFloyd
IF stage II, a TEXT-conditioned (T5, prompt "a picture", CFG 7) 64->256 px super-resolution pixel
diffusion model, as SDEdit on the image resized to 256 px (the IF style-transfer path, noise only
in the lower half of the schedule), then upsamples with the SD x4 upscaler and resizes back.
Here the purifier is any UNCONDITIONAL diffusers DDPM pipeline (the tiny profile's CIFAR DDPM at
32 px; google/ddpm-cifar10-32 or another named pixel model in the paper profile): resize to the
model's resolution, noise to t*, denoise (DDPM or DDIM), resize back to the input resolution.
There is no text conditioning, no super-resolution cascade, and the model's resolution (32 px)
is far below IF-II's 256 px, so fine detail above that resolution is lost.
"""

from __future__ import annotations

import numpy as np

from diffsec.defense.images import batches, check_images, resize

DEFAULT_SAMPLER = "ddpm"
DEFAULT_T_STAR = 100  # 0.1 T: a small SDEdit strength


def pdmpure(images: np.ndarray, unet, scheduler, t_star: int = DEFAULT_T_STAR,
            method: str = DEFAULT_SAMPLER, steps: int | None = None, seed: int = 0,
            batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Purify uint8 NHWC `images` with a pixel UNet2DModel + its training scheduler.

    Images are resized (bicubic, antialiased) to the model's `sample_size` and back; `steps`
    defaults to every index for DDPM and a 20-index stride for DDIM (see `sdedit`).
    """
    import torch
    from tqdm.auto import tqdm

    from diffsec.defense.sdedit import sdedit
    from diffsec.imageset import to_float, to_uint8

    images = check_images(images)
    if images.shape[-1] != unet.config.in_channels:
        raise ValueError(f"images have {images.shape[-1]} channels, the model takes "
                         f"{unet.config.in_channels}")
    res = unet.config.sample_size
    res = (res, res) if isinstance(res, int) else tuple(res)
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
