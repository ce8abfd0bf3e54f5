"""`diffsec train-ti`, `generate-ti`, `ssm-ti`: batched textual inversion, its samples, its SSMs."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, named_paths, open_stage
from diffsec.device import DTYPES

MODEL = "SD pipeline dir, a train-t2i artifact, or a hub id"


def register(sub) -> None:
    _train_parser(sub), _generate_parser(sub), _ssm_parser(sub)


def _train_parser(sub) -> None:
    p = sub.add_parser("train-ti", help="batched textual inversion: many runs on one base model", description=(
        "Learn one token per run (concept x training set x defense) with textual inversion, all runs in one batch: "
        "one text-encoder and one UNet call per step, per-run image/timestep/noise draws, losses and AdamW state. "
        "Writes embeddings.safetensors (keyed by run name), init.safetensors, runs.json, loss.csv and loss.png."))
    p.add_argument("--model", required=True, help=MODEL)
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    src = p.add_argument_group("runs: a JSON spec, or one defense over a grid of sets x concepts")
    src.add_argument("--runs", type=Path, help="run spec: JSON list (see personalize/runs.py)")
    src.add_argument("--sets", nargs="+", metavar="NAME=PATH", help="training sets, e.g. clean=concepts.npz "
                     "adm+=poison/adm+/images.npz; one run <concept>-<set> per (concept, set)")
    src.add_argument("--concepts", nargs="*", default=[],
                     help="with --sets: concepts to learn (default: every concept of the first set)")
    src.add_argument("--masks-from", default=None, help="with --sets: image set holding the masks")
    src.add_argument("--sampler", default="uniform", help="with --sets: timestep sampler (uniform, high:500, ...)")
    src.add_argument("--objective", default="nominal", help="with --sets: nominal | lm | im | lim | zm")
    src.add_argument("--dilation", type=int, default=0, help="with --sets: mask dilation, px at 512")
    p.add_argument("--steps", type=int, default=5000, help="steps per run (paper: 5000; CC101: 2500)")
    p.add_argument("--lr", type=float, default=5e-4, help="constant learning rate (paper: 5e-4)")
    p.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay (diffusers example: 1e-2)")
    p.add_argument("--ckpt-every", type=int, default=100, help="checkpoint period in steps (0: never)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the frozen VAE and UNet (the "
                   "text encoder and the learned rows stay float32); float16 halves GPU memory at SD 1.5 scale")
    add_common(p)
    p.set_defaults(func=train)


def _generate_parser(sub) -> None:
    p = sub.add_parser("generate-ti", help="images from learned textual-inversion tokens", description=(
        "Load every learned token into the base pipeline and sample --per-prompt images for each prompt template "
        "({0} = token, {1} = class noun), batched across runs. Writes images.npz (images + aligned run, prompt, "
        "template, class_name) and grid.png."))
    p.add_argument("--model", required=True, help=MODEL)
    p.add_argument("--embeddings", type=Path, required=True, help="train-ti artifact dir or its embeddings.safetensors")
    p.add_argument("--prompts", type=Path, required=True, help="prompts.json, a JSON list of templates, or a text file")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--per-prompt", type=int, default=5, help="images per prompt and run (paper: 5)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--sampler", choices=("dpm", "ddim"), default="dpm", help="DPM-Solver++ multistep or DDIM")
    p.add_argument("--batch", type=int, default=16, help="images per pipeline call")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN", help="only these runs")
    p.add_argument("--no-class-noun", action="store_true", help="templates with the token alone ({1} empty)")
    add_common(p)
    p.set_defaults(func=generate)


def _ssm_parser(sub) -> None:
    p = sub.add_parser("ssm-ti", help="semantic sensitivity maps of a learned token (SZT Fig. 3)", description=(
        "Eq. 6 maps of one run's token at several timesteps, for a clean image and optionally its poisoned version, "
        "before (class-noun init) and after TI. Writes ssm.png, maps.npz (images x embeddings x timesteps x h x w)."))
    p.add_argument("--model", required=True, help=MODEL)
    p.add_argument("--embeddings", type=Path, required=True, help="train-ti artifact directory")
    p.add_argument("--run", required=True, help="run name whose token is mapped")
    p.add_argument("--clean", type=Path, required=True, help="image set holding the clean image")
    p.add_argument("--poisoned", type=Path, default=None, help="image set of the poisoned images (same rows)")
    p.add_argument("--index", type=int, default=0, help="row of the image in the image sets")
    p.add_argument("--concept", default=None, help="use the first row of this concept instead of --index")
    p.add_argument("--prompt", default="a {} laying on top of a grass covered field", help="prompt, {} = the token")
    p.add_argument("--timesteps", type=json_arg, default=[100, 300, 500, 700, 900], help="JSON list")
    p.add_argument("--draws", type=int, default=16, help="random replacement vectors per map")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=ssm)


def _local(model: str) -> str | None:  # the model directory to hash as an input (None: a hub id)
    return model if Path(model).is_dir() else None


def train(args: argparse.Namespace) -> None:
    import json

    from diffsec.errors import DiffsecError
    from diffsec.models.pipelines import resolve_pipeline
    from diffsec.models.t2i import open_pipeline
    from diffsec.personalize.runs import grid_runs, load_runs
    from diffsec.personalize.textual_inversion import TIConfig, train_textual_inversion
    from diffsec.personalize.tokens import save_embeddings
    from diffsec.training import write_curves

    cfg = TIConfig(args.steps, args.lr, args.weight_decay, args.dtype)
    if (args.runs is None) == (args.sets is None):
        raise DiffsecError("give either --runs or --sets")
    if args.ckpt_every < 0:
        raise DiffsecError(f"--ckpt-every must be >= 0, got {args.ckpt_every}")
    runs, files = load_runs(args.runs, args.seed) if args.runs else grid_runs(
        named_paths(args.sets, "--sets"), args.concepts, args.masks_from, args.seed, sampler=args.sampler,
        objective=args.objective, dilation=args.dilation)
    model = resolve_pipeline(args.model)
    st = open_stage(args, "train-ti")
    pipe = open_pipeline(args.model)
    ckpt = st.checkpoint(args.ckpt_every, runs=args.runs, model=_local(model), **files)
    res = train_textual_inversion(pipe, runs, cfg, st.device, ckpt)
    with st.artifact() as art:
        save_embeddings(art.file("embeddings.safetensors"), res.embeddings, res.meta)
        save_embeddings(art.file("init.safetensors"), res.init, res.meta)
        art.file("runs.json").write_text(json.dumps([r.describe() for r in runs], indent=2))
        write_curves(art.file("loss.csv"), art.file("loss.png"), res.curves(), ylabel="TI loss")
        art.extra.update(**res.summary(), optimizer=cfg.describe(), model_source=model)
    print(f"train-ti: {len(runs)} runs x {args.steps} steps -> {args.out}")


def generate(args: argparse.Namespace) -> None:
    from diffsec.imageset import grid, save_imageset, save_png
    from diffsec.models.pipelines import resolve_pipeline
    from diffsec.models.t2i import open_pipeline
    from diffsec.personalize.generate import GenerateConfig, generate_ti, grid_rows, load_templates
    from diffsec.personalize.tokens import load_embeddings

    cfg = GenerateConfig(args.per_prompt, args.steps, args.guidance, args.sampler, args.batch, not args.no_class_noun)
    templates = load_templates(args.prompts)
    vectors, meta = load_embeddings(args.embeddings, only=args.only)
    model = resolve_pipeline(args.model)
    st = open_stage(args, "generate-ti")
    pipe = open_pipeline(args.model).to(st.device)
    emb_file = args.embeddings / "embeddings.safetensors" if args.embeddings.is_dir() else args.embeddings
    ckpt = st.checkpoint(1, embeddings=emb_file, prompts=args.prompts, model=_local(model))
    out = generate_ti(pipe, vectors, meta, templates, cfg, args.seed, ckpt)
    with st.artifact() as art:
        save_imageset(art.file("images.npz"), **out)
        k = min(8, len(templates))  # one row per run: its first image for each of the first 8 prompts
        save_png(art.file("grid.png"), grid(out["images"][grid_rows(out, list(vectors), k)], nrow=k),
                 scale=max(1, 64 // out["images"].shape[1]))
        art.extra.update(n_images=len(out["images"]), runs=list(vectors), templates=templates, model_source=model)
    print(f"generate-ti: {len(out['images'])} images for {len(vectors)} runs -> {args.out}")


def ssm(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.defense.timesteps import check_timesteps
    from diffsec.errors import DiffsecError
    from diffsec.models.pipelines import resolve_pipeline
    from diffsec.models.t2i import open_pipeline
    from diffsec.personalize.ssm import maps_arrays, pick_images, run_embeddings, sensitivity_figure

    ts = check_timesteps(args.timesteps)
    if args.draws < 1 or "{}" not in args.prompt:
        raise DiffsecError("--draws must be >= 1 and --prompt needs {} where the token goes")
    token, embeddings = run_embeddings(args.embeddings, args.run)
    images = pick_images({"clean": args.clean, "poisoned": args.poisoned}, args.index, args.concept)
    model = resolve_pipeline(args.model)
    st = open_stage(args, "ssm-ti")
    pipe = open_pipeline(args.model).to(st.device)
    st.add_inputs(embeddings=args.embeddings, clean=args.clean, poisoned=args.poisoned, model=_local(model))
    with st.artifact() as art:
        maps = sensitivity_figure(art.file("ssm.png"), pipe, images, embeddings, token, args.prompt.format(token),
                                  ts, args.draws, args.seed)
        np.savez(art.file("maps.npz"), **maps_arrays(maps, ts))
        art.extra.update(token=token, mean_ssm={f"{i}/{e}": float(m.mean()) for (i, e), m in maps.items()})
    print(f"ssm-ti: {len(images)} images x {len(embeddings)} embeddings x {len(ts)} timesteps -> {args.out}")
