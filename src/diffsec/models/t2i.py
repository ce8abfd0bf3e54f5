"""The text-to-image latent diffusion world: a small Stable-Diffusion-shaped model.

The pieces are the very diffusers/transformers classes SD 1.5 is made of (AutoencoderKL,
CLIPTextModel with CLIP's BPE tokenizer, UNet2DConditionModel, DDPMScheduler), only small, so every
attack and defense written against `StableDiffusionPipeline` runs unchanged on the tiny world
trained here and on the real SD 1.5 in the paper profile.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from diffsec.errors import DiffsecError, first_line
from diffsec.models.captions import PROMPT
from diffsec.models.pipelines import resolve_pipeline

# SD 1.5's schedule: T=1000, scaled_linear betas 0.00085 -> 0.012.
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False,
                steps_offset=1)


def _groups(channels: list[int]) -> int:
    """GroupNorm groups dividing every width, with >= 4 channels a group like SD's 32-of-128."""
    return max(1, min(32, math.gcd(*channels) // 4))


def build_vae(channels: list[int], layers: int = 1, latent_channels: int = 4, size: int = 32):
    """A KL autoencoder downsampling by 2**(len(channels)-1); no mid attention (cost, not needed)."""
    from diffusers import AutoencoderKL

    n = len(channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * n,
                         up_block_types=["UpDecoderBlock2D"] * n, block_out_channels=list(channels),
                         layers_per_block=layers, latent_channels=latent_channels,
                         norm_num_groups=_groups(channels), sample_size=size,
                         mid_block_add_attention=False)


def build_text_encoder(hidden: int = 128, layers: int = 2, heads: int = 4):
    """A small CLIP text transformer over CLIP's 49408-token vocabulary and 77 positions."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from diffsec.models.tokenizer import MAX_LENGTH

    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         max_position_embeddings=MAX_LENGTH, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModel(cfg)


def build_unet(channels: list[int], cross_attention: list[bool], layers: int = 1,
               latent_channels: int = 4, sample_size: int = 16, cross_dim: int = 128,
               head_dim: int = 32, text_time: bool = True):
    """A conditional UNet; levels flagged in `cross_attention` read the text by cross-attention.

    The mid block always cross-attends, so even an all-False list stays text conditional.
    `text_time` also adds an attention-pooled text vector to the timestep embedding (diffusers'
    addition_embed_type="text", computed from the same encoder_hidden_states, so the SD
    pipelines drive it unchanged): every resnet then sees the prompt, which makes a small model
    learn class conditioning in far fewer steps than through cross-attention alone.
    """
    from diffusers import UNet2DConditionModel

    if len(cross_attention) != len(channels):
        raise ValueError("one cross_attention flag per UNet level")
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cross_attention]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cross_attention)]
    # diffusers reads `attention_head_dim` as the number of heads (a historical misnomer).
    heads = [max(1, c // head_dim) for c in channels]
    return UNet2DConditionModel(sample_size=sample_size, in_channels=latent_channels,
                                out_channels=latent_channels, down_block_types=down,
                                up_block_types=up, block_out_channels=list(channels),
                                layers_per_block=layers, cross_attention_dim=cross_dim,
                                attention_head_dim=heads, norm_num_groups=_groups(channels),
                                addition_embed_type="text" if text_time else None,
                                addition_embed_type_num_heads=max(1, cross_dim // head_dim))


def build_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE)


def make_pipeline(vae, text_encoder, tokenizer, unet, scheduler):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def load_pipeline(id_or_dir: str, device="cpu", img2img: bool = False):
    """SD-shaped pipeline from a hub id (paper profile) or a local directory (tiny world, tests)."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    cls = StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline
    pipe = cls.from_pretrained(id_or_dir, safety_checker=None, feature_extractor=None,
                               requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def save_pipeline(pipe, out: str | os.PathLike) -> Path:
    pipe.save_pretrained(str(out), safe_serialization=True)
    return Path(out)


def load_vae(model: str | os.PathLike, device="cpu", flag: str = "--vae-roundtrip"):
    """The VAE alone of an SD-shaped pipeline (a pipeline directory or an artifact holding one under
    `pipeline/`), in eval mode; a directory without one is a DiffsecError naming `flag`."""
    from diffusers import AutoencoderKL

    from diffsec.errors import DiffsecError
    from diffsec.models.pipelines import resolve_pipeline

    where = resolve_pipeline(str(model), flag)
    try:
        vae = AutoencoderKL.from_pretrained(where, subfolder="vae")
    except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad directory
        why = first_line(e)
        raise DiffsecError(f"{flag} {model}: cannot load the pipeline's VAE ({why})") from None
    return vae.to(device).eval()


def vae_roundtrip(vae, images: np.ndarray, batch: int = 100) -> np.ndarray:
    """uint8 NHWC images -> encode (posterior mode) -> decode -> uint8: what the latent space can
    represent at all, an upper bound on the detail any sample of the world can carry."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
            x = x.to(vae.device, vae.dtype)
            y = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
            out.append(((y.float().cpu() + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out) if out else images[:0].copy()


def sample_classes(pipe, class_names, per_class: int, guidance: float, steps: int, seed: int,
                   batch: int = 50, size: int | None = None):
    """`per_class` images for each 'a photo of a <class>' prompt with DPM-Solver++ and CFG.

    Returns (uint8 NHWC images ordered class by class, prompt index per image, prompts).
    """
    import torch
    from diffusers import DPMSolverMultistepScheduler

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    prompts = [PROMPT.format(c) for c in class_names]
    labels = np.repeat(np.arange(len(prompts)), per_class)
    size = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    gen = torch.Generator("cpu").manual_seed(seed)
    images = []
    for i in range(0, len(labels), batch):
        idx = labels[i:i + batch]
        # Initial noise drawn on CPU from one generator: same seed -> same images on any device.
        latents = torch.randn((len(idx), pipe.unet.config.in_channels, size // pipe.vae_scale_factor,
                               size // pipe.vae_scale_factor), generator=gen)
        out = pipe(prompt=[prompts[j] for j in idx], num_inference_steps=steps, guidance_scale=guidance,
                   latents=latents.to(pipe.device, pipe.unet.dtype), height=size, width=size,
                   output_type="np")
        images.append((out.images * 255).round().clip(0, 255).astype(np.uint8))
    return np.concatenate(images), labels, prompts


UNET_DIR = "unet"  # a fine-tuned UNet artifact (backdoor-t2i, unlearn-t2i) holds <artifact>/unet/


def save_unet(unet, out: str | os.PathLike) -> Path:
    """Write a fine-tuned UNet as `<out>/unet/` (diffusers config + safetensors); the base pipeline
    it belongs to is not copied (SD 1.5's VAE and text encoder would be 1.6 GB per fine-tune)."""
    where = Path(out) / UNET_DIR
    unet.save_pretrained(str(where), safe_serialization=True)
    return where


def load_unet(artifact: str | os.PathLike, flag: str = "--unet", device: str = "cpu"):
    """The UNet `save_unet` wrote under `artifact`, or one line naming `flag` saying why not."""
    from diffusers import UNet2DConditionModel

    from diffsec.errors import DiffsecError

    where = Path(artifact) / UNET_DIR
    if not (where / "config.json").is_file():
        raise DiffsecError(f"{flag} {artifact}: no fine-tuned UNet there (expected {where}/config.json)")
    try:
        unet = UNet2DConditionModel.from_pretrained(str(where))
    except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad directory
        raise DiffsecError(f"{flag} {artifact}: cannot load the UNet ({first_line(e)})") from None
    return unet.to(device).eval()


def open_pipeline(name: str, flag: str = "--model", device: str = "cpu", unet: str | os.PathLike | None = None):
    """The StableDiffusionPipeline `name` names (see `resolve_pipeline`), or one line saying why not.

    diffusers raises many exception types for a bad model directory or hub id; every one of them
    ends here as a DiffsecError naming the flag, so no stage prints a traceback for a bad --model.
    `unet`: an artifact of `save_unet` whose UNet replaces the pipeline's (a BadT2I fine-tune).
    """
    where = resolve_pipeline(name, flag)
    try:
        pipe = load_pipeline(where, device)
    except Exception as e:  # noqa: BLE001 - see the docstring
        why = first_line(e)
        raise DiffsecError(f"{flag} {name}: cannot load a StableDiffusionPipeline ({why})") from None
    if unet:
        pipe.unet = load_unet(unet, device=device)
    return pipe
