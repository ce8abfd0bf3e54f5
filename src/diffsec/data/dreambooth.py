"""The DreamBooth subjects: square crops, object masks and the prompt templates.

The archive holds `<root>/<subject>/<nn>.jpg` plus `prompts_and_classes.txt` (subject ->
class noun, and the DreamBooth object / live-subject prompt lists) and the licence files.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from diffsec.data.archive import iter_tar
from diffsec.errors import DiffsecError

if TYPE_CHECKING:
    from diffsec.artifact import Artifact

TEXT_FILES = ("prompts_and_classes.txt", "references_and_licenses.txt", "LICENSE.md")
# DreamBooth gives animals their own prompt list (outfits, hats) instead of the object one.
LIVE_CLASSES = {"cat", "dog"}


@dataclass
class DreamBoothArchive:
    images: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # subject -> [(file, jpeg)]
    texts: dict[str, str] = field(default_factory=dict)


def _wanted(name: str) -> bool:
    parts = name.split("/")
    return parts[-1] in TEXT_FILES or (len(parts) >= 2 and parts[-1].lower().endswith((".jpg", ".jpeg", ".png")))


def read_archive(archive: str | os.PathLike) -> DreamBoothArchive:
    """The subjects' images and the text files (read through `iter_tar`: no `..`/absolute/link members)."""
    out = DreamBoothArchive()
    for name, data in iter_tar(archive, _wanted):
        parts = name.split("/")
        if parts[-1] in TEXT_FILES:
            try:
                out.texts[parts[-1]] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise DiffsecError(f"{parts[-1]} is not UTF-8 text ({archive})") from None
        else:
            out.images.setdefault(parts[-2], []).append((parts[-1], data))
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


def build_dreambooth(art: Artifact, archive: str | os.PathLike, resolution: int, per_concept: int,
                     masker: Callable[[np.ndarray], np.ndarray], masker_name: str,
                     only: list[str] | None = None) -> None:
    """The prepare-dreambooth artifact: concepts.npz (images, masks, names), prompts.json, the
    archive's credit/licence texts, and masks.png to check the masks by eye."""
    from diffsec.data.masks import overlay_figure
    from diffsec.imageset import save_imageset

    d = prepare_dreambooth(archive, resolution, per_concept, masker, only)
    save_imageset(art.file("concepts.npz"), d["images"], masks=d["masks"], concept=d["concept"],
                  class_name=d["class_name"], source_file=d["file"])
    art.file("prompts.json").write_text(json.dumps(d["prompts"], indent=2))
    for name, text in d["texts"].items():  # keep the CC-BY credits beside the derived images
        art.file(name).write_text(text)
    concepts = d["prompts"]["concepts"]
    overlay_figure(art.file("masks.png"), d["images"], d["masks"], list(d["concept"]),
                   [f"{c}\n({concepts[c]['class']})" for c in concepts],
                   f"DreamBooth object masks ({masker_name}, {resolution} px): "
                   "dimmed = background, green = mask outline, % = mask area")
    cover = d["masks"].reshape(len(d["masks"]), -1).mean(1)
    art.extra.update(concepts=list(concepts), n_images=len(cover),
                     mask_coverage={"min": float(cover.min()), "mean": float(cover.mean()),
                                    "max": float(cover.max())},
                     empty_masks=int((cover == 0).sum()))
