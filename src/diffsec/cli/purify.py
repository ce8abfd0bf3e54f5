"""`diffsec purify`: apply a purifier (JPEG, AdverseCleaner, Regen, PDM-Pure) to an image set."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, open_stage

METHODS = ("jpeg", "regen", "pdmpure", "advclean")  # = diffsec.defense.purify.METHODS (light import)


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
    g.add_argument("--model", default="", help="regen: an SD pipeline, pdmpure: a DDPM one (dir, artifact, hub id) "
                   "or a UNet2DModel dir (with the T = 1000 linear DDPM schedule); pdmpure's model must work at "
                   "the images' resolution")
    s = g.add_mutually_exclusive_group()
    s.add_argument("--strength", type=float, help="t* as a fraction of T, in (0, 1]")
    s.add_argument("--t-star", type=int, help="noise index t* in 0..T-1 (default: regen 60, pdmpure 100)")
    g.add_argument("--steps", type=int, help="denoising steps (default: ddpm every index, ddim a 20-index stride)")
    g.add_argument("--sampler", choices=["ddpm", "ddim"], help="reverse sampler (default: regen ddim, pdmpure ddpm)")
    g.add_argument("--prompt", default="",
                   help="regen prompt; may name aligned string arrays, e.g. 'a photo of a {class_name}'")
    g.add_argument("--guidance", type=float, default=1.0, help="regen CFG scale (1 = none)")
    g.add_argument("--resolution", type=int, help="regen working resolution (default: native)")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--allow-resize", action="store_true",
                   help="pdmpure: run a model whose resolution is not the images' (resize there and back; "
                        "detail above the model's resolution is lost). Without it a mismatch is an error")
    g = p.add_argument_group("advclean (AdverseCleaner defaults)")
    for flag, kind, default in (("bilateral-iters", int, 64), ("bilateral-d", int, 5), ("sigma-color", float, 8.0),
                                ("sigma-space", float, 8.0), ("guided-iters", int, 4), ("guided-radius", int, 4),
                                ("guided-eps", float, 16.0)):
        g.add_argument(f"--{flag}", type=kind, default=default, help=f"(default: {default})")
    p.add_argument("--figure-n", type=int, default=8, help="image pairs in before_after.png")
    add_common(p)
    p.set_defaults(func=run)


def _purifier(args, data: dict, device):
    """--method as images -> images, and what the manifest says of it; every setting checked."""
    from functools import partial

    from diffsec.defense import purify as P
    from diffsec.defense.jpeg import jpeg

    if args.method == "jpeg":
        return partial(jpeg, quality=args.quality), {}
    if args.method == "advclean":
        return P.AdvClean(args.bilateral_iters, args.bilateral_d, args.sigma_color, args.sigma_space,
                          args.guided_iters, args.guided_radius, args.guided_eps), {}
    sd = P.SDEditSettings(args.t_star, args.strength, args.steps, args.sampler, args.batch_size, args.seed)
    channels, model = data["images"].shape[-1], P.load_model(args.method, args.model, device)
    if args.method == "regen":
        f, t = P.regen_purifier(model, sd, P.prompts_from(args.prompt, data), args.guidance, args.resolution, channels)
        return f, {"t_star": t, "model": args.model}
    from diffsec.defense.pdmpure import model_resolution

    f, t = P.pdmpure_purifier(*model, sd, data["images"].shape[1:], args.allow_resize)
    res = model_resolution(model[0])
    return f, {"t_star": t, "model": args.model, "model_resolution": list(res),
               "resized": res != data["images"].shape[1:3]}


def run(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from diffsec.defense.images import check_aligned
    from diffsec.defense.purify import distance_stats
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, load_images, save_imageset, save_png

    if not 1 <= args.quality <= 100:
        raise DiffsecError(f"--quality must be in 1..100, got {args.quality}")
    if args.figure_n < 1:
        raise DiffsecError(f"--figure-n must be >= 1, got {args.figure_n}")
    data = load_images(args.images, "--images", channels=(1, 3))
    check_aligned(data, f"--images {args.images}")
    images = data["images"]
    st = open_stage(args, "purify")
    purifier, extra = _purifier(args, data, st.device)
    st.add_inputs(images=args.images, model=args.model if extra and Path(args.model).exists() else None)
    with st.artifact() as art:
        out = purifier(images)
        save_imageset(art.file("images.npz"), out, **{k: v for k, v in data.items() if k != "images"})
        n = min(args.figure_n, len(images))
        save_png(art.file("before_after.png"), grid(np.concatenate([images[:n], out[:n]]), nrow=n),
                 scale=max(1, 64 // images.shape[1]))
        stats = distance_stats(args.method, images, out)
        art.file("distances.json").write_text(json.dumps(stats, indent=2))
        art.extra.update(extra, mean_psnr_db=stats["mean_psnr_db"], mean_l2=stats["mean_l2"])
