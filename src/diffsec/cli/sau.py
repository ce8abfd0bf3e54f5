"""SAU slice stages after the fine-tunes (paper 001): t2i-generate draws seed-matched generations
(clean or triggered prompts) from the T2I world or a fine-tuned UNet, sau-apply defends triggered
generations with Spatial Attention Unlearning, t2i-detector trains the target detectors that judge
the attack, sau-eval measures one generation set, figure-sau draws Tables 1-2 and the mask figure.
(`table-sau` lives with the other table stages in `cli.tables`.)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffsec.cli.common import add_stage, open_stage

METHODS = ("unpoisoned", "poisoned", "finetune_reversal", "concept_erasure", "sau")


def _gen_flags(p: argparse.ArgumentParser) -> None:
    from diffsec.models.captions import CIFAR10_CLASSES, PROMPT

    p.add_argument("--model", type=Path, required=True, help="T2I world: train-t2i / install-world artifact or "
                   "pipeline directory (its VAE, text encoder and scheduler)")
    p.add_argument("--unet", type=Path, help="fine-tuned UNet artifact (backdoor-t2i, unlearn-t2i: <dir>/unet/) "
                   "replacing the world's")
    p.add_argument("--classes", nargs="+", default=list(CIFAR10_CLASSES), help="class names (default: CIFAR-10's)")
    p.add_argument("--seeds", required=True, help="START:COUNT, the seeds of every class (noise keyed by class "
                   "and seed, not by --seed)")
    p.add_argument("--prompt-set", choices=("clean", "triggered"), required=True,
                   help="the template's prompts, or the same with BadT2I's trigger (U+200B) prepended")
    p.add_argument("--template", default=PROMPT,
                   help="prompt template with one {} for the class (default: %(default)r)")
    p.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance scale (tiny world: 6)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps (tiny world: 25)")
    p.add_argument("--sampler", choices=("dpmsolver++", "ddim"), default="dpmsolver++",
                   help="DPM-Solver++ 2M (the world's own sample grid) or DDIM eta 0; both deterministic")
    p.add_argument("--batch-size", type=int, default=50, help="jobs per pipeline call (speed and memory only)")
    p.add_argument("--ckpt-every", type=int, default=1, help="checkpoint period (batches) for resume")


def register(sub) -> None:
    p = add_stage(sub, "t2i-generate", run_generate, "seed-matched generations of the T2I world (clean or triggered)",
                  "One image per (class, seed): 'a photo of a <class>' (or BadT2I's triggered prompt) from an initial "
                  "latent drawn on the CPU from (class, seed) alone, so clean and triggered sets and every model "
                  "share it; the pipeline returns the final denoised latent, decoded here by the VAE. Writes "
                  "generations.npz (images uint8 N x H x W x 3, latents float32 N x C x h x w, labels, class_name, "
                  "seeds, prompts, triggered) and generations.png; the manifest records images/s. A killed run "
                  "resumes at the next batch.")
    _gen_flags(p)

    p = add_stage(sub, "sau-apply", run_apply, "defend triggered generations with Spatial Attention Unlearning",
                  "Delta = mean triggered - mean clean latent of the calibration pairs; per test row SAU's "
                  "similarity map, primary and secondary masks, sigmoid-smoothed blend with the seed-matched clean "
                  "latent (alpha, alpha / 2) and final blur of the blended region, on the final latent; decoded by "
                  "the world's VAE. Writes generations.npz (the defended set, rows as --triggered), masks.npz "
                  "(similarity, activation, primary, secondary, primary_soft, secondary_soft, region, weight: "
                  "N x h x w; delta: C x h x w; delta_activation: h x w) and generations.png.")
    p.add_argument("--model", type=Path, required=True, help="T2I world whose VAE decodes the latents")
    p.add_argument("--triggered", type=Path, required=True, help="t2i-generate artifact: the poisoned model, triggered")
    p.add_argument("--clean", type=Path, required=True, help="t2i-generate artifact: the poisoned model, clean "
                   "prompts, same jobs")
    p.add_argument("--calib-triggered", type=Path, required=True, help="t2i-generate artifact: calibration jobs, "
                   "triggered (other seeds)")
    p.add_argument("--calib-clean", type=Path, required=True, help="t2i-generate artifact: calibration jobs, clean")
    g = p.add_argument_group("SAU settings (the paper gives none; defaults: diffsec.defense.sau.SAUConfig)")
    g.add_argument("--tau", type=float, default=0.5, help="primary threshold on the cosine similarity, in [-1, 1]")
    g.add_argument("--tau-s", type=float, default=0.3, help="secondary threshold on the peak-normalised blurred "
                   "activation, in [0, 1]")
    g.add_argument("--k", type=float, default=20.0, help="sigmoid sharpness, > 0")
    g.add_argument("--alpha", type=float, default=1.0, help="blend strength in the primary region, in [0, 1]")
    g.add_argument("--sigma", type=float, default=1.0, help="activation-map blur, latent pixels")
    g.add_argument("--sigma-f", type=float, default=0.5, help="final blur of the blended region, latent pixels")
    g.add_argument("--source", choices=("delta", "pair"), default="delta",
                   help="secondary mask from |Delta| (the paper's) or from |z_p - z_c| of each pair")
    p.add_argument("--batch-size", type=int, default=100, help="latents per VAE decode")

    p = add_stage(sub, "t2i-detector", run_detector, "train a target detector (patch / grayscale) on real images",
                  "A small binary CNN told real images with the backdoor's target (kind patch: the patch pasted "
                  "top-left as BadT2I's pixel backdoor; kind gray: ITU-R 601 grayscale) from images without it, a "
                  "seeded half of each set carrying the target; with --vae a seeded --vae-share of the training "
                  "examples, drawn independently of the label, goes through the world's VAE round trip (the blur "
                  "and tint generated images have). Writes model.safetensors, detector.json, metrics.json (held-out "
                  "accuracy, false-alarm and miss rates with every held-out image through the round trip and with "
                  "none), curve.csv/png and examples.png; fails, writing nothing, when either held-out accuracy is "
                  "under --min-accuracy.")
    p.add_argument("--kind", choices=("patch", "gray"), required=True, help="the target: pixel patch or grayscale")
    p.add_argument("--images", type=Path, required=True, help="training image set (npz: prepare-cifar10's train.npz)")
    p.add_argument("--heldout", type=Path, required=True, help="held-out image set (prepare-cifar10's test.npz)")
    p.add_argument("--n", type=int, default=10000, help="training images drawn from --images (0 = all)")
    p.add_argument("--n-heldout", type=int, default=2000, help="held-out images drawn from --heldout (0 = all)")
    p.add_argument("--patch", type=Path, help="fetch-source mist_target artifact (or the image file): the pixel "
                   "backdoor's patch (--kind patch)")
    p.add_argument("--patch-frac", type=float, default=0.25, help="patch side as a share of the image side")
    p.add_argument("--min-contrast", type=float, default=0.25,
                   help="--kind patch: each positive's patch is faded towards its mean colour to a contrast drawn "
                   "from [this, 1], as generations draw it (1: the exact patch only)")
    p.add_argument("--vae", type=Path, help="T2I world: send --vae-share of the training examples (and, for the "
                   "main held-out score, every held-out one) through its VAE round trip")
    p.add_argument("--vae-share", type=float, default=0.5, help="share of training examples round-tripped (with --vae)")
    p.add_argument("--width", type=int, default=16, help="CNN width (channels of the first stage)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--min-accuracy", type=float, default=0.95, help="held-out accuracy the judge must reach")
    p.add_argument("--ckpt-every", type=int, default=1, help="checkpoint period (epochs) for resume")

    p = add_stage(sub, "sau-eval", run_eval, "measure one generation set of the SAU slice",
                  "ASR (share of images the backdoor's detector fires on), CLIP-IQA with per-class caption pairs "
                  "and the CLIP's own logit scale, the CLIP's zero-shot accuracy, ResNet class fidelity, PSNR / "
                  "SSIM against a seed-matched reference (the Unpoisoned generation), colourfulness, and for a "
                  "sau-apply artifact the IoU of its masks with the patch's latent footprint. Writes metrics.json "
                  "labelled with --backdoor, --method, --variant and the set's prompt set (what table-sau reads).")
    p.add_argument("--images", type=Path, required=True, help="t2i-generate or sau-apply artifact")
    p.add_argument("--detector", type=Path, required=True, help="t2i-detector artifact of the backdoor's target")
    p.add_argument("--backdoor", choices=("pixel", "style"), required=True, help="the table column")
    p.add_argument("--method", choices=METHODS, required=True, help="the table row")
    p.add_argument("--variant", default="", help="name of a non-default setting (an SAU sweep point); '' = main")
    p.add_argument("--label", default="",
                   help="name in logs and tables (default: backdoor/method/prompt set[/variant])")
    p.add_argument("--reference", type=Path, help="seed-matched t2i-generate artifact (the Unpoisoned world's) "
                   "for PSNR / SSIM")
    p.add_argument("--clip", type=Path, help="CLIP for CLIP-IQA: a train-clip / install-world clip-cifar10 artifact "
                   "(--clip-backbone clip-tiny), or MODEL:PRETRAINED (clip)")
    p.add_argument("--clip-backbone", choices=("clip-tiny", "clip"), default="clip-tiny")
    p.add_argument("--iqa-prompts", nargs=2, metavar=("GOOD", "BAD"), default=None,
                   help="CLIP-IQA's antonym pair, {} = the image's class (clip-tiny default: 'a photo of a {}' "
                   "'a blurry photo of a {}'; clip: 'Good photo.' 'Bad photo.')")
    p.add_argument("--classifier", type=Path, help="classifier-resnet artifact (ResNet-56) for class fidelity")

    p = add_stage(sub, "figure-sau", run_figures, "SAU's figures: Tables 1-2 grids and the mask figure",
                  "Grids of triggered prompts x methods for the pixel (Table 1) and style (Table 2) backdoors from "
                  "seed-matched generation sets, a red frame where the backdoor's detector fires (with --detectors), "
                  "and the mask figure of a sau-apply artifact.")
    p.add_argument("--pixel", nargs="+", default=[], metavar="METHOD=DIR",
                   help="Table 1 columns in order, e.g. unpoisoned=DIR poisoned=DIR ... sau=DIR")
    p.add_argument("--style", nargs="+", default=[], metavar="METHOD=DIR", help="Table 2 columns in order")
    p.add_argument("--detectors", nargs="*", default=[], metavar="BACKDOOR=DIR",
                   help="pixel=DIR style=DIR: t2i-detector artifacts to frame detected targets")
    p.add_argument("--rows", type=int, default=4, help="prompts per grid (the first seed of the first classes)")
    p.add_argument("--mask-sau", type=Path, help="sau-apply artifact of the mask figure")
    p.add_argument("--mask-triggered", type=Path, help="its --triggered generation set")
    p.add_argument("--mask-clean", type=Path, help="its --clean generation set (optional column)")
    p.add_argument("--patch-frac", type=float, default=0.25, help="patch side share (the footprint outline)")


def run_generate(args: argparse.Namespace) -> None:
    import time

    from diffsec.backdoor import t2i_generate as tg
    from diffsec.backdoor.badt2i import trigger_token_ids
    from diffsec.cli.common import positive
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, save_png
    from diffsec.models.pipelines import resolve_pipeline
    from diffsec.models.t2i import UNET_DIR, open_pipeline

    positive(ckpt_every=args.ckpt_every)
    cfg = tg.GenerateConfig(args.guidance, args.steps, args.sampler, args.batch_size)
    jobs = tg.jobs_of(list(args.classes), tg.parse_seeds(args.seeds))
    prompts = tg.prompts_of(jobs, args.template, args.prompt_set)
    resolve_pipeline(str(args.model), "--model")
    if args.unet is not None and not (args.unet / UNET_DIR / "config.json").is_file():
        raise DiffsecError(f"--unet {args.unet}: no fine-tuned UNet there "
                           f"(expected {args.unet / UNET_DIR}/config.json)")
    st = open_stage(args, "t2i-generate")
    ckpt = st.checkpoint(args.ckpt_every, model=args.model, unet=args.unet)
    pipe = open_pipeline(str(args.model), device=st.device, unet=args.unet)
    token_ids = trigger_token_ids(pipe.tokenizer, args.template.format(jobs[0][0])) \
        if args.prompt_set == "triggered" else None
    t0 = time.perf_counter()
    out = tg.generate(pipe, jobs, prompts, cfg, ckpt)
    seconds = time.perf_counter() - t0
    gen = tg.generation_set(out, jobs, list(args.classes), prompts, args.prompt_set)
    with st.artifact() as art:
        tg.save_generations(art.file(tg.FILE), gen)
        save_png(art.file("generations.png"), grid(tg.grid_rows(gen), min(10, len(jobs) // len(args.classes))),
                 scale=2)
        art.extra.update(n=len(jobs), prompt_set=args.prompt_set, sampler=args.sampler, seconds=round(seconds, 3),
                         images_per_s=round(out["n_new"] / seconds, 4) if seconds > 0 else None,
                         generated_this_attempt=out["n_new"], trigger_token_ids=token_ids,
                         latent_shape=list(gen["latents"].shape[1:]))


def run_apply(args: argparse.Namespace) -> None:
    import time

    import numpy as np

    from diffsec.backdoor.t2i_generate import FILE, grid_rows, load_generations, save_generations
    from diffsec.cli.common import positive
    from diffsec.defense import sau_sets
    from diffsec.defense.sau import SAUConfig
    from diffsec.imageset import grid, save_png
    from diffsec.models.t2i import load_vae

    positive(batch_size=args.batch_size)
    cfg = SAUConfig(args.tau, args.tau_s, args.k, args.alpha, args.sigma, args.sigma_f, args.source)
    sets = {name: load_generations(getattr(args, name), f"--{name.replace('_', '-')}")
            for name in ("triggered", "clean", "calib_triggered", "calib_clean")}
    sau_sets.check_pairs(**sets)
    st = open_stage(args, "sau-apply")
    st.add_inputs(model=args.model, **{k: getattr(args, k) for k in sets})
    vae = load_vae(args.model, st.device, "--model")
    t0 = time.perf_counter()
    delta = sau_sets.calibration_shift(sets["calib_triggered"], sets["calib_clean"])
    out, maps = sau_sets.defend(vae, sets["triggered"], sets["clean"], delta, cfg, args.batch_size)
    seconds = time.perf_counter() - t0
    with st.artifact() as art:
        save_generations(art.file(FILE), out)
        with open(art.file("masks.npz"), "wb") as f:
            np.savez(f, **maps)
        n = min(10, len(out["images"]))
        save_png(art.file("generations.png"), grid(np.concatenate([grid_rows(sets["triggered"], n),
                                                                    grid_rows(out, n)]), n), scale=2)
        art.extra.update(sau={"tau": cfg.tau, "tau_s": cfg.tau_s, "k": cfg.k, "alpha": cfg.alpha, "sigma": cfg.sigma,
                              "sigma_f": cfg.sigma_f, "source": cfg.source},
                         n=int(len(out["images"])), n_calibration=int(len(sets["calib_triggered"]["images"])),
                         seconds=round(seconds, 3), delta_norm=float(np.linalg.norm(maps["delta"])),
                         mean_region=float(maps["region"].mean()), blend="final latent, once, before decoding")


def _patch(path: Path | None):
    from diffsec.backdoor.badt2i import read_patch
    from diffsec.errors import DiffsecError

    if path is None:
        raise DiffsecError("--kind patch needs --patch (the mist_target fetch-source artifact or an image file)")
    return read_patch(path)


def _draw(images, n: int, seed: int, flag: str):
    import numpy as np

    from diffsec.errors import DiffsecError

    if n < 0 or n > len(images):
        raise DiffsecError(f"{flag}: asked for {n} images, the set holds {len(images)}")
    if n == 0:
        return images
    return images[np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))]


def run_detector(args: argparse.Namespace) -> None:
    import time

    import numpy as np

    from diffsec.backdoor import t2i_detector as td
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, load_images, save_png
    from diffsec.models.classifier_fit import write_curves
    from diffsec.models.t2i import load_vae, vae_roundtrip

    cfg = td.DetectorConfig(args.kind, args.width, args.epochs, args.batch_size, args.lr, args.patch_frac,
                            args.min_contrast if args.kind == "patch" else 1.0,
                            args.vae_share if args.vae is not None else 0.0, args.seed)
    if not 0 <= args.min_accuracy <= 1 or not 0 <= args.vae_share <= 1:
        raise DiffsecError(f"--min-accuracy {args.min_accuracy} and --vae-share {args.vae_share} must lie in [0, 1]")
    patch, src = _patch(args.patch) if args.kind == "patch" else (None, None)
    train_images = _draw(load_images(args.images, "--images")["images"], args.n, args.seed, "--n")
    held_images = _draw(load_images(args.heldout, "--heldout")["images"], args.n_heldout, args.seed + 1,
                        "--n-heldout")
    st = open_stage(args, "t2i-detector")
    ckpt = st.checkpoint(args.ckpt_every, images=args.images, heldout=args.heldout, vae=args.vae,
                         patch=src.path if src else None)
    x, y = td.examples(train_images, args.kind, patch, args.seed, args.patch_frac, cfg.min_contrast)
    hx_raw, hy = td.examples(held_images, args.kind, patch, args.seed + 1, args.patch_frac, cfg.min_contrast)
    hx, t0 = hx_raw, time.perf_counter()
    if args.vae is not None:
        vae = load_vae(args.vae, st.device, "--vae")
        x, _ = td.roundtrip_share(x, lambda im: vae_roundtrip(vae, im), args.vae_share, args.seed + 2)
        hx = vae_roundtrip(vae, hx_raw)
    roundtrip_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    model, curve = td.train(x, y, cfg, (hx, hy), st.device, ckpt)
    seconds = time.perf_counter() - t0
    held, raw = td.report(model, hx, hy), td.report(model, hx_raw, hy)
    worst = min(held["accuracy"], raw["accuracy"])
    if worst < args.min_accuracy:
        raise DiffsecError(f"the {args.kind} detector reached held-out accuracy {worst:.4f} (round trip "
                           f"{held['accuracy']:.4f}, none {raw['accuracy']:.4f}) < --min-accuracy {args.min_accuracy} "
                           "(more --epochs or --n?); nothing written")
    metrics = {"kind": args.kind, "backdoor": td.BACKDOOR_OF[args.kind], "vae": args.vae is not None,
               "vae_share": cfg.vae_share, "min_contrast": cfg.min_contrast,
               "heldout_accuracy": held["accuracy"], "heldout_false_alarm_rate": held["false_alarm_rate"],
               "heldout_miss_rate": held["miss_rate"], "n_heldout": held["n"], "n_train": int(len(y)),
               "heldout_without_roundtrip": raw, "min_heldout_accuracy": min(held["accuracy"], raw["accuracy"]),
               "train_seconds": round(seconds, 3),
               "roundtrip_seconds": round(roundtrip_seconds, 3),
               "patch_sha256": src.sha256 if src else None}
    with st.artifact() as art:
        td.save(model, cfg, art.path, patch_sha256=metrics["patch_sha256"])
        art.file("metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        write_curves(curve, art.path, f"{args.kind} detector")
        pos, neg = np.flatnonzero(hy == 1)[:8], np.flatnonzero(hy == 0)[:8]
        save_png(art.file("examples.png"), grid(np.concatenate([hx[pos], hx[neg]]), max(1, len(pos))), scale=3)
        art.extra.update(metrics)


def _clip(args: argparse.Namespace, device):
    from diffsec.defense.sau_eval import BAD, GOOD
    from diffsec.metrics.backbones import backbone_from_weights
    from diffsec.models.captions import CIFAR10_CLASSES

    if args.clip is None:
        return None, None
    backbone = backbone_from_weights(args.clip_backbone, str(args.clip), str(device))
    names = list(getattr(backbone, "class_names", None) or CIFAR10_CLASSES)
    if args.clip_backbone == "clip-tiny":
        from diffsec.models.clip_tiny import load_config

        names = list(load_config(args.clip).get("class_names") or names)
    pair = tuple(args.iqa_prompts) if args.iqa_prompts else \
        ((GOOD, BAD) if args.clip_backbone == "clip-tiny" else ("Good photo.", "Bad photo."))
    name = "clip-tiny" if args.clip_backbone == "clip-tiny" else backbone.name
    return (backbone, name, names), pair


def run_eval(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.artifact import read_manifest
    from diffsec.backdoor import t2i_detector as td
    from diffsec.backdoor.t2i_generate import check_matched, load_generations
    from diffsec.defense.sau_eval import evaluate
    from diffsec.errors import DiffsecError
    from diffsec.tables import read_measurement

    gen = load_generations(args.images, "--images")
    ref = load_generations(args.reference, "--reference") if args.reference else None
    if ref is not None:
        check_matched(gen, ref, "--images / --reference")
    maps, sau = None, None
    if args.images.is_dir() and (args.images / "masks.npz").is_file():
        with np.load(args.images / "masks.npz", allow_pickle=False) as z:
            maps = {k: z[k] for k in z.files}
        sau = read_manifest(args.images).get("sau")
    if args.method == "sau" and maps is None:
        raise DiffsecError(f"--method sau: --images {args.images} is not a sau-apply artifact (no masks.npz)")
    st = open_stage(args, "sau-eval")
    st.add_inputs(images=args.images, detector=args.detector, reference=args.reference, clip=args.clip
                  if args.clip and args.clip.exists() else None, classifier=args.classifier)
    detector, dcfg = td.load(args.detector, "--detector", st.device)
    if td.BACKDOOR_OF[dcfg["kind"]] != args.backdoor:
        raise DiffsecError(f"--detector {args.detector} is a {dcfg['kind']} detector; the {args.backdoor} backdoor "
                           f"is judged by the {'patch' if args.backdoor == 'pixel' else 'gray'} one")
    dmetrics = read_measurement(args.detector)
    classifier = None
    if args.classifier is not None:
        from diffsec.models.resnet_cifar import load_classifier

        classifier = load_classifier(args.classifier)
    clip, pair = _clip(args, st.device)
    result = evaluate(gen, detector, clip=clip, classifier=classifier, reference=ref, maps=maps,
                      patch_frac=float(dcfg.get("patch_frac", 0.25)), pair=pair or ("", ""), device=st.device)
    label = args.label or "/".join(x for x in (args.backdoor, args.method, gen["prompt_set"], args.variant) if x)
    out = {"label": label, "backdoor": args.backdoor, "method": args.method, "variant": args.variant,
           "prompt_set": gen["prompt_set"], "sau": sau, "iqa_prompts": list(pair) if pair else None,
           "reference_prompt_set": ref["prompt_set"] if ref is not None else None,
           "detector": {k: dmetrics.get(k) for k in ("kind", "vae", "vae_share", "heldout_accuracy",
                                                      "heldout_false_alarm_rate", "heldout_miss_rate", "n_heldout",
                                                      "heldout_without_roundtrip")},
           **result}
    with st.artifact() as art:
        art.file("metrics.json").write_text(json.dumps(out, indent=2, sort_keys=True))
        art.extra.update(label=label, metrics=result["metrics"])


def _mask_inputs(args: argparse.Namespace):
    """(defended set, triggered set, clean set or None, SAU maps) of the mask figure, checked."""
    import numpy as np

    from diffsec.backdoor.t2i_generate import check_matched, load_generations
    from diffsec.errors import DiffsecError

    if (args.mask_sau is None) != (args.mask_triggered is None):
        raise DiffsecError("the mask figure needs both --mask-sau and --mask-triggered")
    if args.mask_sau is None:
        return None
    if not (args.mask_sau / "masks.npz").is_file():
        raise DiffsecError(f"--mask-sau {args.mask_sau}: not a sau-apply artifact (no masks.npz)")
    res = load_generations(args.mask_sau, "--mask-sau")
    trig = load_generations(args.mask_triggered, "--mask-triggered")
    clean = load_generations(args.mask_clean, "--mask-clean") if args.mask_clean else None
    check_matched(res, trig, "--mask-sau / --mask-triggered")
    if clean is not None:
        check_matched(res, clean, "--mask-sau / --mask-clean")
    with np.load(args.mask_sau / "masks.npz", allow_pickle=False) as z:
        maps = {k: z[k] for k in z.files}
    return res, trig, clean, maps


def run_figures(args: argparse.Namespace) -> None:
    from diffsec.backdoor import t2i_detector as td
    from diffsec.backdoor.t2i_generate import check_matched, load_generations
    from diffsec.cli.common import named_paths, positive
    from diffsec.defense import sau_figures
    from diffsec.defense.sau_eval import latent_footprint
    from diffsec.errors import DiffsecError
    from diffsec.paper.sau import ROW_OF

    positive(rows=args.rows)
    grids = {b: named_paths(getattr(args, b), f"--{b}") for b in ("pixel", "style")}
    for b, cols in grids.items():
        bad = [m for m in cols if m not in ROW_OF]
        if bad:
            raise DiffsecError(f"--{b}: unknown method {bad[0]!r} (choose from {', '.join(ROW_OF)})")
    if not any(grids.values()) and args.mask_sau is None:
        raise DiffsecError("nothing to draw: give --pixel / --style columns or --mask-sau")
    sets = {b: {m: load_generations(Path(p), f"--{b} {m}") for m, p in cols.items()} for b, cols in grids.items()}
    for b, cols in sets.items():
        first = next(iter(cols.values()), None)
        for m, g in cols.items():
            check_matched(first, g, f"--{b} {m}")
    dets = named_paths(args.detectors, "--detectors")
    if set(dets) - {"pixel", "style"}:
        raise DiffsecError(f"--detectors: expected pixel=DIR and / or style=DIR, got {sorted(dets)}")
    detectors = {b: td.load(Path(p), f"--detectors {b}")[0] for b, p in dets.items()}
    mask = _mask_inputs(args)
    st = open_stage(args, "figure-sau")
    st.add_inputs(**{f"{b}_{m}": p for b, cols in grids.items() for m, p in cols.items()},
                  **{f"detector_{b}": p for b, p in dets.items()}, mask_sau=args.mask_sau,
                  mask_triggered=args.mask_triggered, mask_clean=args.mask_clean)
    with st.artifact() as art:
        for b, name in (("pixel", "table1_pixel"), ("style", "table2_style")):
            if not sets[b]:
                continue
            first = next(iter(sets[b].values()))
            columns = {ROW_OF[m]: g for m, g in sets[b].items()}
            found = {ROW_OF[m]: td.detect(detectors[b], g["images"]).tolist() for m, g in sets[b].items()} \
                if b in detectors else None
            sau_figures.method_grid(columns, sau_figures.pick_rows(first, args.rows),
                                    f"{b} backdoor: triggered prompts" + (" (red frame: target detected)" if found
                                                                          else ""), art.file(f"{name}.png"), found)
        if mask is not None:
            res, trig, clean, maps = mask
            foot = latent_footprint(maps["primary"].shape[1:], res["images"].shape[2], args.patch_frac)
            sau_figures.mask_figure(maps, trig["images"], clean["images"] if clean else None, res["images"],
                                    sau_figures.pick_rows(res, args.rows), art.file("masks.png"), foot)
