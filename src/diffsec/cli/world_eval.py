"""World measurements: draw samples from a pixel DDPM world, FID/precision/recall, class accuracy.

Each measurement writes an artifact directory with a metrics.json that records the backbone and
the number of samples behind every value, so tables can cite them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffsec.cli.common import add_stage, open_stage


def register(sub) -> None:
    p = add_stage(sub, "sample-ddpm", run_sample, "draw samples from a pixel DDPM world",
               "Sample N images from a DDPMPipeline directory with DDPM (T steps) or DDIM (eta 0) from "
               "standard Gaussian noise; writes samples.npz + a grid.")
    p.add_argument("--model", type=Path, required=True, help="train-ddpm artifact directory")
    p.add_argument("--n", type=int, default=1000, help="number of samples")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    p.add_argument("--steps", type=int, default=100, help="DDIM steps (ddpm uses all T)")
    p.add_argument("--batch-size", type=int, default=64, help="images per sampling batch (speed and memory only)")
    p.add_argument("--ckpt-every", type=int, default=1, help="checkpoint period (batches) for resume")
    p = add_stage(sub, "eval-fid", run_fid, "FID and precision/recall of two image sets",
               "FID and Kynkaenniemi precision/recall (k=3) between a generated and a reference image set, "
               "on a named feature backbone.")
    p.add_argument("--fake", type=Path, required=True, help="npz image set (or artifact dir with samples.npz)")
    p.add_argument("--real", type=Path, required=True, help="npz image set (or artifact dir)")
    p.add_argument("--real-n", type=int, default=0, help="use the first N real images (0 = all)")
    p.add_argument("--fake-n", type=int, default=0, help="use the first N generated images (0 = all)")
    p.add_argument("--backbone", default="resnet56-cifar10", help="feature backbone registry name")
    p.add_argument("--backbone-weights", default="", help="weights for the backbone (file or dir)")
    p.add_argument("--k", type=int, default=3, help="k of the k-NN manifold radii")
    p = add_stage(sub, "eval-class", run_class, "classifier accuracy on a labelled image set",
               "Share of images a saved classifier assigns to their label (for class-prompted samples: how "
               "often the prompted class is what was drawn).")
    p.add_argument("--images", type=Path, required=True, help="npz with images + labels (or artifact dir)")
    p.add_argument("--classifier", type=Path, required=True, help="classifier-resnet artifact directory")
    p.add_argument("--n", type=int, default=0, help="only the first N images (0 = all)")
    p.add_argument("--vae-roundtrip", type=Path, default=None,
                   help="train-t2i artifact: classify the images after an encode/decode through its "
                   "VAE (the ceiling of what the world's samples can show the classifier)")


def _write_metrics(st, metrics: dict) -> None:
    with st.artifact() as art:
        art.file("metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        art.extra["metrics"] = metrics


def run_sample(args: argparse.Namespace) -> None:
    from diffsec.imageset import save_imageset
    from diffsec.models import checks, ddpm
    from diffsec.models.pipelines import resolve_pipeline

    cfg = ddpm.SampleConfig(args.n, args.sampler, args.steps, args.batch_size, args.seed)
    checks.positive(args, "ckpt_every")
    where = resolve_pipeline(str(args.model), "--model")
    st = open_stage(args, "sample-ddpm")
    unet, sched = ddpm.load_ddpm(where, st.device, "--model")
    images = ddpm.sample_images(unet, sched, cfg, st.device, st.checkpoint(args.ckpt_every, model=where))
    with st.artifact() as art:
        save_imageset(art.file("samples.npz"), images)
        ddpm.save_grid(art.file("samples.png"), images[:64])
        art.extra["n_samples"] = int(len(images))


def _take(images, n: int, flag: str):
    """The first `n` images (0 = all)."""
    from diffsec.errors import DiffsecError

    if n < 0 or n > len(images):
        raise DiffsecError(f"{flag} holds {len(images)} images; cannot take the first {n}")
    return images[:n or None]


def run_fid(args: argparse.Namespace) -> None:
    from diffsec.imageset import load_images
    from diffsec.metrics.backbones import backbone_from_weights
    from diffsec.metrics.fid import fid_report
    from diffsec.models import checks

    checks.positive(args, "k")
    fake, real = (_take(load_images(p, flag, channels=(1, 3))["images"], n, flag)
                  for p, n, flag in ((args.fake, args.fake_n, "--fake"), (args.real, args.real_n, "--real")))
    st = open_stage(args, "eval-fid")
    st.add_inputs(fake=args.fake, real=args.real)
    backbone = backbone_from_weights(args.backbone, args.backbone_weights, str(st.device))
    _write_metrics(st, fid_report(backbone, fake, real, args.k, st.device))


def run_class(args: argparse.Namespace) -> None:
    from diffsec.imageset import load_labelled
    from diffsec.metrics.classify import class_report
    from diffsec.models.resnet_cifar import load_classifier
    from diffsec.models.t2i import load_vae, vae_roundtrip

    model = load_classifier(args.classifier)
    data = load_labelled(args.images, "--images", model.num_classes, channels=(1, 3))
    images = _take(data["images"], args.n, "--images")
    st = open_stage(args, "eval-class")
    st.add_inputs(images=args.images, classifier=args.classifier, vae_roundtrip=args.vae_roundtrip)
    original = None
    if args.vae_roundtrip:
        original, images = images, vae_roundtrip(load_vae(args.vae_roundtrip, st.device), images)
    _write_metrics(st, class_report(model, images, data["labels"][:len(images)], st.device, original))
