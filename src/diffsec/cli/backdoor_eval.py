"""`diffsec backdoor-eval`: benign and attack metrics of one backdoor-sample artifact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffsec.cli.common import add_common, params_of, setup


def register(sub) -> None:
    p = sub.add_parser("backdoor-eval", help="FID/precision/recall, attack precision, ASR, MSE, trigger norms",
                       description="Measure one sampled model: FID, precision and recall of its clean-noise "
                       "samples against the world's test set (CIFAR-10 or CelebA); attack precision and ASR (or MSE for a one-image "
                       "target) of its triggered samples; the trigger's L2 / L-inf on the 0-255 scale.")
    p.add_argument("--samples", type=Path, required=True, help="backdoor-sample artifact")
    p.add_argument("--model", type=Path, required=True,
                   help="the backdoor-train artifact sampled (or the world, for the benign row)")
    p.add_argument("--reference", type=Path, required=True,
                   help="test npz of the world's dataset, CIFAR-10 or CelebA (benign reference)")
    p.add_argument("--reference-n", type=int, default=0,
                   help="reference images to compare with (seeded, class-stratified; 0 = as many as samples)")
    p.add_argument("--resnet", type=Path, help="classifier-resnet artifact (CIFAR-10 In-D ASR)")
    p.add_argument("--celeba-classifier", type=Path, help="train-celeba-classifier artifact (CelebA In-D ASR)")
    p.add_argument("--mnist-classifier", type=Path, help="train-mnist-classifier artifact (Out-D ASR)")
    p.add_argument("--backbone", default="resnet56-cifar10", help="feature backbone registry name")
    p.add_argument("--backbone-weights", default="", help="weights for the backbone (file or dir)")
    p.add_argument("--k", type=int, default=3, help="k of the k-NN manifold radii")
    p.add_argument("--label", required=True, help="name the tables look this measurement up by "
                   "(<attack>/<sampler>[/step-<n>])")
    p.add_argument("--out", type=Path, required=True)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir, read_manifest
    from diffsec.backdoor import evaluate as ev
    from diffsec.data import stratified_subset
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset
    from diffsec.metrics.backbones import backbone_from_weights

    device = str(setup(args))
    clean = load_imageset(args.samples / "clean.npz")["images"]
    ref = load_imageset(args.reference)
    n_ref = args.reference_n or len(clean)
    ref_images = ref["images"][stratified_subset(ref["labels"], min(n_ref, len(ref["labels"])), args.seed)]
    backbone = backbone_from_weights(args.backbone, args.backbone_weights, device)
    triggered = args.samples / "trigger.npz"
    attack = json.loads((args.model / "attack.json").read_text()) if (args.model / "attack.json").exists() else None
    if (attack is None) != (not triggered.exists()):
        raise DiffsecError(f"{args.samples} and {args.model} disagree on whether the model is backdoored")
    with artifact_dir(args.out, "backdoor-eval", params_of(args)) as art:
        art.device = device
        art.add_input("samples", args.samples), art.add_input("reference", args.reference)
        sampled = read_manifest(args.samples)
        m = {"label": args.label, "sampler": sampled["sampler"], "sampler_steps": sampled["steps"],
             "backbone": backbone.name, **ev.benign_metrics(backbone.features, clean, ref_images, args.k, device)}
        if attack is not None:
            art.add_input("model", args.model / "attack.json")
            trig = load_imageset(triggered)["images"]
            target = load_imageset(args.model / "target.npz")["images"]
            m.update({"n_trigger": int(len(trig)), "target": attack["target"], "method": attack["method"],
                      "trigger": attack["trigger"], "lam": attack["lam"], **attack["stealth"]})
            if attack["one_image"]:
                m["mse"] = ev.mse_to_image(trig, target[0])
            else:
                if min(len(target), len(trig)) <= args.k:
                    raise DiffsecError(f"attack precision needs more than --k {args.k} target and triggered "
                                       f"images; got {len(target)} and {len(trig)}")
                m["a_prec"] = ev.attack_precision(backbone.features, trig, target, args.k, device)
                m["asr"], m["classifier"] = _asr(args, attack, trig, device)
        art.file("metrics.json").write_text(json.dumps(m, indent=2, sort_keys=True))
        art.extra["metrics"] = m


def _asr(args, attack: dict, images, device: str) -> tuple[float, str]:
    from diffsec.backdoor.evaluate import attack_success_rate
    from diffsec.errors import DiffsecError

    if attack["target_dataset"] == "celeba":
        from diffsec.models.celeba_net import load_celeba_classifier

        if args.celeba_classifier is None:
            raise DiffsecError("a CelebA In-D target needs --celeba-classifier (the 8-class attribute classifier)")
        model = load_celeba_classifier(args.celeba_classifier, device)
        return attack_success_rate(model.predict(images), attack["target_label"]), "celeba-net"
    if attack["target_dataset"] == "cifar10":
        from diffsec.metrics import predict_labels
        from diffsec.models.resnet_cifar import load_classifier

        if args.resnet is None:
            raise DiffsecError("an In-D target needs --resnet (the CIFAR classifier scoring ASR)")
        model = load_classifier(args.resnet)
        return attack_success_rate(predict_labels(model, images, device=device), attack["target_label"]), \
            f"{model.arch}-cifar10"
    from diffsec.models.mnist_net import load_mnist_classifier

    if args.mnist_classifier is None:
        raise DiffsecError("an Out-D target needs --mnist-classifier (the digit classifier scoring ASR)")
    model = load_mnist_classifier(args.mnist_classifier, device)
    return attack_success_rate(model.predict(images), attack["target_label"]), "mnist-cnn"
