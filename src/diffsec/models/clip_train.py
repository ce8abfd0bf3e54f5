"""Contrastive training and evaluation of the tiny CLIP on a labelled, captioned image set.

Captions are class captions (`TEMPLATES` x class name), so a batch of 256 holds ~25 images of
each CIFAR-10 class. Plain CLIP InfoNCE would call all but one of those same-class pairs
negatives and push apart what it must pull together; the target here is label-aware instead:
every same-class pair is a positive, with the row's probability mass split evenly among them.
"""

from __future__ import annotations

import math

import numpy as np

from diffsec.models.t2i import PROMPT, TEMPLATES


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


def train(model, images: np.ndarray, labels: np.ndarray, class_names: list[str], steps: int,
          batch: int, lr: float, seed: int = 0, device="cpu", weight_decay: float = 0.1,
          warmup: float = 0.05, progress: bool = True) -> list[float]:
    """Train `model` in place (AdamW, linear warmup then cosine decay); per-step losses."""
    import torch
    from tqdm.auto import tqdm

    from diffsec.models.clip_tiny import tokenizer

    gen = torch.Generator().manual_seed(seed)
    mean = torch.tensor(model.visual.preprocess_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    data = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # uint8 NCHW
    y_all = torch.as_tensor(labels, dtype=torch.long)
    tokens = tokenizer()(captions(class_names)).to(device)
    # CLIP's recipe: no weight decay on gains, biases and the logit scale.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    n_warm = max(1, int(warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / n_warm, 0.5 * (
        1 + math.cos(math.pi * max(0, s - n_warm) / max(1, steps - n_warm)))))
    model.to(device).train()
    losses, order = [], torch.empty(0, dtype=torch.long)
    for _ in tqdm(range(steps), desc="train-clip", disable=not progress):
        if len(order) < batch:  # epochs of random permutations, so every image is seen
            order = torch.cat([order, torch.randperm(len(data), generator=gen)])
        idx, order = order[:batch], order[batch:]
        x = augment(data[idx].float() / 255, gen)
        y = y_all[idx]
        cap = y * len(TEMPLATES) + torch.randint(0, len(TEMPLATES), (len(idx),), generator=gen)
        # Only len(captions) distinct texts exist: encode each once and index, which gives the
        # same gradient as encoding the batch's 256 captions at a fraction of the cost.
        text = model.encode_text(tokens)[cap.to(device)]
        loss = contrastive_loss(model.encode_image(((x - mean) / std).to(device)), text,
                                y.to(device), model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():  # CLIP clamps the temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
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
