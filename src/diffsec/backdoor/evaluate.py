"""The backdoor papers' measurements of one sampled model.

Benign functionality: FID, precision and recall of clean-noise samples against CIFAR-10 test.
Attack: attack precision (A-Prec: Kynkaenniemi precision of triggered samples against the target
distribution, TrojDiff's definition), ASR (share of triggered samples the classifier assigns to
the target class), and for one-image targets the MSE to that image on the [0, 1] pixel scale.

    A-Prec = |{x in triggered : exists y in target, ||f(x) - f(y)|| <= r_k(y)}| / |triggered|
    ASR    = |{x in triggered : classifier(x) = target label}| / |triggered|
    MSE    = mean over images and pixels of (x / 255 - y / 255)^2

with f the backbone's features and r_k(y) the distance from y to its k-th nearest target neighbour.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffsec.errors import DiffsecError
from diffsec.metrics import fid, precision_recall
from diffsec.metrics.fid import fid_bootstrap_se


def benign_metrics(features, clean: np.ndarray, reference: np.ndarray, k: int = 3, device: str = "cpu",
                   fid_bootstrap: int = 0) -> dict:
    """FID / precision / recall of generated `clean` against `reference` (uint8 NHWC) on the
    feature function `features` (a backbone's); with fid_bootstrap = b >= 2 also `fid_se`, the
    FID's bootstrap standard error over b resamples of the generated set (metrics.fid)."""
    ff, fr = features(clean), features(reference)
    pr = precision_recall(fr, ff, k=k, device=device)
    b = fid_bootstrap
    se = {} if b < 2 else {"fid_se": fid_bootstrap_se(ff, fr, b), "fid_bootstrap": b}
    return {"fid": fid(ff, fr), **se, "precision": pr["precision"], "recall": pr["recall"],
            "n_clean": int(len(clean)), "n_reference": int(len(reference))}


def attack_precision(features, triggered: np.ndarray, target_ref: np.ndarray, k: int = 3,
                     device: str = "cpu") -> float:
    """Share of triggered samples inside the k-NN manifold of the target distribution."""
    return precision_recall(features(target_ref), features(triggered), k=k, device=device)["precision"]


def attack_success_rate(predicted: np.ndarray, target_label: int) -> float:
    return float((np.asarray(predicted) == target_label).mean())


def mse_to_image(images: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error on the [0, 1] scale between each image and the one target image."""
    target = np.asarray(target).reshape(images.shape[1:])
    diff = images.astype(np.float64) / 255.0 - target.astype(np.float64)[None] / 255.0
    return float((diff ** 2).mean())


@dataclass
class Sampled:
    """A backdoor-sample artifact read beside the model it sampled (or the attack whose noise it used)."""
    clean: np.ndarray | None          # uint8 samples from clean noise (None: left out)
    sampler: str
    steps: int
    chain: str = "attacker"           # reverse chain of the triggered set (attacker | ordinary)
    attack: dict | None = None        # the model's attack.json (None: a clean world)
    triggered: np.ndarray | None = None
    target: np.ndarray | None = None  # the model's target reference images


def read_sampled(samples: Path, model: Path) -> Sampled:
    """`model` is the backdoor-train artifact whose attack (attack.json, target.npz) scores the
    triggered set: the sampled model's own, or the attack whose noise a clean world was sampled from."""
    from diffsec.artifact import read_manifest
    from diffsec.imageset import load_imageset

    try:
        m = read_manifest(samples)
        sampler, steps = m["sampler"], m["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DiffsecError(f"{samples}: not a backdoor-sample artifact (no readable manifest)") from None
    clean = samples / "clean.npz"
    s = Sampled(load_imageset(clean)["images"] if clean.exists() else None, sampler, steps,
                m.get("chain", "attacker"))
    triggered = samples / "trigger.npz"
    if (model / "attack.json").exists() != triggered.exists():
        raise DiffsecError(f"{samples} and {model} disagree on whether the model is backdoored")
    if s.clean is None and not triggered.exists():
        raise DiffsecError(f"{samples}: holds neither clean.npz nor trigger.npz")
    if triggered.exists():
        s.attack = json.loads((model / "attack.json").read_text())
        s.triggered = load_imageset(triggered)["images"]
        s.target = load_imageset(model / "target.npz")["images"]
    return s


def reference_subset(reference: dict, n: int, seed: int) -> np.ndarray:
    """n images of a labelled set (seeded, class-stratified; all of them when n exceeds its size)."""
    from diffsec.data import stratified_subset

    return reference["images"][stratified_subset(reference["labels"], min(n, len(reference["labels"])), seed)]


def scorer(dataset: str, path: Path, device: str) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """(image -> label predictor, its name) of the classifier that scores ASR for a target dataset."""
    if dataset == "celeba":
        from diffsec.models.celeba_net import load_celeba_classifier

        return load_celeba_classifier(path, device).predict, "celeba-net"
    if dataset == "cifar10":
        from diffsec.metrics import predict_labels
        from diffsec.models.resnet_cifar import load_classifier

        model = load_classifier(path)
        return (lambda x: predict_labels(model, x, device=device)), f"{model.arch}-cifar10"
    from diffsec.models.mnist_net import load_mnist_classifier

    return load_mnist_classifier(path, device).predict, "mnist-cnn"


def measure(s: Sampled, reference: np.ndarray, backbone, *, k: int, label: str, device: str,
            classify: tuple[Callable[[np.ndarray], np.ndarray], str] | None = None, fid_bootstrap: int = 0) -> dict:
    """The row of one sampled model: benign metrics (where the clean set was sampled), and for
    triggered samples the attack's."""
    m = {"label": label, "sampler": s.sampler, "sampler_steps": s.steps, "backbone": backbone.name, "chain": s.chain}
    if s.clean is not None:
        m.update(benign_metrics(backbone.features, s.clean, reference, k, device, fid_bootstrap))
    if s.attack is None:
        return m
    a, trig, target = s.attack, s.triggered, s.target
    m.update({"n_trigger": int(len(trig)), "target": a["target"], "method": a["method"], "trigger": a["trigger"],
              "lam": a["lam"], "chain_gamma": a.get("chain_gamma"), "chain_kappa": a.get("chain_kappa"),
              **a["stealth"]})
    if a["one_image"]:
        m["mse"] = mse_to_image(trig, target[0])
        return m
    if min(len(target), len(trig)) <= k:
        raise DiffsecError(f"attack precision with k = {k} needs more than k target and triggered images; "
                           f"got {len(target)} and {len(trig)}")
    m["a_prec"] = attack_precision(backbone.features, trig, target, k, device)
    m["asr"] = attack_success_rate(classify[0](trig), a["target_label"])
    m["classifier"] = classify[1]
    return m
