"""`diffsec prepare-celeba`: CelebA for InvisibleDiffusion's second benchmark (paper profile).

Its own module (not cli/data.py) because every data stage declares the CLI module it runs as an
input: adding CelebA must not make CIFAR-10, MNIST and DreamBooth stale.
"""

from __future__ import annotations

import argparse

from diffsec.cli.common import add_common, params_of, setup
from diffsec.cli.data import _positive, source_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare-celeba", help="CelebA faces in InvisibleDiffusion's 8 attribute classes",
                       description="CelebA train/test image sets labelled with the 8 classes made of "
                       "Heavy_Makeup, Mouth_Slightly_Open and Smiling (class 7 = all three, the In-D "
                       "target); the 128 px face crop of the aligned images, resized; seeded "
                       "class-stratified subsets of the official partitions.")
    p.add_argument("--images", required=True, help="fetch-source artifact of celeba_images (or the zip)")
    p.add_argument("--attributes", required=True, help="fetch-source artifact of celeba_attributes")
    p.add_argument("--partition", required=True, help="fetch-source artifact of celeba_partition")
    p.add_argument("--resolution", type=int, default=64, help="output side in pixels (default: 64)")
    p.add_argument("--train-size", type=int, default=0, help="train images, 0 = the whole train partition")
    p.add_argument("--test-size", type=int, default=0, help="test images, 0 = the whole test partition")
    p.add_argument("--out", required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=prepare_celeba)


def prepare_celeba(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.data.celeba import ATTRIBUTES, CLASSES, TARGET_CLASS, prepare_celeba as prepare
    from diffsec.data.cifar import class_grid
    from diffsec.imageset import save_imageset, save_png

    setup(args)
    _positive(resolution=args.resolution)
    paths = {k: source_file(getattr(args, k)) for k in ("images", "attributes", "partition")}
    with artifact_dir(args.out, "prepare-celeba", params_of(args)) as art:
        for k, path in paths.items():
            art.add_input(k, path)
        data = prepare(paths["images"], paths["attributes"], paths["partition"], args.resolution,
                       {"train": args.train_size, "test": args.test_size}, args.seed)
        for split, (images, labels, rows) in data.items():
            save_imageset(art.file(f"{split}.npz"), images, labels=labels, index=rows,
                          class_name=[CLASSES[i] for i in labels])
        save_png(art.file("samples.png"), class_grid(*data["train"][:2], n_classes=len(CLASSES)),
                 scale=max(1, 64 // args.resolution))
        art.extra.update(sizes={s: len(d[1]) for s, d in data.items()}, classes=list(CLASSES),
                         attributes=list(ATTRIBUTES), target_class=TARGET_CLASS,
                         class_counts={s: np.bincount(d[1], minlength=len(CLASSES)).tolist()
                                       for s, d in data.items()})
