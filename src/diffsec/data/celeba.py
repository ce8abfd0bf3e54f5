"""CelebA as InvisibleDiffusion labels it: aligned faces in 8 classes made of 3 attributes.

The paper takes the three most balanced binary attributes (heavy makeup, slightly open mouth,
smile) and concatenates them into 8 classes; its In-D target is class 7, all three present.
Images are the DDIM repository's 128 px face crop of the 178 x 218 aligned photos, centred at
row 121, column 89, then resized to the profile's resolution.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from diffsec.data import stratified_subset
from diffsec.data.archive import zip_names
from diffsec.errors import DiffsecError

if TYPE_CHECKING:
    from diffsec.artifact import Artifact

# Class id = makeup + 2 mouth + 4 smile, TrojDiff's encoding (InvisibleDiffusion follows its setup).
ATTRIBUTES = ("Heavy_Makeup", "Mouth_Slightly_Open", "Smiling")  # bits 0, 1, 2 of the class id
TARGET_CLASS = 7  # makeup, open mouth and smile: the paper's In-D target
CLASSES = tuple("+".join(a for i, a in enumerate(("makeup", "mouth", "smile")) if k >> i & 1) or "none"
                for k in range(8))
PARTITIONS = {"train": 0, "val": 1, "test": 2}  # list_eval_partition.txt codes
ALIGNED_SIZE = (218, 178)  # rows, cols of img_align_celeba
CROP = (slice(121 - 64, 121 + 64), slice(89 - 64, 89 + 64))


def read_attributes(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """list_attr_celeba.txt -> (attribute names, file names, N x A array of -1/+1)."""
    try:
        lines = open(path).read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DiffsecError(f"{path}: cannot read CelebA attributes ({e})") from None
    if len(lines) < 3 or not lines[0].strip().isdigit():
        raise DiffsecError(f"{path}: not a CelebA attribute file (first line should be the image count)")
    names = lines[1].split()
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != int(lines[0]):
        raise DiffsecError(f"{path}: header says {int(lines[0])} images but the file lists {len(rows)}")
    bad = next((r[0] for r in rows if len(r) != len(names) + 1), None)
    if bad is not None:
        raise DiffsecError(f"{path}: row {bad} does not have {len(names)} attribute values")
    values = np.array([r[1:] for r in rows], dtype=np.int8)
    if not np.isin(values, (-1, 1)).all():
        raise DiffsecError(f"{path}: attribute values must be -1 or 1")
    return names, [r[0] for r in rows], values


def read_partition(path: str | os.PathLike) -> dict[str, int]:
    """list_eval_partition.txt -> {file name: 0 train | 1 val | 2 test}."""
    try:
        pairs = [line.split() for line in open(path).read().splitlines() if line.strip()]
        return {name: int(code) for name, code in pairs}
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DiffsecError(f"{path}: not a CelebA partition file ({e})") from None


def eight_classes(names: list[str], values: np.ndarray) -> np.ndarray:
    """Class id = [heavy makeup] + 2 [mouth slightly open] + 4 [smiling]."""
    missing = [a for a in ATTRIBUTES if a not in names]
    if missing:
        raise DiffsecError(f"CelebA attributes {missing} are missing from the attribute file")
    bits = [(values[:, names.index(a)] > 0).astype(np.int64) << i for i, a in enumerate(ATTRIBUTES)]
    return np.sum(bits, axis=0)


def crop_resize(data: bytes, resolution: int) -> np.ndarray:
    """One aligned JPEG -> its 128 px face crop, bicubic-resized to resolution (uint8 HWC)."""
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if image.shape[:2] != ALIGNED_SIZE:
        raise DiffsecError(f"CelebA image is {image.shape[1]}x{image.shape[0]}, expected the aligned "
                           f"{ALIGNED_SIZE[1]}x{ALIGNED_SIZE[0]}")
    face = np.ascontiguousarray(image[CROP])
    if resolution == face.shape[0]:
        return face
    return np.asarray(Image.fromarray(face).resize((resolution, resolution), Image.BICUBIC))


def prepare_celeba(images_zip: str | os.PathLike, attributes: str | os.PathLike,
                   partition: str | os.PathLike, resolution: int, sizes: dict[str, int],
                   seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Seeded class-stratified subsets of the official train and test partitions (size <= 0: all).

    Returns split -> (images uint8 N x R x R x 3, 8-class labels, row index in the attribute file).
    """
    names, files, values = read_attributes(attributes)
    labels = eight_classes(names, values)
    part = read_partition(partition)
    unknown = [f for f in files if f not in part]
    if unknown:
        raise DiffsecError(f"{len(unknown)} attribute rows (first {unknown[0]}) have no partition entry")
    codes = np.array([part[f] for f in files])
    try:
        archive = zipfile.ZipFile(images_zip)
    except (OSError, zipfile.BadZipFile) as e:
        raise DiffsecError(f"{images_zip}: not a readable zip of CelebA images ({e})") from None
    with archive:
        members = {os.path.basename(n): n for n in zip_names(images_zip, archive) if n.lower().endswith(".jpg")}
        out = {}
        for k, split in enumerate(("train", "test")):
            rows = np.flatnonzero(codes == PARTITIONS[split])
            n = sizes.get(split, 0)
            if n > len(rows):
                raise DiffsecError(f"asked for {n} {split} images but the {split} partition has {len(rows)}")
            # A distinct stream per split, so changing one split's size leaves the other alone.
            rows = rows[stratified_subset(labels[rows], n, seed + 1000 * k)]
            absent = [files[i] for i in rows if files[i] not in members]
            if absent:
                raise DiffsecError(f"{images_zip}: {len(absent)} {split} images (first {absent[0]}) "
                                   "are missing from the archive")
            images = [crop_resize(archive.read(members[files[i]]), resolution)
                      for i in tqdm(rows, desc=f"celeba: {split}", mininterval=1.0)]
            out[split] = (np.stack(images) if images else np.zeros((0, resolution, resolution, 3), np.uint8),
                          labels[rows], rows)
    return out


def build_celeba(art: Artifact, images_zip: str | os.PathLike, attributes: str | os.PathLike,
                 partition: str | os.PathLike, resolution: int, sizes: dict[str, int], seed: int) -> None:
    """The prepare-celeba artifact: train/test image sets in the 8 classes, a sample grid, class counts."""
    from diffsec.data.cifar import write_class_splits

    data = prepare_celeba(images_zip, attributes, partition, resolution, sizes, seed)
    write_class_splits(art, data, CLASSES)
    art.extra.update(attributes=list(ATTRIBUTES), target_class=TARGET_CLASS,
                     class_counts={s: np.bincount(d[1], minlength=len(CLASSES)).tolist()
                                   for s, d in data.items()})
