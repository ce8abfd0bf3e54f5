"""`diffsec train-celeba-classifier`: the 8-class CelebA attribute classifier that scores the
attack success rate of InvisibleDiffusion's CelebA In-D backdoor (share of faces in class 7).

Its own module so that the CelebA stages do not make the MNIST classifier stale (every stage
declares the CLI module it runs as an input). Load the result with
`diffsec.models.celeba_net.load_celeba_classifier(dir)`.
"""

from __future__ import annotations

import argparse

from diffsec.cli.common import add_common, params_of, setup

NUM_CLASSES = 8


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-celeba-classifier", help="train the CelebA 8-class attribute classifier",
                       description="Train a small residual CNN on the prepare-celeba train split "
                                   "(makeup + 2 mouth + 4 smile classes) and report its accuracy on "
                                   "the test split.")
    p.add_argument("--data", required=True, help="prepare-celeba artifact directory")
    p.add_argument("--epochs", type=int, default=8, help="passes over train.npz (default: 8)")
    p.add_argument("--batch-size", type=int, default=128, help="minibatch size (default: 128)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default: 2e-3)")
    p.add_argument("--width", type=int, default=32, help="channels of the first stage (default: 32)")
    p.add_argument("--size", type=int, default=64, help="working resolution inputs are resized to "
                                                        "(default: 64)")
    p.add_argument("--out", required=True, help="artifact directory to write")
    add_common(p)
    p.set_defaults(func=train_celeba_classifier)


def _load_split(path):
    """One prepare-celeba image set -> (images, labels), checked."""
    import numpy as np

    from diffsec.data.celeba import CLASSES
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset

    if not path.is_file():
        raise DiffsecError(f"{path.parent} is not a prepare-celeba artifact: {path.name} is missing")
    try:
        data = load_imageset(path)
    except (OSError, ValueError) as e:  # not an npz, truncated, pickled arrays
        raise DiffsecError(f"cannot read image set {path} ({type(e).__name__}: {e})") from None
    images, labels = data.get("images"), data.get("labels")
    if images is None or labels is None:
        raise DiffsecError(f"image set {path} needs `images` and `labels` arrays, has {sorted(data)}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise DiffsecError(f"image set {path}: `images` must be non-empty uint8 NHWC RGB, "
                           f"got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DiffsecError(f"image set {path}: `labels` must be {len(images)} integers, "
                           f"got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DiffsecError(f"image set {path}: labels must lie in 0..{NUM_CLASSES - 1}, "
                           f"got {labels.min()}..{labels.max()}")
    names = data.get("class_name")
    if names is not None and any(n != CLASSES[k] for n, k in zip(names, labels)):
        raise DiffsecError(f"image set {path}: `class_name` disagrees with `labels` under the encoding "
                           f"makeup + 2 mouth + 4 smile")
    return images, labels.astype(np.int64)


def train_celeba_classifier(args: argparse.Namespace) -> None:
    import csv
    import json
    from pathlib import Path

    import numpy as np

    from diffsec.artifact import artifact_dir
    from diffsec.data.celeba import CLASSES, TARGET_CLASS
    from diffsec.errors import DiffsecError
    from diffsec.models.celeba_net import CelebaNet, save_celeba_classifier, train
    from diffsec.models.classifier_fit import plot_curve

    device = setup(args)
    for name in ("epochs", "batch_size", "width", "size"):
        if getattr(args, name) <= 0:
            raise DiffsecError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not args.lr > 0:
        raise DiffsecError(f"--lr must be positive, got {args.lr}")
    data = Path(args.data)
    if not data.is_dir():
        raise DiffsecError(f"--data {data} is not a directory (expected a prepare-celeba artifact)")
    (x_train, y_train), (x_test, y_test) = _load_split(data / "train.npz"), _load_split(data / "test.npz")
    with artifact_dir(args.out, "train-celeba-classifier", params_of(args)) as art:
        art.device = str(device)
        art.add_input("train", data / "train.npz")
        art.add_input("test", data / "test.npz")
        model = CelebaNet(NUM_CLASSES, args.width, args.size).to(device)
        curve = train(model, x_train, y_train, args.epochs, args.batch_size, args.lr, args.seed,
                      heldout=(x_test, y_test))
        pred = model.predict(x_test)
        confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)  # rows: truth, columns: prediction
        np.add.at(confusion, (y_test, pred), 1)
        others = y_test != TARGET_CLASS
        result = {"test_accuracy": float((pred == y_test).mean()), "n_test": len(y_test),
                  "n_train": len(y_train), "train_seconds": curve[-1]["seconds"],
                  "per_class_accuracy": (confusion.diagonal() / confusion.sum(1).clip(1)).round(4).tolist(),
                  "confusion": confusion.tolist(), "classes": list(CLASSES), "target_class": TARGET_CLASS,
                  # the ASR a clean generator would score: non-target faces called the target
                  "false_target_rate": float((pred[others] == TARGET_CLASS).mean()) if others.any() else None}
        save_celeba_classifier(model, art.path, classes=list(CLASSES), target_class=TARGET_CLASS,
                               test_accuracy=result["test_accuracy"])
        with open(art.file("curve.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(curve[0]))
            w.writeheader()
            w.writerows(curve)
        plot_curve(art.file("curve.png"), curve, "test", (0.0, 1.0), chance=1 / NUM_CLASSES)
        art.file("eval.json").write_text(json.dumps(result, indent=2))
        art.extra["test_accuracy"] = result["test_accuracy"]
    print(f"test accuracy {result['test_accuracy']:.4f} on {len(y_test)} faces (class {TARGET_CLASS} "
          f"{result['per_class_accuracy'][TARGET_CLASS]:.4f}; {result['train_seconds']:.1f} s training)")
