"""`diffsec prepare-celeba`: CelebA for InvisibleDiffusion's second benchmark (paper profile).

Its own module (not cli/data.py): a stage's code inputs are the import closure of its CLI module
(src/diffsec/codedeps.py), so an edit of the CelebA reader must not make CIFAR-10, MNIST and
DreamBooth, and everything downstream of them, stale.
"""

from __future__ import annotations

import argparse

from diffsec.cli.common import add_stage, positive
from diffsec.cli.data import data_stage


def register(sub: argparse._SubParsersAction) -> None:
    p = add_stage(
        sub, "prepare-celeba", prepare_celeba, "CelebA faces in InvisibleDiffusion's 8 attribute classes",
        "CelebA train/test image sets labelled with the 8 classes made of Heavy_Makeup, Mouth_Slightly_Open "
        "and Smiling (class 7 = all three, the In-D target); the 128 px face crop of the aligned "
        "images, resized; seeded class-stratified subsets of the official partitions.")
    p.add_argument("--images", required=True, help="fetch-source artifact of celeba_images (or the zip)")
    p.add_argument("--attributes", required=True, help="fetch-source artifact of celeba_attributes")
    p.add_argument("--partition", required=True, help="fetch-source artifact of celeba_partition")
    p.add_argument("--resolution", type=int, default=64, help="output side in pixels (default: 64)")
    p.add_argument("--train-size", type=int, default=0, help="train images, 0 = the whole train partition")
    p.add_argument("--test-size", type=int, default=0, help="test images, 0 = the whole test partition")


def prepare_celeba(args: argparse.Namespace) -> None:
    from diffsec.data.celeba import build_celeba

    positive(resolution=args.resolution)
    sources = {"images": "celeba_images", "attributes": "celeba_attributes", "partition": "celeba_partition"}
    with data_stage(args, "prepare-celeba", sources) as (_, art, src):
        build_celeba(art, src["images"], src["attributes"], src["partition"], args.resolution,
                     {"train": args.train_size, "test": args.test_size}, args.seed)
