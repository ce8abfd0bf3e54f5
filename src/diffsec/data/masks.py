"""Object masks for the DreamBooth subjects, and a figure to check them by eye.

Two maskers share one call shape, `masker(image_uint8_hwc) -> bool HxW`:
`grabcut` (OpenCV GrabCut from a central rectangle; CPU, no weights, the tiny profile) and
`SamMasker` (segment-anything with a central box prompt; the paper profile).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from diffsec.errors import DiffsecError


def central_box(h: int, w: int, margin: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the centred box leaving `margin` of each side out.

    DreamBooth photos centre their subject, so the box is the whole prior we need.
    """
    dx, dy = max(1, round(margin * w)), max(1, round(margin * h))
    return dx, dy, w - dx, h - dy


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest blob and fill its holes: GrabCut leaves background specks inside the
    rectangle and punches holes where the object matches the background colour."""
    import cv2

    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask.astype(bool)
    keep = (lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(keep, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(keep, contours, -1, 1, thickness=cv2.FILLED).astype(bool)


def grabcut(image: np.ndarray, work: int = 256, iters: int = 5, margin: float = 0.05,
            seed: int = 0) -> np.ndarray:
    """GrabCut segmentation initialised with a central rectangle, run at `work` px square."""
    import cv2

    h, w = image.shape[:2]
    small = cv2.resize(image, (work, work), interpolation=cv2.INTER_AREA)
    bgr = np.ascontiguousarray(small[:, :, ::-1])
    x0, y0, x1, y1 = central_box(work, work, margin)
    mask = np.zeros((work, work), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)  # GrabCut's GMM init draws from OpenCV's global RNG
    cv2.grabCut(bgr, mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iters, cv2.GC_INIT_WITH_RECT)
    fg = _largest_component(np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)))
    return cv2.resize(fg.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


class SamMasker:
    """segment-anything's SamPredictor with a central box prompt; best of its three masks."""

    def __init__(self, checkpoint: str | os.PathLike | None, model_type: str = "vit_h",
                 device: str = "cpu", margin: float = 0.05):
        if not checkpoint or not Path(checkpoint).is_file():
            raise DiffsecError(f"--masker sam needs --sam-checkpoint, a SAM weights file; "
                               f"{checkpoint!r} does not exist")
        import torch
        from segment_anything import SamPredictor, sam_model_registry

        if model_type not in sam_model_registry:
            raise DiffsecError(f"--sam-model-type {model_type!r} unknown; one of "
                               f"{', '.join(sorted(sam_model_registry))}")
        # Build empty and load ourselves: the library's own loader unpickles with full trust.
        sam = sam_model_registry[model_type](checkpoint=None)
        try:
            if str(checkpoint).endswith(".safetensors"):
                from safetensors.torch import load_file
                state = load_file(str(checkpoint))
            else:
                state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:  # weights_only refuses anything but tensors and plain containers
            raise DiffsecError(f"--sam-checkpoint {checkpoint} is not a readable state dict "
                               f"({type(e).__name__})") from None
        try:
            sam.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError):
            raise DiffsecError(f"--sam-checkpoint {checkpoint} does not fit --sam-model-type "
                               f"{model_type} (other architecture, or not a SAM state dict)") from None
        self.predictor = SamPredictor(sam.to(device).eval())
        self.margin = margin

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        h, w = image.shape[:2]
        with torch.inference_mode():
            self.predictor.set_image(image)
            masks, scores, _ = self.predictor.predict(box=np.array(central_box(h, w, self.margin)),
                                                      multimask_output=True)
        return masks[int(np.argmax(scores))].astype(bool)


def overlay_figure(path: str | os.PathLike, images: np.ndarray, masks: np.ndarray,
                   rows: Sequence[str], row_labels: Sequence[str], title: str) -> None:
    """Grid with one row per concept: background dimmed, mask edge in green, coverage on top."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(dict.fromkeys(rows))
    ncol = max(sum(r == c for r in rows) for c in order)
    fig, axes = plt.subplots(len(order), ncol, figsize=(1.6 * ncol + 1.2, 1.75 * len(order)),
                             squeeze=False)
    show = max(128, images.shape[1])  # upscale small images so the outline stays thin
    for ax in axes.flat:
        ax.axis("off")
    for r, concept in enumerate(order):
        idx = [i for i, c in enumerate(rows) if c == concept]
        for col, i in enumerate(idx):
            im = cv2.resize(images[i], (show, show), interpolation=cv2.INTER_NEAREST)
            m = cv2.resize(masks[i].astype(np.uint8), (show, show), interpolation=cv2.INTER_NEAREST)
            vis = np.where(m[..., None] > 0, im, (im * 0.3).astype(np.uint8))
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            vis = cv2.drawContours(np.ascontiguousarray(vis), contours, -1, (0, 255, 0), 2)
            ax = axes[r, col]
            ax.imshow(vis)
            ax.set_title(f"{100 * masks[i].mean():.0f}%", fontsize=8, pad=2)
        axes[r, 0].text(-0.08, 0.5, row_labels[r], transform=axes[r, 0].transAxes,
                        ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0.06, 0, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def make_masker(kind: str, *, seed: int, threads: int = 0, checkpoint: str | os.PathLike | None = None,
                model_type: str = "vit_h", device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """`grabcut` (seeded) or `sam` (weights from `checkpoint`); `threads` > 0 caps OpenCV's threads."""
    if threads:
        import cv2

        cv2.setNumThreads(threads)
    if kind == "sam":
        return SamMasker(checkpoint, model_type, device)
    if kind == "grabcut":
        return partial(grabcut, seed=seed)
    raise DiffsecError(f"unknown masker {kind!r}; one of grabcut, sam")
