"""`diffsec train-ddpm`: the pixel-space DDPM world (trained here, or a pretrained one loaded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, open_stage


def register(sub) -> None:
    p = sub.add_parser("train-ddpm", help="train (or load) the pixel DDPM world model",
                       description="Train a diffusers UNet2DModel DDPM (T=1000, linear betas) on an "
                       "image set, or with --pretrained load one by hub id / local directory. Writes "
                       "a DDPMPipeline directory, a sample grid and the training curve.")
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
    g.add_argument("--log-every", type=int, default=50, help="curve point: mean loss over this many steps")
    g.add_argument("--ckpt-every", type=int, default=250, help="checkpoint period (steps) for resume")
    g.add_argument("--snapshots", type=json_arg, default=[],
                   help="JSON list of steps whose EMA weights are also kept (snapshots/step-<n>/)")
    g = p.add_argument_group("sample grid")
    g.add_argument("--grid-samples", type=int, default=64)
    g.add_argument("--grid-sampler", choices=["ddim", "ddpm"], default="ddim")
    g.add_argument("--grid-steps", type=int, default=100, help="DDIM steps (ddpm always uses T)")
    add_common(p)
    p.set_defaults(func=run)


def _configs(args: argparse.Namespace):
    from diffsec.models import checks, ddpm

    checks.positive(args, "ckpt_every")
    grid = ddpm.SampleConfig(args.grid_samples, args.grid_sampler, args.grid_steps, args.grid_samples, args.seed + 1)
    if args.pretrained:
        return None, None, grid
    return (ddpm.DDPMConfig(args.resolution, args.channels, args.attention, args.layers_per_block),
            ddpm.TrainConfig(args.steps, args.batch_size, args.lr, args.warmup, args.ema_decay, args.log_every,
                             args.seed, tuple(args.snapshots) if isinstance(args.snapshots, list) else (None,)),
            grid)


def run(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_images
    from diffsec.models import ddpm

    if not args.pretrained and args.data is None:
        raise DiffsecError("train-ddpm needs --data (to train) or --pretrained (to load)")
    model, train, grid = _configs(args)
    images = None if args.pretrained else load_images(args.data, "--data")["images"]
    st = open_stage(args, "train-ddpm")
    if args.pretrained:
        world = ddpm.load_world(args.pretrained, grid, st.device)
    else:
        world = ddpm.train_world(images, model, train, grid, st.checkpoint(args.ckpt_every, data=args.data),
                                 st.device)
    with st.artifact() as art:
        art.extra.update(ddpm.save_world(world, art.path))
