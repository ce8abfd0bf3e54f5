"""Embedding similarities on a swappable backbone (any object with `.features(images)` and, for
the CLIP metrics, `.text_features(texts)`, such as `ClipBackbone` or `DinoV2Backbone`)."""

from __future__ import annotations

import numpy as np


def _unit(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def cosine_matrix(a, b) -> np.ndarray:
    """Cosine similarity of every row of `a` with every row of `b`."""
    return _unit(a) @ _unit(b).T


def mean_pairwise_cosine(feats_a, feats_b) -> float:
    return float(cosine_matrix(feats_a, feats_b).mean())


def dino_similarity(backbone, generated: np.ndarray, reference: np.ndarray, batch_size: int = 64) -> float:
    """DreamBooth-style DINO score: mean cosine similarity over all (generated, reference)
    pairs of backbone features."""
    return mean_pairwise_cosine(backbone.features(generated, batch_size), backbone.features(reference, batch_size))


def clip_score_from_features(image_feats, text_feats) -> np.ndarray:
    """Per-pair 100 * max(cos(image, text), 0), as torchmetrics' CLIPScore."""
    cos = (_unit(image_feats) * _unit(text_feats)).sum(-1)
    return 100 * np.maximum(cos, 0)


def clip_score(backbone, images: np.ndarray, texts, batch_size: int = 64) -> float:
    """Mean CLIP score of images against their captions (one per image, or one for all)."""
    texts = [texts] * len(images) if isinstance(texts, str) else list(texts)
    if len(texts) != len(images):
        raise ValueError(f"{len(texts)} captions for {len(images)} images")
    img = backbone.features(images, batch_size)
    uniq = sorted(set(texts))  # encode each distinct caption once
    txt = dict(zip(uniq, backbone.text_features(uniq), strict=True))
    return float(clip_score_from_features(img, np.stack([txt[t] for t in texts])).mean())


def clip_iqa_from_features(image_feats, good_feat, bad_feat, logit_scale: float = 100.0) -> np.ndarray:
    """P(good) per image: softmax of logit_scale * cosine over the antonym prompt pair. The pair is
    one text feature each (D) for all images, or one per image (N x D, row i for image i)."""
    good, bad = np.asarray(good_feat), np.asarray(bad_feat)
    if good.ndim == 2:  # a pair per image
        img = _unit(image_feats)
        logits = logit_scale * np.stack([(img * _unit(good)).sum(-1), (img * _unit(bad)).sum(-1)], 1)
    else:
        logits = logit_scale * cosine_matrix(image_feats, np.stack([good, bad]))
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p[:, 0] / p.sum(1)


def clip_iqa(backbone, images: np.ndarray, prompts=("Good photo.", "Bad photo."),
             logit_scale: float = 100.0, batch_size: int = 64) -> float:
    """CLIP-IQA (Wang et al. 2023), mean P(good) over images. logit_scale 100 is pretrained
    CLIP's and torchmetrics' value."""
    good, bad = backbone.text_features(list(prompts))
    return float(clip_iqa_from_features(backbone.features(images, batch_size), good, bad, logit_scale).mean())
