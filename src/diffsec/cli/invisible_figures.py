"""InvisibleDiffusion figures: sampling trajectories (Fig. 2), generated targets (Fig. 3) and the
lambda / training-steps ablation curves (Figs. 4 and 5)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffsec.cli.common import named_paths


def register(sub) -> None:
    p = sub.add_parser("figure-backdoor-trajectories", help="Fig. 2: reverse trajectories side by side",
                       description="One row per NAME=DIR backdoor-sample artifact: the first recorded "
                       "trajectory from x_T (left) to x_0 (right); triggered noise for attacks, clean "
                       "noise for the benign row (NAME 'benign').")
    p.add_argument("--samples", nargs="+", required=True, help="NAME=DIR backdoor-sample artifacts")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=run_trajectories)

    p = sub.add_parser("figure-backdoor-targets", help="Fig. 3: images generated from triggered noise",
                       description="One block of 2 rows per NAME=DIR backdoor-sample artifact: its first "
                       "16 samples from triggered noise.")
    p.add_argument("--samples", nargs="+", required=True, help="NAME=DIR backdoor-sample artifacts")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=run_targets)

    p = sub.add_parser("figure-backdoor-ablation", help="Figs. 4 and 5: lambda and training-steps sweeps",
                       description="A-Prec and ASR against lambda (DDPM and DDIM), and benign FID / precision "
                       "/ recall with A-Prec / ASR against fine-tuning steps (DDIM), from backdoor-eval "
                       "artifacts.")
    p.add_argument("--lambdas", nargs="+", required=True, help="LAMBDA=DIR backdoor-eval artifacts (both samplers)")
    p.add_argument("--steps", nargs="+", required=True, help="STEP=DIR backdoor-eval artifacts (DDIM)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=run_ablation)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _to_rgb(x):
    """[-1, 1] C x H x W (noisy states leave the range: clipped for display) -> H x W x C in [0, 1]."""
    import numpy as np

    return np.clip((np.asarray(x, np.float32).transpose(1, 2, 0) + 1) / 2, 0, 1)


def run_trajectories(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError

    rows = named_paths(args.samples, "--samples")
    plt = _plt()
    with artifact_dir(args.out, "figure-backdoor-trajectories", {"samples": rows}) as art:
        frames = {}
        for name, d in rows.items():
            kind = "clean" if name == "benign" else "trigger"
            f = Path(d) / f"trajectory_{kind}.npz"
            if not f.exists():
                raise DiffsecError(f"{d} has no {f.name}: sample it with --trajectory > 0")
            frames[name] = np.load(f)["frames"][:, 0]   # T_frames x C x H x W, first sample
            art.add_input(name, f)
        n = max(len(v) for v in frames.values())
        fig, axes = plt.subplots(len(frames), n, figsize=(1.1 * n, 1.2 * len(frames)), squeeze=False)
        for r, (name, fr) in enumerate(frames.items()):
            for c in range(n):
                ax = axes[r, c]
                ax.axis("off")
                if c < len(fr):
                    ax.imshow(_to_rgb(fr[c]), interpolation="nearest")
            axes[r, 0].text(-2, 16, name, ha="right", va="center", fontsize=8)
        axes[0, 0].set_title("x_T", fontsize=8), axes[0, n - 1].set_title("x_0", fontsize=8)
        fig.suptitle("reverse trajectories: benign vs. triggered (DDPM, T steps)", fontsize=9)
        fig.tight_layout()
        fig.savefig(art.file("trajectories.png"), dpi=120, bbox_inches="tight")
        plt.close(fig)


def run_targets(args: argparse.Namespace) -> None:

    from diffsec.artifact import artifact_dir
    from diffsec.imageset import load_imageset

    rows = named_paths(args.samples, "--samples")
    plt = _plt()
    with artifact_dir(args.out, "figure-backdoor-targets", {"samples": rows}) as art:
        fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.2 * len(rows)), squeeze=False)
        for ax, (name, d) in zip(axes[:, 0], rows.items()):
            art.add_input(name, Path(d) / "trigger.npz")
            imgs = load_imageset(Path(d) / "trigger.npz")["images"][:16]
            ax.imshow(_tile_rows(imgs, 8), interpolation="nearest")
            ax.set_title(name, fontsize=9), ax.axis("off")
        fig.tight_layout()
        fig.savefig(art.file("targets.png"), dpi=120, bbox_inches="tight")
        plt.close(fig)


def _tile_rows(imgs, per_row: int):
    """Images (N, H, W, C) as rows of `per_row` tiles; a short last row is padded with white so
    that every row has the same width (9 to 15 images used to fail to concatenate)."""
    import numpy as np

    rows = []
    for i in range(0, len(imgs), per_row):
        row = list(imgs[i:i + per_row])
        row += [np.full_like(imgs[0], 255)] * (per_row - len(row))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def _metrics(d: str) -> dict:
    return json.loads((Path(d) / "metrics.json").read_text())


def run_ablation(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir

    lams, steps = named_paths(args.lambdas, "--lambdas"), named_paths(args.steps, "--steps")
    plt = _plt()
    with artifact_dir(args.out, "figure-backdoor-ablation", {"lambdas": lams, "steps": steps}) as art:
        by_lam: dict[str, list] = {}
        for key, d in lams.items():   # key: "<lambda>/<sampler>"
            lam, sampler = key.split("/")
            by_lam.setdefault(sampler, []).append((float(lam), _metrics(d)))
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, sampler in zip(axes, ("ddpm", "ddim")):
            pts = sorted(by_lam.get(sampler, []), key=lambda p: p[0])
            for metric, label in (("a_prec", "A-Prec"), ("asr", "ASR")):
                ax.plot([p[0] for p in pts], [p[1][metric] for p in pts], "o-", label=label)
            ax.set(xlabel="lambda", ylabel="share of triggered samples", ylim=(-0.02, 1.02),
                   title=f"Fig. 4 ({sampler.upper()}): In-D, w/o fixed image")
            ax.legend()
        fig.tight_layout(), fig.savefig(art.file("lambda.png"), dpi=120), plt.close(fig)

        pts = sorted(((int(k), _metrics(d)) for k, d in steps.items()), key=lambda p: p[0])
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        a.plot([p[0] for p in pts], [p[1]["fid"] for p in pts], "o-", color="C2", label="FID")
        a2 = a.twinx()
        for metric, c in (("precision", "C0"), ("recall", "C1")):
            a2.plot([p[0] for p in pts], [p[1][metric] for p in pts], "s--", color=c, label=metric)
        a.set(xlabel="fine-tuning steps", ylabel=f"FID [{pts[0][1]['backbone']}]", title="benign (DDIM)")
        a2.set_ylim(0, 1)
        # One legend for both y axes, below the plot: inside, it hid the first FID point.
        handles = a.get_legend_handles_labels()[0] + a2.get_legend_handles_labels()[0]
        a.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8)
        for metric, label in (("a_prec", "A-Prec"), ("asr", "ASR")):
            b.plot([p[0] for p in pts], [p[1][metric] for p in pts], "o-", label=label)
        b.set(xlabel="fine-tuning steps", ylim=(-0.02, 1.02), title="attack (DDIM): Fig. 5")
        b.legend()
        fig.tight_layout()
        fig.savefig(art.file("steps.png"), dpi=120, bbox_inches="tight"), plt.close(fig)
        for name, d in {**lams, **steps}.items():
            art.add_input(name, Path(d) / "metrics.json")
