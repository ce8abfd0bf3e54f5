"""Image sets as single .npz files (DVC and cluster file systems dislike many small files).

An image set holds `images` (uint8, N x H x W x C) and any aligned arrays (labels, captions,
masks, names) under their own keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffsec.artifact import atomic_file
from diffsec.errors import DiffsecError

if TYPE_CHECKING:
    import torch


def save_imageset(path: str | os.PathLike, images: np.ndarray, **arrays: np.ndarray) -> Path:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 NHWC, got {images.dtype} {images.shape}")
    for k, v in arrays.items():
        if len(v) != len(images):
            raise ValueError(f"array {k!r} has {len(v)} rows for {len(images)} images")
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:  # np.savez on a file object keeps our temp name
            np.savez(f, images=images, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def load_imageset(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an image set; a missing, corrupt, non-npz or pickled file is one DiffsecError."""
    p = Path(path)
    if not p.is_file():
        raise DiffsecError(f"image set {p} does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - BadZipFile, pickled/object arrays, a bare .npy, torn files
        why = " ".join(str(e).split()) or type(e).__name__
        raise DiffsecError(f"cannot read image set {p}: not a readable npz of plain arrays ({why})") from None


def load_images(path: str | os.PathLike, what: str = "image set", channels: tuple[int, ...] = (3,)
                ) -> dict[str, np.ndarray]:
    """An image set whose `images` are non-empty uint8 NHWC with one of `channels`, else a DiffsecError.

    `path` may also be an artifact directory holding `samples.npz` (what sampling stages write).
    """
    p = Path(path)
    data = load_imageset(p / "samples.npz" if p.is_dir() else p)
    images = data.get("images")
    if images is None:
        raise DiffsecError(f"{what} {p} has no `images` array (has {sorted(data)})")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in channels or not len(images):
        want = " or ".join(map(str, channels))
        raise DiffsecError(f"{what} {p}: `images` must be non-empty uint8 N x H x W x {want}, "
                           f"got {images.dtype} {images.shape}")
    return data


def load_labelled(path: str | os.PathLike, what: str = "image set", num_classes: int | None = None,
                  names: list[str] | None = None, channels: tuple[int, ...] = (3,)) -> dict[str, np.ndarray]:
    """`load_images` plus integer `labels`, one per image, in [0, num_classes) (or [0, len(names)));
    with `names`, a per-row `class_name` must read names[label]. Labels come back as int64."""
    data = load_images(path, what, channels)
    labels, n = data.get("labels"), len(data["images"])
    if labels is None or labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        got = "none" if labels is None else f"{labels.dtype} {labels.shape}"
        raise DiffsecError(f"{what} {path}: `labels` must be {n} integers, got {got}")
    _in_range(labels, len(names) if num_classes is None and names is not None else num_classes, what, path)
    rows = data.get("class_name")
    if names is not None and rows is not None and any(r != names[y] for r, y in zip(rows, labels, strict=False)):
        raise DiffsecError(f"{what} {path}: `class_name` disagrees with `labels` (expected {list(names)})")
    data["labels"] = labels.astype(np.int64)
    return data


def load_split(directory: str | os.PathLike, name: str, kind: str, **kw) -> dict[str, np.ndarray]:
    """`<directory>/<name>.npz` of a `kind` artifact (e.g. prepare-celeba), checked by `load_labelled`."""
    f = Path(directory) / f"{name}.npz"
    if not f.is_file():
        raise DiffsecError(f"{directory} is not a {kind} artifact: {f.name} is missing")
    return load_labelled(f, f"{kind} split", **kw)


def _in_range(labels: np.ndarray, k: int | None, what: str, path) -> None:
    if k is not None and (labels.min() < 0 or labels.max() >= k):
        raise DiffsecError(f"{what} {path}: labels must lie in 0..{k - 1}, got {labels.min()}..{labels.max()}")


def load_classes(path: str | os.PathLike, what: str, default: tuple[str, ...]
                 ) -> tuple[dict[str, np.ndarray], list[str]]:
    """A labelled image set and its ordered class names (`class_names`), which its labels index."""
    data = load_labelled(path, what)
    names = class_names(data, default)
    _in_range(data["labels"], len(names), what, path)
    return data, names


def class_names(data: dict[str, np.ndarray], default: tuple[str, ...]) -> list[str]:
    """Ordered class names of an image set: a `class_names` list, per-row `class_name`, or `default`."""
    if "class_names" in data and len(data["class_names"]) != len(data["images"]):
        return [str(c) for c in data["class_names"]]
    if "class_name" in data and "labels" in data:
        names = {int(k): str(c) for k, c in zip(data["labels"], data["class_name"], strict=False)}
        if sorted(names) != list(range(len(names))):
            raise DiffsecError(f"image set: labels {sorted(names)} with `class_name` are not 0..{len(names) - 1}")
        return [names[k] for k in range(len(names))]
    return list(default)


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] (the diffusion models' pixel scale)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC, rounding to nearest."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def grid(images: np.ndarray, nrow: int) -> np.ndarray:
    """Tile N x H x W x C uint8 images into one image with `nrow` images per row."""
    n, h, w, c = images.shape
    rows = -(-n // nrow)
    out = np.full((rows * (h + 2) + 2, nrow * (w + 2) + 2, c), 255, np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, nrow)
        out[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + col * (w + 2):2 + col * (w + 2) + w] = im
    return out


def save_png(path: str | os.PathLike, image: np.ndarray, scale: int = 1) -> None:
    from PIL import Image

    im = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)
