"""What a poison run writes besides the images: distances, a before/after figure, loss curves."""

from __future__ import annotations

import csv
import os

import numpy as np

from diffsec.poison.budget import Budget, distances

UNITS = {"unit01": "pixel values in [0, 1] (uint8 / 255)",
         "unit255": "uint8 levels, i.e. [0, 1] units x 255",
         "l2": "over all pixels and channels of an image"}


def distance_report(clean: np.ndarray, adv: np.ndarray, budget: Budget,
                    names: np.ndarray | None = None) -> dict:
    d = distances(clean, adv)
    per = [{"index": i, **({"name": str(names[i])} if names is not None else {}),
            **{k: float(v[i]) for k, v in d.items()}} for i in range(len(clean))]
    return {"units": UNITS, "budget": budget.describe(), "n_images": len(clean),
            "mean": {k: float(v.mean()) for k, v in d.items()},
            "max": {k: float(v.max()) for k, v in d.items()},
            "within_budget": bool(d["linf_unit255"].max() <= budget.max_levels),
            "per_image": per}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def before_after_figure(path: str | os.PathLike, clean: np.ndarray, adv: np.ndarray, budget: Budget,
                        title: str, n: int = 4) -> None:
    """Rows: clean, poisoned, |perturbation| with white = the full budget (eps)."""
    plt = _plt()
    n = min(n, len(clean))
    pert = np.abs(adv[:n].astype(np.int16) - clean[:n]).astype(np.float64) / max(1, budget.max_levels)
    rows = [("clean", clean[:n]), ("poisoned", adv[:n]), ("|δ| (white = ε)", np.clip(pert, 0, 1))]
    fig, axes = plt.subplots(3, n, figsize=(2.2 * n, 6.8), squeeze=False)
    for r, (label, ims) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(ims[c], interpolation="nearest", vmin=0, vmax=1 if r == 2 else 255)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)


def write_loss_curve(losses: np.ndarray, csv_path, png_path, method: str, ylabel: str) -> None:
    """Per PGD step: mean, std, min, max over images of the method's reported loss."""
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "mean", "std", "min", "max", "n_images"])
        for k in range(losses.shape[1]):
            col = losses[:, k]
            w.writerow([k, *(f"{v:.6g}" for v in (col.mean(), col.std(), col.min(), col.max())),
                        len(col)])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    m, s = losses.mean(0), losses.std(0)
    ax.plot(m, label="mean over images")
    ax.fill_between(np.arange(len(m)), m - s, m + s, alpha=0.25, label="± 1 std")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("PGD step"), ax.set_ylabel(ylabel, fontsize=8), ax.set_title(f"{method} loss")
    ax.legend(fontsize=8)
    fig.tight_layout(), fig.savefig(png_path, dpi=110), plt.close(fig)
