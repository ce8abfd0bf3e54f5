"""`diffsec classifier-resnet`: convert a pretrained CIFAR ResNet (akamaster checkpoint) to our
safetensors format and evaluate it on a labelled image set. Load the result back with
`diffsec.models.resnet_cifar.load_classifier(dir)`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffsec.cli.common import add_common, params_of, setup


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "classifier-resnet", help="convert + evaluate a pretrained CIFAR ResNet",
        description="Load an akamaster CIFAR ResNet checkpoint (torch.load weights_only), save it as "
                    "safetensors + config.json and write its accuracy on --testset.")
    p.add_argument("--weights", required=True, help="akamaster checkpoint (.th)")
    p.add_argument("--arch", required=True, choices=["resnet20", "resnet56"])
    p.add_argument("--testset", required=True, help="npz image set with `images` (uint8 NHWC) and `labels`")
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument("--batch-size", type=int, default=256)
    add_common(p)
    p.set_defaults(func=run)


def _load_testset(path: str, num_classes: int):
    import numpy as np

    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset

    try:
        data = load_imageset(path)
    except (OSError, ValueError) as e:  # not an npz, truncated, pickled arrays
        raise DiffsecError(f"cannot read image set {path} ({type(e).__name__}: {e})") from None
    images, labels = data.get("images"), data.get("labels")
    if images is None or labels is None:
        raise DiffsecError(f"image set {path} needs `images` and `labels` arrays, has {sorted(data)}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise DiffsecError(f"image set {path}: `images` must be non-empty uint8 NHWC, "
                           f"got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DiffsecError(f"image set {path}: `labels` must be {len(images)} integers, "
                           f"got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DiffsecError(f"image set {path}: labels must lie in [0, {num_classes}), "
                           f"got [{labels.min()}, {labels.max()}]")
    return images, labels.astype(np.int64)


def _confusion_png(path: Path, cm, names, title: str) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > cm.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> None:
    import numpy as np
    from sklearn.metrics import confusion_matrix

    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.metrics.classify import accuracy, per_class_accuracy
    from diffsec.models.resnet_cifar import CIFAR10_CLASSES, load_akamaster, predict_logits, save_classifier

    if args.batch_size < 1:
        raise DiffsecError("--batch-size must be positive")
    device = setup(args)
    # everything that can fail on bad input happens before the artifact directory exists
    model, info = load_akamaster(args.weights, args.arch)
    images, labels = _load_testset(args.testset, model.num_classes)
    names = list(CIFAR10_CLASSES) if model.num_classes == 10 else [str(c) for c in range(model.num_classes)]

    with artifact_dir(args.out, "classifier-resnet", params_of(args, skip=("out",))) as art:
        art.device = str(device)
        art.add_input("weights", args.weights)
        art.add_input("testset", args.testset)
        save_classifier(model, art.path, source=Path(args.weights).name, reported_top1=info["best_prec1"])
        pred = predict_logits(model, images, args.batch_size, device, progress=True).argmax(1)
        acc = accuracy(pred, labels)
        per_class = per_class_accuracy(pred, labels, model.num_classes)
        report = {"accuracy": acc, "n": int(len(labels)),
                  "per_class": {n: (None if np.isnan(a) else float(a)) for n, a in zip(names, per_class)},
                  "arch": args.arch, "reported_top1": info["best_prec1"]}
        art.file("eval.json").write_text(json.dumps(report, indent=2))
        cm = confusion_matrix(labels, pred, labels=range(model.num_classes))
        _confusion_png(art.file("confusion.png"), cm, names, f"{args.arch}: accuracy {acc:.4f} (n={len(labels)})")
    print(f"{args.arch}: accuracy {acc:.4f} on {len(labels)} images -> {args.out}")
