"""Training utilities every long stage shares: the EMA step and the one loss-curve writer.

EMA (Polyak averaging) of parameters theta with decay d:

    theta_ema <- d * theta_ema + (1 - d) * theta        (`torch.lerp(theta_ema, theta, 1 - d)`)

`warmup_decay(d, step)` is the usual warm-up min(d, (1 + step) / (10 + step)), so that a short
run's average is not dominated by its first weights.

Curves: `write_curves` writes a long CSV (curve, step, value) and one figure with a panel per
curve: the raw values faint and their moving average over ~1/`smooth` of the run on top (per-batch
losses are too noisy to read), log-scaled when every value is positive.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence

import numpy as np
import torch


@torch.no_grad()
def ema_update(ema: torch.nn.Module | Sequence[torch.Tensor], model: torch.nn.Module | Sequence[torch.Tensor],
               decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, for modules or parameter lists."""
    e = list(ema.parameters()) if isinstance(ema, torch.nn.Module) else list(ema)
    m = list(model.parameters()) if isinstance(model, torch.nn.Module) else list(model)
    if len(e) != len(m):
        raise ValueError(f"EMA holds {len(e)} tensors, the model {len(m)}")
    torch._foreach_lerp_(e, [p.detach() for p in m], 1.0 - decay)


def warmup_decay(decay: float, step: int) -> float:
    """min(decay, (1 + step) / (10 + step)): the EMA warm-up of short runs."""
    return min(decay, (1 + step) / (10 + step))


Curve = Sequence[float] | tuple[Sequence[float], Sequence[float]]


def _xy(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, tuple) and len(curve) == 2 and np.ndim(curve[0]) == 1:
        x, y = curve
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    y = np.asarray(curve, dtype=float)
    return np.arange(1, len(y) + 1, dtype=float), y


def moving_average(y: np.ndarray, k: int) -> np.ndarray:
    """Mean over windows of k consecutive values (len(y) - k + 1 of them)."""
    return np.convolve(y, np.ones(k) / k, "valid") if len(y) >= k else np.asarray([])


def write_curves(csv_path: str | os.PathLike, png_path: str | os.PathLike, curves: dict[str, Curve], *,
                 title: str = "", ylabel: str = "loss", xlabel: str = "step", smooth: int = 40,
                 note_empty: str = "not trained here") -> None:
    """Long CSV (curve, step, value) and a figure with a panel per curve.

    A curve is a sequence of values (steps 1..n) or a (steps, values) pair.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["curve", "step", "value"])
        for name, c in curves.items():
            x, y = _xy(c)
            w.writerows((name, _num(s), f"{v:.6g}") for s, v in zip(x, y, strict=True))
    n = max(1, len(curves))
    cols = min(n, 4) if n > 2 else n
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(curves):]:
        ax.axis("off")
    for ax, (name, c) in zip(axes.flat[: len(curves)], curves.items(), strict=True):
        x, y = _xy(c)
        ax.set_title(name, fontsize=9), ax.set_xlabel(xlabel), ax.set_ylabel(ylabel, fontsize=8)
        if not len(y):
            ax.text(0.5, 0.5, note_empty, ha="center", transform=ax.transAxes)
            continue
        k = max(1, len(y) // smooth)
        ax.plot(x, y, alpha=0.3 if k > 1 else 1.0, lw=0.6 if k > 1 else 1.2)
        if k > 1:
            ax.plot(x[k - 1:], moving_average(y, k))
        if (y > 0).all():
            ax.set_yscale("log")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(), fig.savefig(png_path, dpi=110), plt.close(fig)


def _num(s: float) -> int | float:
    return int(s) if float(s).is_integer() else float(s)


def read_curves(csv_path: str | os.PathLike) -> dict[str, tuple[list[float], list[float]]]:
    """The inverse of write_curves' CSV: curve -> (steps, values)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            x, y = out.setdefault(row["curve"], ([], []))
            x.append(float(row["step"])), y.append(float(row["value"]))
    return out
