"""SZT Fig. 4: the noise-prediction loss of a frozen model per timestep, clean vs poisoned.

A poison like ADM+ raises the loss mostly at low-to-middle timesteps, which is why training only
on high timesteps (T500/T600) escapes it. The same noise and timesteps are used for both sets
(common random numbers), so the gap between the curves is the poison's effect alone.
"""

from __future__ import annotations

import numpy as np
import torch

from diffsec.poison.ldm import LatentDiffusion
from diffsec.poison.objectives import noise_loss


@torch.no_grad()
def loss_per_timestep(ldm: LatentDiffusion, sets: dict[str, np.ndarray], prompts: list[str],
                      timesteps: list[int], draws: int = 4, seed: int = 0, batch: int = 64) -> dict[str, np.ndarray]:
    """{set name: len(timesteps) mean losses}; every set holds the same rows (uint8 NHWC)."""
    n = len(next(iter(sets.values())))
    cond_all = ldm.embed(prompts)
    out = {}
    for name, images in sets.items():
        x01 = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float().div(255)
        z0 = torch.cat([ldm.encode(x01[i:i + batch].to(ldm.device)) for i in range(0, n, batch)])
        g = torch.Generator().manual_seed(seed)  # the same draws for every set
        curve = []
        for t in timesteps:
            losses = []
            for _ in range(draws):
                eps = torch.randn(z0.shape, generator=g).to(ldm.device)
                tt = torch.full((n,), int(t), device=ldm.device, dtype=torch.long)
                losses.append(torch.cat([noise_loss(ldm, z0[i:i + batch], tt[i:i + batch], eps[i:i + batch],
                                                    cond_all[i:i + batch]) for i in range(0, n, batch)]))
            curve.append(torch.stack(losses).mean().item())
        out[name] = np.array(curve)
    return out


def write_loss_per_timestep(csv_path, png_path, curves: dict[str, np.ndarray], timesteps: list[int],
                            title: str = "") -> None:
    """A CSV (timestep, one column per set) and one plot with a line per set."""
    import csv

    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestep", *curves])
        for i, t in enumerate(timesteps):
            w.writerow([t, *(f"{c[i]:.6g}" for c in curves.values())])
    plot_loss_per_timestep(curves, timesteps, png_path, title)


def plot_loss_per_timestep(curves: dict[str, np.ndarray], timesteps: list[int], path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, c in curves.items():
        ax.plot(timesteps, c, marker=".", label=name)
    ax.set_xlabel("timestep t"), ax.set_ylabel("E||eps_theta(z_t, t, c) - eps||^2")
    ax.set_title(title or "noise-prediction loss per timestep"), ax.legend()
    fig.tight_layout(), fig.savefig(path, dpi=120), plt.close(fig)
