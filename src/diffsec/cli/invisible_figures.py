"""InvisibleDiffusion figures: sampling trajectories (Fig. 2), generated targets (Fig. 3) and the
lambda / training-steps ablation curves (Figs. 4 and 5)."""

import argparse
from pathlib import Path

from diffsec.cli.common import named_paths
from diffsec.errors import DiffsecError


def register(sub) -> None:
    for stage, help_, desc, func in (
            ("figure-backdoor-trajectories", "Fig. 2: reverse trajectories side by side",
             "One row per NAME=DIR backdoor-sample artifact: the first recorded trajectory from x_T (left) to "
             "x_0 (right); triggered noise for attacks, clean noise for the benign row (NAME 'benign').",
             run_trajectories),
            ("figure-backdoor-targets", "Fig. 3: images generated from triggered noise",
             "One block of 2 rows per NAME=DIR backdoor-sample artifact: its first 16 samples from triggered noise.",
             run_targets)):
        p = sub.add_parser(stage, help=help_, description=desc)
        p.add_argument("--samples", nargs="+", required=True, help="NAME=DIR backdoor-sample artifacts")
        p.add_argument("--out", type=Path, required=True)
        p.set_defaults(func=func)

    p = sub.add_parser("figure-backdoor-ablation", help="Figs. 4 and 5: lambda and training-steps sweeps",
                       description="A-Prec and ASR against lambda (DDPM and DDIM; attacker chain and ordinary "
                       "sampler), and benign FID / precision / recall with A-Prec / ASR against the share of "
                       "fine-tuning steps (DDIM), drawn from the invisible_ablation table (error bars: 1.96 se).")
    p.add_argument("--table", type=Path, required=True,
                   help="invisible_ablation.csv (table-invisible-ablation): its invisible_lambda and "
                   "invisible_steps rows")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=run_ablation)


def _files(rows: dict[str, str], name_of, hint: str = "") -> dict[str, Path]:
    """NAME -> the file `name_of(NAME)` in its directory, each of which must exist."""
    files = {name: Path(d) / name_of(name) for name, d in rows.items()}
    for name, f in files.items():
        if not f.is_file():
            raise DiffsecError(f"{rows[name]} has no {f.name}{hint}")
    return files


def run_trajectories(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.backdoor.figures import trajectories

    rows = named_paths(args.samples, "--samples")
    files = _files(rows, lambda k: f"trajectory_{'clean' if k == 'benign' else 'trigger'}.npz", " (--trajectory 0)")
    with artifact_dir(args.out, "figure-backdoor-trajectories", {"samples": rows}) as art:
        trajectories({k: np.load(f)["frames"][:, 0] for k, f in files.items()},   # T_frames x C x H x W, sample 0
                     art.file("trajectories.png"))
        for name, f in files.items():
            art.add_input(name, f)


def run_targets(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir
    from diffsec.backdoor.figures import targets
    from diffsec.imageset import load_imageset

    files = _files(rows := named_paths(args.samples, "--samples"), lambda name: "trigger.npz")
    with artifact_dir(args.out, "figure-backdoor-targets", {"samples": rows}) as art:
        targets({k: load_imageset(f)["images"] for k, f in files.items()}, art.file("targets.png"))
        for name, f in files.items():
            art.add_input(name, f)


def run_ablation(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir
    from diffsec.backdoor.figures import lambda_sweep, steps_sweep, sweep_series
    from diffsec.paper.invisible import lambda_of, share_of
    from diffsec.tables import read_table

    if not args.table.is_file():
        raise DiffsecError(f"--table {args.table}: no such file")
    rows = read_table(args.table)
    series = {}
    for table, x_of in (("invisible_lambda", lambda_of), ("invisible_steps", share_of)):
        series[table] = sweep_series(rows, table, x_of)
        if "DDIM" not in series[table]:
            raise DiffsecError(f"--table {args.table}: no measured DDIM cells of {table} "
                               "(not a table-invisible-ablation CSV?)")
    with artifact_dir(args.out, "figure-backdoor-ablation", {"table": str(args.table)}) as art:
        lambda_sweep(series["invisible_lambda"], art.file("lambda.png"))
        backbone = next((r["backbone"] for r in rows if r["table"] == "invisible_steps" and r["metric"] == "fid"), "")
        steps_sweep(series["invisible_steps"], art.file("steps.png"), backbone)
        art.add_input("table", args.table)
