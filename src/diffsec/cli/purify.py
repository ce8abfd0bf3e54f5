"""`diffsec purify`: apply a purifier (JPEG, AdverseCleaner, Regen, PDM-Pure) to an image set."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, params_of, setup

METHODS = ("jpeg", "regen", "pdmpure", "advclean")


def register(sub) -> None:
    p = sub.add_parser(
        "purify", help="purify (possibly poisoned) training images",
        description="Purify an image set with JPEG compression, AdverseCleaner, Regen (noise and "
        "denoise the VAE latent with a StableDiffusionPipeline) or PDM-Pure (noise and denoise with "
        "a pixel DDPM pipeline). Writes images.npz (purified images plus every aligned array of the "
        "input), before_after.png and distances.json (per-image PSNR and L2 to the input).")
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--images", type=Path, required=True,
                   help="npz image set (uint8 NHWC `images` plus aligned arrays, all carried over)")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    g = p.add_argument_group("jpeg")
    g.add_argument("--quality", type=int, default=25, help="JPEG quality 1..100 (default: 25)")
    g = p.add_argument_group("regen / pdmpure")
    g.add_argument("--model", default="",
                   help="regen: StableDiffusionPipeline dir or hub id; pdmpure: DDPMPipeline dir or "
                   "hub id (a train-t2i / train-ddpm artifact dir works too)")
    s = g.add_mutually_exclusive_group()
    s.add_argument("--strength", type=float, help="t* as a fraction of T, in (0, 1]")
    s.add_argument("--t-star", type=int,
                   help="noise index t* in 0..T-1 (default: regen 60, pdmpure 100)")
    g.add_argument("--steps", type=int,
                   help="denoising steps (default: ddpm every index, ddim a 20-index stride)")
    g.add_argument("--sampler", choices=["ddpm", "ddim"],
                   help="reverse sampler (default: regen ddim, pdmpure ddpm)")
    g.add_argument("--prompt", default="",
                   help="regen prompt; may name aligned string arrays, e.g. 'a photo of a {class_name}'")
    g.add_argument("--guidance", type=float, default=1.0, help="regen CFG scale (1 = none)")
    g.add_argument("--resolution", type=int, help="regen working resolution (default: native)")
    g.add_argument("--batch-size", type=int, default=16)
    g = p.add_argument_group("advclean (AdverseCleaner defaults)")
    g.add_argument("--bilateral-iters", type=int, default=64)
    g.add_argument("--bilateral-d", type=int, default=5)
    g.add_argument("--sigma-color", type=float, default=8.0)
    g.add_argument("--sigma-space", type=float, default=8.0)
    g.add_argument("--guided-iters", type=int, default=4)
    g.add_argument("--guided-radius", type=int, default=4)
    g.add_argument("--guided-eps", type=float, default=16.0)
    p.add_argument("--figure-n", type=int, default=8, help="image pairs in before_after.png")
    add_common(p)
    p.set_defaults(func=run)


def _prompts(template: str, data: dict, n: int) -> list[str]:
    from diffsec.errors import DiffsecError

    fields = {k: v for k, v in data.items() if k != "images" and v.ndim == 1 and len(v) == n}
    try:
        return [template.format(**{k: str(v[i]) for k, v in fields.items()}) for i in range(n)]
    except (KeyError, IndexError, ValueError) as e:
        raise DiffsecError(f"--prompt {template!r} names {e}, not an aligned array of --images "
                           f"(have: {', '.join(sorted(fields)) or 'none'})") from None


def _load_model(args, device):
    """(model, scheduler-or-None) for regen / pdmpure; DiffsecError before anything is written."""
    from diffsec.errors import DiffsecError
    from diffsec.models.pipelines import pipeline_class, resolve_pipeline

    if not args.model:
        raise DiffsecError(f"--method {args.method} needs --model "
                           f"({'a StableDiffusionPipeline' if args.method == 'regen' else 'a DDPMPipeline'}"
                           " directory or hub id)")
    want = "StableDiffusionPipeline" if args.method == "regen" else "DDPMPipeline"
    cls = pipeline_class(args.model)  # None for a hub id; a local non-pipeline is an error
    if cls is not None and cls != want and not (args.method == "regen" and "StableDiffusion" in cls):
        raise DiffsecError(f"--model {args.model} is a {cls}; --method {args.method} needs a {want}")
    path = resolve_pipeline(args.model)
    try:
        if args.method == "regen":
            from diffsec.models.t2i import load_pipeline

            return load_pipeline(path, device), None
        from diffsec.models.ddpm import load_ddpm

        return load_ddpm(path, device)
    except Exception as e:  # hub id unreachable offline, corrupt weights, ...
        raise DiffsecError(f"--model {args.model}: cannot load ({type(e).__name__}: {e})") from None


def run(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, load_imageset, save_imageset, save_png
    from diffsec.metrics.distance import l2
    from diffsec.metrics.quality import psnr

    data = load_imageset(args.images)
    images = data.get("images")
    if images is None or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) \
            or len(images) == 0:
        raise DiffsecError(f"--images {args.images} needs a non-empty uint8 NHWC `images` array")
    bad = [k for k, v in data.items() if k != "images" and (v.ndim == 0 or len(v) != len(images))]
    if bad:
        raise DiffsecError(f"--images {args.images}: arrays {bad} are not aligned with the "
                           f"{len(images)} images")
    if not 1 <= args.quality <= 100:
        raise DiffsecError(f"--quality must be in 1..100, got {args.quality}")
    device = setup(args)
    model = sched = None
    if args.method in ("regen", "pdmpure"):
        model, sched = _load_model(args, device)
        from diffsec.defense import pdmpure as pdm, regen as rg
        from diffsec.defense.sdedit import t_star_of

        T = (model.scheduler if sched is None else sched).config.num_train_timesteps
        try:
            t_star = t_star_of(args.strength, args.t_star, T,
                               rg.DEFAULT_T_STAR if args.method == "regen" else pdm.DEFAULT_T_STAR)
        except ValueError as e:
            raise DiffsecError(f"--strength/--t-star: {e}") from None
        if args.steps is not None and args.steps < 1:
            raise DiffsecError(f"--steps must be positive, got {args.steps}")
        prompts = _prompts(args.prompt, data, len(images)) if args.method == "regen" else None

    params = params_of(args)
    with artifact_dir(args.out, "purify", params) as art:
        art.device = str(device)
        art.add_input("images", args.images)
        try:
            if args.method == "jpeg":
                from diffsec.defense.jpeg import jpeg

                out = jpeg(images, args.quality)
            elif args.method == "advclean":
                from diffsec.defense.advclean import advclean

                out = advclean(images, args.bilateral_iters, args.bilateral_d, args.sigma_color,
                               args.sigma_space, args.guided_iters, args.guided_radius,
                               args.guided_eps)
            elif args.method == "regen":
                out = rg.regen(images, model, t_star, args.steps, prompts, args.guidance, args.seed,
                               args.batch_size, args.resolution, args.sampler or "ddim")
                art.extra.update(t_star=t_star, model=args.model)
            else:
                out = pdm.pdmpure(images, model, sched, t_star, args.sampler or "ddpm", args.steps,
                                  args.seed, args.batch_size)
                art.extra.update(t_star=t_star, model=args.model)
        except ValueError as e:  # shape/channel mismatches between images and model
            raise DiffsecError(f"{args.method}: {e}") from None
        if args.method in ("regen", "pdmpure") and Path(args.model).exists():
            art.add_input("model", args.model)
        save_imageset(art.file("images.npz"), out, **{k: v for k, v in data.items() if k != "images"})
        n = min(args.figure_n, len(images))
        save_png(art.file("before_after.png"), grid(np.concatenate([images[:n], out[:n]]), nrow=n),
                 scale=max(1, 64 // images.shape[1]))
        ps, d2 = psnr(images, out), l2(out, images, "[0,1]")
        stats = {"method": args.method, "scale_l2": "[0,1]", "psnr_db": ps.round(4).tolist(),
                 "l2": d2.round(6).tolist(), "mean_psnr_db": float(ps.mean()),
                 "mean_l2": float(d2.mean())}
        art.file("distances.json").write_text(json.dumps(stats, indent=2))
        art.extra.update(mean_psnr_db=stats["mean_psnr_db"], mean_l2=stats["mean_l2"])
