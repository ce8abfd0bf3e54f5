"""Swappable feature backbones for the distribution and similarity metrics.

Every backbone takes uint8 NHWC images (any size; each does its own resize and normalization)
and returns float64 N x D features. Its `.name` goes into the tables beside each number, e.g.
`fid[resnet56-cifar10]` vs `fid[inception-clean-fid]`. Heavy libraries load only when a
backbone is built.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np

from diffsec.errors import DiffsecError


def to_tensor(images, device="cpu"):
    """uint8 NHWC -> float NCHW in [0, 1], grey images repeated to 3 channels."""
    import torch

    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DiffsecError(f"expected uint8 NHWC images with 1 or 3 channels, got {x.dtype} {x.shape}")
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2).float() / 255
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def resize_center_crop(x, resize: int, crop: int):
    """Shorter side to `resize` (bicubic, antialiased), then a centred crop x crop square;
    the tensor version of the usual Resize + CenterCrop transforms."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    s = resize / min(h, w)
    nh, nw = max(crop, round(h * s)), max(crop, round(w * s))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (nh - crop) // 2, (nw - crop) // 2
    return x[..., top:top + crop, left:left + crop]


def _normalize(x, mean, std):
    import torch

    mean, std = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in (mean, std))
    return (x - mean) / std


class FeatureBackbone:
    """`features(images_uint8_nhwc, batch_size) -> float64 N x D`; subclasses define `_embed`."""

    name: str = "backbone"
    device = "cpu"

    def _embed(self, batch: np.ndarray):  # uint8 NHWC batch -> torch N x D
        raise NotImplementedError

    def features(self, images: np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        out = []
        with torch.no_grad():
            for i in tqdm(range(0, len(images), batch_size), disable=not progress, desc=self.name, leave=False):
                out.append(self._embed(np.asarray(images[i:i + batch_size])).double().cpu().numpy())
        return np.concatenate(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ResNetCifarBackbone(FeatureBackbone):
    """Penultimate (64-d) features of a CIFAR ResNet: the tiny profile's default backbone.

    `weights` is an akamaster .th checkpoint or a directory saved by `save_classifier`.
    """

    def __init__(self, weights: str | os.PathLike | None = None, arch: str | None = None,
                 model=None, device="cpu", name: str | None = None):
        from diffsec.models import resnet_cifar as rc

        if model is None:
            if weights is None:
                raise DiffsecError("the ResNet-CIFAR backbone needs weights= "
                                   "(a .th checkpoint or a saved classifier dir)")
            model = rc.load_classifier(weights) if Path(weights).is_dir() else rc.load_akamaster(weights, arch)[0]
        self.model, self.device = model.eval().to(device), device
        self.name = name or f"{model.arch}-cifar10"

    def _embed(self, batch):
        from diffsec.models.resnet_cifar import preprocess

        return self.model.features(preprocess(batch, self.device))


class InceptionCleanFID(FeatureBackbone):
    """Inception-v3 pool3 (2048-d) via clean-fid's extractor and its 'clean' PIL-bicubic resize
    to 299: the paper profile's FID backbone. Offline, `weights` must be clean-fid's
    inception-2015-12-05.pt (or a directory holding it); nothing is downloaded."""

    name = "inception-clean-fid"
    FILENAME = "inception-2015-12-05.pt"
    URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"

    def __init__(self, weights: str | os.PathLike | None = None, device="cpu"):
        import tempfile

        p = Path(weights) if weights else Path(tempfile.gettempdir())  # clean-fid's own cache dir
        folder = p if p.is_dir() else p.parent
        if not (folder / self.FILENAME).is_file() or (p.is_file() and p.name != self.FILENAME):
            raise DiffsecError(f"clean-fid Inception weights not found: need {folder / self.FILENAME} "
                               f"(download {self.URL} where a network is available and pass its path)")
        from cleanfid.inception_torchscript import InceptionV3W
        from cleanfid.resize import build_resizer

        self.model = InceptionV3W(str(folder), download=False, resize_inside=False).to(device).eval()
        self.resize, self.device = build_resizer("clean"), device

    def _embed(self, batch):
        import torch

        if batch.shape[-1] == 1:
            batch = np.repeat(batch, 3, axis=-1)
        x = np.stack([self.resize(im) for im in batch])  # float32 299x299x3 in [0, 255]
        return self.model(torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device))


class DinoV2Backbone(FeatureBackbone):
    """CLS token of a DINOv2 (or any transformers ViT) model, from a local dir or hub id.

    Preprocessing follows the DINO evaluation transform: shorter side to `resize` (bicubic),
    centre crop `crop`, ImageNet mean/std.
    """

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, source: str | os.PathLike = "facebook/dinov2-base", device="cpu",
                 resize: int = 256, crop: int = 224, name: str | None = None):
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(str(source)).to(device).eval()
        except (OSError, ValueError) as e:
            raise DiffsecError(f"cannot load DINOv2 from {source} ({str(e).splitlines()[0]})") from None
        self.device, self.resize, self.crop = device, resize, crop
        self.name = name or f"dinov2-{Path(str(source)).name}"

    def _embed(self, batch):
        x = _normalize(resize_center_crop(to_tensor(batch, self.device), self.resize, self.crop), self.MEAN, self.STD)
        return self.model(pixel_values=x).last_hidden_state[:, 0]


class ClipBackbone(FeatureBackbone):
    """open_clip image (and text) embeddings, unnormalized.

    Build from `model_name` + `pretrained` (open_clip tag or local checkpoint file), or pass a
    ready `model` (+ `tokenizer`), e.g. a small random model in tests.
    """

    def __init__(self, model_name: str | None = None, pretrained: str | None = None, model=None,
                 tokenizer=None, device="cpu", name: str | None = None):
        import open_clip

        if model is None:
            if model_name is None:
                raise DiffsecError("the CLIP backbone needs model_name (+ pretrained) or a model")
            try:
                model = open_clip.create_model(model_name, pretrained=pretrained, device=device)
            except (OSError, RuntimeError, ValueError) as e:
                raise DiffsecError(f"cannot load CLIP {model_name} / {pretrained} ({str(e).splitlines()[0]})") from None
            tokenizer = tokenizer or open_clip.get_tokenizer(model_name)
        self.model, self.device = model.to(device).eval(), device
        self.tokenizer = tokenizer or open_clip.get_tokenizer("ViT-B-32")
        size = model.visual.image_size
        self.size = size if isinstance(size, int) else size[0]
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        self.mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
        tag = Path(str(pretrained)).stem if pretrained else "random"
        self.name = name or f"clip-{model_name or 'custom'}-{tag}"

    def _embed(self, batch):
        x = resize_center_crop(to_tensor(batch, self.device), self.size, self.size)
        return self.model.encode_image(_normalize(x, self.mean, self.std))

    def text_features(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[i:i + batch_size])).to(self.device)
                out.append(self.model.encode_text(tokens).double().cpu().numpy())
        return np.concatenate(out)


def clip_tiny_backbone(weights: str | os.PathLike | None = None, device="cpu",
                       name: str | None = None) -> ClipBackbone:
    """The tiny profile's CLIP: an artifact directory of `diffsec train-clip`
    (model.safetensors + config.json), named by its config (e.g. `clip-tiny-cifar10`)."""
    from diffsec.models import clip_tiny

    if weights is None:
        raise DiffsecError("the clip-tiny backbone needs weights= (a `diffsec train-clip` directory)")
    cfg = clip_tiny.load_config(weights)
    return ClipBackbone(model=clip_tiny.load(weights, device), tokenizer=clip_tiny.tokenizer(),
                        device=device, name=name or cfg["name"])


BACKBONES = {
    "resnet20-cifar10": partial(ResNetCifarBackbone, arch="resnet20"),
    "resnet56-cifar10": partial(ResNetCifarBackbone, arch="resnet56"),
    "inception-clean-fid": InceptionCleanFID,
    "dinov2": DinoV2Backbone,
    "clip": ClipBackbone,
    "clip-tiny": clip_tiny_backbone,
}


def backbone_from_weights(name: str, weights: str = "", device="cpu") -> FeatureBackbone:
    """A backbone from the one weights string a CLI flag or config gives: a file or directory
    for the CIFAR ResNets, clean-fid Inception and clip-tiny, a hub id or directory for DINOv2,
    MODEL:PRETRAINED for open_clip (e.g. "ViT-L-14:openai"); "" = the backbone's default."""
    kw = {"device": str(device)}
    if weights and name == "clip":
        kw["model_name"], _, kw["pretrained"] = weights.partition(":")
    elif weights:
        kw["source" if name == "dinov2" else "weights"] = weights
    return get_backbone(name, **kw)


def get_backbone(name: str, **kwargs) -> FeatureBackbone:
    """Build a backbone by registry name; kwargs go to its constructor (weights, device, ...)."""
    if name not in BACKBONES:
        raise DiffsecError(f"unknown feature backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name](**kwargs)
