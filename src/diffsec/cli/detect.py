"""SeDID stages: score an image set with a DDPM world's stepwise errors and loss attack."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_stage, json_arg, open_stage


def register(sub) -> None:
    p = add_stage(sub, "sedid-score", run_score, "t-error maps, SeDID_Stat and loss-attack scores of an image set",
                  "For each image of a set: SeDID's stepwise error maps E_t at every t_SEC of the grid of step "
                  "k, the Stat score -sum E_t, the loss attack's score at each --loss-ts timestep, and the "
                  "Stat score on the grid of each --sweep-ks step (first --sweep-n images). Writes scores.npz.")
    p.add_argument("--model", type=Path, required=True, help="DDPM world (train-ddpm / install-world artifact)")
    p.add_argument("--images", type=Path, required=True, help="npz image set, or an artifact dir with samples.npz")
    p.add_argument("--n", type=int, default=0, help="images to score (0 = all)")
    p.add_argument("--pick", choices=["first", "random"], default="first",
                   help="the first N images, or N drawn without replacement with --seed")
    p.add_argument("--jpeg", type=int, default=0, help="re-encode the images as JPEG at this quality first (0 = no)")
    p.add_argument("--k", type=int, default=165, help="step of the t-error grid (paper: 165)")
    p.add_argument("--t-secs", type=json_arg, default=[165, 330, 495, 660, 825, 990],
                   help="t_SEC rows, multiples of k (JSON list)")
    p.add_argument("--loss-ts", type=json_arg, default=[100, 200, 300, 500, 700, 900],
                   help="timesteps of the loss attack (JSON list)")
    p.add_argument("--sweep-ks", type=json_arg, default=[], help="steps k of the step-size sweep (JSON list)")
    p.add_argument("--sweep-t", type=int, default=990, help="t_SEC of the step-size sweep (a multiple of each k)")
    p.add_argument("--sweep-n", type=int, default=0, help="images that enter the step-size sweep")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (speed and memory only)")
    p.add_argument("--ckpt-every", type=int, default=1, help="checkpoint period (batches) for resume")


def _pick(images, n: int, how: str, seed: int):
    import numpy as np

    from diffsec.errors import DiffsecError

    if n < 0 or n > len(images):
        raise DiffsecError(f"--n {n}: the set holds {len(images)} images")
    if not n:
        return np.arange(len(images))
    if how == "first":
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))


def run_score(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.defense.jpeg import jpeg
    from diffsec.detect.score import ScoreConfig, score_images
    from diffsec.diffusion.inversion import alphas_cumprod
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_images
    from diffsec.models import checks, ddpm
    from diffsec.models.pipelines import resolve_pipeline

    checks.positive(args, "ckpt_every")
    cfg = ScoreConfig(args.k, list(args.t_secs), list(args.loss_ts), list(args.sweep_ks), args.sweep_t,
                      args.sweep_n, args.batch_size, args.seed)
    where = resolve_pipeline(str(args.model), "--model")
    images = load_images(args.images, "--images")["images"]
    idx = _pick(images, args.n, args.pick, args.seed)
    if not 0 <= args.jpeg <= 100:
        raise DiffsecError(f"--jpeg must be a quality in 1..100 (0 = none), got {args.jpeg}")
    st = open_stage(args, "sedid-score")
    unet, sched = ddpm.load_ddpm(where, st.device, "--model")
    abar = alphas_cumprod(dict(sched.config))
    try:
        cfg.check(len(abar))
    except ValueError as e:
        raise DiffsecError(str(e)) from None
    chosen = jpeg(images[idx], args.jpeg) if args.jpeg else images[idx]
    out = score_images(ddpm.unet_eps(unet.eval()), abar, chosen, cfg, st.device,
                       st.checkpoint(args.ckpt_every, model=where, images=args.images))
    with st.artifact() as art:
        np.savez(art.file("scores.npz"), index=idx, t_secs=np.array(cfg.t_secs), loss_ts=np.array(cfg.loss_ts),
                 sweep_ks=np.array(cfg.sweep_ks), **out)
        art.extra.update(n_images=int(len(idx)), n_sweep=int(len(out["sweep"])))
