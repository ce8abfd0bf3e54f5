"""`diffsec poison`: per-image PGD poisons (ADM+/-, SDS+/-, EA, DA) against an SD-shaped model."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, open_stage

METHODS = ("adm+", "adm-", "sds+", "sds-", "ea", "da", "da-targeted")  # = diffsec.poison.METHODS (light import)
TARGETED = ("ea", "da-targeted")  # = diffsec.poison.objectives.TARGETED


def register(sub) -> None:
    p = sub.add_parser("poison", help="poison an image set with a per-image PGD attack on a latent diffusion model",
                       description="Per-image L-inf PGD poisons of paper 004 (Appendix F): adm+/adm- ascend/descend "
                       "the noise-prediction loss (AdvDM, Mist mode 0), sds+/sds- the same with the UNet Jacobian "
                       "skipped (Xue et al.), ea pulls the VAE latent toward --target's (Mist mode 1 / PhotoGuard "
                       "encoder attack), da pushes a short differentiable img2img chain's output away from the image "
                       "it edits (the paper's untargeted DA), da-targeted pulls it toward --target (PhotoGuard's "
                       "diffusion attack). Budget: eps/scale and step/scale in [0,1] pixel units (default "
                       "16/256 and 1/256, 100 steps, as in the paper). A killed run resumes at its next batch.")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--images", type=Path, required=True, help="image set (uint8 NHWC images + arrays carried through)")
    p.add_argument("--model", required=True, help="StableDiffusionPipeline dir, a train-t2i artifact, or a hub id")
    p.add_argument("--target", default=None, help="ea/da-targeted target: an image file (resized bicubically) "
                   "or 'gray'")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    g = p.add_argument_group("budget (pixel scale: VALUE/SCALE in [0,1] units; the VAE sees [-1,1])")
    g.add_argument("--eps", type=float, default=16.0, help="L-inf radius in 1/SCALE units (default 16)")
    g.add_argument("--step", type=float, default=1.0, help="PGD step in 1/SCALE units (default 1)")
    g.add_argument("--scale", type=float, default=256.0, help="pixel scale (default 256: kappa=16/256; Mist: 255)")
    g.add_argument("--steps", type=int, default=100, help="PGD steps (default 100)")
    g = p.add_argument_group("attack")
    g.add_argument("--prompt-mode", choices=("class", "empty"), default="class",
                   help="'a photo of a <class_name>' per image, or the empty prompt")
    g.add_argument("--batch-size", type=int, default=4, help="images per PGD batch (memory only)")
    g.add_argument("--da-steps", type=int, default=4, help="da, da-targeted: differentiable DDIM steps (PhotoGuard: 4)")
    g.add_argument("--da-strength", type=float, default=0.5, help="da, da-targeted: img2img strength in (0, 1)")
    g.add_argument("--da-guidance", type=float, default=7.5, help="da, da-targeted: classifier-free guidance scale")
    g.add_argument("--figure-images", type=int, default=4, help="images shown in before_after.png")
    add_common(p)
    p.set_defaults(func=run)


def _settings(args):
    """(Budget, DAConfig, images, prompts): every input checked before anything is written."""
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_images
    from diffsec.poison import Budget, DAConfig
    from diffsec.poison.run import prompts_for

    if args.method in TARGETED and args.target is None:
        raise DiffsecError(f"--method {args.method} needs --target (an image file, or 'gray')")
    if min(args.steps, args.batch_size, args.figure_images) < 1:
        raise DiffsecError("--steps, --batch-size and --figure-images must be >= 1")
    budget, da = Budget(args.eps, args.step, args.scale), DAConfig(args.da_steps, args.da_strength, args.da_guidance)
    data = load_images(args.images, "--images")
    return budget, da, data, prompts_for(data, args.prompt_mode, f"--images {args.images} (--prompt-mode)")


def run(args: argparse.Namespace) -> None:
    from diffsec.models.pipelines import resolve_pipeline
    from diffsec.models.t2i import open_pipeline
    from diffsec.poison.run import attack, run_poison

    budget, da, data, prompts = _settings(args)
    model = resolve_pipeline(args.model)
    st = open_stage(args, "poison")
    ldm, objective, target_u8 = attack(open_pipeline(args.model), st.device, args.method,
                                       data["images"].shape[1:3], args.target, da)
    ckpt = st.checkpoint(1, images=args.images, model=model if Path(model).is_dir() else None,
                         target=args.target if args.target not in (None, "gray") else None)
    res = run_poison(ldm, data["images"], prompts, objective, budget, args.steps, args.batch_size, args.seed,
                     ckpt, uncond=args.method.startswith("da") and args.da_guidance != 1, desc=f"poison {args.method}")
    with st.artifact() as art:
        report = _write(art, args, data, res, budget, target_u8)
        art.extra.update(prompts=sorted(set(prompts)), budget=budget.describe(), **res.summary(),
                         target="gray (128)" if args.target == "gray" else args.target, model_source=model)
    print(f"poison {args.method}: {len(res.adv)} images, mean L-inf {report['mean']['linf_unit255']:.2f}/255, "
          f"mean L2 {report['mean']['l2_unit01']:.3f} ([0,1] units) -> {args.out}")


def _write(art, args, data, res, budget, target_u8) -> dict:
    import json

    from diffsec.imageset import save_png
    from diffsec.poison.objectives import REPORTED
    from diffsec.poison.report import before_after_figure, distance_report, save_poisoned
    from diffsec.training import write_curves

    save_poisoned(art.file("images.npz"), data, res.adv)
    report = distance_report(data["images"], res.adv, budget, data.get("concept", data.get("file")))
    art.file("distances.json").write_text(json.dumps(report, indent=2))
    before_after_figure(art.file("before_after.png"), data["images"], res.adv, budget,
                        f"{args.method}, eps={args.eps:g}/{args.scale:g}, {args.steps} steps", args.figure_images)
    write_curves(art.file("loss_curve.csv"), art.file("loss_curve.png"), res.curves(), title=f"{args.method} loss",
                 ylabel=REPORTED[args.method.rstrip("+-")], xlabel="PGD step")
    if target_u8 is not None:
        save_png(art.file("target.png"), target_u8)
    return report
