"""SAU's figures (paper 001): the image grids of its Tables 1 (pixel backdoor) and 2 (style
backdoor), triggered prompts x Unpoisoned / Poisoned / Finetune Reversal / Concept Erasure / SAU,
and the mask figure: per generation the Delta activation map |Delta| (shared), the similarity map
S, the primary mask M_p, the secondary mask M_s, the blended region R, the triggered image, the
seed-matched clean image (what is blended in) and SAU's result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffsec.detect.figures import _plt, _save  # the figure modules' Agg backend and save


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def pick_rows(gen: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Row indices of the first seed of each of the first `n` classes (the figure's prompts)."""
    seen: dict[str, int] = {}
    for i, c in enumerate(str(x) for x in gen["class_name"]):
        seen.setdefault(c, i)
    return np.array(list(seen.values())[:n])


def method_grid(columns: dict[str, dict[str, np.ndarray]], rows: np.ndarray, title: str, path: Path,
                detected: dict[str, list[int]] | None = None) -> None:
    """Rows: the jobs `rows` (labelled with their triggered prompt), columns: the methods' images of
    them (seed-matched sets); a red frame where the method's detector found the target."""
    plt = _plt()
    names = list(columns)
    # row labels from a triggered set where there is one (the figure's prompts carry the trigger)
    first = next((g for g in columns.values() if g["triggered"].all()), next(iter(columns.values())))
    fig, axes = plt.subplots(len(rows), len(names), figsize=(1.5 * len(names) + 1.6, 1.5 * len(rows) + 0.6),
                             squeeze=False)
    for r, i in enumerate(rows):
        for c, name in enumerate(names):
            ax = axes[r, c]
            ax.imshow(columns[name]["images"][i], interpolation="nearest")
            _off(ax)
            if detected and name in detected and detected[name][i]:
                for side in ax.spines.values():
                    side.set(color="red", linewidth=2)
            if r == 0:
                ax.set_title(name, fontsize=8)
        prompt = str(first["prompts"][i]).replace("\u200b", "[ZWSP]")
        axes[r, 0].set_ylabel(f"{prompt}\nseed {int(first['seeds'][i])}", fontsize=6, rotation=0, ha="right",
                              va="center")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def mask_figure(maps: dict[str, np.ndarray], triggered: np.ndarray, clean: np.ndarray | None, result: np.ndarray,
                rows: np.ndarray, path: Path, footprint: np.ndarray | None = None) -> None:
    """One generation per row: |Delta|, S, M_p, M_s, R, triggered image, clean image, SAU result;
    the patch's latent footprint outlined on the masks when given."""
    plt = _plt()
    panels = [("|Delta| (activation)", lambda i: maps["delta_activation"], "magma", None),
              ("similarity S", lambda i: maps["similarity"][i], "coolwarm", (-1, 1)),
              ("primary M_p", lambda i: maps["primary"][i], "gray", (0, 1)),
              ("secondary M_s", lambda i: maps["secondary"][i], "gray", (0, 1)),
              ("region R", lambda i: maps["region"][i], "viridis", (0, 1))]
    images = [("triggered", triggered), *([("clean (blended in)", clean)] if clean is not None else []),
              ("SAU result", result)]
    ncol = len(panels) + len(images)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.5 * ncol, 1.55 * len(rows) + 0.5), squeeze=False)
    for r, i in enumerate(rows):
        for c, (name, get, cmap, lim) in enumerate(panels):
            ax = axes[r, c]
            vmin, vmax = lim or (None, None)
            ax.imshow(get(i), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if footprint is not None and c > 0:
                ax.contour(footprint.astype(float), levels=[0.5], colors="lime", linewidths=0.8)
            _off(ax)
            if r == 0:
                ax.set_title(name, fontsize=7)
        for c, (name, ims) in enumerate(images, start=len(panels)):
            ax = axes[r, c]
            ax.imshow(ims[i], interpolation="nearest")
            _off(ax)
            if r == 0:
                ax.set_title(name, fontsize=7)
    fig.suptitle("SAU masks (latent grid; green: the patch's latent footprint)", fontsize=9)
    _save(fig, path)
