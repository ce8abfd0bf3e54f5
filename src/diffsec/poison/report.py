"""What a poison run writes: the poisoned set (aligned arrays carried), distances, a before/after figure."""

from __future__ import annotations

import os

import numpy as np

from diffsec.poison.budget import Budget, distances

UNITS = {"unit01": "pixel values in [0, 1] (uint8 / 255)",
         "unit255": "uint8 levels, i.e. [0, 1] units x 255",
         "l2": "over all pixels and channels of an image"}


def save_poisoned(path: str | os.PathLike, data: dict, adv: np.ndarray) -> None:
    """The poisoned images with every other array of the input set carried over unchanged."""
    from diffsec.imageset import save_imageset

    carried = {k: v for k, v in data.items() if k != "images"}
    if all(v.ndim and len(v) == len(adv) for v in carried.values()):
        save_imageset(path, adv, **carried)
    else:  # non-aligned metadata (e.g. a class list) still travels along, unchanged
        with open(path, "wb") as f:
            np.savez(f, images=adv, **carried)


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
