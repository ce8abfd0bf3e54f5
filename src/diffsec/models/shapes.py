"""The papers' full-size architectures with random weights, for throughput benchmarks.

Their weights cannot be downloaded here, and random weights run at the same speed and memory, so
`bench-sampling` and `bench-ti` measure paper-scale cost on these (on a GPU when one is lent).
"""

from __future__ import annotations

import os


def ddpm_cifar10_32_unet():
    """The architecture of google/ddpm-cifar10-32 (35.7 M parameters), randomly initialised:
    same speed as the real weights, which cannot be downloaded here."""
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                       block_out_channels=(128, 256, 256, 256),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))


def sd15_shaped_pipeline(tokenizer_dir: str | os.PathLike):
    """Stable Diffusion 1.5's architecture (860 M UNet, 123 M CLIP ViT-L/14 text encoder, 84 M
    VAE), randomly initialised: it runs at SD 1.5's speed and memory, which is all a throughput
    benchmark needs, since the real weights cannot be downloaded here."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from diffsec.models.t2i import build_scheduler, make_pipeline
    from diffsec.models.tokenizer import MAX_LENGTH, clip_tokenizer

    unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280),
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                                cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, latent_channels=4, sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu",
                                        max_position_embeddings=MAX_LENGTH, bos_token_id=49406,
                                        eos_token_id=49407, pad_token_id=49407, projection_dim=768))
    return make_pipeline(vae, text, clip_tokenizer(tokenizer_dir), unet, build_scheduler())
