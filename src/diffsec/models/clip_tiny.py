"""A tiny open_clip CLIP for 32x32 images: the `tiny` profile's CLIP-score model.

No pretrained CLIP is reachable offline, so the tiny profile trains this one on CIFAR-10 with
class captions (`diffsec train-clip`, see `clip_train`). It is a real `open_clip.model.CLIP`
(causal text transformer pooled at the end-of-text token) with CLIP's own 49408-token BPE
vocabulary and 77-token context, so `ClipBackbone`, the CLIP score and a later swap to a
pretrained CLIP all use the same tokenizer and code path.

The image tower is open_clip's: `vision.layers` a list of 4 ints gives CLIP's ModifiedResNet
(the RN50 family; attention-pooled, 32x downsampling), an int gives a ViT (`patch_size` then
needed). The default is a narrow ModifiedResNet: on one CPU thread it reached a clearly higher
zero-shot accuracy per second of training than ViTs of similar cost (patch 8, width 128, 4 blocks;
patch 4 is ~3x slower per step), since convolutions learn CIFAR from scratch far faster.

Saved as `model.safetensors` + `config.json` (never pickle); `load(dir)` rebuilds it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from diffsec.errors import DiffsecError
from diffsec.models import checks

# open_clip's OpenAI normalization: keeps the preprocessing identical to pretrained CLIP's.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipConfig:
    """A tiny CLIP: `vision_layers` 4 block counts = ModifiedResNet (stem `vision_width`, last stage
    32x that; image side a multiple of 32), one int = ViT blocks of `vision_width` on `patch_size`
    patches; `vision_head_width` channels per attention head; a text transformer; class names."""

    name: str
    embed_dim: int
    image_size: int
    vision_layers: int | list[int]
    vision_width: int
    vision_head_width: int
    patch_size: int
    text_width: int
    text_heads: int
    text_layers: int
    class_names: list[str]

    def __post_init__(self):
        checks.positive(self, "embed_dim", "image_size", "vision_width", "vision_head_width", "patch_size",
                        "text_width", "text_heads", "text_layers")
        if self.text_width % self.text_heads:
            raise DiffsecError(f"text_width {self.text_width} is not a multiple of text_heads {self.text_heads}")
        layers, resnet = self.vision_layers, isinstance(self.vision_layers, list)
        if not (len(layers) == 4 and all(_count(n) for n in layers) if resnet else _count(layers)):
            raise DiffsecError(f"vision_layers must be 4 positive ints (ResNet) or one (ViT), got {layers}")
        side = 32 if resnet else self.patch_size  # ModifiedResNet downsamples 32x
        if self.image_size % side:
            raise DiffsecError(f"image side {self.image_size} is not divisible by {side} "
                               f"({'the ResNet tower' if resnet else 'patch_size'})")
        if (self.vision_width * 32 if resnet else self.vision_width) % self.vision_head_width:
            raise DiffsecError(f"vision_head_width {self.vision_head_width} does not divide the attention width "
                               f"({'32 x ' if resnet else ''}vision_width)")

    def as_dict(self) -> dict:
        """The config.json `build` and `load` read."""
        vision = {"image_size": self.image_size, "layers": self.vision_layers, "width": self.vision_width,
                  "head_width": self.vision_head_width}
        if not isinstance(self.vision_layers, list):
            vision["patch_size"] = self.patch_size
        return {"name": self.name, "embed_dim": self.embed_dim, "vision": vision,
                "text": {"width": self.text_width, "heads": self.text_heads, "layers": self.text_layers},
                "mean": list(MEAN), "std": list(STD), "class_names": list(self.class_names)}


def _count(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n > 0


def build(cfg: dict):
    """A randomly initialised open_clip CLIP from a config dict (see DEFAULT)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    # context 77 + vocab 49408: exactly CLIP's tokenizer output, so its token ids are valid here.
    text = CLIPTextCfg(context_length=77, vocab_size=49408, **cfg["text"])
    model = CLIP(cfg["embed_dim"], CLIPVisionCfg(**cfg["vision"]), text)
    # ClipBackbone reads its normalization from here (open_clip's create_model sets it likewise).
    model.visual.preprocess_cfg = {"mean": tuple(cfg["mean"]), "std": tuple(cfg["std"])}
    return model


def tokenizer():
    """CLIP's BPE tokenizer from the vocabulary bundled in the open_clip wheel (offline)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=77)


def save(model, cfg: dict, directory: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return d


def load_config(directory: str | os.PathLike) -> dict:
    d = Path(directory)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        raise DiffsecError(f"{d} is not a saved tiny CLIP (needs config.json and model.safetensors)")
    return json.loads((d / "config.json").read_text())


def load(directory: str | os.PathLike, device="cpu"):
    """The model saved by `save`, in eval mode on `device`."""
    from safetensors.torch import load_file

    model = build(load_config(directory))
    model.load_state_dict(load_file(str(Path(directory) / "model.safetensors")), strict=True)
    return model.to(device).eval()
