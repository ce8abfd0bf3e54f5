"""The DreamBooth subjects: square crops, object masks and the prompt templates.

The archive holds `<root>/<subject>/<nn>.jpg` plus `prompts_and_classes.txt` (subject ->
class noun, and the DreamBooth object / live-subject prompt lists) and the licence files.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm import tqdm

from diffsec.errors import DiffsecError

TEXT_FILES = ("prompts_and_classes.txt", "references_and_licenses.txt", "LICENSE.md")
# DreamBooth gives animals their own prompt list (outfits, hats) instead of the object one.
LIVE_CLASSES = {"cat", "dog"}


@dataclass
class DreamBoothArchive:
    images: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # subject -> [(file, jpeg)]
    texts: dict[str, str] = field(default_factory=dict)


def read_archive(archive: str | os.PathLike) -> DreamBoothArchive:
    out = DreamBoothArchive()
    try:
        with tarfile.open(archive, "r:*") as tf:
            for m in tf.getmembers():
                if not m.isfile():
                    continue
                parts = m.name.split("/")
                if parts[-1] in TEXT_FILES:
                    out.texts[parts[-1]] = tf.extractfile(m).read().decode("utf-8")
                elif len(parts) >= 2 and parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
                    out.images.setdefault(parts[-2], []).append((parts[-1], tf.extractfile(m).read()))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DiffsecError(f"{archive}: not a readable tar archive ({e})") from None
    if "prompts_and_classes.txt" not in out.texts or not out.images:
        raise DiffsecError(f"{archive}: expected <subject>/*.jpg and prompts_and_classes.txt")
    for files in out.images.values():
        files.sort()
    return out


def parse_prompts(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    """(subject -> class noun, object prompt templates, live-subject prompt templates).

    Templates keep DreamBooth's `{0} {1}` placeholders: `t.format(unique_token, class_noun)`.
    """
    classes = dict(re.findall(r"^(\w+),([^\n,]+)$", text.split("Prompts")[0], re.M))
    classes.pop("subject_name", None)  # the CSV header
    obj_at, live_at = text.find("Object Prompts"), text.find("Live Subject Prompts")
    if not classes or obj_at < 0 or live_at < 0:
        raise DiffsecError("prompts_and_classes.txt: missing the Classes or Prompts sections")
    quoted = r"'([^'\n]*\{0\} \{1\}[^'\n]*)'"
    return (classes, re.findall(quoted, text[obj_at:live_at]), re.findall(quoted, text[live_at:]))


def center_square(jpeg: bytes) -> np.ndarray:
    """Decode (honouring EXIF orientation) and crop the central square, uint8 HWC RGB."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(jpeg)) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return np.asarray(im.crop((left, top, left + s, top + s)))


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.LANCZOS))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Area-average then threshold at one half: a fair downsampling of a binary mask."""
    import cv2

    m = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return (m >= 0.5).astype(np.uint8)


def prepare_dreambooth(archive: str | os.PathLike, resolution: int, per_concept: int,
                       masker: Callable[[np.ndarray], np.ndarray], only: list[str] | None = None) -> dict:
    """Images, masks and names for every subject, or the subjects in `only` (each its first
    `per_concept` files, sorted).

    `masker` maps a full-resolution square crop to a boolean object mask of the same size;
    the mask is made before downsizing so small resolutions still get clean edges.
    """
    src = read_archive(archive)
    classes, object_prompts, live_prompts = parse_prompts(src.texts["prompts_and_classes.txt"])
    concepts = sorted(src.images)
    unknown = sorted(set(only or []) - set(concepts))
    if unknown:
        raise DiffsecError(f"no DreamBooth subjects {unknown}; the archive has {concepts}")
    concepts = [c for c in concepts if not only or c in only]
    missing = [c for c in concepts if c not in classes]
    if missing:
        raise DiffsecError(f"prompts_and_classes.txt has no class for subjects {missing}")
    short = {c: len(src.images[c]) for c in concepts if len(src.images[c]) < per_concept}
    if short:
        raise DiffsecError(f"--images-per-concept {per_concept} but some subjects have fewer: {short}")

    images, masks, names, files = [], [], [], []
    jobs = [(c, f, b) for c in concepts for f, b in src.images[c][:per_concept]]
    for concept, fname, jpeg in tqdm(jobs, desc="dreambooth: crop + mask", unit=" img"):
        crop = center_square(jpeg)
        images.append(resize_image(crop, resolution))
        masks.append(resize_mask(masker(crop), resolution))
        names.append(concept)
        files.append(f"{concept}/{fname}")
    prompts = {
        "template": "prompt.format(unique_token, class_noun), as in DreamBooth",
        "object_prompts": object_prompts,
        "live_prompts": live_prompts,
        "concepts": {c: {"class": classes[c], "live": classes[c] in LIVE_CLASSES,
                         "prompts": object_prompts} for c in concepts},
    }
    return {"images": np.stack(images), "masks": np.stack(masks), "concept": np.array(names),
            "class_name": np.array([classes[c] for c in names]), "file": np.array(files),
            "prompts": prompts, "texts": src.texts}
