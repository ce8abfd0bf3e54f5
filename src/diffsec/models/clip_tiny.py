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

import copy
import json
import os
from pathlib import Path

from diffsec.errors import DiffsecError

# open_clip's OpenAI normalization: keeps the preprocessing identical to pretrained CLIP's.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

DEFAULT = {
    "name": "clip-tiny-cifar10",
    "embed_dim": 128,
    # ModifiedResNet: stem width 32 (final stage 32 * 32 = 1024 channels), one block a stage,
    # attention pool heads of width 32.
    "vision": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 32, "head_width": 32},
    "text": {"width": 128, "heads": 4, "layers": 2},
    "mean": list(MEAN),
    "std": list(STD),
}


def config(**overrides) -> dict:
    """DEFAULT with top-level keys and the `vision`/`text` sub-dicts updated."""
    cfg = copy.deepcopy(DEFAULT)
    for k, v in overrides.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


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
