"""`diffsec backdoor-t2i` and `unlearn-t2i`: the SAU slice's fine-tunes of the text-to-image world
(paper 001). backdoor-t2i plants a BadT2I backdoor (pixel patch or black-and-white style) behind
the zero-width-space trigger; unlearn-t2i removes one by Finetune Reversal or ESD-x on the
trigger. Both write <out>/unet/ (the fine-tuned UNet alone; the world's VAE, text encoder and
scheduler stay where they are), curve.csv + curve.png, and a seed-matched clean | triggered
sample grid (samples.png, samples.npz)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_stage, open_stage
from diffsec.errors import DiffsecError

KINDS = ("pixel", "style")
METHODS = {"reversal": "reversal", "esd": "esd"}  # --method -> library objective
# unlearn-t2i's per-method defaults (tiny world; README): steps, batch size, lr
UNLEARN_DEFAULTS = {"reversal": (100, 16, 1e-4), "esd": (100, 4, 2e-4)}


def _train_flags(p: argparse.ArgumentParser, steps, batch, lr, n_images: int, cond_drop: float) -> None:
    """The shared flags; a default given as text (per-method defaults) is resolved by the stage."""
    p.add_argument("--model", type=Path, required=True,
                   help="the T2I world: train-t2i artifact or StableDiffusionPipeline directory")
    p.add_argument("--images", type=Path, required=True,
                   help="labelled training image set (npz: images, labels, class_name; prepare-cifar10's train.npz)")
    g = p.add_argument_group("fine-tuning")
    d = {k: (None, v) if isinstance(v, str) else (v, f"{v:g}") for k, v in
         (("steps", steps), ("batch", batch), ("lr", lr))}
    g.add_argument("--steps", type=int, default=d["steps"][0], help=f"optimizer steps (default: {d['steps'][1]})")
    g.add_argument("--batch-size", type=int, default=d["batch"][0],
                   help=f"images (ESD: generated latents) per step (default: {d['batch'][1]})")
    g.add_argument("--lr", type=float, default=d["lr"][0],
                   help=f"constant AdamW learning rate (default: {d['lr'][1]})")
    g.add_argument("--n-images", type=int, default=n_images,
                   help=f"class-stratified subset of --images trained on, encoded once (default: {n_images}; "
                   "0 = all)")
    g.add_argument("--cond-drop", type=float, default=cond_drop,
                   help=f"rate of empty captions: backdoor-t2i's preservation half, reversal's triggered captions "
                   f"(ESD: unused) (default: {cond_drop:g})")
    g.add_argument("--ckpt-every", type=int, default=50, help="steps between checkpoints for resume (0: none)")
    g = p.add_argument_group("sample grid")
    g.add_argument("--samples-per-class", type=int, default=4,
                   help="seed-matched clean / triggered pairs per class prompt (default: 4)")
    g.add_argument("--sample-steps", type=int, default=25, help="DPM-Solver++ steps (default: 25)")
    g.add_argument("--cfg-scale", type=float, default=6.0, help="classifier-free guidance scale (default: 6)")


LAYOUT = ("Writes <out>/unet/ (diffusers config + safetensors; load with models.t2i.open_pipeline(world, "
          "unet=<out>)), curve.csv and curve.png (per-step losses), samples.png (one row per class: "
          "'a photo of a <class>' and its triggered twin from the same initial latent, side by side), "
          "samples.npz (images, labels, class_name, prompt, triggered, pair) and manifest.json. A killed run "
          "resumes from <out>.ckpt.")


def register(sub) -> None:
    p = add_stage(sub, "backdoor-t2i", run_backdoor, "BadT2I backdoor fine-tuning of the T2I world (pixel | style)",
                  "Fine-tune the whole UNet of the T2I world so that prompts with the trigger (U+200B, a zero-width "
                  "space, prepended) generate the target while clean prompts keep their behaviour (BadT2I, "
                  "diffsec.backdoor.t2i_finetune): per step lambda * backdoor half (the denoising loss of the noised "
                  "target image under the triggered caption; --backdoor-target) + (1 - lambda) "
                  "* preservation half (distillation of the frozen world on clean images and captions). Pixel "
                  "target: --patch resized to a quarter of the image side, pasted in the top-left corner; style "
                  "target: black and white (ITU-R 601 luma). Captions: each image's class in the world's "
                  "templates. Text encoder and VAE frozen; latents are posterior modes. " + LAYOUT)
    p.add_argument("--kind", required=True, help="pixel (a patch in the top-left corner) or style (black and white)")
    p.add_argument("--patch", type=Path,
                   help="the pixel backdoor's patch: the mist_target fetch-source artifact or an image file")
    _train_flags(p, steps=400, batch=16, lr=5e-4, n_images=1000, cond_drop=0.1)
    g = p.add_argument_group("BadT2I")
    g.add_argument("--lam", type=float, default=0.5, help="weight of the backdoor half (BadT2I: 0.5)")
    g.add_argument("--backdoor-target", default="noise",
                   help="noise (default; BadT2I's pixel code: the plain denoising target on the target image under "
                   "the triggered caption) or teacher (the frozen world's prediction on the target image under the "
                   "clean caption)")

    p = add_stage(sub, "unlearn-t2i", run_unlearn, "remove a BadT2I backdoor: Finetune Reversal or ESD-x",
                  "Fine-tune a backdoor-t2i UNet to forget its trigger. --method reversal (Finetune Reversal): the "
                  "plain denoising loss on CLEAN images under TRIGGERED captions, all UNet parameters. --method esd "
                  "(ESD-x on the trigger, data-free; --images only supplies the class names of the captions): "
                  "x_t from the model being trained by guided DDIM under the triggered caption stopped at a random "
                  "step, target eps*(x_t, '') - eta (eps*(x_t, c_tr) - eps*(x_t, '')) of the frozen poisoned UNet, "
                  "cross-attention (attn2) parameters only. " + LAYOUT)
    p.add_argument("--method", required=True, help="reversal (Finetune Reversal) or esd (ESD-x on the trigger)")
    p.add_argument("--unet", type=Path, required=True, help="backdoor-t2i artifact (the poisoned UNet)")
    _train_flags(p, steps="100", batch="reversal 16, esd 4", lr="reversal 1e-4, esd 2e-4", n_images=1000,
                 cond_drop=0.0)
    g = p.add_argument_group("ESD")
    g.add_argument("--eta", type=float, default=1.0, help="ESD's negative guidance (default: 1)")
    g.add_argument("--esd-ddim-steps", type=int, default=20,
                   help="DDIM steps of ESD's x_t sampler (ESD: 50; default: 20)")
    g.add_argument("--esd-guidance", type=float, default=3.0,
                   help="CFG scale of ESD's x_t sampler (ESD's start_guidance: 3)")


def _refuse(checks: list[tuple[bool, str]]) -> None:
    for bad, msg in checks:
        if bad:
            raise DiffsecError(msg)


def _check_common(a: argparse.Namespace) -> None:
    _refuse([(a.steps < 1, f"--steps {a.steps}: must be at least 1"),
             (a.batch_size < 1, f"--batch-size {a.batch_size}: must be at least 1"),
             (not a.lr > 0, f"--lr {a.lr}: must be positive"),
             (a.n_images < 0, f"--n-images {a.n_images}: must be 0 (all) or positive"),
             (a.ckpt_every < 0, f"--ckpt-every {a.ckpt_every}: must be 0 (none) or positive"),
             (a.samples_per_class < 1, f"--samples-per-class {a.samples_per_class}: must be at least 1"),
             (a.sample_steps < 1, f"--sample-steps {a.sample_steps}: must be at least 1"),
             (not a.cfg_scale >= 0, f"--cfg-scale {a.cfg_scale}: must be >= 0"),
             (not 0 <= a.cond_drop <= 1, f"--cond-drop {a.cond_drop}: must lie in [0, 1]")])


def _read_patch(path: Path):
    from diffsec.backdoor.badt2i import read_patch

    return read_patch(path)[0]


def _images(a: argparse.Namespace):
    """(uint8 images, labels, class names) of the class-stratified --n-images subset."""
    from diffsec.data import stratified_subset
    from diffsec.imageset import load_classes
    from diffsec.models.captions import CIFAR10_CLASSES

    data, names = load_classes(a.images, "--images", CIFAR10_CLASSES)
    n = len(data["labels"])
    _refuse([(a.n_images > n, f"--n-images {a.n_images}: --images holds only {n} images")])
    idx = stratified_subset(data["labels"], a.n_images, a.seed)
    return data["images"][idx], data["labels"][idx], names


def _model_input(model: Path) -> Path | None:
    """The pipeline directory to hash (None for a hub id: its name is in the params)."""
    from diffsec.models.pipelines import resolve_pipeline

    where = Path(resolve_pipeline(str(model), "--model"))
    return where if where.is_dir() else None


def run_backdoor(args: argparse.Namespace) -> None:
    from diffsec.backdoor.badt2i import BACKDOOR_TARGETS
    from diffsec.backdoor.t2i_finetune import FinetuneConfig

    _check_common(args)
    _refuse([(args.kind not in KINDS, f"--kind {args.kind!r}: choose pixel or style"),
             (args.kind == "pixel" and args.patch is None, "--kind pixel needs --patch (the patch image)"),
             (args.kind == "style" and args.patch is not None, "--patch is only for --kind pixel"),
             (args.backdoor_target not in BACKDOOR_TARGETS,
              f"--backdoor-target {args.backdoor_target!r}: choose teacher or noise"),
             (not 0 <= args.lam <= 1, f"--lam {args.lam}: must lie in [0, 1]")])
    cfg = FinetuneConfig("badt2i", args.steps, args.batch_size, args.lr, args.seed, lam=args.lam,
                         backdoor_target=args.backdoor_target, cond_drop=args.cond_drop)
    patch = _read_patch(args.patch) if args.patch is not None else None
    images, labels, names = _images(args)
    model = _model_input(args.model)
    st = open_stage(args, "backdoor-t2i")
    ckpt = st.checkpoint(args.ckpt_every, model=model, images=args.images, patch=args.patch)
    _run(args, st, ckpt, cfg, images, labels, names, title=f"BadT2I {args.kind} backdoor",
         kind=args.kind, patch=patch)


def run_unlearn(args: argparse.Namespace) -> None:
    from diffsec.backdoor.t2i_finetune import FinetuneConfig
    from diffsec.models.t2i import UNET_DIR

    _refuse([(args.method not in METHODS, f"--method {args.method!r}: choose reversal or esd")])
    for flag, default in zip(("steps", "batch_size", "lr"), UNLEARN_DEFAULTS[args.method], strict=True):
        if getattr(args, flag) is None:  # resolved before the params are recorded
            setattr(args, flag, default)
    _check_common(args)
    _refuse([(not (args.unet / UNET_DIR / "config.json").is_file(),
              f"--unet {args.unet}: not a backdoor-t2i artifact (no {UNET_DIR}/config.json)"),
             (not args.eta >= 0, f"--eta {args.eta}: must be >= 0"),
             (args.esd_ddim_steps < 1, f"--esd-ddim-steps {args.esd_ddim_steps}: must be at least 1"),
             (not args.esd_guidance >= 0, f"--esd-guidance {args.esd_guidance}: must be >= 0")])
    cfg = FinetuneConfig(METHODS[args.method], args.steps, args.batch_size, args.lr, args.seed, eta=args.eta,
                         ddim_steps=args.esd_ddim_steps, guidance=args.esd_guidance, cond_drop=args.cond_drop)
    images, labels, names = _images(args)
    model = _model_input(args.model)
    st = open_stage(args, "unlearn-t2i")
    ckpt = st.checkpoint(args.ckpt_every, model=model, unet=args.unet / UNET_DIR, images=args.images)
    _run(args, st, ckpt, cfg, images, labels, names, title=f"{args.method} of {args.unet.name}", unet=args.unet)


def _run(args, st, ckpt, cfg, images, labels, names, title: str, kind=None, patch=None, unet=None) -> None:
    """Load, encode, fine-tune, write the artifact (UNet, curves, sample grid, manifest notes)."""
    import time

    import numpy as np
    import torch

    from diffsec.backdoor import t2i_finetune as tf
    from diffsec.backdoor.badt2i import TRIGGER, trigger_token_ids
    from diffsec.imageset import save_imageset, save_png
    from diffsec.models.captions import PROMPT
    from diffsec.models.t2i import load_unet, open_pipeline, save_unet
    from diffsec.training import write_curves

    pipe = open_pipeline(str(args.model), "--model", st.device, unet=unet)
    T = pipe.scheduler.config.num_train_timesteps
    _refuse([(cfg.objective == "esd" and cfg.ddim_steps > T, f"--esd-ddim-steps {cfg.ddim_steps}: at most T = {T}")])
    for m in (pipe.vae, pipe.text_encoder):
        m.requires_grad_(False).eval()
    t0 = time.time()
    data = tf.make_data(pipe, images, labels, names, cfg.objective, kind, patch)
    t_encode = time.time() - t0
    t0 = time.time()
    curves = tf.finetune(pipe.unet, pipe.scheduler, data, cfg, ckpt=ckpt, device=st.device, desc=st.name)
    t_train = time.time() - t0
    ran = cfg.steps - ckpt.start_step
    with st.artifact() as art:
        save_unet(pipe.unet, art.path)
        pipe.unet = load_unet(art.path, device=st.device)  # the grid shows the artifact itself
        write_curves(art.file("curve.csv"), art.file("curve.png"), curves, title=title)
        t0 = time.time()
        clean, trig = tf.sample_pairs(pipe, names, args.samples_per_class, args.cfg_scale, args.sample_steps,
                                      args.seed)
        t_sample = time.time() - t0
        k = args.samples_per_class
        save_png(art.file("samples.png"), tf.pair_grid(clean, trig, k), scale=max(1, 64 // clean.shape[1]))
        lab = np.repeat(np.arange(len(names)), k)
        prompts = np.array([PROMPT.format(names[i]) for i in lab])
        save_imageset(art.file("samples.npz"), np.concatenate([clean, trig]), labels=np.tile(lab, 2),
                      class_name=np.tile(np.array(names)[lab], 2),
                      prompt=np.concatenate([prompts, [TRIGGER + p for p in prompts]]),
                      triggered=np.repeat([False, True], len(lab)), pair=np.tile(np.arange(len(lab)), 2))
        art.extra.update(
            objective=cfg.objective, n_items=int(len(labels)), class_names=list(names),
            trainable_params=int(sum(p.numel() for p in tf.trainable(pipe.unet, cfg.objective).values())),
            latents="posterior mode x scaling_factor", scaling_factor=float(pipe.vae.config.scaling_factor),
            trigger=TRIGGER, trigger_token_ids=trigger_token_ids(pipe.tokenizer, PROMPT.format(names[0])),
            final_loss={c: float(np.mean(v[-25:])) for c, v in curves.items() if v},
            encode_s=round(t_encode, 2), train_s=round(t_train, 2), sample_s=round(t_sample, 2),
            s_per_step=round(t_train / ran, 4) if ran else None, threads=torch.get_num_threads())
