"""`diffsec poison`: per-image PGD poisons (ADM+/-, SDS+/-, EA, DA) against an SD-shaped model."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, params_of, setup
from diffsec.models.pipelines import resolve_pipeline

METHODS = ("adm+", "adm-", "sds+", "sds-", "ea", "da")  # = diffsec.poison.METHODS (light import)


def register(sub) -> None:
    p = sub.add_parser(
        "poison", help="poison an image set with a per-image PGD attack on a latent diffusion model",
        description="Per-image L-inf PGD poisons of paper 004 (Appendix F): adm+/adm- ascend/descend "
        "the noise-prediction loss (AdvDM, Mist mode 0), sds+/sds- the same with the UNet Jacobian "
        "skipped (Xue et al.), ea pulls the VAE latent toward --target's (Mist mode 1 / PhotoGuard "
        "encoder attack), da pulls a short differentiable img2img chain's output toward --target "
        "(PhotoGuard diffusion attack). Budget: eps/scale and step/scale in [0,1] pixel units "
        "(default 16/256 and 1/256, 100 steps, as in the paper).")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--images", type=Path, required=True,
                   help="image set (npz: images uint8 NHWC + aligned arrays, all carried through)")
    p.add_argument("--model", required=True,
                   help="StableDiffusionPipeline directory (or a train-t2i artifact holding one, or a hub id)")
    p.add_argument("--target", default=None,
                   help="target image file for ea/da (resized bicubically to the image size, as "
                   "Mist does), or 'gray' for a uniform mid-gray target")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    g = p.add_argument_group("budget (pixel scale: VALUE/SCALE in [0,1] units; the VAE sees [-1,1])")
    g.add_argument("--eps", type=float, default=16.0, help="L-inf radius in 1/SCALE units (default 16)")
    g.add_argument("--step", type=float, default=1.0, help="PGD step in 1/SCALE units (default 1)")
    g.add_argument("--scale", type=float, default=256.0, help="pixel scale denominator (default 256, "
                   "the paper's kappa=16/256; use 255 for Mist/PhotoGuard's x/255)")
    g.add_argument("--steps", type=int, default=100, help="PGD steps (default 100)")
    g = p.add_argument_group("attack")
    g.add_argument("--prompt-mode", choices=("class", "empty"), default="class",
                   help="conditioning: 'a photo of a <class_name>' per image, or the empty prompt")
    g.add_argument("--batch-size", type=int, default=4, help="images per PGD batch (memory only)")
    g.add_argument("--da-steps", type=int, default=4,
                   help="da: differentiable DDIM steps (memory grows linearly; default 4 as PhotoGuard)")
    g.add_argument("--da-strength", type=float, default=0.5, help="da: img2img strength in (0, 1)")
    g.add_argument("--da-guidance", type=float, default=7.5, help="da: classifier-free guidance scale")
    g.add_argument("--figure-images", type=int, default=4, help="images shown in before_after.png")
    add_common(p)
    p.set_defaults(func=run)


def _check_args(args) -> None:
    from diffsec.errors import DiffsecError

    if args.method in ("ea", "da") and args.target is None:
        raise DiffsecError(f"--method {args.method} needs --target (an image file, or 'gray')")
    if not (0 < args.eps <= args.scale and 0 < args.step and args.scale > 0):
        raise DiffsecError("need 0 < --eps <= --scale and --step > 0")
    if args.steps < 1 or args.batch_size < 1 or args.da_steps < 1:
        raise DiffsecError("--steps, --batch-size and --da-steps must be >= 1")
    if not 0 < args.da_strength < 1:
        raise DiffsecError("--da-strength must lie in (0, 1): at 1 the output ignores the image")
    if args.target not in (None, "gray") and not Path(args.target).is_file():
        raise DiffsecError(f"--target {args.target}: no such file")


def _load_images(path: Path, prompt_mode: str):
    import numpy as np

    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset
    from diffsec.models.t2i import PROMPT

    data = load_imageset(path)
    im = data.get("images")
    if im is None or im.dtype != np.uint8 or im.ndim != 4 or im.shape[-1] != 3 or not len(im):
        raise DiffsecError(f"--images {path}: need a non-empty 'images' array, uint8 N x H x W x 3")
    if prompt_mode == "empty":
        return data, [""] * len(im)
    names = data.get("class_name")
    if names is None or names.ndim != 1 or len(names) != len(im):
        raise DiffsecError(f"--images {path}: --prompt-mode class needs a per-image 'class_name' "
                           "array; use --prompt-mode empty otherwise")
    return data, [PROMPT.format(str(c)) for c in names]


def _load_target(target: str | None, h: int, w: int):
    """Target as float 3 x H x W in [0, 1]: a file resized bicubically (Mist), or mid-gray."""
    import numpy as np
    import torch

    from diffsec.errors import DiffsecError

    if target is None:
        return None, None
    if target == "gray":
        arr = np.full((h, w, 3), 128, np.uint8)
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(target) as im:
                arr = np.asarray(im.convert("RGB").resize((w, h), Image.BICUBIC))
        except (OSError, UnidentifiedImageError) as e:
            raise DiffsecError(f"--target {target}: not a readable image ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255, arr


def _checkpoint_key(args, inputs: dict) -> str:
    import hashlib
    import json

    params = params_of(args, skip=("out", "threads"))
    return hashlib.sha256(json.dumps([params, inputs], sort_keys=True, default=str).encode()).hexdigest()


def run(args: argparse.Namespace) -> None:
    import json
    import time

    import numpy as np
    from tqdm import tqdm

    from diffsec.artifact import artifact_dir, atomic_file, hash_path
    from diffsec.errors import DiffsecError
    from diffsec.imageset import save_imageset, save_png
    from diffsec.models.t2i import load_pipeline
    from diffsec.poison import Budget, DAConfig, LatentDiffusion, make_objective, poison_images
    from diffsec.poison.objectives import REPORTED
    from diffsec.poison.report import before_after_figure, distance_report, write_loss_curve

    # Everything that can be wrong with the input is checked before anything is written.
    _check_args(args)
    data, prompts = _load_images(args.images, args.prompt_mode)
    images = data["images"]
    n, h, w, _ = images.shape
    device = setup(args)
    model = resolve_pipeline(args.model)
    try:
        pipe = load_pipeline(model, "cpu")
    except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad model path
        raise DiffsecError(f"--model {args.model}: cannot load a StableDiffusionPipeline ({e})") from None
    ldm = LatentDiffusion(pipe, device)
    if h % ldm.down or w % ldm.down:
        raise DiffsecError(f"images are {h}x{w}; the VAE needs sides divisible by {ldm.down}")
    target01, target_u8 = _load_target(args.target if args.method in ("ea", "da") else None, h, w)
    budget = Budget(args.eps, args.step, args.scale)
    da = DAConfig(args.da_steps, args.da_strength, args.da_guidance)
    objective = make_objective(args.method, ldm, target01, da)

    inputs = {"images": hash_path(args.images)}
    if Path(model).is_dir():
        inputs["model"] = hash_path(model)
    if args.target not in (None, "gray"):
        inputs["target"] = hash_path(args.target)

    # Resume: finished images (whole batches) are kept beside the output until it is complete.
    ckpt = args.out.with_name(args.out.name + ".ckpt.npz")
    key = _checkpoint_key(args, inputs)
    advs, curves, start = [], [], 0
    try:
        with np.load(ckpt, allow_pickle=False) as z:
            if str(z["key"]) == key:
                start, advs, curves = int(z["end"]), [z["adv"]], [z["losses"]]
                print(f"poison: resuming after {start}/{n} images from {ckpt}")
    except (OSError, ValueError, KeyError):
        pass  # no checkpoint (or a torn one): start from the first image

    def save_ckpt(end, adv, losses):
        advs.append(adv), curves.append(losses)
        with atomic_file(ckpt) as tmp, open(tmp, "wb") as f:
            np.savez(f, key=np.array(key), end=np.array(end), adv=np.concatenate(advs),
                     losses=np.concatenate(curves))

    bar = tqdm(total=(n - start) * args.steps, desc=f"poison {args.method}", unit=" img-step")

    def on_step(loss):
        bar.update(len(loss))
        bar.set_postfix(loss=f"{loss.mean().item():.4g}")

    t0 = time.perf_counter()
    poison_images(ldm, images, prompts, objective, budget, args.steps, args.batch_size, args.seed,
                  start=start, on_batch=save_ckpt, on_step=on_step,
                  uncond=args.method == "da" and args.da_guidance != 1)
    bar.close()
    pgd_s = time.perf_counter() - t0
    adv, losses = np.concatenate(advs), np.concatenate(curves)

    with artifact_dir(args.out, "poison", params_of(args)) as art:
        art.device = str(device)
        art.inputs.update(inputs)
        carried = {k: v for k, v in data.items() if k != "images"}
        if all(v.ndim and len(v) == n for v in carried.values()):
            save_imageset(art.file("images.npz"), adv, **carried)
        else:  # non-aligned metadata (e.g. a class list) still travels along, unchanged
            with open(art.file("images.npz"), "wb") as f:
                np.savez(f, images=adv, **carried)
        names = data.get("concept", data.get("file"))
        report = distance_report(images, adv, budget, names)
        art.file("distances.json").write_text(json.dumps(report, indent=2))
        before_after_figure(art.file("before_after.png"), images, adv, budget,
                            f"{args.method}, eps={args.eps:g}/{args.scale:g}, {args.steps} steps",
                            args.figure_images)
        kind = args.method.rstrip("+-")
        write_loss_curve(losses, art.file("loss_curve.csv"), art.file("loss_curve.png"),
                         args.method, REPORTED[kind])
        if target_u8 is not None:
            save_png(art.file("target.png"), target_u8)
        art.extra.update(
            prompts=sorted(set(prompts)), budget=budget.describe(),
            loss_first_step=float(losses[:, 0].mean()), loss_last_step=float(losses[:, -1].mean()),
            pgd_seconds=round(pgd_s, 3), resumed_from=start,
            seconds_per_image_step=round(pgd_s / max(1, (n - start) * args.steps), 5),
            target="gray (128)" if args.target == "gray" else args.target, model_source=model)
    ckpt.unlink(missing_ok=True)
    print(f"poison {args.method}: {n} images, mean L-inf {report['mean']['linf_unit255']:.2f}/255, "
          f"mean L2 {report['mean']['l2_unit01']:.3f} ([0,1] units) -> {args.out}")
