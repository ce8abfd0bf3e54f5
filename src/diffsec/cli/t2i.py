"""`diffsec train-t2i`: the text-to-image latent diffusion world (trained here, or SD loaded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, open_stage


def register(sub) -> None:
    p = sub.add_parser(
        "train-t2i", help="train (or load) the text-to-image latent diffusion world",
        description="Train a small Stable-Diffusion-shaped model (KL VAE, CLIP text encoder with "
        "CLIP's BPE tokenizer, conditional UNet, DDPM T=1000 scaled_linear) on a captioned "
        "image set ('a photo of a <class>'), or with --pretrained load SD by hub id / local "
        "directory. Writes a StableDiffusionPipeline directory, class-prompted samples and curves.")
    p.add_argument("--data", type=Path, help="training image set (npz: images, labels, class names)")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--pretrained", default="",
                   help="hub id or local SD pipeline dir to load instead of training (paper profile)")
    g = p.add_argument_group("model")
    g.add_argument("--vae-channels", type=json_arg, default=[32, 64, 64],
                   help="JSON widths per VAE level; downsampling is 2**(levels-1)")
    g.add_argument("--unet-channels", type=json_arg, default=[64, 128], help="JSON widths per UNet level")
    g.add_argument("--unet-cross-attn", type=json_arg, default=[False, True],
                   help="JSON bools: cross-attention to the text at each UNet level (mid always)")
    g.add_argument("--unet-text-time", type=int, choices=(0, 1), default=1,
                   help="1: also add a pooled text vector to the timestep embedding")
    _flags(g, vae_layers=1, latent_channels=4, text_hidden=128, text_layers=2, text_heads=4, unet_layers=1)
    g = p.add_argument_group("training")
    g.add_argument("--vae-crop", type=int, default=16,
                   help="train the (fully convolutional) VAE on random crops of this size; 0 = whole")
    g.add_argument("--kl-weight", type=float, default=1e-3, help="KL weight per pixel vs. MSE")
    g.add_argument("--cond-drop", type=float, default=0.1, help="rate of empty captions (for CFG)")
    g.add_argument("--ckpt-every", type=int, default=200, help="checkpoint period (steps) for resume")
    _flags(g, vae_steps=1500, vae_batch=64, unet_steps=3000, unet_batch=128)
    _flags(g, float, vae_lr=1e-3, unet_lr=2e-3, ema_decay=0.999)
    g = p.add_argument_group("sample grid")
    g.add_argument("--cfg-scale", type=float, default=5.0, help="classifier-free guidance scale")
    g.add_argument("--sample-steps", type=int, default=25, help="DPM-Solver++ steps")
    g.add_argument("--samples-per-class", type=int, default=8)
    add_common(p)
    p.set_defaults(func=run)


def _flags(group, kind=int, **defaults) -> None:
    """--name-with-dashes flags of one type, each with its default."""
    for name, default in defaults.items():
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)


def _configs(args: argparse.Namespace):
    from diffsec.models import checks
    from diffsec.models.t2i_train import SampleConfig, TrainConfig, WorldConfig

    checks.positive(args, "ckpt_every")
    sample = SampleConfig(args.samples_per_class, args.sample_steps, args.cfg_scale, args.seed)
    if args.pretrained:
        return None, None, sample
    return (WorldConfig(args.vae_channels, args.vae_layers, args.latent_channels, args.text_hidden, args.text_layers,
                        args.text_heads, args.unet_channels, args.unet_cross_attn, args.unet_layers,
                        bool(args.unet_text_time)),
            TrainConfig(args.vae_steps, args.vae_batch, args.vae_lr, args.vae_crop, args.kl_weight, args.unet_steps,
                        args.unet_batch, args.unet_lr, args.ema_decay, args.cond_drop, args.seed), sample)


def run(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_classes
    from diffsec.models import t2i_train
    from diffsec.models.captions import CIFAR10_CLASSES

    if not args.pretrained and args.data is None:
        raise DiffsecError("train-t2i needs --data (to train) or --pretrained (to load)")
    model, train, sample = _configs(args)
    data, names = load_classes(args.data, "--data", CIFAR10_CLASSES) if args.data else ({}, list(CIFAR10_CLASSES))
    st = open_stage(args, "train-t2i")
    if args.pretrained:
        result = t2i_train.load_t2i(args.pretrained)
    else:
        result = t2i_train.train_t2i(data["images"], data["labels"], names, model, train,
                                     st.checkpoint(args.ckpt_every, data=args.data), st.device)
    with st.artifact() as art:
        art.extra.update(t2i_train.write_world(result, names, sample, art.path, st.device))
