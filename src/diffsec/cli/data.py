"""Data stages: prepare CIFAR-10, MNIST and DreamBooth image sets from fetched sources.

A prepare-* stage checks --out, verifies every source it reads against the catalog (`data_stage`),
then runs one library build (`diffsec.data.*.build_*`) into its artifact.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from diffsec.cli.common import add_stage, positive


def register(sub: argparse._SubParsersAction) -> None:
    p = add_stage(
        sub, "prepare-cifar10", prepare_cifar10, "CIFAR-10 train/test image sets", "Decode the CIFAR-10 archive "
        "(JPEG mirror or binary upstream layout) into train.npz and test.npz with seeded, "
        "class-stratified subsets, plus a sample grid.")
    p.add_argument("--source", required=True, help="fetch-source artifact of cifar10 (or the archive)")
    p.add_argument("--resolution", type=int, default=32, help="output side in pixels (default: 32)")
    p.add_argument("--train-size", type=int, default=0, help="train images, 0 or -1 = all 50,000")
    p.add_argument("--test-size", type=int, default=0, help="test images, 0 or -1 = all 10,000")

    p = add_stage(
        sub, "prepare-mnist", prepare_mnist, "MNIST classifier-train / held-out split", "Split the 10,000 MNIST test "
        "digits into a classifier-train part (stratified, seeded) and a held-out part.")
    p.add_argument("--images", required=True, help="fetch-source artifact of mnist_test_images")
    p.add_argument("--labels", required=True, help="fetch-source artifact of mnist_test_labels")
    p.add_argument("--classifier-train", type=int, default=5000,
                   help="digits for training the classifier; the rest is held out (default: 5000)")

    p = add_stage(
        sub, "prepare-dreambooth", prepare_dreambooth, "DreamBooth concepts with object masks",
        "Centre-crop and resize the DreamBooth subjects, mask the object in every image, and collect the "
        "class nouns and prompt templates.")
    p.add_argument("--source", required=True, help="fetch-source artifact of dreambooth10 (or the archive)")
    p.add_argument("--resolution", type=int, default=512, help="output side in pixels (default: 512)")
    p.add_argument("--images-per-concept", type=int, default=5,
                   help="first K images of each subject, by file name (default: 5)")
    p.add_argument("--masker", choices=("grabcut", "sam"), default="grabcut",
                   help="grabcut: OpenCV GrabCut, no weights; sam: segment-anything (default: grabcut)")
    p.add_argument("--sam-checkpoint", default=None, help="SAM weights file (needed by --masker sam)")
    p.add_argument("--sam-model-type", default="vit_h", help="vit_h | vit_l | vit_b (default: vit_h)")
    p.add_argument("--concepts", nargs="*", default=[], help="only these subjects (default: all ten)")

    p = add_stage(
        sub, "member-split", member_split, "members and held-out non-members of an image set",
        "Draw a seeded, class-stratified member set (what a membership-inference target trains on) and a "
        "disjoint held-out set of the same source, into members.npz and heldout.npz with their indices.")
    p.add_argument("--data", type=Path, required=True,
                   help="labelled image set (npz), e.g. prepare-cifar10's train.npz")
    p.add_argument("--members", type=int, default=1000, help="member images (default: 1000)")
    p.add_argument("--heldout", type=int, default=1000, help="held-out non-member images (default: 1000)")


@contextlib.contextmanager
def data_stage(args: argparse.Namespace, name: str, sources: dict[str, str], inputs: dict | None = None):
    """Check --out, verify each source (flag -> catalog name); yield (stage, artifact, {flag: file})."""
    from diffsec.artifact import check_out
    from diffsec.cli.common import open_stage
    from diffsec.sources import verify_source

    inputs = inputs or {}
    check_out(args.out, name, [getattr(args, k) for k in sources] + list(inputs.values()))
    files = {k: verify_source(getattr(args, k), src) for k, src in sources.items()}
    st = open_stage(args, name)
    st.inputs.update({k: f.sha256 for k, f in files.items()})
    st.add_inputs(**inputs)
    with st.artifact() as art:
        art.extra["sources"] = {k: f.record() for k, f in files.items()}
        yield st, art, {k: f.path for k, f in files.items()}


def prepare_cifar10(args: argparse.Namespace) -> None:
    from diffsec.data.cifar import build_cifar10

    positive(resolution=args.resolution)
    with data_stage(args, "prepare-cifar10", {"source": "cifar10"}) as (_, art, src):
        build_cifar10(art, src["source"], args.resolution, {"train": args.train_size, "test": args.test_size},
                      args.seed)


def prepare_mnist(args: argparse.Namespace) -> None:
    from diffsec.data.mnist import build_mnist

    sources = {"images": "mnist_test_images", "labels": "mnist_test_labels"}
    with data_stage(args, "prepare-mnist", sources) as (_, art, src):
        build_mnist(art, src["images"], src["labels"], args.classifier_train, args.seed)


def prepare_dreambooth(args: argparse.Namespace) -> None:
    from diffsec.data.dreambooth import build_dreambooth
    from diffsec.data.masks import make_masker

    positive(resolution=args.resolution, images_per_concept=args.images_per_concept)
    sam = {"sam_checkpoint": args.sam_checkpoint} if args.masker == "sam" else {}
    with data_stage(args, "prepare-dreambooth", {"source": "dreambooth10"}, sam) as (st, art, src):
        masker = make_masker(args.masker, seed=args.seed, threads=args.threads, checkpoint=args.sam_checkpoint,
                             model_type=args.sam_model_type, device=str(st.device))
        build_dreambooth(art, src["source"], args.resolution, args.images_per_concept, masker, args.masker,
                         args.concepts or None)


def member_split(args: argparse.Namespace) -> None:
    from diffsec.cli.common import open_stage
    from diffsec.data.members import member_split as split
    from diffsec.data.members import write_members
    from diffsec.imageset import load_labelled

    data = load_labelled(args.data, "--data")
    mem, held = split(data["labels"], args.members, args.heldout, args.seed)
    st = open_stage(args, "member-split")
    st.add_inputs(data=args.data)
    with st.artifact() as art:
        write_members(art, data, mem, held)
