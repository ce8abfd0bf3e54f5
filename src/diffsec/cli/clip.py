"""`diffsec train-clip`: the tiny profile's CLIP, trained contrastively on captioned CIFAR-10.

Load the result as a metric backbone with `get_backbone("clip-tiny", weights=<out dir>)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, params_of, setup


def register(sub) -> None:
    p = sub.add_parser(
        "train-clip", help="train the tiny CLIP used for CLIP scores offline",
        description="Train a small open_clip CLIP (ModifiedResNet or ViT image tower, text transformer "
        "with CLIP's BPE tokenizer) on "
        "an image set with class captions ('a photo of a <class>' and other templates), with a "
        "label-aware symmetric InfoNCE loss: same-class pairs are positives. Writes "
        "model.safetensors + config.json, the loss curve, and in the manifest the zero-shot "
        "accuracy and matched vs. mismatched CLIP scores on --test.")
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
    g.add_argument("--text-width", type=int, default=128, help="text transformer width (128)")
    g.add_argument("--text-layers", type=int, default=2, help="text transformer blocks (2)")
    g.add_argument("--text-heads", type=int, default=4, help="text attention heads (4)")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=800, help="optimizer steps (800)")
    g.add_argument("--batch", type=int, default=256, help="images per step (256)")
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW peak lr, 5%% linear warmup then cosine decay (1e-3)")
    g.add_argument("--weight-decay", type=float, default=0.1,
                   help="AdamW weight decay on weight matrices only, as CLIP (0.1)")
    add_common(p)
    p.set_defaults(func=run)


def _load(path: Path, what: str):
    """images, labels and ordered class names of an image set, or a one-line DiffsecError."""
    import numpy as np

    from diffsec.cli.t2i import _class_names
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset

    try:
        data = load_imageset(path)
    except (OSError, ValueError) as e:  # not an npz, truncated, pickled arrays
        raise DiffsecError(f"cannot read {what} image set {path} ({type(e).__name__}: {e})") from None
    images, labels = data.get("images"), data.get("labels")
    if images is None or labels is None:
        raise DiffsecError(f"{what} image set {path} needs `images` and `labels` arrays, has {sorted(data)}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise DiffsecError(f"{what} image set {path}: `images` must be non-empty uint8 NHWC RGB, "
                           f"got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DiffsecError(f"{what} image set {path}: `labels` must be {len(images)} integers, "
                           f"got {labels.dtype} {labels.shape}")
    names = _class_names(data)
    if labels.min() < 0 or labels.max() >= len(names):
        raise DiffsecError(f"{what} image set {path}: labels must lie in [0, {len(names)}), "
                           f"got [{labels.min()}, {labels.max()}]")
    return images, labels.astype(np.int64), names


def _vision(args: argparse.Namespace, size: tuple[int, int]) -> dict:
    """The open_clip vision config the flags describe, or a one-line DiffsecError."""
    from diffsec.errors import DiffsecError

    for flag in ("steps", "batch", "embed_dim", "patch_size", "vision_width", "vision_head_width",
                 "text_width", "text_layers", "text_heads"):
        if getattr(args, flag) < 1:
            raise DiffsecError(f"--{flag.replace('_', '-')} must be positive")
    if args.text_width % args.text_heads:
        raise DiffsecError("--text-width must be a multiple of --text-heads")
    layers, width, head = args.vision_layers, args.vision_width, args.vision_head_width
    resnet = isinstance(layers, list)
    if resnet and not (len(layers) == 4 and all(isinstance(n, int) and n > 0 for n in layers)) \
            or not resnet and not (isinstance(layers, int) and layers > 0):
        raise DiffsecError(f"--vision-layers must be 4 positive ints (ResNet) or one (ViT), got {layers}")
    side = 32 if resnet else args.patch_size  # ModifiedResNet downsamples 32x
    if size[0] != size[1] or size[0] % side:
        raise DiffsecError(f"images must be square with a side divisible by {side}, got {size[0]}x{size[1]}")
    if (width * 32 if resnet else width) % head:
        raise DiffsecError("--vision-head-width must divide the attention width "
                           f"({'32 x ' if resnet else ''}--vision-width)")
    vision = {"image_size": size[0], "layers": layers, "width": width, "head_width": head}
    return vision if resnet else {**vision, "patch_size": args.patch_size}


def run(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.metrics.backbones import get_backbone
    from diffsec.models import clip_tiny
    from diffsec.models.clip_train import evaluate, train
    from diffsec.models.t2i import write_curves

    # Everything that can fail on bad input happens before the artifact directory exists.
    images, labels, names = _load(args.data, "training")
    test_images, test_labels, test_names = _load(args.test, "test")
    if test_names != names:
        raise DiffsecError(f"--test classes {test_names} differ from --data classes {names}")
    if test_images.shape[1:] != images.shape[1:]:
        raise DiffsecError(f"--test images are {test_images.shape[1:]}, --data images {images.shape[1:]}")
    vision = _vision(args, images.shape[1:3])
    device = setup(args)
    cfg = clip_tiny.config(
        name=args.name, embed_dim=args.embed_dim, vision=vision,
        text={"width": args.text_width, "heads": args.text_heads, "layers": args.text_layers},
        class_names=names)
    model = clip_tiny.build(cfg)
    with artifact_dir(args.out, "train-clip", params_of(args)) as art:
        art.device = str(device)
        art.add_input("data", args.data)
        art.add_input("test", args.test)
        losses = train(model, images, labels, names, args.steps, args.batch, args.lr, args.seed,
                       device, weight_decay=args.weight_decay)
        clip_tiny.save(model, cfg, art.path)
        write_curves({"contrastive": losses}, art.file("curve.csv"), art.file("curve.png"))
        # Evaluate through the metric backbone loaded from the written files: proves the
        # artifact itself loads and is what downstream CLIP scores will use.
        backbone = get_backbone("clip-tiny", weights=art.path, device=device)
        metrics = evaluate(backbone, test_images, test_labels, names, args.seed)
        art.extra.update(metrics=metrics, backbone=backbone.name, final_loss=losses[-1],
                         logit_scale=model.logit_scale.exp().item(),
                         n_params=sum(p.numel() for p in model.parameters()))
    print(f"{args.name}: zero-shot top-1 {metrics['zero_shot_top1']:.4f}, CLIP score matched "
          f"{metrics['clip_score_matched']:.2f} vs mismatched {metrics['clip_score_mismatched']:.2f} "
          f"-> {args.out}")
