"""Measurements of one generation set of the SAU slice (paper 001), for `table-sau`.

For images x_1..x_N of jobs (c_i, s_i) (a `backdoor.t2i_generate` set, maybe SAU-defended):
* ASR = (1/N) sum_i f(x_i), f the backdoor's target detector (`backdoor.t2i_detector`); on
  triggered prompts removal accuracy = 1 - ASR, on clean prompts ASR is the false-alarm rate.
  Its binomial standard error sqrt(ASR (1 - ASR) / N) is reported beside it.
* CLIP-IQA (Wang et al. 2023) with a per-image antonym pair: p_i = softmax(s [cos(e(x_i), t_good(c_i)),
  cos(e(x_i), t_bad(c_i))])_0, s the CLIP's own logit scale (exp of its learned log-scale; 100 for
  pretrained CLIP), reported as the mean of p_i. In `tiny` the pair is "a photo of a <c>" / "a blurry
  photo of a <c>" (the tiny CLIP knows only CIFAR caption templates); in `paper` CLIP-IQA's own
  "Good photo." / "Bad photo.". The same features give the CLIP's zero-shot class accuracy
  (argmax over "a photo of a <k>" for every class k == c_i).
* Class fidelity: the share of x_i a CIFAR ResNet-56 assigns to c_i.
* Against a seed-matched reference set r_i (the Unpoisoned world's generation of the same job):
  mean PSNR and SSIM (`metrics.quality`; piq caps an identical pair's PSNR at 80 dB), and the share
  of images identical to their reference.
* Colourfulness (Hasler and Suesstrunk 2003) M = sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 sqrt(mean(rg)^2 +
  mean(yb)^2), rg = R - G, yb = (R + G) / 2 - B on 0..255 pixels: 0 for a gray image, so the style
  backdoor's (partial) removal shows as a number, not only as the detector's yes / no.
* For SAU outputs, mask IoU with the patch's latent footprint F (the top-left ceil(s / d) x
  ceil(s / d) latent positions, s = round(frac * image side) the patch side in pixels, d the VAE's
  downsampling; 4 x 4 of 16 x 16 in `tiny`): IoU(M, F) = |M and F| / |M or F| per image, averaged,
  for the primary mask M_p and the blended region 1[R > 0.5]; with the masks' mean area.
"""

from __future__ import annotations

import math

import numpy as np

from diffsec.errors import DiffsecError
from diffsec.tables import rate_se

GOOD, BAD = "a photo of a {}", "a blurry photo of a {}"   # tiny CLIP-IQA pair (CIFAR caption templates)


def rate(flags: np.ndarray) -> tuple[float, float]:
    """(share of True, its binomial standard error)."""
    f = np.asarray(flags, bool)
    if not len(f):
        raise DiffsecError("no images to measure")
    p = float(f.mean())
    return p, rate_se(p, len(f))


def colourfulness(images: np.ndarray) -> np.ndarray:
    """Hasler-Suesstrunk colourfulness per uint8 NHWC RGB image (module docstring)."""
    x = np.asarray(images, np.float64)
    rg = x[..., 0] - x[..., 1]
    yb = (x[..., 0] + x[..., 1]) / 2 - x[..., 2]
    axes = (1, 2)
    return np.hypot(rg.std(axes), yb.std(axes)) + 0.3 * np.hypot(rg.mean(axes), yb.mean(axes))


def latent_footprint(latent_hw: tuple[int, int], image_side: int, frac: float) -> np.ndarray:
    """Bool h x w: the latent positions under the top-left patch of side round(frac * image_side)."""
    h, w = latent_hw
    d = image_side / w
    side = math.ceil(round(frac * image_side) / d)
    out = np.zeros((h, w), bool)
    out[:side, :side] = True
    return out


def iou(masks: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU of each bool mask (N x h x w) with one bool target (h x w); NaN where both are empty."""
    m = np.asarray(masks, bool)
    inter = (m & target).sum((1, 2))
    union = (m | target).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def clip_iqa(backbone, images: np.ndarray, classes: list[str], all_classes: list[str], logit_scale: float,
             good: str = GOOD, bad: str = BAD) -> tuple[np.ndarray, np.ndarray]:
    """(CLIP-IQA p_i per image, zero-shot correctness per image) with per-image pairs
    good.format(c_i) / bad.format(c_i) (a text without {} is used as is)."""
    from diffsec.metrics.similarity import clip_iqa_from_features, cosine_matrix

    feats = backbone.features(images)
    goods, bads = [good.format(c) for c in classes], [bad.format(c) for c in classes]
    uniq = sorted({*goods, *bads})
    text = dict(zip(uniq, backbone.text_features(uniq), strict=True))  # each distinct caption once
    p = clip_iqa_from_features(feats, np.stack([text[t] for t in goods]), np.stack([text[t] for t in bads]),
                               logit_scale)
    names = list(all_classes)
    zs = cosine_matrix(feats, backbone.text_features([GOOD.format(k) for k in names])).argmax(1)
    correct = np.array([names[k] == c for k, c in zip(zs, classes, strict=True)])
    return p, correct


def logit_scale_of(backbone) -> float:
    """exp of the CLIP model's learned log-scale (100 if the model has none)."""
    scale = getattr(getattr(backbone, "model", None), "logit_scale", None)
    return float(scale.detach().exp()) if scale is not None else 100.0


def mask_metrics(maps: dict[str, np.ndarray], footprint: np.ndarray) -> dict[str, float]:
    """Mean IoU of the primary mask and of the region R > 0.5 with the footprint, their mean area."""
    out = {}
    for name, m in (("primary", maps["primary"] > 0.5), ("region", maps["region"] > 0.5)):
        v = iou(m, footprint)
        out[f"iou_{name}"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        out[f"mask_area_{name}"] = float(m.mean())
    out["footprint_area"] = float(footprint.mean())
    return out


def evaluate(gen: dict[str, np.ndarray], detector, *, clip=None, classifier=None,
             reference: dict[str, np.ndarray] | None = None, maps: dict[str, np.ndarray] | None = None,
             patch_frac: float = 0.25, pair: tuple[str, str] = (GOOD, BAD), device="cpu") -> dict:
    """Every measurement of the module docstring that its inputs allow: `clip` = (backbone, its table
    name, all class names), `classifier` a CIFAR ResNet, `reference` a seed-matched set (checked by
    the caller), `maps` SAU's maps of these very rows. Returns metrics, their backbones, standard
    errors and per-image detector answers."""
    from diffsec.models.captions import CIFAR10_CLASSES

    images, classes = gen["images"], [str(c) for c in gen["class_name"]]
    prob = detector.probability(images)
    found = prob > 0.5  # = backdoor.t2i_detector.detect(detector, images)
    asr, se = rate(found)
    metrics = {"asr": asr, "detector_probability": float(prob.mean()),
               "colourfulness": float(colourfulness(images).mean())}
    stderr, backbones, notes = {"asr": se}, {}, {}
    if clip is not None:
        backbone, name, all_classes = clip
        p, correct = clip_iqa(backbone, images, classes, all_classes, logit_scale_of(backbone), *pair)
        metrics.update(clip_iqa=float(p.mean()), clip_zero_shot=float(correct.mean()))
        stderr.update(clip_iqa=float(p.std(ddof=1) / math.sqrt(len(p))) if len(p) > 1 else 0.0,
                      clip_zero_shot=rate(correct)[1])
        backbones.update(clip_iqa=name, clip_zero_shot=name)
    if classifier is not None:
        from diffsec.metrics.classify import predict_labels

        if all(c in CIFAR10_CLASSES for c in classes):
            right = predict_labels(classifier, images, device=str(device)) == \
                np.array([CIFAR10_CLASSES.index(c) for c in classes])
            metrics["class_fidelity"], stderr["class_fidelity"] = rate(right)
            backbones["class_fidelity"] = f"{classifier.arch}-cifar10"
        else:
            notes["class_fidelity"] = "not measured: classes outside CIFAR-10"
    if reference is not None:
        from diffsec.metrics.quality import psnr, ssim

        ref = reference["images"]
        metrics.update(psnr=float(psnr(images, ref).mean()), ssim=float(ssim(images, ref).mean()),
                       identical_to_reference=float((images == ref).all((1, 2, 3)).mean()))
    if maps is not None:
        side = images.shape[2]
        metrics.update(mask_metrics(maps, latent_footprint(maps["primary"].shape[1:], side, patch_frac)))
    return {"metrics": metrics, "stderr": stderr, "backbones": backbones, "notes": notes,
            "detected": found.astype(int).tolist(), "n": int(len(images))}
