"""`diffsec backdoor-eval`: benign and attack metrics of one backdoor-sample artifact."""

import argparse
import json
from pathlib import Path

from diffsec.cli.common import add_common, open_stage
from diffsec.errors import DiffsecError

CLASSIFIERS = {"cifar10": "--resnet", "celeba": "--celeba-classifier", "mnist": "--mnist-classifier"}  # ASR scorers


def register(sub) -> None:
    p = sub.add_parser("backdoor-eval", help="FID/precision/recall, attack precision, ASR, MSE, trigger norms",
                       description="Measure one sampled model: FID, precision and recall of its clean-noise "
                       "samples against the world's test set (CIFAR-10 or CelebA); attack precision and ASR (or "
                       "MSE for a one-image target) of its triggered samples; the trigger's L2 / L-inf (0-255).")
    p.add_argument("--samples", type=Path, required=True, help="backdoor-sample artifact")
    p.add_argument("--model", type=Path, required=True,
                   help="the backdoor-train artifact sampled (or the world, for the benign row)")
    p.add_argument("--trigger", type=Path,
                   help="backdoor-train artifact whose attack scores the triggered samples (default: --model; "
                   "given for a clean world sampled from that attack's noise, the benign baseline)")
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
    p.add_argument("--fid-bootstrap", type=int, default=100, metavar="B",
                   help="resamples of the generated set behind the FID's standard error (fid_se); 0: none")
    p.add_argument("--label", required=True, help="the tables' name of this measurement: <attack>/<sampler>[/step-<n>]")
    p.add_argument("--out", type=Path, required=True)
    add_common(p)
    p.set_defaults(func=run)


def _classifier(args, attack: dict | None) -> tuple[str, Path] | None:
    """(target dataset, classifier artifact) that scores the attack's ASR; None without one."""
    if attack is None or attack["one_image"]:
        return None
    dataset = attack["target_dataset"] if attack["target_dataset"] in CLASSIFIERS else "mnist"
    if (path := getattr(args, CLASSIFIERS[dataset][2:].replace("-", "_"))) is None:
        raise DiffsecError(f"a {attack['target']} target needs {CLASSIFIERS[dataset]} (the classifier scoring ASR)")
    return dataset, path


def run(args: argparse.Namespace) -> None:
    from diffsec.backdoor import evaluate as ev
    from diffsec.imageset import load_imageset
    from diffsec.metrics.backbones import backbone_from_weights

    for bad, msg in [(args.k < 1, f"--k {args.k}: must be at least 1"),
                     (args.fid_bootstrap < 0 or args.fid_bootstrap == 1,
                      f"--fid-bootstrap {args.fid_bootstrap}: must be 0 (none) or at least 2"),
                     (args.reference_n < 0, f"--reference-n {args.reference_n}: must be >= 0 (0: as many as samples)"),
                     (not args.samples.is_dir(), f"--samples {args.samples}: no such artifact directory"),
                     (not args.model.is_dir(), f"--model {args.model}: no such artifact directory"),
                     (args.trigger is not None and not (args.trigger / "attack.json").is_file(),
                      f"--trigger {args.trigger}: not a backdoor-train artifact (no attack.json)")]:
        if bad:
            raise DiffsecError(msg)
    st = open_stage(args, "backdoor-eval")
    device = str(st.device)
    source = args.trigger or args.model
    s = ev.read_sampled(args.samples, source)
    n = len(s.clean) if s.clean is not None else len(s.triggered)
    ref = ev.reference_subset(load_imageset(args.reference), args.reference_n or n, args.seed)
    backbone = backbone_from_weights(args.backbone, args.backbone_weights, device)
    clf = _classifier(args, s.attack)
    m = ev.measure(s, ref, backbone, k=args.k, label=args.label, device=device,
                   classify=ev.scorer(*clf, device) if clf else None, fid_bootstrap=args.fid_bootstrap)
    st.add_inputs(samples=args.samples, reference=args.reference,
                  model=source / "attack.json" if s.attack else None)
    with st.artifact() as art:
        art.file("metrics.json").write_text(json.dumps(m, indent=2, sort_keys=True))
        art.extra["metrics"] = m
