"""Generic measurement stages: draw samples from a world, FID/precision/recall, class accuracy.

Each writes an artifact directory with a metrics.json that records the backbone and the number
of samples behind every value, so tables can cite them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffsec.cli.common import add_common, params_of, setup


def register(sub) -> None:
    p = sub.add_parser("sample-ddpm", help="draw samples from a pixel DDPM world",
                       description="Sample N images from a DDPMPipeline directory with DDPM (T steps) "
                       "or DDIM (eta 0) from standard Gaussian noise; writes samples.npz + a grid.")
    p.add_argument("--model", type=Path, required=True, help="train-ddpm artifact directory")
    p.add_argument("--n", type=int, default=1000, help="number of samples")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    p.add_argument("--steps", type=int, default=100, help="DDIM steps (ddpm uses all T)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--out", type=Path, required=True)
    add_common(p)
    p.set_defaults(func=run_sample)

    p = sub.add_parser("eval-fid", help="FID and precision/recall of two image sets",
                       description="FID and Kynkaenniemi precision/recall (k=3) between a generated and "
                       "a reference image set, on a named feature backbone.")
    p.add_argument("--fake", type=Path, required=True, help="npz image set (or artifact dir with samples.npz)")
    p.add_argument("--real", type=Path, required=True, help="npz image set (or artifact dir)")
    p.add_argument("--real-n", type=int, default=0, help="use the first N real images (0 = all)")
    p.add_argument("--fake-n", type=int, default=0, help="use the first N generated images (0 = all)")
    p.add_argument("--backbone", default="resnet56-cifar10", help="feature backbone registry name")
    p.add_argument("--backbone-weights", default="", help="weights for the backbone (file or dir)")
    p.add_argument("--k", type=int, default=3, help="k of the k-NN manifold radii")
    p.add_argument("--out", type=Path, required=True)
    add_common(p)
    p.set_defaults(func=run_fid)

    p = sub.add_parser("eval-class", help="classifier accuracy on a labelled image set",
                       description="Share of images a saved classifier assigns to their label (for "
                       "class-prompted samples: how often the prompted class is what was drawn).")
    p.add_argument("--images", type=Path, required=True, help="npz with images + labels (or artifact dir)")
    p.add_argument("--classifier", type=Path, required=True, help="classifier-resnet artifact directory")
    p.add_argument("--n", type=int, default=0, help="only the first N images (0 = all)")
    p.add_argument("--vae-roundtrip", type=Path, default=None,
                   help="train-t2i artifact: classify the images after an encode/decode through its "
                   "VAE (the ceiling of what the world's samples can show the classifier)")
    p.add_argument("--out", type=Path, required=True)
    add_common(p)
    p.set_defaults(func=run_class)


def _imageset(path: Path, default_name: str = "samples.npz") -> dict:
    from diffsec.imageset import load_imageset

    return load_imageset(path / default_name if path.is_dir() else path)


def _write_metrics(art, metrics: dict) -> None:
    art.file("metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    art.extra["metrics"] = metrics


def run_sample(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from diffsec.artifact import artifact_dir
    from diffsec.diffusion.sampling import sample
    from diffsec.imageset import grid, save_imageset, save_png, to_uint8
    from diffsec.models.ddpm import load_ddpm, unet_eps

    device = setup(args)
    unet, sched = load_ddpm(str(args.model / "pipeline"), device)
    res = unet.config.sample_size
    with artifact_dir(args.out, "sample-ddpm", params_of(args)) as art:
        art.device = str(device)
        art.add_input("model", args.model / "pipeline")
        # Noise is drawn on the CPU from one seeded generator: same seed = same samples on any device.
        gen = torch.Generator().manual_seed(args.seed)
        out = []
        for i in tqdm(range(0, args.n, args.batch_size), desc="batches"):
            b = min(args.batch_size, args.n - i)
            x_T = torch.randn(b, 3, res, res, generator=gen).to(device)
            x0, _ = sample(unet_eps(unet), dict(sched.config), x_T, args.sampler, args.steps, generator=gen)
            out.append(to_uint8(x0))
        images = np.concatenate(out)
        save_imageset(art.file("samples.npz"), images)
        save_png(art.file("samples.png"), grid(images[:64], nrow=8), scale=3)
        art.extra["n_samples"] = int(len(images))


def _backbone(args, device):
    from diffsec.metrics.backbones import backbone_from_weights

    return backbone_from_weights(args.backbone, args.backbone_weights, device)


def run_fid(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.metrics import fid, precision_recall

    device = setup(args)
    fake, real = _imageset(args.fake)["images"], _imageset(args.real)["images"]
    fake, real = fake[:args.fake_n or None], real[:args.real_n or None]
    for name, arr, want in (("--fake", fake, args.fake_n), ("--real", real, args.real_n)):
        if want and len(arr) < want:
            raise DiffsecError(f"{name} holds {len(arr)} images, fewer than the {want} asked for")
    backbone = _backbone(args, str(device))
    with artifact_dir(args.out, "eval-fid", params_of(args)) as art:
        art.device = str(device)
        art.add_input("fake", args.fake), art.add_input("real", args.real)
        ff, fr = backbone.features(fake, progress=True), backbone.features(real, progress=True)
        pr = precision_recall(fr, ff, k=args.k, device=str(device))
        _write_metrics(art, {"fid": fid(ff, fr), "precision": pr["precision"], "recall": pr["recall"],
                             "backbone": backbone.name, "n_fake": int(len(fake)), "n_real": int(len(real))})


def run_class(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir
    from diffsec.errors import DiffsecError
    from diffsec.metrics import accuracy, per_class_accuracy, predict_labels
    from diffsec.models.resnet_cifar import load_classifier

    device = setup(args)
    data = _imageset(args.images)
    if "labels" not in data:
        raise DiffsecError(f"{args.images} has no labels array")
    if args.n < 0 or args.n > len(data["labels"]):
        raise DiffsecError(f"--n {args.n}: {args.images} holds {len(data['labels'])} images")
    images, labels = data["images"][:args.n or None], data["labels"][:args.n or None]
    model = load_classifier(args.classifier)
    with artifact_dir(args.out, "eval-class", params_of(args)) as art:
        art.device = str(device)
        art.add_input("images", args.images), art.add_input("classifier", args.classifier)
        extra = {}
        if args.vae_roundtrip:
            from diffsec.metrics.quality import psnr
            from diffusers import AutoencoderKL

            from diffsec.models.t2i import vae_roundtrip

            art.add_input("vae_roundtrip", args.vae_roundtrip)
            # The VAE alone: the round trip needs neither the UNet nor the text encoder.
            vae = AutoencoderKL.from_pretrained(str(args.vae_roundtrip / "pipeline"), subfolder="vae")
            vae = vae.to(device).eval()
            original, images = images, vae_roundtrip(vae, images)
            extra = {"vae_psnr": float(psnr(images, original).mean()),
                     "accuracy_original": accuracy(predict_labels(model, original, device=str(device)), labels)}
        pred = predict_labels(model, images, device=str(device))
        _write_metrics(art, {"accuracy": accuracy(pred, labels),
                             "per_class": per_class_accuracy(pred, labels, 10).tolist(),
                             "classifier": f"{model.arch}-cifar10", "n": int(len(pred)), **extra})
