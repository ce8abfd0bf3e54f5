"""`diffsec train-clip`: the tiny profile's CLIP, trained contrastively on captioned CIFAR-10.

Load the result as a metric backbone with `get_backbone("clip-tiny", weights=<out dir>)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, open_stage


def register(sub) -> None:
    p = sub.add_parser(
        "train-clip", help="train the tiny CLIP used for CLIP scores offline",
        description="Train a small open_clip CLIP (ModifiedResNet or ViT image tower, text transformer with "
        "CLIP's BPE tokenizer) on an image set with class captions ('a photo of a <class>' and other "
        "templates), with a label-aware symmetric InfoNCE loss: same-class pairs are positives. Writes "
        "model.safetensors + config.json, the loss curve, and in the manifest the zero-shot accuracy and "
        "matched vs. mismatched CLIP scores on --test.")
    p.add_argument("--data", type=Path, required=True,
                   help="training image set (npz: images uint8 NHWC, labels, optional class_name)")
    p.add_argument("--test", type=Path, required=True,
                   help="labelled test image set for zero-shot accuracy and CLIP scores")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--name", default="clip-tiny-cifar10",
                   help="backbone name recorded in config.json (appears in metric tables)")
    g = p.add_argument_group("model")
    g.add_argument("--embed-dim", type=int, default=128, help="shared image-text embedding size (128)")
    g.add_argument("--vision-layers", type=json_arg, default=[1, 1, 1, 1],
                   help="JSON: a list of 4 block counts = CLIP ModifiedResNet image tower "
                   "(image side a multiple of 32), an int = ViT blocks ([1,1,1,1])")
    g.add_argument("--vision-width", type=int, default=32,
                   help="ResNet stem width (last stage has 32x it) or ViT width (32)")
    g.add_argument("--vision-head-width", type=int, default=32,
                   help="channels per attention head of the ResNet attention pool or the ViT (32)")
    g.add_argument("--patch-size", type=int, default=8, help="ViT only: patch size, divides the image side (8)")
    for flag, default, what in (("width", 128, "width"), ("layers", 2, "blocks"), ("heads", 4, "attention heads")):
        g.add_argument(f"--text-{flag}", type=int, default=default, help=f"text transformer {what} ({default})")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=800, help="optimizer steps (800)")
    g.add_argument("--batch", type=int, default=256, help="images per step (256)")
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW peak lr, 5%% linear warmup then cosine decay (1e-3)")
    g.add_argument("--weight-decay", type=float, default=0.1,
                   help="AdamW weight decay on weight matrices only, as CLIP (0.1)")
    g.add_argument("--ckpt-every", type=int, default=200, help="checkpoint period (steps) for resume (200)")
    add_common(p)
    p.set_defaults(func=run)


def _sets(args: argparse.Namespace):
    """(train images, labels), (test images, labels), class names; one DiffsecError if they do not fit."""
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_classes
    from diffsec.models.captions import CIFAR10_CLASSES

    (train, names), (test, test_names) = (load_classes(args.data, "--data", CIFAR10_CLASSES),
                                          load_classes(args.test, "--test", CIFAR10_CLASSES))
    if test_names != names:
        raise DiffsecError(f"--test classes {test_names} differ from --data classes {names}")
    if test["images"].shape[1:] != train["images"].shape[1:]:
        raise DiffsecError(f"--test images are {test['images'].shape[1:]}, --data images {train['images'].shape[1:]}")
    return (train["images"], train["labels"]), (test["images"], test["labels"]), names


def run(args: argparse.Namespace) -> None:
    from diffsec.models import checks, clip_tiny, clip_train

    # Everything that can fail on bad input happens before the artifact directory exists.
    checks.positive(args, "ckpt_every")
    (images, labels), test, names = _sets(args)
    cfg = clip_tiny.ClipConfig(args.name, args.embed_dim, images.shape[1], args.vision_layers, args.vision_width,
                               args.vision_head_width, args.patch_size, args.text_width, args.text_heads,
                               args.text_layers, names).as_dict()
    train = clip_train.TrainConfig(args.steps, args.batch, args.lr, args.weight_decay, args.seed)
    st = open_stage(args, "train-clip")
    ckpt = st.checkpoint(args.ckpt_every, data=args.data, test=args.test)
    model = clip_tiny.build(cfg)
    losses = clip_train.train(model, images, labels, names, train, st.device, ckpt)
    with st.artifact() as art:
        art.extra.update(notes := clip_train.write_clip(model, cfg, losses, art.path, test, args.seed, st.device))
    m = notes["metrics"]
    print(f"{args.name}: zero-shot top-1 {m['zero_shot_top1']:.4f}, CLIP score matched {m['clip_score_matched']:.2f} "
          f"vs mismatched {m['clip_score_mismatched']:.2f} -> {args.out}")
