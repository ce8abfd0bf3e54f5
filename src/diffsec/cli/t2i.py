"""`diffsec train-t2i`: the text-to-image latent diffusion world (trained here, or SD loaded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, params_of, setup


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
    g.add_argument("--vae-layers", type=int, default=1, help="resnets per VAE level")
    g.add_argument("--latent-channels", type=int, default=4)
    g.add_argument("--text-hidden", type=int, default=128)
    g.add_argument("--text-layers", type=int, default=2)
    g.add_argument("--text-heads", type=int, default=4)
    g.add_argument("--unet-channels", type=json_arg, default=[64, 128], help="JSON widths per UNet level")
    g.add_argument("--unet-cross-attn", type=json_arg, default=[False, True],
                   help="JSON bools: cross-attention to the text at each UNet level (mid always)")
    g.add_argument("--unet-layers", type=int, default=1, help="resnets per UNet level")
    g.add_argument("--unet-text-time", type=int, choices=(0, 1), default=1,
                   help="1: also add a pooled text vector to the timestep embedding")
    g = p.add_argument_group("training")
    g.add_argument("--vae-steps", type=int, default=1500)
    g.add_argument("--vae-batch", type=int, default=64)
    g.add_argument("--vae-lr", type=float, default=1e-3)
    g.add_argument("--vae-crop", type=int, default=16,
                   help="train the (fully convolutional) VAE on random crops of this size; 0 = whole")
    g.add_argument("--kl-weight", type=float, default=1e-3, help="KL weight per pixel vs. MSE")
    g.add_argument("--unet-steps", type=int, default=3000)
    g.add_argument("--unet-batch", type=int, default=128)
    g.add_argument("--unet-lr", type=float, default=2e-3)
    g.add_argument("--ema-decay", type=float, default=0.999)
    g.add_argument("--cond-drop", type=float, default=0.1, help="rate of empty captions (for CFG)")
    g.add_argument("--ckpt-every", type=int, default=200, help="checkpoint period (steps) for resume")
    g = p.add_argument_group("sample grid")
    g.add_argument("--cfg-scale", type=float, default=5.0, help="classifier-free guidance scale")
    g.add_argument("--sample-steps", type=int, default=25, help="DPM-Solver++ steps")
    g.add_argument("--samples-per-class", type=int, default=8)
    add_common(p)
    p.set_defaults(func=run)


def _class_names(data: dict) -> list[str]:
    """Ordered class names: a `class_names` list, per-row `class_name`, or CIFAR-10's."""
    from diffsec.models.t2i import CIFAR10_CLASSES

    if "class_names" in data and len(data["class_names"]) != len(data["images"]):
        return [str(c) for c in data["class_names"]]
    if "class_name" in data and "labels" in data:
        names = {int(k): str(c) for k, c in zip(data["labels"], data["class_name"])}
        return [names[k] for k in range(len(names))]
    return list(CIFAR10_CLASSES)


def run(args: argparse.Namespace) -> None:
    import tempfile

    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, load_imageset, save_imageset, save_png
    from diffsec.models import t2i
    from diffsec.models.t2i_train import Checkpoint, TrainConfig, World, train_world
    from diffsec.models.tokenizer import clip_tokenizer

    if not args.pretrained and args.data is None:
        raise DiffsecError("train-t2i needs --data (to train) or --pretrained (to load)")
    if len(args.unet_channels) != len(args.unet_cross_attn):
        raise DiffsecError("--unet-channels and --unet-cross-attn differ in length")
    device = setup(args)
    data = load_imageset(args.data) if args.data else None
    class_names = _class_names(data) if data else list(t2i.CIFAR10_CLASSES)
    ckpt = Checkpoint(args.out.with_name(args.out.name + ".ckpt"), args.ckpt_every)
    with artifact_dir(args.out, "train-t2i", params_of(args)) as art:
        art.device = str(device)
        if args.pretrained:
            t2i.save_pipeline(t2i.load_pipeline(args.pretrained), art.path / "pipeline")
            art.extra["source"] = args.pretrained
            curves = {"vae": [], "unet": []}
        else:
            art.add_input("data", args.data)
            size = data["images"].shape[1]
            down = 2 ** (len(args.vae_channels) - 1)
            world = World(
                vae=t2i.build_vae(args.vae_channels, args.vae_layers, args.latent_channels, size),
                text=t2i.build_text_encoder(args.text_hidden, args.text_layers, args.text_heads),
                unet=t2i.build_unet(args.unet_channels, args.unet_cross_attn, args.unet_layers,
                                    args.latent_channels, size // down, args.text_hidden,
                                    text_time=bool(args.unet_text_time)))
            cfg = TrainConfig(vae_steps=args.vae_steps, vae_batch=args.vae_batch, vae_lr=args.vae_lr,
                              vae_crop=args.vae_crop, kl_weight=args.kl_weight, unet_steps=args.unet_steps,
                              unet_batch=args.unet_batch, unet_lr=args.unet_lr,
                              ema_decay=args.ema_decay, cond_drop=args.cond_drop, seed=args.seed)
            with tempfile.TemporaryDirectory() as tmp:
                tokenizer = clip_tokenizer(tmp)
            scheduler = t2i.build_scheduler()
            train_world(world, tokenizer, scheduler, data["images"], data["labels"], class_names,
                        cfg, ckpt, device)
            pipe = t2i.make_pipeline(world.vae, world.text, tokenizer, world.unet, scheduler)
            t2i.save_pipeline(pipe, art.path / "pipeline")
            curves = world.curves
            art.extra.update(scaling_factor=world.vae.config.scaling_factor,
                             n_params={k: sum(p.numel() for p in m.parameters())
                                       for k, m in world.modules().items()})
        # Sample from the saved directory: proves the artifact itself loads and runs.
        pipe = t2i.load_pipeline(str(art.path / "pipeline"), device)
        images, labels, prompts = t2i.sample_classes(
            pipe, class_names, args.samples_per_class, args.cfg_scale, args.sample_steps, args.seed)
        save_png(art.file("samples.png"), grid(images, nrow=args.samples_per_class),
                 scale=max(1, 64 // images.shape[1]))
        save_imageset(art.file("samples.npz"), images, labels=labels,
                      class_name=np.array(class_names)[labels], prompt=np.array(prompts)[labels])
        t2i.write_curves(curves, art.file("curve.csv"), art.file("curve.png"))
        art.extra["prompts"] = prompts
    ckpt.clear()
