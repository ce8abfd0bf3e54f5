"""CIFAR-10 from either packaging of the source archive.

The mirror holds a JPEG re-encoding (`cifar10-jpeg/{train,test}/<class>/<n>.jpg`), the
canonical download is the binary version (`cifar-10-batches-bin/*.bin`, records of one
label byte + 3072 bytes CHW). Both are read in one streaming pass over the tar.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from diffsec.data import stratified_subset
from diffsec.data.archive import iter_tar
from diffsec.errors import DiffsecError

if TYPE_CHECKING:
    from diffsec.artifact import Artifact

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")

_JPEG = re.compile(r"(?:^|/)(train|test)/([a-z]+)/([^/]+)\.jpe?g$")
_BIN = re.compile(r"(?:^|/)(data_batch_[1-5]|test_batch)\.bin$")
_RECORD = 1 + 3 * 32 * 32


def _decode(item: bytes | np.ndarray) -> np.ndarray:
    """A JPEG member's bytes -> uint8 HWC RGB; binary records arrive already decoded."""
    if isinstance(item, np.ndarray):
        return item
    from PIL import Image

    with Image.open(io.BytesIO(item)) as im:
        return np.asarray(im.convert("RGB"))


def _decode_bin(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch -> (labels int64, images uint8 NHWC)."""
    if len(data) % _RECORD:
        raise DiffsecError(f"CIFAR-10 batch {name} is {len(data)} bytes, not a multiple of {_RECORD}")
    rec = np.frombuffer(data, np.uint8).reshape(-1, _RECORD)
    images = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return rec[:, 0].astype(np.int64), np.ascontiguousarray(images)


def _scan(archive: str | os.PathLike) -> tuple[dict[str, tuple[np.ndarray, list | np.ndarray]], str]:
    """({split: (labels, items)}, 'jpeg' | 'binary') in a fixed order, no JPEG decoded yet.

    JPEG members are ordered by (label, file name), binary records by batch then position,
    so the result does not depend on the order of members inside the tar. Members are read
    through `iter_tar`, which refuses `..`, absolute and link members.
    """
    jpegs: dict[str, list[tuple[int, str, bytes]]] = {"train": [], "test": []}
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    bar = partial(tqdm, desc="cifar10: read archive", unit=" files", mininterval=1.0)
    for name, data in iter_tar(archive, lambda n: bool(_JPEG.search(n) or _BIN.search(n)), bar):
        if hit := _JPEG.search(name):
            split, cls, stem = hit.groups()
            if cls not in CLASSES:
                raise DiffsecError(f"{archive}: unknown CIFAR-10 class folder {cls!r}")
            jpegs[split].append((CLASSES.index(cls), stem, data))
        else:
            batches[_BIN.search(name).group(1)] = _decode_bin(data, name)
    if batches:
        return _binary_splits(archive, batches), "binary"
    if not jpegs["train"] or not jpegs["test"]:
        raise DiffsecError(f"{archive}: neither the JPEG layout (train|test/<class>/*.jpg) nor "
                           "the binary layout (data_batch_*.bin) of CIFAR-10")
    out = {}
    for split, items in jpegs.items():
        items.sort(key=lambda t: (t[0], t[1]))
        out[split] = (np.array([t[0] for t in items], np.int64), [t[2] for t in items])
    return out, "jpeg"


def _binary_splits(archive: str | os.PathLike, batches: dict[str, tuple[np.ndarray, np.ndarray]]
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train = data_batch_1..5 in order, test = test_batch."""
    train = [batches[k] for k in sorted(batches) if k.startswith("data_batch")]
    if not train or "test_batch" not in batches:
        raise DiffsecError(f"{archive}: binary CIFAR-10 needs data_batch_*.bin and test_batch.bin")
    return {"train": (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])),
            "test": batches["test_batch"]}


def read_cifar10(archive: str | os.PathLike, subset: Callable[[str, np.ndarray], np.ndarray] | None = None
                 ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """({'train': (images uint8 NHWC, labels int64), 'test': (...)}, 'jpeg' | 'binary').

    `subset(split, labels) -> indices` picks the rows to keep before decoding, which is the
    slow part (60,000 JPEGs), so small subsets cost little more than reading the tar.
    """
    scanned, fmt = _scan(archive)
    out = {}
    for split, (labels, items) in scanned.items():
        idx = subset(split, labels) if subset else np.arange(len(labels))
        images = [_decode(items[i]) for i in tqdm(idx, desc=f"cifar10: decode {split}", mininterval=1.0)]
        out[split] = (np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8), labels[idx])
    return out, fmt


def resize(images: np.ndarray, resolution: int) -> np.ndarray:
    """Square-resize uint8 NHWC images with PIL bicubic (antialiased when shrinking)."""
    if images.shape[1:3] == (resolution, resolution):
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((resolution, resolution), Image.BICUBIC))
                     for im in tqdm(images, desc=f"resize to {resolution}", mininterval=1.0)])


def prepare_cifar10(archive: str | os.PathLike, resolution: int, sizes: dict[str, int],
                    seed: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Seeded class-stratified subsets of each split (size <= 0: all), resized; and the format."""
    splits = ("train", "test")

    def subset(split: str, labels: np.ndarray) -> np.ndarray:
        n = sizes.get(split, 0)
        if n > len(labels):
            raise DiffsecError(f"asked for {n} {split} images but the {split} split has {len(labels)}")
        # A distinct stream per split, so changing one split's size leaves the other alone.
        return stratified_subset(labels, n, seed + 1000 * splits.index(split))

    data, fmt = read_cifar10(archive, subset)
    return {split: (resize(data[split][0], resolution), data[split][1]) for split in splits}, fmt


def class_grid(images: np.ndarray, labels: np.ndarray, per_class: int = 10,
               n_classes: int = len(CLASSES)) -> np.ndarray:
    """One row per class with its first `per_class` images (blank where a class has fewer)."""
    from diffsec.imageset import grid

    h, w, c = images.shape[1:]
    rows = []
    for k in range(n_classes):
        pick = images[labels == k][:per_class]
        pad = np.full((per_class - len(pick), h, w, c), 255, np.uint8)
        rows.append(np.concatenate([pick, pad]))
    return grid(np.concatenate(rows), nrow=per_class)


def write_class_splits(art: Artifact, data: dict[str, tuple], classes: Sequence[str]) -> None:
    """`<split>.npz` per split (images, labels, the row index when given, per-row class names;
    the ordered list is `classes`) and `samples.png`, one row of train images per class."""
    from diffsec.imageset import save_imageset, save_png

    for split, (images, labels, *index) in data.items():
        rows = {"index": index[0]} if index else {}
        save_imageset(art.file(f"{split}.npz"), images, labels=labels, **rows,
                      class_name=[classes[i] for i in labels])
    images, labels = data["train"][:2]
    save_png(art.file("samples.png"), class_grid(images, labels, n_classes=len(classes)),
             scale=max(1, 64 // images.shape[1]))
    art.extra.update(sizes={s: len(d[1]) for s, d in data.items()}, classes=list(classes))


def build_cifar10(art: Artifact, archive: str | os.PathLike, resolution: int, sizes: dict[str, int],
                  seed: int) -> None:
    """The prepare-cifar10 artifact: train/test image sets, a sample grid, and which pixels they are."""
    data, fmt = prepare_cifar10(archive, resolution, sizes, seed)
    write_class_splits(art, data, CLASSES)
    art.extra.update(source_format=fmt,  # numbers computed from the JPEGs must say so
                     note="lossy JPEG (q~75) re-encoding of CIFAR-10" if fmt == "jpeg"
                     else "original CIFAR-10 pixels")
