"""Metric library checked against independent computations (numpy/scipy/sklearn/skimage)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsec.errors import DiffsecError
from diffsec.metrics import (
    accuracy,
    attack_success_rate,
    clip_iqa,
    clip_score,
    dino_similarity,
    fid,
    frechet_distance,
    fsim,
    get_backbone,
    grid_roc_metrics,
    l2,
    linf,
    mse,
    precision_recall,
    psnr,
    roc_metrics,
    roc_report,
    ssim,
    vif_p,
)

torch.set_num_threads(1)


# ---------------------------------------------------------------- FID

def _fd_eigh(mu1, s1, mu2, s2):
    """Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2): a symmetric, eigendecomposition-only route."""
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(m, 0, None)).sum()


def test_fid_matches_direct_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 16))
    b = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    want = _fd_eigh(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid(a, b) == pytest.approx(want, rel=1e-8)
    assert abs(fid(a, a)) < 1e-8


def test_frechet_closed_form_known_gaussians():
    # N(mu1, diag(v1)) vs N(mu2, diag(v2)): |mu1 - mu2|^2 + sum (sqrt v1 - sqrt v2)^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    want = 5.0 + (1 + 1 + 4)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(want, abs=1e-10)
    # samples from those Gaussians approach it
    rng = np.random.default_rng(1)
    a = mu1 + rng.normal(size=(200_000, 3)) * np.sqrt(v1)
    b = mu2 + rng.normal(size=(200_000, 3)) * np.sqrt(v2)
    assert fid(a, b) == pytest.approx(want, rel=0.01)


def test_fid_bootstrap_se_is_the_spread_of_scipy_fids_over_the_same_resamples():
    """Every resample's FID through the eigenvalue identity equals scipy's sqrtm FID of that
    resample, so the se is their sd; a bigger generated set gives a smaller se."""
    from diffsec.metrics.fid import bootstrap_indices, fid_bootstrap_se

    rng = np.random.default_rng(3)
    b = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) * 0.5
    a = rng.normal(size=(60, 8)) + 0.2
    direct = [fid(a[idx], b) for idx in bootstrap_indices(len(a), 40, seed=5)]
    assert fid_bootstrap_se(a, b, 40, seed=5) == pytest.approx(np.std(direct, ddof=1), rel=1e-6)
    big = rng.normal(size=(960, 8)) + 0.2
    assert fid_bootstrap_se(big, b, 40) < fid_bootstrap_se(a, b, 40) / 2     # ~ 1 / sqrt(n)
    assert np.isnan(fid_bootstrap_se(a, b, 1))


def test_fid_singular_covariance_is_finite():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20))  # rank 4 covariances in 20-d
    assert np.isfinite(fid(a, b)) and fid(a, b) > 0


# ---------------------------------------------------------------- precision / recall

def _pr_bruteforce(real, fake, k):
    def radii(x):
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    d = np.sqrt(((fake[:, None] - real[None]) ** 2).sum(-1))  # fake x real
    precision = np.mean([(d[j] <= radii(real)).any() for j in range(len(fake))])
    recall = np.mean([(d[:, i] <= radii(fake)).any() for i in range(len(real))])
    return precision, recall


def test_precision_recall_matches_bruteforce():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(300, 6))
    fake = rng.normal(size=(250, 6)) * 0.6 + 0.8  # narrower, shifted: P and R both < 1
    p, r = _pr_bruteforce(real, fake, 3)
    got = precision_recall(real, fake, k=3, batch_size=64)  # several row blocks
    assert got["precision"] == pytest.approx(p, abs=1e-12)
    assert got["recall"] == pytest.approx(r, abs=1e-12)
    assert 0 < p < 1 and 0 < r < 1
    same = precision_recall(real, real, k=3)
    assert same == {"precision": 1.0, "recall": 1.0}


# ---------------------------------------------------------------- ROC

def test_roc_hand_example():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    m = roc_metrics(scores, labels)
    assert m["auc"] == pytest.approx(0.75)
    assert m["acc"] == pytest.approx(0.75)
    assert m["tpr@1%fpr"] == pytest.approx(0.5)  # only the threshold above 0.4 has FPR 0


def test_grid_roc_hand_example():
    # positives 1, 3; negatives 0, 2; grid of 3 thresholds: 0, 1.5, 3
    g = grid_roc_metrics([1, 3, 0, 2], [1, 1, 0, 0], n_grid=3)
    # (fpr, tpr) = (1, 1), (.5, .5), (0, .5): trapezoid 0.25 + 0.375; exact AUC is 0.75
    assert g["auc"] == pytest.approx(0.625)
    assert g["acc"] == pytest.approx(0.75)
    assert g["tpr@1%fpr"] == pytest.approx(0.5)
    assert roc_metrics([1, 3, 0, 2], [1, 1, 0, 0])["auc"] == pytest.approx(0.75)


def test_roc_against_sklearn_and_threshold_sweep():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    scores = np.r_[rng.normal(1, 1, 3000), rng.normal(0, 1, 3000)]
    labels = np.r_[np.ones(3000), np.zeros(3000)]
    m = roc_report(scores, labels, n_grid=20000)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # brute force over every threshold
    t = np.unique(scores)[:, None]
    pred = scores[None] >= t
    tpr = (pred & (labels == 1)).sum(1) / 3000
    fpr = (pred & (labels == 0)).sum(1) / 3000
    acc = ((pred == (labels == 1)).mean(1))
    assert m["acc"] == pytest.approx(max(acc.max(), 0.5))
    assert m["tpr@1%fpr"] == pytest.approx(tpr[fpr <= 0.01].max())
    assert m["tpr@0.1%fpr"] == pytest.approx(tpr[fpr <= 0.001].max())
    assert m["grid_auc"] == pytest.approx(m["auc"], abs=2e-3)  # a fine grid approaches exact


# ---------------------------------------------------------------- distances, classification

def test_distance_norms_hand_example():
    a = np.zeros((1, 2, 2, 1), np.uint8)
    b = np.array([255, 0, 0, 51], np.uint8).reshape(1, 2, 2, 1)  # diffs 1 and 0.2 on [0, 1]
    assert mse(b, a, "[0,1]")[0] == pytest.approx(1.04 / 4)
    assert l2(b, a, "[0,1]")[0] == pytest.approx(np.sqrt(1.04))
    assert linf(b, a, "[0,1]")[0] == pytest.approx(1.0)
    assert mse(b, a, "[-1,1]")[0] == pytest.approx(1.04)
    assert l2(b, a, "[-1,1]")[0] == pytest.approx(2 * np.sqrt(1.04))
    assert linf(b, a, "[0,255]")[0] == pytest.approx(255)
    # float inputs on [-1, 1]: a difference of 16/255 there is 8/255 on [0, 1]
    x = np.zeros((2, 3, 3, 3))
    y = x.copy()
    y[1, 0, 0, 0] = 16 / 255
    assert linf(y, x, "[0,1]", input_scale="[-1,1]").tolist() == pytest.approx([0, 8 / 255])
    with pytest.raises(ValueError):
        mse(a, b, "0-1")


def test_accuracy_and_attack_success_rate():
    logits = np.array([[2.0, 1, 0], [0, 3, 1], [0, 0, 5], [1, 0, 0]])
    assert accuracy(logits, [0, 1, 1, 0]) == pytest.approx(0.75)
    assert accuracy([0, 1, 2, 0], [0, 1, 1, 0]) == pytest.approx(0.75)
    assert attack_success_rate(logits, 2) == pytest.approx(0.25)
    assert attack_success_rate(logits, [0, 1, 2, 2]) == pytest.approx(0.75)


# ---------------------------------------------------------------- full-reference quality

def _pair(rng, n=4, size=32, sigma=20):
    a = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    # smooth the images a little so SSIM is not near 0
    a = ((a.astype(float) + np.roll(a, 1, 1) + np.roll(a, 1, 2)) / 3).astype(np.uint8)
    b = np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_ssim_match_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = _pair(np.random.default_rng(5))
    want_psnr = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    want_ssim = [structural_similarity(x, y, data_range=255, channel_axis=-1, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(psnr(a, b), want_psnr, rtol=1e-6)
    np.testing.assert_allclose(ssim(a, b), want_ssim, atol=1e-4)


def test_vif_fsim_sanity():
    rng = np.random.default_rng(6)
    a, b = _pair(rng, n=2, size=48, sigma=10)
    _, c = _pair(rng, n=2, size=48, sigma=40)
    np.testing.assert_allclose(vif_p(a, a), 1.0, atol=1e-4)
    np.testing.assert_allclose(fsim(a, a), 1.0, atol=1e-4)
    assert (vif_p(a, b) < 1).all() and (fsim(a, b) < 1).all()
    with pytest.raises(DiffsecError):
        vif_p(a[:, :32, :32], b[:, :32, :32])  # VIFp's 4 scales need >= 41 px


# ---------------------------------------------------------------- embeddings: CLIP, DINO

@pytest.fixture(scope="module")
def tiny_clip():
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from diffsec.metrics.backbones import ClipBackbone

    torch.manual_seed(0)
    model = CLIP(embed_dim=16,
                 vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=32),
                 text_cfg=CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))
    tok = open_clip.SimpleTokenizer(context_length=16)
    return ClipBackbone(model=model, tokenizer=tok, name="clip-tiny-random")


def _manual_clip(bb, images, texts):
    mean = torch.tensor(bb.mean).view(1, 3, 1, 1)
    std = torch.tensor(bb.std).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std  # 32 px: no resize
    with torch.no_grad():
        img = bb.model.encode_image(x).double().numpy()
        txt = bb.model.encode_text(bb.tokenizer(texts)).double().numpy()
    return img, txt


def _cos(u, v):
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_clip_score_and_iqa_match_manual(tiny_clip):
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    texts = ["a photo of a dog", "a red car", "a dog"] * 2
    img, txt = _manual_clip(tiny_clip, images, texts)
    want = np.mean([100 * max(_cos(i, t), 0) for i, t in zip(img, txt, strict=True)])
    assert clip_score(tiny_clip, images, texts, batch_size=4) == pytest.approx(want, rel=1e-6)
    _, anchors = _manual_clip(tiny_clip, images, ["Good photo.", "Bad photo."])
    p_good = [1 / (1 + np.exp(100 * (_cos(i, anchors[1]) - _cos(i, anchors[0])))) for i in img]
    assert clip_iqa(tiny_clip, images) == pytest.approx(np.mean(p_good), rel=1e-6)


def test_dino_similarity_local_dinov2_dir(tmp_path, tiny_clip):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64, image_size=32, patch_size=8)).save_pretrained(tmp_path / "dino")
    bb = get_backbone("dinov2", source=tmp_path / "dino", resize=32, crop=32)
    assert bb.name == "dinov2-dino"
    rng = np.random.default_rng(8)
    gen, ref = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (5, 3))
    mean, std = torch.tensor(bb.MEAN).view(1, 3, 1, 1), torch.tensor(bb.STD).view(1, 3, 1, 1)
    with torch.no_grad():
        f = [bb.model(pixel_values=(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std)
             .last_hidden_state[:, 0].double().numpy() for x in (gen, ref)]
    want = np.mean([_cos(g, r) for g in f[0] for r in f[1]])
    assert dino_similarity(bb, gen, ref, batch_size=2) == pytest.approx(want, rel=1e-6)
    # the backbone is swappable: same metric on CLIP image features
    img, _ = _manual_clip(tiny_clip, np.concatenate([gen, ref]), ["x"])
    want = np.mean([_cos(g, r) for g in img[:5] for r in img[5:]])
    assert dino_similarity(tiny_clip, gen, ref) == pytest.approx(want, rel=1e-6)


def test_backbone_registry_errors(tmp_path):
    with pytest.raises(DiffsecError, match="unknown feature backbone"):
        get_backbone("vgg")
    with pytest.raises(DiffsecError, match="inception-2015-12-05.pt"):
        get_backbone("inception-clean-fid", weights=tmp_path)
    with pytest.raises(DiffsecError, match="cannot load DINOv2"):
        get_backbone("dinov2", source=tmp_path / "missing")
    with pytest.raises(DiffsecError, match="needs weights"):
        get_backbone("resnet56-cifar10")
