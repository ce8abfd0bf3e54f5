"""`diffsec train-ti`, `generate-ti`, `ssm-ti`: batched textual inversion, its samples, its SSMs."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.models.pipelines import resolve_pipeline
from diffsec.cli.common import add_common, json_arg, named_paths, params_of, setup


def register(sub) -> None:
    p = sub.add_parser(
        "train-ti", help="batched textual inversion: many runs on one base model",
        description="Learn one token per run (concept x training set x defense) with textual "
        "inversion, all runs in one batch: one text-encoder and one UNet call per step, per-run "
        "image/timestep/noise draws, losses and AdamW state. Writes embeddings.safetensors "
        "(keyed by run name), runs.json, loss.csv and loss.png.")
    p.add_argument("--model", required=True, help="SD pipeline dir, a train-t2i artifact, or a hub id")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    src = p.add_argument_group("runs: a JSON spec, or one defense over a grid of sets x concepts")
    src.add_argument("--runs", type=Path, help="run spec: JSON list (see personalize/runs.py)")
    src.add_argument("--sets", nargs="+", metavar="NAME=PATH",
                     help="training sets, e.g. clean=concepts.npz adm+=poison/adm+/images.npz; "
                     "one run per (concept, set), named <concept>-<set>")
    src.add_argument("--concepts", nargs="*", default=[],
                     help="with --sets: concepts to learn (default: every concept of the first set)")
    src.add_argument("--masks-from", default=None, help="with --sets: image set holding the masks")
    src.add_argument("--sampler", default="uniform", help="with --sets: timestep sampler spec "
                     "(uniform, high:500, low:300, power:2, tanh:5)")
    src.add_argument("--objective", default="nominal", help="with --sets: nominal | lm | im | lim | zm")
    src.add_argument("--dilation", type=int, default=0, help="with --sets: mask dilation, px at 512")
    p.add_argument("--steps", type=int, default=5000, help="steps per run (paper: 5000; CC101: 2500)")
    p.add_argument("--lr", type=float, default=5e-4, help="constant learning rate (paper: 5e-4)")
    p.add_argument("--weight-decay", type=float, default=1e-2,
                   help="AdamW decoupled weight decay on the new rows (diffusers example: 1e-2)")
    p.add_argument("--ckpt-every", type=int, default=100, help="checkpoint period in steps (0: never)")
    add_common(p)
    p.set_defaults(func=train)

    p = sub.add_parser(
        "generate-ti", help="images from learned textual-inversion tokens",
        description="Load every learned token into the base pipeline and sample --per-prompt "
        "images for each prompt template ({0} = token, {1} = class noun), batched across runs. "
        "Writes images.npz (images + aligned run, prompt, template, class_name) and grid.png.")
    p.add_argument("--model", required=True, help="SD pipeline dir, a train-t2i artifact, or a hub id")
    p.add_argument("--embeddings", type=Path, required=True,
                   help="train-ti artifact dir or its embeddings.safetensors")
    p.add_argument("--prompts", type=Path, required=True,
                   help="prepare-dreambooth prompts.json, a JSON list of templates, or a text file")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--per-prompt", type=int, default=5, help="images per prompt and run (paper: 5)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--sampler", choices=("dpm", "ddim"), default="dpm",
                   help="DPM-Solver++ multistep or DDIM")
    p.add_argument("--batch", type=int, default=16, help="images per pipeline call")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN", help="only these runs")
    p.add_argument("--no-class-noun", action="store_true",
                   help="format templates with the token alone ({1} left empty)")
    add_common(p)
    p.set_defaults(func=generate)

    p = sub.add_parser(
        "ssm-ti", help="semantic sensitivity maps of a learned token (SZT Fig. 3)",
        description="Eq. 6 maps of one run's token at several timesteps, for a clean image and "
        "optionally its poisoned version, before (class-noun init) and after textual inversion. "
        "Writes ssm.png and maps.npz (maps: images x embeddings x timesteps x h x w).")
    p.add_argument("--model", required=True, help="SD pipeline dir, a train-t2i artifact, or a hub id")
    p.add_argument("--embeddings", type=Path, required=True, help="train-ti artifact directory")
    p.add_argument("--run", required=True, help="run name whose token is mapped")
    p.add_argument("--clean", type=Path, required=True, help="image set holding the clean image")
    p.add_argument("--poisoned", type=Path, default=None, help="image set of the poisoned images (same rows)")
    p.add_argument("--index", type=int, default=0, help="row of the image in the image sets")
    p.add_argument("--concept", default=None, help="use the first row of this concept instead of --index")
    p.add_argument("--prompt", default="a {} laying on top of a grass covered field",
                   help="prompt with {} for the token (the paper's Fig. 3 prompt)")
    p.add_argument("--timesteps", type=json_arg, default=[100, 300, 500, 700, 900], help="JSON list")
    p.add_argument("--draws", type=int, default=16, help="random replacement vectors per map")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=ssm)


def _positive(**values) -> None:
    from diffsec.errors import DiffsecError

    for k, v in values.items():
        if v is None or v <= 0:
            raise DiffsecError(f"--{k.replace('_', '-')} must be positive, got {v}")


def _load(model: str):
    from diffsec.errors import DiffsecError
    from diffsec.models.t2i import load_pipeline

    try:
        return load_pipeline(model, "cpu")
    except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad model
        raise DiffsecError(f"--model {model}: cannot load a StableDiffusionPipeline ({e})") from None


def _inputs(model: str, files: dict[str, str]) -> dict[str, str]:
    from diffsec.artifact import hash_path

    out = {k: hash_path(v) for k, v in files.items()}
    if Path(model).is_dir():
        out["model"] = hash_path(model)
    return out


def _runs_of(args: argparse.Namespace):
    """The validated runs of `--runs` or of the `--sets` grid, and the files they read."""
    import numpy as np

    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset
    from diffsec.personalize.runs import grid_specs, load_runs, parse_runs

    if (args.runs is None) == (args.sets is None):
        raise DiffsecError("give either --runs or --sets")
    if args.runs is not None:
        return load_runs(args.runs, args.seed)
    sets = named_paths(args.sets, "--sets")
    concepts = args.concepts
    if not concepts:
        first = load_imageset(next(iter(sets.values())))
        if "concept" not in first:
            raise DiffsecError(f"--sets: {next(iter(sets.values()))} has no 'concept' array")
        concepts = list(dict.fromkeys(np.asarray(first["concept"]).astype(str)))
    specs = grid_specs(sets, concepts, args.masks_from, sampler=args.sampler,
                       objective=args.objective, dilation=args.dilation)
    return parse_runs(specs, args.seed)


def train(args: argparse.Namespace) -> None:
    import json
    import time

    from tqdm import tqdm

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.models.t2i_train import Checkpoint
    from diffsec.personalize.textual_inversion import (TIConfig, train_textual_inversion,
                                                       write_loss_curves)
    from diffsec.personalize.tokens import save_embeddings

    # Everything that can be wrong with the input is checked before anything is written.
    _positive(steps=args.steps, lr=args.lr)
    if args.ckpt_every < 0 or args.weight_decay < 0:
        raise DiffsecError("--ckpt-every and --weight-decay must be >= 0")
    runs, files = _runs_of(args)
    model = resolve_pipeline(args.model)
    device = setup(args)
    pipe = _load(model)
    inputs = _inputs(model, {**({"runs": str(args.runs)} if args.runs else {}), **files})
    cfg = TIConfig(steps=args.steps, lr=args.lr, weight_decay=args.weight_decay)
    ckpt = Checkpoint(args.out.with_name(args.out.name + ".ckpt"), args.ckpt_every)
    bar = tqdm(total=args.steps, desc=f"train-ti ({len(runs)} runs)", unit=" step")

    def on_step(step, losses):
        bar.set_postfix(loss=f"{losses.mean():.4g}", refresh=False)
        bar.update(step - bar.n)  # the first call jumps over steps a resumed checkpoint covers

    t0 = time.perf_counter()
    res = train_textual_inversion(pipe, runs, cfg, device, ckpt, key=json.dumps(inputs, sort_keys=True),
                                  on_step=on_step)
    bar.close()
    seconds = time.perf_counter() - t0
    with artifact_dir(args.out, "train-ti", params_of(args)) as art:
        art.device = str(device)
        art.inputs.update(inputs)
        save_embeddings(art.file("embeddings.safetensors"), res.embeddings, res.meta)
        save_embeddings(art.file("init.safetensors"), res.init, res.meta)
        art.file("runs.json").write_text(json.dumps([r.describe() for r in runs], indent=2))
        write_loss_curves(res.losses, [r.name for r in runs], art.file("loss.csv"), art.file("loss.png"))
        trained = args.steps - res.resumed_from
        art.extra.update(
            n_runs=len(runs), resumed_from=res.resumed_from, train_seconds=round(seconds, 3),
            run_steps_per_second=round(len(runs) * trained / max(seconds, 1e-9), 3),
            optimizer={"kind": "AdamW, per run", "lr": args.lr, "betas": list(cfg.betas),
                       "eps": cfg.eps, "weight_decay": args.weight_decay, "schedule": "constant"},
            loss_first_100=float(res.losses[:, :100].mean()), loss_last_100=float(res.losses[:, -100:].mean()),
            model_source=model)
    ckpt.clear()
    print(f"train-ti: {len(runs)} runs x {args.steps} steps -> {args.out}")


def generate(args: argparse.Namespace) -> None:
    import hashlib
    import json
    import shutil

    import numpy as np
    from tqdm import tqdm

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, save_imageset, save_png
    from diffsec.personalize.generate import generate_ti, load_templates
    from diffsec.personalize.tokens import load_embeddings

    _positive(per_prompt=args.per_prompt, steps=args.steps, batch=args.batch)
    templates = load_templates(args.prompts)
    vectors, meta = load_embeddings(args.embeddings)
    if args.only:
        missing = sorted(set(args.only) - set(vectors))
        if missing:
            raise DiffsecError(f"--only: no runs {missing} in {args.embeddings}")
        vectors = {k: vectors[k] for k in args.only}
    model = resolve_pipeline(args.model)
    device = setup(args)
    pipe = _load(model).to(device)
    emb_file = args.embeddings / "embeddings.safetensors" if args.embeddings.is_dir() else args.embeddings
    inputs = _inputs(model, {"embeddings": str(emb_file), "prompts": str(args.prompts)})
    # Finished batches wait beside the output, keyed to the settings, until the stage completes.
    key = hashlib.sha256(json.dumps([params_of(args, skip=("out", "threads", "device")), inputs],
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    parts = args.out.with_name(f"{args.out.name}.parts-{key}")
    total = len(vectors) * len(templates) * args.per_prompt
    bar = tqdm(total=total, desc=f"generate-ti ({len(vectors)} runs)", unit=" img")
    out = generate_ti(pipe, vectors, meta, templates, args.per_prompt, args.steps, args.guidance,
                      args.seed, args.batch, args.sampler, not args.no_class_noun, parts=parts,
                      on_batch=bar.update)
    bar.close()
    with artifact_dir(args.out, "generate-ti", params_of(args)) as art:
        art.device = str(device)
        art.inputs.update(inputs)
        classes = np.array([meta[r]["class"] for r in out["run"]])
        save_imageset(art.file("images.npz"), out["images"], run=out["run"], prompt=out["prompt"],
                      template=out["template"], class_name=classes)
        # One row per run: its first image for each of the first 8 prompts.
        first = [np.flatnonzero((out["run"] == r) & (out["template"] == j))[0]
                 for r in vectors for j in range(min(8, len(templates)))]
        save_png(art.file("grid.png"), grid(out["images"][first], nrow=min(8, len(templates))),
                 scale=max(1, 64 // out["images"].shape[1]))
        art.extra.update(n_images=int(len(out["images"])), runs=list(vectors), templates=templates,
                         model_source=model)
    for stale in args.out.parent.glob(f"{args.out.name}.parts-*"):  # this one and any of old settings
        shutil.rmtree(stale, ignore_errors=True)
    print(f"generate-ti: {len(out['images'])} images for {len(vectors)} runs -> {args.out}")


def ssm(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset
    from diffsec.personalize.ssm import sensitivity_figure
    from diffsec.personalize.tokens import load_embeddings

    _positive(draws=args.draws)
    ts = args.timesteps
    if not isinstance(ts, list) or not ts or not all(isinstance(t, int) and 0 <= t < 1000 for t in ts):
        raise DiffsecError("--timesteps must be a JSON list of integers in 0..999")
    if "{}" not in args.prompt:
        raise DiffsecError("--prompt needs {} where the token goes")
    after, meta = load_embeddings(args.embeddings)
    before, _ = load_embeddings(args.embeddings / "init.safetensors") if args.embeddings.is_dir() else ({}, {})
    if args.run not in after:
        raise DiffsecError(f"--run {args.run!r} is not in {args.embeddings} ({sorted(after)})")
    images = {}
    if args.concept is not None:
        concepts = load_imageset(args.clean).get("concept")
        rows = np.flatnonzero(concepts.astype(str) == args.concept) if concepts is not None else []
        if not len(rows):
            raise DiffsecError(f"--concept {args.concept!r}: no such rows in {args.clean}")
        args.index = int(rows[0])
    for label, path in (("clean", args.clean), ("poisoned", args.poisoned)):
        if path is not None:
            data = load_imageset(path)
            if not 0 <= args.index < len(data.get("images", [])):
                raise DiffsecError(f"{path}: no image row {args.index}")
            images[label] = data["images"][args.index]
    model = resolve_pipeline(args.model)
    device = setup(args)
    pipe = _load(model).to(device)
    token = meta[args.run]["token"]
    embeddings = {**({"before TI": before[args.run]} if args.run in before else {}),
                  "after TI": after[args.run]}
    with artifact_dir(args.out, "ssm-ti", params_of(args)) as art:
        art.device = str(device)
        art.inputs.update(_inputs(model, {k: str(v) for k, v in
                                          (("embeddings", args.embeddings), ("clean", args.clean),
                                           ("poisoned", args.poisoned)) if v is not None}))
        maps = sensitivity_figure(art.file("ssm.png"), pipe, images, embeddings, token,
                                  args.prompt.format(token), ts, args.draws, args.seed)
        np.savez(art.file("maps.npz"), timesteps=np.array(ts), images=np.array(list(images)),
                 embeddings=np.array(list(embeddings)),
                 maps=np.stack([np.stack([maps[(i, e)].numpy() for e in embeddings]) for i in images]))
        art.extra.update(token=token, mean_ssm={f"{i}/{e}": float(m.mean()) for (i, e), m in maps.items()})
    print(f"ssm-ti: {len(images)} images x {len(embeddings)} embeddings x {len(ts)} timesteps -> {args.out}")
