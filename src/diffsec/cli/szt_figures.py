"""SZT figures: loss per timestep (Fig. 4), perturbation histograms (Fig. 7), TI grids (Fig. 8)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, named_paths, open_stage, params_of


def register(sub) -> None:
    p = sub.add_parser("figure-loss-per-t", help="noise-prediction loss per timestep, clean vs poisoned (SZT Fig. 4)",
                       description="Mean noise-prediction loss of the frozen T2I model at each timestep on the "
                       "clean set and on poisoned versions of it, with the same noise for every set. Writes "
                       "loss_per_t.csv and loss_per_t.png.")
    p.add_argument("--model", required=True, help="SD pipeline dir, a train-t2i artifact, or a hub id")
    p.add_argument("--sets", nargs="+", required=True, metavar="NAME=NPZ", help="clean=... adm+=... (same rows)")
    p.add_argument("--timesteps", type=json_arg, default=list(range(0, 1000, 50)), help="JSON list")
    p.add_argument("--draws", type=int, default=4, help="noise draws per image and timestep")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=loss_per_t)

    p = sub.add_parser("figure-perturbations", help="histograms of poison perturbations, raw and after JPEG (Fig. 7)",
                       description="For each poisoned set: histogram of (poisoned - clean) and of (JPEG(poisoned) - "
                       "clean) over every pixel. Writes <name>.png per set and stats.json.")
    p.add_argument("--clean", type=Path, required=True, help="clean image set (npz)")
    p.add_argument("--poisoned", nargs="+", required=True, metavar="NAME=NPZ", help="poisoned sets, same rows")
    p.add_argument("--quality", type=int, default=25, help="JPEG quality (default: 25)")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.set_defaults(func=perturbations)

    p = sub.add_parser("figure-ti-grid", help="one run's generated images under each defense (SZT Fig. 8)",
                       description="A grid with one row per defense: the first --n images generate-ti made for --run. "
                       "Writes grid.png and the row labels in rows.json.")
    p.add_argument("--generated", nargs="+", required=True, metavar="DEFENSE=DIR", help="generate-ti artifacts")
    p.add_argument("--run", required=True, help="run name, e.g. dog-adm+")
    p.add_argument("--n", type=int, default=8, help="images per row")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.set_defaults(func=ti_grid)


def loss_per_t(args: argparse.Namespace) -> None:
    from diffsec.defense.images import load_sets
    from diffsec.defense.timesteps import check_timesteps
    from diffsec.errors import DiffsecError
    from diffsec.models.t2i import open_pipeline
    from diffsec.poison import LatentDiffusion
    from diffsec.poison.loss_curve import loss_per_timestep, write_loss_per_timestep
    from diffsec.poison.run import prompts_for

    ts = check_timesteps(args.timesteps)
    if args.draws < 1:
        raise DiffsecError("--draws must be positive")
    files = named_paths(args.sets, "--sets")
    data = load_sets(files, "--sets")
    first = next(iter(data.values()))
    st = open_stage(args, "figure-loss-per-t")
    ldm = LatentDiffusion(open_pipeline(args.model), st.device)
    prompts = prompts_for(first, "class" if "class_name" in first else "empty", "--sets")
    curves = loss_per_timestep(ldm, {k: d["images"] for k, d in data.items()}, prompts, ts, args.draws, args.seed)
    st.add_inputs(**files)
    with st.artifact() as art:
        write_loss_per_timestep(art.file("loss_per_t.csv"), art.file("loss_per_t.png"), curves, ts,
                                f"{len(first['images'])} images, {args.draws} draws per t")
        art.extra.update(mean_loss={k: float(c.mean()) for k, c in curves.items()})
    print(f"figure-loss-per-t: {len(curves)} sets x {len(ts)} timesteps -> {args.out}")


def perturbations(args: argparse.Namespace) -> None:
    import json

    from diffsec.artifact import artifact_dir
    from diffsec.defense.figures import perturbation_histograms
    from diffsec.defense.images import load_sets
    from diffsec.errors import DiffsecError

    if not 1 <= args.quality <= 100:
        raise DiffsecError(f"--quality must be in 1..100, got {args.quality}")
    clean = load_sets({"clean": args.clean}, "--clean")["clean"]["images"]
    files = named_paths(args.poisoned, "--poisoned")
    sets = {k: d["images"] for k, d in load_sets(files, "--poisoned", clean.shape).items()}
    with artifact_dir(args.out, "figure-perturbations", params_of(args)) as art:
        for k, f in {"clean": args.clean, **files}.items():
            art.add_input(k, f)
        stats = {k: perturbation_histograms(clean, v, art.file(f"{k}.png"), args.quality, title=k)
                 for k, v in sets.items()}
        art.file("stats.json").write_text(json.dumps(stats, indent=2))
    print(f"figure-perturbations: {len(sets)} sets -> {args.out}")


def ti_grid(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, save_png
    from diffsec.personalize.generate import first_images

    if args.n < 1:
        raise DiffsecError("--n must be positive")
    dirs = named_paths(args.generated, "--generated")
    rows = [first_images(Path(d) / "images.npz", args.run, args.n) for d in dirs.values()]
    with artifact_dir(args.out, "figure-ti-grid", params_of(args)) as art:
        for k, d in dirs.items():
            art.add_input(k, Path(d) / "images.npz")
        save_png(art.file("grid.png"), grid(np.concatenate(rows), nrow=args.n), scale=max(1, 64 // rows[0].shape[1]))
        art.file("rows.json").write_text(json.dumps(list(dirs), indent=2))
    print(f"figure-ti-grid: {len(rows)} defenses x {args.n} images of {args.run} -> {args.out}")
