"""InvisibleDiffusion's figures: reverse trajectories (Fig. 2), images generated from triggered
noise (Fig. 3), and the lambda / training-steps ablations (Figs. 4 and 5).

Trajectory frames are x_t on the model's [-1, 1] scale; noisy states leave that range and are
clipped for display, (x + 1) / 2 in [0, 1]. The ablations plot A-Prec and ASR (shares of
triggered samples) against lambda for both samplers, and benign FID / precision / recall beside
A-Prec / ASR against the fine-tuning steps of the EMA snapshots (DDIM).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_rgb(x) -> np.ndarray:
    """[-1, 1] C x H x W (noisy states leave the range: clipped for display) -> H x W x C in [0, 1]."""
    return np.clip((np.asarray(x, np.float32).transpose(1, 2, 0) + 1) / 2, 0, 1)


def tile_rows(imgs: np.ndarray, per_row: int) -> np.ndarray:
    """Images (N, H, W, C) as rows of `per_row` tiles; a short last row is padded with white so
    that every row has the same width (9 to 15 images used to fail to concatenate)."""
    rows = []
    for i in range(0, len(imgs), per_row):
        row = list(imgs[i:i + per_row])
        row += [np.full_like(imgs[0], 255)] * (per_row - len(row))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def trajectories(frames: dict[str, np.ndarray], path: Path) -> None:
    """One row per name: its frames (T_frames x C x H x W) from x_T (left) to x_0 (right)."""
    plt = _plt()
    n = max(len(v) for v in frames.values())
    fig, axes = plt.subplots(len(frames), n, figsize=(1.1 * n, 1.2 * len(frames)), squeeze=False)
    for r, (name, fr) in enumerate(frames.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(fr):
                ax.imshow(to_rgb(fr[c]), interpolation="nearest")
        axes[r, 0].text(-2, 16, name, ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("x_T", fontsize=8), axes[0, n - 1].set_title("x_0", fontsize=8)
    fig.suptitle("reverse trajectories: benign vs. triggered (DDPM, T steps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def targets(images: dict[str, np.ndarray], path: Path) -> None:
    """One block of rows of 8 per name: its first 16 triggered samples (uint8 N x H x W x C)."""
    plt = _plt()
    fig, axes = plt.subplots(len(images), 1, figsize=(8, 2.2 * len(images)), squeeze=False)
    for ax, (name, imgs) in zip(axes[:, 0], images.items(), strict=True):
        ax.imshow(tile_rows(imgs[:16], 8), interpolation="nearest")
        ax.set_title(name, fontsize=9), ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _attack_lines(ax, pts: list[tuple[float, dict]]) -> None:
    for metric, label in (("a_prec", "A-Prec"), ("asr", "ASR")):
        ax.plot([p[0] for p in pts], [p[1][metric] for p in pts], "o-", label=label)


def lambda_sweep(by_key: dict[str, dict], path: Path) -> None:
    """Fig. 4: A-Prec and ASR against lambda, a panel per sampler; keys '<lambda>/<sampler>'."""
    plt = _plt()
    by_sampler: dict[str, list] = {}
    for key, m in by_key.items():
        lam, sampler = key.split("/")
        by_sampler.setdefault(sampler, []).append((float(lam), m))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, sampler in zip(axes, ("ddpm", "ddim"), strict=True):
        _attack_lines(ax, sorted(by_sampler.get(sampler, []), key=lambda p: p[0]))
        ax.set(xlabel="lambda", ylabel="share of triggered samples", ylim=(-0.02, 1.02),
               title=f"Fig. 4 ({sampler.upper()}): In-D, w/o fixed image")
        ax.legend()
    fig.tight_layout(), fig.savefig(path, dpi=120), plt.close(fig)


def steps_sweep(by_step: dict[str, dict], path: Path) -> None:
    """Fig. 5: benign FID / precision / recall and A-Prec / ASR against fine-tuning steps (DDIM)."""
    plt = _plt()
    pts = sorted(((int(k), m) for k, m in by_step.items()), key=lambda p: p[0])
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
    _attack_lines(b, pts)
    b.set(xlabel="fine-tuning steps", ylim=(-0.02, 1.02), title="attack (DDIM): Fig. 5")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight"), plt.close(fig)
