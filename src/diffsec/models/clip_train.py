"""Contrastive training and evaluation of the tiny CLIP on a labelled, captioned image set.

Captions are class captions (`TEMPLATES` x class name), so a batch of 256 holds ~25 images of
each CIFAR-10 class. Plain CLIP InfoNCE would call all but one of those same-class pairs
negatives and push apart what it must pull together; the target here is label-aware instead:
every same-class pair is a positive, with the row's probability mass split evenly among them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffsec import resume
from diffsec.errors import DiffsecError
from diffsec.models import checks
from diffsec.models.captions import PROMPT, TEMPLATES
from diffsec.models.rng import rng_state, set_rng_state


def captions(class_names: list[str]) -> list[str]:
    """All distinct captions, class-major: caption `label * len(TEMPLATES) + template`."""
    return [t.format(c) for c in class_names for t in TEMPLATES]


def augment(x, gen, pad: int = 4):
    """Random horizontal flip and random crop from a reflect-padded image, per image."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    x = F.pad(x, (pad,) * 4, mode="reflect")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return x[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def contrastive_loss(image_feats, text_feats, labels, logit_scale):
    """Symmetric cross-entropy of scaled cosine logits against label-aware soft targets."""
    import torch.nn.functional as F

    img, txt = F.normalize(image_feats, dim=-1), F.normalize(text_feats, dim=-1)
    logits = logit_scale.exp() * img @ txt.T
    same = (labels[:, None] == labels[None, :]).float()
    target = same / same.sum(1, keepdim=True)  # symmetric, so it also serves the text rows
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@dataclass
class TrainConfig:
    """AdamW (weight decay on weight matrices only, as CLIP), `steps` of `batch` images, peak `lr`
    after a 5% linear warm-up, then cosine decay."""

    steps: int
    batch: int
    lr: float
    weight_decay: float
    seed: int

    def __post_init__(self):
        checks.positive(self, "steps", "batch", "lr")
        checks.non_negative(self, "weight_decay")


def _optimizer(model, cfg: TrainConfig, warmup: float = 0.05):
    import torch

    # CLIP's recipe: no weight decay on gains, biases and the logit scale.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    n_warm = max(1, int(warmup * cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / n_warm, 0.5 * (
        1 + math.cos(math.pi * max(0, s - n_warm) / max(1, cfg.steps - n_warm)))))
    return opt, sched


def _step(model, x, y, tokens, gen, opt, sched) -> float:
    """One AdamW step on a uint8 NCHW batch `x` with labels `y` (CPU); returns the loss."""
    import torch

    device = tokens.device
    mean = torch.tensor(model.visual.preprocess_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    x = augment(x.float() / 255, gen)
    cap = y * len(TEMPLATES) + torch.randint(0, len(TEMPLATES), (len(y),), generator=gen)
    # Only len(captions) distinct texts exist: encode each once and index, which gives the
    # same gradient as encoding the batch's 256 captions at a fraction of the cost.
    text = model.encode_text(tokens)[cap.to(device)]
    loss = contrastive_loss(model.encode_image(((x - mean) / std).to(device)), text, y.to(device), model.logit_scale)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    with torch.no_grad():  # CLIP clamps the temperature at 100
        model.logit_scale.clamp_(0, math.log(100))
    return loss.item()


def train(model, images: np.ndarray, labels: np.ndarray, class_names: list[str], cfg: TrainConfig,
          device="cpu", ckpt: resume.Checkpoint | None = None, progress: bool = True) -> list[float]:
    """Train `model` in place; per-step losses. Resumes from `ckpt` (checkpointed every `ckpt.every` steps)."""
    import torch
    from tqdm.auto import tqdm

    from diffsec.models.clip_tiny import tokenizer

    if images.shape[1] != images.shape[2]:
        raise DiffsecError(f"images must be square, got {images.shape[1]}x{images.shape[2]}")
    ckpt, device = ckpt or resume.disabled(), torch.device(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # uint8 NCHW
    y_all = torch.as_tensor(labels, dtype=torch.long)
    tokens = tokenizer()(captions(class_names)).to(device)
    opt, sched = _optimizer(model, cfg)
    model.to(device).train()
    losses, order = [], torch.empty(0, dtype=torch.long)
    if (state := ckpt.load()) is not None:
        model.load_state_dict(state["model"]), opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"]), gen.set_state(state["gen"]), set_rng_state(state["rng"], device)
        losses, order = state["losses"], state["order"]
    for step in tqdm(range(len(losses), cfg.steps), desc="train-clip", disable=not progress):
        if len(order) < cfg.batch:  # epochs of random permutations, so every image is seen
            order = torch.cat([order, torch.randperm(len(data), generator=gen)])
        idx, order = order[:cfg.batch], order[cfg.batch:]
        losses.append(_step(model, data[idx], y_all[idx], tokens, gen, opt, sched))
        if ckpt.due(step + 1, cfg.steps):
            ckpt.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                       "gen": gen.get_state(), "rng": rng_state(device), "losses": losses, "order": order}, step + 1)
    return losses


def evaluate(backbone, images: np.ndarray, labels: np.ndarray, class_names: list[str],
             seed: int = 0) -> dict[str, float]:
    """Zero-shot top-1 with 'a photo of a {class}' prompts, and the mean CLIP score of each
    image against its own class prompt vs. a random other class's prompt."""
    from diffsec.metrics.similarity import clip_score_from_features, cosine_matrix

    prompts = [PROMPT.format(c) for c in class_names]
    img, txt = backbone.features(images, batch_size=256, progress=True), backbone.text_features(prompts)
    labels = np.asarray(labels)
    other = (labels + np.random.default_rng(seed).integers(1, len(class_names), len(labels))) % len(class_names)
    return {"zero_shot_top1": float((cosine_matrix(img, txt).argmax(1) == labels).mean()),
            "clip_score_matched": float(clip_score_from_features(img, txt[labels]).mean()),
            "clip_score_mismatched": float(clip_score_from_features(img, txt[other]).mean())}


def write_clip(model, cfg: dict, losses: list[float], directory: str | os.PathLike, test: tuple[np.ndarray, np.ndarray],
               seed: int, device) -> dict:
    """model.safetensors + config.json and the loss curve; then the zero-shot accuracy and CLIP
    scores on `test` through the metric backbone loaded back from those files (what downstream
    CLIP scores will use). Returns the manifest notes."""
    from diffsec.metrics.backbones import get_backbone
    from diffsec.models import clip_tiny
    from diffsec.training import write_curves

    d = Path(directory)
    clip_tiny.save(model, cfg, d)
    write_curves(d / "curve.csv", d / "curve.png", {"contrastive": losses}, title=cfg["name"])
    backbone = get_backbone("clip-tiny", weights=d, device=device)
    metrics = evaluate(backbone, *test, cfg["class_names"], seed)
    return {"metrics": metrics, "backbone": backbone.name, "final_loss": losses[-1],
            "logit_scale": model.logit_scale.exp().item(), "n_params": sum(p.numel() for p in model.parameters())}
