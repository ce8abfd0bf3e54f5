"""MNIST from the original IDX files, split into a classifier-train part and a held-out part.

Only the 10,000 test digits are mirrored; the classifier that scores generated digits is
trained on one part and measured on the other, so no digit is used for both.
"""

from __future__ import annotations

import gzip
import os
from typing import TYPE_CHECKING

import numpy as np

from diffsec.data import stratified_subset
from diffsec.errors import DiffsecError

if TYPE_CHECKING:
    from diffsec.artifact import Artifact

_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dim, images: 3 dims (IDX type 0x08 = uint8)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DiffsecError(f"{path}: cannot read IDX file ({e})") from None
    magic = int.from_bytes(data[:4], "big")
    if magic not in _MAGIC:
        raise DiffsecError(f"{path}: not a uint8 IDX file (magic {magic:#x})")
    ndim = _MAGIC[magic]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != np.prod(shape):
        raise DiffsecError(f"{path}: header says {shape} but holds {body.size} bytes")
    return body.reshape(shape)


def read_mnist(images_path: str | os.PathLike, labels_path: str | os.PathLike
               ) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 28 x 28 x 1, labels int64)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DiffsecError(f"MNIST images {images.shape} and labels {labels.shape} do not match")
    return images[..., None].copy(), labels.astype(np.int64)


def split(labels: np.ndarray, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, held-out) index arrays; train is stratified by label, held-out is the rest."""
    if not 0 < n_train < len(labels):
        raise DiffsecError(f"--classifier-train must be between 1 and {len(labels) - 1}, got {n_train}")
    train = stratified_subset(labels, n_train, seed)
    heldout = np.setdiff1d(np.arange(len(labels)), train)  # sorted: original file order
    return train, heldout


def build_mnist(art: Artifact, images_path: str | os.PathLike, labels_path: str | os.PathLike,
                n_train: int, seed: int) -> None:
    """The prepare-mnist artifact: classifier_train.npz, heldout.npz (with original row index), a sample grid."""
    from diffsec.imageset import grid, save_imageset, save_png

    images, labels = read_mnist(images_path, labels_path)
    train, heldout = split(labels, n_train, seed)
    save_imageset(art.file("classifier_train.npz"), images[train], labels=labels[train], index=train)
    save_imageset(art.file("heldout.npz"), images[heldout], labels=labels[heldout], index=heldout)
    save_png(art.file("samples.png"), grid(images[train[:100]], nrow=10), scale=2)
    art.extra.update(sizes={"classifier_train": len(train), "heldout": len(heldout)},
                     train_class_counts=np.bincount(labels[train], minlength=10).tolist())
