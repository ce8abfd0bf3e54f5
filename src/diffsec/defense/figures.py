"""Figures of the SZT paper: perturbation histograms (Fig. 7 / 12) and sampler pdfs (Fig. 15)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def perturbation_histograms(clean: np.ndarray, poisoned: np.ndarray, path: str | os.PathLike,
                            quality: int = 25, bins: int = 101, title: str = "") -> dict:
    """Fig. 7: histograms of poisoned - clean (red) and JPEG(poisoned) - clean (green), every
    pixel and channel of the set, on the [-1, 1] pixel scale (as Fig. 12). Writes a PNG and
    returns summary statistics of both distributions."""
    from diffsec.defense.jpeg import jpeg
    from diffsec.metrics.distance import difference

    clean, poisoned = np.asarray(clean), np.asarray(poisoned)
    if clean.shape != poisoned.shape:
        raise ValueError(f"clean {clean.shape} and poisoned {poisoned.shape} differ in shape")
    raw = difference(poisoned, clean, "[-1,1]").ravel()
    jp = difference(jpeg(poisoned, quality), clean, "[-1,1]").ravel()
    # the range of the poison (+- its budget), widened to hold 99.5% of the JPEG error: JPEG's few
    # large errors at saturated colour edges would otherwise squash both histograms into one bin
    lim = 1.05 * max(np.abs(raw).max(), np.quantile(np.abs(jp), 0.995), 1 / 127.5)
    edges = np.linspace(-lim, lim, bins + 1)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.hist(raw, edges, color="tab:red", alpha=0.55, label="poisoned", density=True)
    ax.hist(jp, edges, color="tab:green", alpha=0.55, label=f"JPEG q={quality}", density=True)
    ax.set_xlabel("perturbation (relative to clean, [-1, 1] scale)"), ax.set_ylabel("density")
    ax.set_title(title or "pixel perturbations"), ax.legend()
    fig.tight_layout(), fig.savefig(path, dpi=120), plt.close(fig)
    return {"poisoned": _stats(raw), "jpeg": _stats(jp), "quality": quality}


def _stats(d: np.ndarray) -> dict[str, float]:
    return {"mean": float(d.mean()), "std": float(d.std()), "abs_max": float(np.abs(d).max())}


def sampler_pdfs(specs: Sequence[str], path: str | os.PathLike, T: int = 1000,
                 title: str = "") -> None:
    """Fig. 15: the density p(u) of each timestep sampler spec on u = t / T in [0, 1]."""
    from diffsec.defense.timesteps import make_sampler

    u = np.linspace(0, 1, 1001)[:-1] + 0.0005
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for s in specs:
        ax.plot(u, make_sampler(s, T).pdf(u), label=s)
    ax.set_xlabel("u = t / T"), ax.set_ylabel("p(u)"), ax.set_title(title or "timestep samplers")
    ax.legend(fontsize=7), fig.tight_layout(), fig.savefig(path, dpi=120), plt.close(fig)
