"""SZT figures: loss per timestep (Fig. 4), perturbation histograms (Fig. 7), TI grids (Fig. 8)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, named_paths, params_of, setup


def _named(items: list[str], flag: str) -> dict[str, Path]:
    return {k: Path(v) for k, v in named_paths(items, flag).items()}


def register(sub) -> None:
    p = sub.add_parser("figure-loss-per-t", help="noise-prediction loss per timestep, clean vs poisoned (SZT Fig. 4)",
                       description="Mean noise-prediction loss of the frozen T2I model at each timestep on "
                       "the clean set and on poisoned versions of it, with the same noise for every set. "
                       "Writes loss_per_t.csv and loss_per_t.png.")
    p.add_argument("--model", required=True, help="SD pipeline dir, a train-t2i artifact, or a hub id")
    p.add_argument("--sets", nargs="+", required=True, metavar="NAME=NPZ", help="clean=... adm+=... (same rows)")
    p.add_argument("--timesteps", type=json_arg, default=list(range(0, 1000, 50)), help="JSON list")
    p.add_argument("--draws", type=int, default=4, help="noise draws per image and timestep")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=loss_per_t)

    p = sub.add_parser("figure-perturbations", help="histograms of poison perturbations, raw and after JPEG (SZT Fig. 7)",
                       description="For each poisoned set: histogram of (poisoned - clean) and of "
                       "(JPEG(poisoned) - clean) over every pixel. Writes <name>.png per set and stats.json.")
    p.add_argument("--clean", type=Path, required=True, help="clean image set (npz)")
    p.add_argument("--poisoned", nargs="+", required=True, metavar="NAME=NPZ", help="poisoned sets, same rows")
    p.add_argument("--quality", type=int, default=25, help="JPEG quality (default: 25)")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.set_defaults(func=perturbations)

    p = sub.add_parser("figure-ti-grid", help="one run's generated images under each defense (SZT Fig. 8)",
                       description="A grid with one row per defense: the first --n images generate-ti made "
                       "for --run. Writes grid.png and the row labels in rows.json.")
    p.add_argument("--generated", nargs="+", required=True, metavar="DEFENSE=DIR", help="generate-ti artifacts")
    p.add_argument("--run", required=True, help="run name, e.g. dog-adm+")
    p.add_argument("--n", type=int, default=8, help="images per row")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.set_defaults(func=ti_grid)


def loss_per_t(args: argparse.Namespace) -> None:
    import csv

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset
    from diffsec.models.pipelines import resolve_pipeline
    from diffsec.models.t2i import PROMPT, load_pipeline
    from diffsec.poison import LatentDiffusion
    from diffsec.poison.loss_curve import loss_per_timestep, plot_loss_per_timestep

    files = _named(args.sets, "--sets")
    data = {k: load_imageset(v) for k, v in files.items()}
    first = next(iter(data.values()))
    if any(d["images"].shape != first["images"].shape for d in data.values()):
        raise DiffsecError("--sets must hold the same images in the same shape")
    ts = args.timesteps
    if not isinstance(ts, list) or not ts or not all(isinstance(t, int) and 0 <= t < 1000 for t in ts):
        raise DiffsecError("--timesteps must be a JSON list of integers in 0..999")
    if args.draws < 1:
        raise DiffsecError("--draws must be positive")
    device = setup(args)
    model = resolve_pipeline(args.model)
    ldm = LatentDiffusion(load_pipeline(model, "cpu"), device)
    names = first.get("class_name")
    prompts = [PROMPT.format(c) for c in names.astype(str)] if names is not None else [""] * len(first["images"])
    curves = loss_per_timestep(ldm, {k: d["images"] for k, d in data.items()}, prompts, ts, args.draws, args.seed)
    with artifact_dir(args.out, "figure-loss-per-t", params_of(args)) as art:
        art.device = str(device)
        for k, f in files.items():
            art.add_input(k, f)
        with open(art.file("loss_per_t.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestep", *curves])
            for i, t in enumerate(ts):
                w.writerow([t, *(f"{c[i]:.6g}" for c in curves.values())])
        plot_loss_per_timestep(curves, ts, art.file("loss_per_t.png"),
                               f"{len(first['images'])} images, {args.draws} draws per t")
        art.extra.update(mean_loss={k: float(c.mean()) for k, c in curves.items()})
    print(f"figure-loss-per-t: {len(curves)} sets x {len(ts)} timesteps -> {args.out}")


def perturbations(args: argparse.Namespace) -> None:
    import json

    from diffsec.artifact import artifact_dir
    from diffsec.defense.figures import perturbation_histograms
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset

    if not 1 <= args.quality <= 100:
        raise DiffsecError(f"--quality must be in 1..100, got {args.quality}")
    files = _named(args.poisoned, "--poisoned")
    clean = load_imageset(args.clean)["images"]
    sets = {k: load_imageset(v)["images"] for k, v in files.items()}
    for k, v in sets.items():
        if v.shape != clean.shape:
            raise DiffsecError(f"--poisoned {k}: shape {v.shape} differs from the clean set {clean.shape}")
    with artifact_dir(args.out, "figure-perturbations", params_of(args)) as art:
        art.add_input("clean", args.clean)
        stats = {}
        for k, v in sets.items():
            art.add_input(k, files[k])
            stats[k] = perturbation_histograms(clean, v, art.file(f"{k}.png"), args.quality, title=k)
        art.file("stats.json").write_text(json.dumps(stats, indent=2))
    print(f"figure-perturbations: {len(sets)} sets -> {args.out}")


def ti_grid(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, load_imageset, save_png

    if args.n < 1:
        raise DiffsecError("--n must be positive")
    dirs = _named(args.generated, "--generated")
    rows = []
    for name, d in dirs.items():
        data = load_imageset(d / "images.npz")
        idx = np.flatnonzero(data["run"].astype(str) == args.run)[:args.n]
        if len(idx) < args.n:
            raise DiffsecError(f"{d}: only {len(idx)} images of run {args.run!r} (need --n {args.n})")
        rows.append(data["images"][idx])
    with artifact_dir(args.out, "figure-ti-grid", params_of(args)) as art:
        for k, d in dirs.items():
            art.add_input(k, d / "images.npz")
        save_png(art.file("grid.png"), grid(np.concatenate(rows), nrow=args.n),
                 scale=max(1, 64 // rows[0].shape[1]))
        art.file("rows.json").write_text(json.dumps(list(dirs), indent=2))
    print(f"figure-ti-grid: {len(rows)} defenses x {args.n} images of {args.run} -> {args.out}")
