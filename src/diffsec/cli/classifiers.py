"""The classifiers that score generated images.

`classifier-resnet`: a pretrained CIFAR ResNet (akamaster checkpoint) converted to safetensors and
evaluated (load it with `diffsec.models.resnet_cifar.load_classifier(dir)`).
`train-mnist-classifier`: the digit CNN that scores the digits backdoored models generate
(`mnist_net.load_mnist_classifier`).
`train-celeba-classifier`: the 8-class CelebA attribute net whose share of faces in class 7 is the
attack success rate of InvisibleDiffusion's CelebA In-D backdoor (`celeba_net.load_celeba_classifier`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_stage, open_stage


def _fit_flags(p, data: str, epochs: int, batch_size: int, optimizer: str) -> None:
    p.add_argument("--data", required=True, help=f"{data} artifact directory")
    p.add_argument("--epochs", type=int, default=epochs, help=f"passes over the training split (default: {epochs})")
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"minibatch size (default: {batch_size})")
    p.add_argument("--lr", type=float, default=2e-3, help=f"peak {optimizer} learning rate (default: 2e-3)")


def register(sub) -> None:
    p = add_stage(sub, "classifier-resnet", run_resnet, "convert + evaluate a pretrained CIFAR ResNet",
               "Load an akamaster CIFAR ResNet checkpoint (torch.load weights_only), save it as safetensors + "
               "config.json and write its accuracy on --testset.")
    p.add_argument("--weights", required=True, help="akamaster checkpoint (.th)")
    p.add_argument("--arch", required=True, choices=["resnet20", "resnet56"])
    p.add_argument("--testset", required=True, help="npz image set with `images` (uint8 NHWC) and `labels`")
    p.add_argument("--batch-size", type=int, default=256)
    p = add_stage(sub, "train-mnist-classifier", run_mnist, "train the MNIST digit classifier",
               "Train a small CNN on the prepare-mnist classifier_train split and report its accuracy on the "
               "held-out split.")
    _fit_flags(p, "prepare-mnist", 4, 32, "Adam")
    p = add_stage(sub, "train-celeba-classifier", run_celeba, "train the CelebA 8-class attribute classifier",
               "Train a small residual CNN on the prepare-celeba train split (makeup + 2 mouth + 4 smile "
               "classes) and report its accuracy on the test split.")
    _fit_flags(p, "prepare-celeba", 8, 128, "AdamW")
    p.add_argument("--width", type=int, default=32, help="channels of the first stage (default: 32)")
    p.add_argument("--size", type=int, default=64, help="working resolution inputs are resized to (default: 64)")


def run_resnet(args: argparse.Namespace) -> None:
    from diffsec.imageset import load_labelled
    from diffsec.metrics.classify import write_evaluation
    from diffsec.models import checks
    from diffsec.models.resnet_cifar import load_akamaster, save_classifier

    checks.positive(args, "batch_size")
    model, info = load_akamaster(args.weights, args.arch)
    test = load_labelled(args.testset, "--testset", model.num_classes, channels=(1, 3))
    st = open_stage(args, "classifier-resnet", skip=("out",))
    st.add_inputs(weights=args.weights, testset=args.testset)
    with st.artifact() as art:
        save_classifier(model, art.path, source=Path(args.weights).name, reported_top1=info["best_prec1"])
        r = write_evaluation(model, test["images"], test["labels"], args.batch_size, st.device, art.path,
                             info["best_prec1"])
    print(f"{args.arch}: accuracy {r['accuracy']:.4f} on {r['n']} images -> {args.out}")


def _fit(args: argparse.Namespace, stage: str, kind: str, splits: tuple[str, str], net, build, **load) -> dict:
    """Train `build()` (`net.train`) on the first split of the `kind` artifact --data, evaluate it on
    the second (`net.write_classifier`); checkpoints at epoch ends. Returns the eval dict."""
    from diffsec.imageset import load_split
    from diffsec.models.classifier_fit import FitConfig

    cfg = FitConfig(args.epochs, args.batch_size, args.lr, args.seed)
    train, held = (load_split(args.data, s, kind, **load) for s in splits)
    st = open_stage(args, stage)
    ckpt = st.checkpoint(1, **{s: Path(args.data) / f"{s}.npz" for s in splits})
    model = build().to(st.device)
    xy = (held["images"], held["labels"])
    curve = net.train(model, train["images"], train["labels"], cfg, xy, ckpt)
    with st.artifact() as art:
        r = net.write_classifier(model, curve, xy, len(train["labels"]), art.path)
        art.extra[f"{splits[1]}_accuracy"] = r[f"{splits[1]}_accuracy"]
    return r


def run_mnist(args: argparse.Namespace) -> None:
    from diffsec.models import mnist_net

    r = _fit(args, "train-mnist-classifier", "prepare-mnist", ("classifier_train", "heldout"), mnist_net,
             mnist_net.MnistNet, num_classes=10, channels=(1, 3))
    print(f"held-out accuracy {r['heldout_accuracy']:.4f} on {r['n_heldout']} digits "
          f"({r['train_seconds']:.1f} s training)")


def run_celeba(args: argparse.Namespace) -> None:
    from diffsec.data.celeba import CLASSES, TARGET_CLASS
    from diffsec.models import celeba_net, checks

    checks.positive(args, "width", "size")
    r = _fit(args, "train-celeba-classifier", "prepare-celeba", ("train", "test"), celeba_net,
             lambda: celeba_net.CelebaNet(len(CLASSES), args.width, args.size), names=list(CLASSES))
    print(f"test accuracy {r['test_accuracy']:.4f} on {r['n_test']} faces (class {TARGET_CLASS} "
          f"{r['per_class_accuracy'][TARGET_CLASS]:.4f}; {r['train_seconds']:.1f} s training)")
