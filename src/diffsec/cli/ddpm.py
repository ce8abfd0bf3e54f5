"""`diffsec train-ddpm`: the pixel-space DDPM world (trained here, or a pretrained one loaded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, params_of, setup


def register(sub) -> None:
    p = sub.add_parser("train-ddpm", help="train (or load) the pixel DDPM world model",
                       description="Train a diffusers UNet2DModel DDPM (T=1000, linear betas) on an "
                       "image set, or with --pretrained load one by hub id / local directory. Writes "
                       "a DDPMPipeline directory, a 64-sample grid and the training curve.")
    p.add_argument("--data", type=Path, help="training image set (npz with uint8 images)")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--pretrained", default="",
                   help="hub id or local DDPMPipeline dir to load instead of training (paper profile)")
    g = p.add_argument_group("model")
    g.add_argument("--resolution", type=int, default=32)
    g.add_argument("--channels", type=json_arg, default=[32, 64, 64], help="JSON list per level")
    g.add_argument("--attention", type=json_arg, default=[False, False, False],
                   help="JSON list of bools: self-attention at each level")
    g.add_argument("--layers-per-block", type=int, default=1)
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=2000)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--warmup", type=int, default=100)
    g.add_argument("--ema-decay", type=float, default=0.995)
    g.add_argument("--ckpt-every", type=int, default=250, help="checkpoint period (steps) for resume")
    g = p.add_argument_group("sample grid")
    g.add_argument("--grid-samples", type=int, default=64)
    g.add_argument("--grid-sampler", choices=["ddim", "ddpm"], default="ddim")
    g.add_argument("--grid-steps", type=int, default=100, help="DDIM steps (ddpm always uses T)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import torch

    from diffsec.artifact import artifact_dir
    from diffsec.diffusion.sampling import sample
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, load_imageset, save_png, to_float, to_uint8
    from diffsec.models import ddpm

    if not args.pretrained and args.data is None:
        raise DiffsecError("train-ddpm needs --data (to train) or --pretrained (to load)")
    if len(args.channels) != len(args.attention):
        raise DiffsecError(f"--channels {args.channels} and --attention {args.attention} differ in length")
    device = setup(args)
    images = None
    if not args.pretrained:
        images = load_imageset(args.data)["images"]
        if images.shape[1] != args.resolution:
            raise DiffsecError(f"--data images are {images.shape[1]} px but --resolution is {args.resolution}")
    ckpt_dir = args.out.with_name(args.out.name + ".ckpt")
    with artifact_dir(args.out, "train-ddpm", params_of(args)) as art:
        art.device = str(device)
        if args.pretrained:
            unet, sched = ddpm.load_ddpm(args.pretrained, device)
            art.extra["source"] = args.pretrained
            curve = None
        else:
            art.add_input("data", args.data)
            cfg = ddpm.DDPMConfig(resolution=args.resolution, channels=args.channels,
                                  attention=args.attention, layers_per_block=args.layers_per_block)
            unet, sched = ddpm.build_ddpm(cfg)
            art.extra["n_params"] = ddpm.n_params(unet)
            unet, curve = ddpm.train_ddpm(
                unet, sched, to_float(images), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                ema_decay=args.ema_decay, warmup=args.warmup, seed=args.seed, ckpt_dir=ckpt_dir,
                ckpt_every=args.ckpt_every, device=device)
        ddpm.save_ddpm(unet, sched, art.file("pipeline"))
        gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
        res = unet.config.sample_size
        x_T = torch.randn(args.grid_samples, 3, res, res, generator=gen).to(device)
        x0, _ = sample(ddpm.unet_eps(unet.eval()), dict(sched.config), x_T, args.grid_sampler,
                       args.grid_steps, generator=gen)
        save_png(art.file("samples.png"), grid(to_uint8(x0), nrow=8), scale=3)
        if curve:
            ddpm.write_curve(curve, art.file("curve.csv"), art.file("curve.png"), "pixel DDPM")
            art.extra["final_loss"] = curve[-1]["loss"]
    ddpm.clear_checkpoint(ckpt_dir)
