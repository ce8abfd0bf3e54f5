"""SPD's figures (paper 003): each metric against eps, Ours vs Baseline, on the train (Fig. 1) and
test (Fig. 2) images; the first prompt's edits of one test image as eps grows (Fig. 3, eps 0 =
the clean image's edit); delta_u at each eps; a fit's loss curve. Lower metric = the edit moved
further from the clean edit = stronger immunization."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffsec.detect.figures import _plt, _save  # the figure modules' Agg backend and save

SHOWN = ("Baseline", "Ours")


def metrics_vs_eps(evals: list[tuple[str, int, dict]], split: str, path: Path) -> None:
    """One panel per metric: its mean over prompts against eps, a line per column in SHOWN.
    evals: (column, eps, spd-eval metrics {split: {prompt: {metric: value}}})."""
    plt = _plt()
    metrics = list(next(iter(next(iter(evals))[2][split].values())))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3))
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        for column in SHOWN:
            pts = sorted((e, np.mean([v[metric] for v in m[split].values()])) for c, e, m in evals if c == column)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=column)
        ax.set_xlabel("eps (/255)")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend()
    fig.suptitle(f"{split} images: edit of the immunized vs the clean image (mean over prompts)")
    _save(fig, path)


def edits_vs_eps(clean_edit: np.ndarray, rows: dict[str, list[np.ndarray]], eps: list[int], prompt: str,
                 path: Path) -> None:
    """Rows Baseline / Ours, columns eps 0 (the clean edit) then each eps."""
    plt = _plt()
    fig, axes = plt.subplots(len(rows), len(eps) + 1, figsize=(1.6 * (len(eps) + 1), 1.8 * len(rows)),
                             squeeze=False)
    for r, (name, edits) in enumerate(rows.items()):
        for c, (e, im) in enumerate(zip([0, *eps], [clean_edit, *edits], strict=True)):
            ax = axes[r, c]
            ax.imshow(im)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"eps {e}/255", fontsize=8)
            if c == 0:
                ax.set_ylabel(name)
    fig.suptitle(f"edits with {prompt!r}" if prompt else "edits with the empty prompt", fontsize=9)
    _save(fig, path)


def deltas(deltas: list[np.ndarray], eps: list[int], path: Path) -> None:
    """delta_u (3 x H x W, [0, 1] units) at each eps, each scaled so -eps..eps spans the colour range."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(deltas), figsize=(1.8 * len(deltas), 2), squeeze=False)
    for ax, d, e in zip(axes[0], deltas, eps, strict=True):
        ax.imshow(np.clip(d.transpose(1, 2, 0) / (e / 255) / 2 + 0.5, 0, 1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"eps {e}/255", fontsize=8)
    _save(fig, path)


def loss_curve(curve: np.ndarray, path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(np.arange(len(curve)), curve)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean loss over the train images")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    _save(fig, path)
