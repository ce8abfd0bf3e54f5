"""Regeneration with a latent diffusion model (Zhao et al. 2023, "Invisible image watermarks are
provably removable using generative AI", [84] in the SZT paper): encode with the LDM's VAE,
noise the latent to t*, denoise with the same LDM, decode.

Defaults follow that work's `DiffWMAttacker` with SD: t* = 60 of T = 1000 (`noise_step=60`),
a posterior SAMPLE of the VAE latent, an empty prompt (its guidance 7.5 with an empty prompt
equals no guidance), and the last 3 steps of a 50-step schedule (here DDIM at indices 60, 30, 0).
The loop is the img2img pipeline's, written out so t*, steps and the noise are explicit and
seeded on the CPU; it takes any StableDiffusionPipeline (the tiny world or SD 1.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffsec.defense.images import batches, check_images, resize

DEFAULT_SAMPLER = "ddim"
DEFAULT_T_STAR = 60


def _embed(pipe, prompts: list[str]):
    import torch

    tok = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")
    with torch.no_grad():
        return pipe.text_encoder(tok.input_ids.to(pipe.text_encoder.device))[0]


def regen(images: np.ndarray, pipe, t_star: int = DEFAULT_T_STAR, steps: int | None = None,
          prompts: Sequence[str] | str = "", guidance: float = 1.0, seed: int = 0,
          batch_size: int = 16, resolution: int | None = None, method: str = DEFAULT_SAMPLER,
          progress: bool = True) -> np.ndarray:
    """Regenerate uint8 NHWC `images` through the LDM `pipe` (a StableDiffusionPipeline).

    `prompts`: one string for all images or one per image. `guidance` > 1 applies classifier-free
    guidance against the empty prompt. Images are resized (bicubic, antialiased) to `resolution`
    (default: the pipeline's native size) and back. `method` 'ddim' (default) or 'ddpm' and
    `steps` as in `diffsec.defense.sdedit.sdedit`; `seed` seeds the latent sample and the noise.
    """
    import torch
    from tqdm.auto import tqdm

    from diffsec.defense.sdedit import sdedit
    from diffsec.imageset import to_float, to_uint8

    images = check_images(images)
    if images.shape[-1] != 3:
        raise ValueError(f"regen needs RGB images, got {images.shape[-1]} channel(s)")
    prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
    vae, unet, sched = pipe.vae, pipe.unet, pipe.scheduler
    res = resolution or unet.config.sample_size * pipe.vae_scale_factor
    scale = vae.config.scaling_factor
    dev, dt = unet.device, unet.dtype
    gen = torch.Generator().manual_seed(seed)
    cfg = sched.config
    out = np.empty_like(images)
    for sl in tqdm(list(batches(len(images), batch_size)), desc="regen", disable=not progress):
        x = resize(to_float(images[sl]), (res, res)).to(dev, vae.dtype)
        cond = _embed(pipe, prompts[sl])
        if guidance > 1:
            cond = torch.cat([_embed(pipe, [""] * len(cond)), cond])

        def model(zt, t, cond=cond):
            if guidance <= 1:
                return unet(zt, t, encoder_hidden_states=cond).sample
            u, c = unet(torch.cat([zt, zt]), torch.cat([t, t]), encoder_hidden_states=cond).sample.chunk(2)
            return u + guidance * (c - u)

        with torch.no_grad():
            post = vae.encode(x).latent_dist
            z0 = (post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(dev, post.mean.dtype))
            z = sdedit(model, sched.alphas_cumprod, (z0 * scale).to(dt), t_star, steps, method, gen,
                       cfg.get("prediction_type", "epsilon"))
            rec = vae.decode((z / scale).to(vae.dtype)).sample.float()
        out[sl] = to_uint8(resize(rec.cpu(), images.shape[1:3]))
    return out
