"""Data stages: fetch a checksummed source; prepare CIFAR-10, MNIST and DreamBooth image sets."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from diffsec.cli.common import add_common, params_of, setup


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch-source", help="copy or download one checksummed source",
                       description="Copy a declared source from the mirror (or download it from its "
                                   "canonical URL), verify its sha256, and store it as an artifact.")
    p.add_argument("--name", required=True, help="source name, e.g. cifar10, mnist_test_images")
    p.add_argument("--mirror", default="auto",
                   help="mirror directory, 'auto' (../shared/mirror beside the current directory) "
                        "or 'none' (download only) (default: auto)")
    p.add_argument("--out", required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=fetch_source)

    p = sub.add_parser("prepare-cifar10", help="CIFAR-10 train/test image sets",
                       description="Decode the CIFAR-10 archive (JPEG mirror or binary upstream "
                                   "layout) into train.npz and test.npz with seeded, "
                                   "class-stratified subsets, plus a sample grid.")
    p.add_argument("--source", required=True, help="fetch-source artifact of cifar10 (or the archive)")
    p.add_argument("--resolution", type=int, default=32, help="output side in pixels (default: 32)")
    p.add_argument("--train-size", type=int, default=0, help="train images, 0 or -1 = all 50,000")
    p.add_argument("--test-size", type=int, default=0, help="test images, 0 or -1 = all 10,000")
    p.add_argument("--out", required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=prepare_cifar10)

    p = sub.add_parser("prepare-mnist", help="MNIST classifier-train / held-out split",
                       description="Split the 10,000 MNIST test digits into a classifier-train "
                                   "part (stratified, seeded) and a held-out part (the rest).")
    p.add_argument("--images", required=True, help="fetch-source artifact of mnist_test_images")
    p.add_argument("--labels", required=True, help="fetch-source artifact of mnist_test_labels")
    p.add_argument("--classifier-train", type=int, default=5000,
                   help="digits for training the classifier; the rest is held out (default: 5000)")
    p.add_argument("--out", required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=prepare_mnist)

    p = sub.add_parser("prepare-dreambooth", help="DreamBooth concepts with object masks",
                       description="Centre-crop and resize the DreamBooth subjects, mask the object "
                                   "in every image, and collect the class nouns and prompt templates.")
    p.add_argument("--source", required=True, help="fetch-source artifact of dreambooth10 (or the archive)")
    p.add_argument("--resolution", type=int, default=512, help="output side in pixels (default: 512)")
    p.add_argument("--images-per-concept", type=int, default=5,
                   help="first K images of each subject, by file name (default: 5)")
    p.add_argument("--masker", choices=("grabcut", "sam"), default="grabcut",
                   help="grabcut: OpenCV GrabCut, no weights; sam: segment-anything (default: grabcut)")
    p.add_argument("--sam-checkpoint", default=None, help="SAM weights file (needed by --masker sam)")
    p.add_argument("--sam-model-type", default="vit_h", help="vit_h | vit_l | vit_b (default: vit_h)")
    p.add_argument("--concepts", nargs="*", default=[], help="only these subjects (default: all ten)")
    p.add_argument("--out", required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=prepare_dreambooth)


def source_file(path: str | os.PathLike) -> Path:
    """The data file inside a fetch-source artifact (or `path` itself when it is a file)."""
    from diffsec.artifact import MANIFEST
    from diffsec.errors import DiffsecError

    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise DiffsecError(f"source {p} does not exist")
    manifest = p / MANIFEST
    if manifest.is_file() and (name := json.loads(manifest.read_text()).get("file")):
        return p / name
    files = [f for f in p.iterdir() if f.is_file() and f.name != MANIFEST]
    if len(files) != 1:
        raise DiffsecError(f"source {p} should hold exactly one data file, found {len(files)}")
    return files[0]


def _positive(**values: int) -> None:
    from diffsec.errors import DiffsecError

    for name, v in values.items():
        if v <= 0:
            raise DiffsecError(f"--{name.replace('_', '-')} must be positive, got {v}")


def fetch_source(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir, sha256_file
    from diffsec.sources import fetch, resolve_mirror

    mirror = resolve_mirror(args.mirror, Path.cwd())
    with artifact_dir(args.out, "fetch-source", params_of(args)) as art:
        path, origin = fetch(args.name, art.path, mirror)
        art.extra.update(file=path.name, origin=origin, mirror=str(mirror) if mirror else None,
                         sha256=sha256_file(path))


def prepare_cifar10(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir
    from diffsec.data.cifar import CLASSES, class_grid, prepare_cifar10 as prepare
    from diffsec.imageset import save_imageset, save_png

    setup(args)
    _positive(resolution=args.resolution)
    archive = source_file(args.source)
    with artifact_dir(args.out, "prepare-cifar10", params_of(args)) as art:
        art.add_input("source", archive)
        data, fmt = prepare(archive, args.resolution,
                            {"train": args.train_size, "test": args.test_size}, args.seed)
        for split, (images, labels) in data.items():
            # Per-row names (image sets hold aligned arrays only); the ordered list is CLASSES.
            save_imageset(art.file(f"{split}.npz"), images, labels=labels,
                          class_name=[CLASSES[i] for i in labels])
        save_png(art.file("samples.png"), class_grid(*data["train"]), scale=max(1, 64 // args.resolution))
        art.extra.update(sizes={s: len(d[1]) for s, d in data.items()}, classes=list(CLASSES),
                         source_format=fmt,  # numbers computed from the JPEGs must say so
                         note="lossy JPEG (q~75) re-encoding of CIFAR-10" if fmt == "jpeg"
                         else "original CIFAR-10 pixels")


def prepare_mnist(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.data.mnist import read_mnist, split
    from diffsec.imageset import grid, save_imageset, save_png

    setup(args)
    img_path, lab_path = source_file(args.images), source_file(args.labels)
    with artifact_dir(args.out, "prepare-mnist", params_of(args)) as art:
        art.add_input("images", img_path)
        art.add_input("labels", lab_path)
        images, labels = read_mnist(img_path, lab_path)
        train, heldout = split(labels, args.classifier_train, args.seed)
        save_imageset(art.file("classifier_train.npz"), images[train], labels=labels[train], index=train)
        save_imageset(art.file("heldout.npz"), images[heldout], labels=labels[heldout], index=heldout)
        save_png(art.file("samples.png"), grid(images[train[:100]], nrow=10), scale=2)
        art.extra.update(sizes={"classifier_train": len(train), "heldout": len(heldout)},
                         train_class_counts=np.bincount(labels[train], minlength=10).tolist())


def prepare_dreambooth(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir
    from diffsec.data.dreambooth import prepare_dreambooth as prepare
    from diffsec.data.masks import SamMasker, grabcut, overlay_figure
    from diffsec.imageset import save_imageset

    device = setup(args)
    _positive(resolution=args.resolution, images_per_concept=args.images_per_concept)
    if args.threads:
        import cv2

        cv2.setNumThreads(args.threads)
    archive = source_file(args.source)
    if args.masker == "sam":
        masker = SamMasker(args.sam_checkpoint, args.sam_model_type, str(device))
    else:
        def masker(image):
            return grabcut(image, seed=args.seed)
    with artifact_dir(args.out, "prepare-dreambooth", params_of(args)) as art:
        art.add_input("source", archive)
        if args.masker == "sam":
            art.add_input("sam_checkpoint", args.sam_checkpoint)
            art.device = str(device)
        d = prepare(archive, args.resolution, args.images_per_concept, masker, args.concepts or None)
        save_imageset(art.file("concepts.npz"), d["images"], masks=d["masks"], concept=d["concept"],
                      class_name=d["class_name"], source_file=d["file"])
        art.file("prompts.json").write_text(json.dumps(d["prompts"], indent=2))
        for name, text in d["texts"].items():  # keep the CC-BY credits beside the derived images
            art.file(name).write_text(text)
        concepts = list(d["prompts"]["concepts"])
        overlay_figure(art.file("masks.png"), d["images"], d["masks"], list(d["concept"]),
                       [f"{c}\n({d['prompts']['concepts'][c]['class']})" for c in concepts],
                       f"DreamBooth object masks ({args.masker}, {args.resolution} px): "
                       "dimmed = background, green = mask outline, % = mask area")
        cover = d["masks"].reshape(len(d["masks"]), -1).mean(1)
        art.extra.update(concepts=concepts, n_images=len(cover),
                         mask_coverage={"min": float(cover.min()), "mean": float(cover.mean()),
                                        "max": float(cover.max())},
                         empty_masks=int((cover == 0).sum()))
