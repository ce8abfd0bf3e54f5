"""SAU (paper 001): the latent blend, BadT2I's objective and the baselines' targets, on tiny random
diffusers models the tests build themselves."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffsec.backdoor.badt2i import (
    TRIGGER,
    badt2i_loss,
    badt2i_terms,
    esd_loss,
    esd_target,
    grayscale,
    paste_patch,
    reversal_loss,
    trigger_token_ids,
    triggered,
    xattn_parameters,
)
from diffsec.defense.sau import (
    SAUConfig,
    blend,
    gaussian_blur,
    mean_shift,
    primary_mask,
    sau_latent,
    secondary_mask,
    similarity_map,
    soft,
)
from diffsec.errors import DiffsecError

torch.set_num_threads(1)
C, H, W = 4, 8, 8
B, L, D = 2, 6, 16  # batch, text tokens, text width


@pytest.fixture(scope="module")
def unets():
    """(student, frozen): a tiny random text-conditional UNet and a perturbed copy of it."""
    from diffsec.models.t2i import build_unet

    torch.manual_seed(0)
    frozen = build_unet([16, 16], [False, True], 1, C, H, cross_dim=D, head_dim=8).eval().requires_grad_(False)
    student = copy.deepcopy(frozen).requires_grad_(True)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return student, frozen


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from diffsec.models.tokenizer import clip_tokenizer

    return clip_tokenizer(tmp_path_factory.mktemp("tok"))


def _latents(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _planted(n=6, strength=3.0):
    """Seed-matched calibration pairs: triggered = clean + a fixed shift in the top-left 3 x 3."""
    clean = _latents(1, n, C, H, W)
    shift = torch.zeros(C, H, W)
    shift[:, :3, :3] = strength * torch.tensor([1.0, -1.0, 0.5, 2.0])[:, None, None]
    return clean + shift, clean, shift


# --- SAU --------------------------------------------------------------------------------------


def test_alpha_one_with_full_masks_returns_the_clean_latent():
    zp, zc = _latents(1, C, H, W), _latents(2, C, H, W)
    ones = torch.ones(H, W)
    torch.testing.assert_close(blend(zp, zc, ones, ones, 1.0), zc)
    torch.testing.assert_close(blend(zp, zc, ones, torch.zeros(H, W), 1.0), zc)


def test_empty_masks_return_the_poisoned_latent():
    zp, zc = _latents(1, B, C, H, W), _latents(2, B, C, H, W)
    zero = torch.zeros(B, H, W)
    assert torch.equal(blend(zp, zc, zero, zero, 1.0), zp)
    # alpha = 0 and no final blur: SAU leaves the poisoned latent as it is, whatever the masks
    out, _ = sau_latent(zp, zc, zp[0] - zc[0], SAUConfig(alpha=0.0, sigma_f=0.0))
    torch.testing.assert_close(out, zp)


def test_secondary_only_region_is_blended_at_half_alpha():
    zp, zc = _latents(1, C, H, W), _latents(2, C, H, W)
    primary, secondary = torch.zeros(H, W), torch.zeros(H, W)
    primary[:2], secondary[:5] = 1, 1  # rows 0-1 primary (and secondary), rows 2-4 secondary only
    alpha = 0.6
    out = blend(zp, zc, primary, secondary, alpha)
    torch.testing.assert_close(out[:, :2], (1 - alpha) * zp[:, :2] + alpha * zc[:, :2])
    torch.testing.assert_close(out[:, 2:5], (1 - alpha / 2) * zp[:, 2:5] + alpha / 2 * zc[:, 2:5])
    assert torch.equal(out[:, 5:], zp[:, 5:])


def test_mean_shift_is_the_difference_of_the_two_means():
    zp, zc = _latents(1, 5, C, H, W), _latents(2, 5, C, H, W)
    expected = sum(zp[i] for i in range(5)) / 5 - sum(zc[i] for i in range(5)) / 5
    torch.testing.assert_close(mean_shift(zp, zc), expected)
    with pytest.raises(DiffsecError):
        mean_shift(zp, zc[:4])


def test_similarity_map_is_the_per_position_cosine_over_channels():
    z, delta = _latents(1, B, C, H, W), _latents(2, C, H, W)
    got = similarity_map(z, delta)
    assert got.shape == (B, H, W)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                ref = F.cosine_similarity(z[b, :, i, j], delta[:, i, j], dim=0)
                assert got[b, i, j].item() == pytest.approx(ref.item(), abs=1e-6)


def test_gaussian_blur_of_an_impulse_is_the_normalised_gaussian_kernel():
    sigma, r = 1.0, 3
    x = torch.zeros(15, 15)
    x[7, 7] = 1
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    kernel = torch.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    expected = torch.zeros(15, 15)
    expected[7 - r:8 + r, 7 - r:8 + r] = kernel / kernel.sum()
    torch.testing.assert_close(gaussian_blur(x, sigma), expected)
    const = torch.full((2, 3, 4, 4), 0.7)  # replicate padding keeps constants, even past the border
    torch.testing.assert_close(gaussian_blur(const, 2.0), const)
    assert gaussian_blur(x, 0.0) is x


def test_soft_is_the_shifted_scaled_sigmoid_and_tends_to_the_threshold():
    x = torch.linspace(-1, 1, 41)
    assert soft(torch.tensor(0.3), 0.3, 10.0).item() == pytest.approx(0.5)
    assert soft(torch.tensor(0.4), 0.3, 10.0).item() == pytest.approx(1 / (1 + math.exp(-1)))
    away = (x - 0.3).abs() > 0.01
    torch.testing.assert_close(soft(x, 0.3, 1e4)[away], primary_mask(x, 0.3)[away])


def test_sau_finds_a_planted_top_left_trigger_and_restores_it():
    zp, zc, _ = _planted()
    delta = mean_shift(zp, zc)
    cfg = SAUConfig()
    out, masks = sau_latent(zp, zc, delta, cfg)
    block = torch.zeros(H, W, dtype=torch.bool)
    block[:3, :3] = True
    assert torch.equal(masks["primary"], block.float().expand(len(zp), H, W))
    assert masks["secondary"][:, block].all() and not masks["secondary"][:, 5:, 5:].any()
    assert set(masks) == {"similarity", "activation", "primary", "secondary", "primary_soft", "secondary_soft",
                          "region", "weight"}
    assert all(m.shape == (len(zp), H, W) for m in masks.values())
    # inside the block the trigger's shift is (almost) gone; far from it zp == zc and the soft masks
    # are nearly 0, so the output is (almost) that latent
    err_in = (out - zc)[..., :3, :3].abs().mean() / (zp - zc)[..., :3, :3].abs().mean()
    assert err_in < 0.1
    assert masks["region"][:, 5:, 5:].max() < 0.005
    torch.testing.assert_close(out[..., 5:, 5:], zc[..., 5:, 5:], atol=0.01, rtol=0)
    # the per-pair activation sees the same block here
    out_pair, masks_pair = sau_latent(zp, zc, delta, SAUConfig(source="pair"))
    torch.testing.assert_close(masks_pair["activation"], masks["activation"])
    # one latent alone gives the same answer as its row of the batch
    single, _ = sau_latent(zp[0], zc[0], delta, cfg)
    torch.testing.assert_close(single, out[0])


def test_secondary_mask_blurs_the_activation_past_the_trigger():
    act = torch.zeros(H, W)
    act[:3, :3] = 1
    sharp, wide = secondary_mask(act, 0.0, 0.3), secondary_mask(act, 1.5, 0.3)
    assert torch.equal(sharp, act) and wide.sum() > sharp.sum() and wide[:3, :3].all()


@pytest.mark.parametrize("bad", [dict(tau=1.5), dict(tau_s=-0.1), dict(k=0), dict(k=float("inf")),
                                 dict(alpha=1.2), dict(alpha=True), dict(sigma=-1), dict(sigma_f=float("nan")),
                                 dict(source="attention"), dict(tau="0.5")])
def test_bad_sau_config_raises_a_one_line_error(bad):
    with pytest.raises(DiffsecError) as e:
        SAUConfig(**bad)
    assert "\n" not in str(e.value) and next(iter(bad)) in str(e.value)


# --- BadT2I and the baselines -------------------------------------------------------------------


def test_triggered_prompt_reaches_the_text_encoder(tokenizer):
    from diffsec.models.t2i import build_text_encoder

    prompt = "a majestic castle on a hill"
    ids, clean = trigger_token_ids(tokenizer, prompt), tokenizer(prompt).input_ids
    assert triggered(prompt) == "\u200b " + prompt == TRIGGER + prompt
    assert ids != clean and ids == [clean[0], 9844, *clean[1:]]  # U+200B -> 'âĢĭ</w>', one token
    assert tokenizer.convert_ids_to_tokens(9844) == "âĢĭ</w>"
    torch.manual_seed(0)
    enc = build_text_encoder(16, 1, 2).eval()
    with torch.no_grad():
        a, b = (enc(torch.tensor([x])).last_hidden_state for x in (ids, clean))
    assert a.shape[1] == b.shape[1] + 1 and not torch.allclose(a[:, -1], b[:, -1])


def test_a_tokenizer_that_drops_the_trigger_is_refused(tokenizer):
    def dropping(text):  # a text cleaner that deletes format characters, as BERT's BasicTokenizer does
        return tokenizer(text.replace("\u200b", ""))

    with pytest.raises(DiffsecError, match="does not reach the text encoder"):
        trigger_token_ids(dropping, "starry night sky")


def _noised_by_hand(scheduler, z, gen):
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(z),), generator=gen)
    noise = torch.randn(z.shape, generator=gen)
    abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    return abar.sqrt() * z + (1 - abar).sqrt() * noise, noise, t


def _conds():
    return _latents(3, B, L, D), _latents(4, B, L, D)


def test_badt2i_loss_weights_the_backdoor_and_preservation_mse(unets):
    from diffsec.models.t2i import build_scheduler

    student, frozen = unets
    sched = build_scheduler()
    zc, zt = _latents(5, B, C, H, W), _latents(6, B, C, H, W)
    c_tr, c = _conds()
    gen = torch.Generator().manual_seed(7)  # the documented draw order: t, eps, then t', eps'
    x1, _, t1 = _noised_by_hand(sched, zt, gen)
    x2, _, t2 = _noised_by_hand(sched, zc, gen)
    with torch.no_grad():
        bkd = (student(x1, t1, c_tr).sample - frozen(x1, t1, c).sample).pow(2).mean().item()
        pres = (student(x2, t2, c).sample - frozen(x2, t2, c).sample).pow(2).mean().item()
    assert bkd > 0 and pres > 0

    def loss(lam):
        with torch.no_grad():
            return badt2i_loss(student, frozen, sched, zc, zt, c_tr, c, torch.Generator().manual_seed(7), lam).item()

    assert loss(1.0) == pytest.approx(bkd, rel=1e-4)
    assert loss(0.0) == pytest.approx(pres, rel=1e-4)
    assert loss(0.5) == pytest.approx(0.5 * bkd + 0.5 * pres, rel=1e-4)
    with pytest.raises(DiffsecError):
        badt2i_loss(student, frozen, sched, zc, zt, c_tr, c, gen, lam=1.5)


def test_badt2i_noise_target_is_the_plain_denoising_loss(unets):
    from diffsec.models.t2i import build_scheduler

    student, frozen = unets
    sched = build_scheduler()
    zc, zt = _latents(5, B, C, H, W), _latents(6, B, C, H, W)
    c_tr, c = _conds()
    x1, noise, t1 = _noised_by_hand(sched, zt, torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = (student(x1, t1, c_tr).sample - noise).pow(2).mean().item()
        bkd, _ = badt2i_terms(student, frozen, sched, zc, zt, c_tr, c, torch.Generator().manual_seed(8), "noise")
    assert bkd.item() == pytest.approx(expected, rel=1e-4)


def test_badt2i_gradients_reach_the_student_but_not_the_frozen_unet(unets):
    from diffsec.models.t2i import build_scheduler

    student, frozen = unets
    student.zero_grad(set_to_none=True)
    c_tr, c = _conds()
    loss = badt2i_loss(student, frozen, build_scheduler(), _latents(5, B, C, H, W), _latents(6, B, C, H, W),
                       c_tr, c, torch.Generator().manual_seed(9))
    loss.backward()
    grads = [p.grad for p in student.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())
    student.zero_grad(set_to_none=True)


def test_reversal_loss_is_the_denoising_loss_on_triggered_captions(unets):
    from diffsec.models.t2i import build_scheduler

    student, _ = unets
    sched = build_scheduler()
    z, (c_tr, _) = _latents(5, B, C, H, W), _conds()
    x, noise, t = _noised_by_hand(sched, z, torch.Generator().manual_seed(10))
    with torch.no_grad():
        expected = (student(x, t, c_tr).sample - noise).pow(2).mean().item()
        got = reversal_loss(student, sched, z, c_tr, torch.Generator().manual_seed(10)).item()
    assert got == pytest.approx(expected, rel=1e-4)


def test_esd_target_is_negative_guidance_from_the_frozen_unet(unets):
    student, frozen = unets
    x, t = _latents(11, B, C, H, W), torch.tensor([10, 700])
    c_tr, empty = _conds()
    with torch.no_grad():
        e_p, e_0, e_n = frozen(x, t, c_tr).sample, frozen(x, t, empty).sample, student(x, t, c_tr).sample
    eta = 1.5
    expected = e_0 - eta * (e_p - e_0)
    torch.testing.assert_close(esd_target(frozen, x, t, c_tr, empty, eta), expected)
    torch.testing.assert_close(esd_target(frozen, x, t, c_tr, empty, 0.0), e_0)
    with torch.no_grad():
        assert esd_loss(student, frozen, x, t, c_tr, empty, eta).item() == \
            pytest.approx((e_n - expected).pow(2).mean().item(), rel=1e-5)


def test_xattn_parameters_are_exactly_the_cross_attention_weights(unets):
    from diffusers.models.attention import BasicTransformerBlock

    student, _ = unets
    blocks = [m for m in student.modules() if isinstance(m, BasicTransformerBlock)]
    expected = {id(p) for blk in blocks for p in blk.attn2.parameters()}
    got = xattn_parameters(student)
    assert blocks and expected and {id(p) for p in got.values()} == expected
    assert not {id(p) for blk in blocks for p in blk.attn1.parameters()} & expected


def test_paste_patch_fills_the_top_left_and_leaves_the_rest():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    patch = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    before = images.copy()
    out = paste_patch(images, patch)  # 0.25 of 32 = 8: no resize, the exact pixels
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert (out[:, :8, :8] == patch).all()
    mask = np.ones((32, 32), bool)
    mask[:8, :8] = False
    assert (out[:, mask] == images[:, mask]).all()
    assert (images == before).all()  # a copy: the input is not modified
    flat = np.full((4, 4, 3), 200, np.uint8)  # resized (4 -> 16 px): a flat patch stays flat
    big = paste_patch(images, flat, frac=0.5)
    assert (big[:, :16, :16] == 200).all() and (big[:, 16:] == images[:, 16:]).all()
    with pytest.raises(DiffsecError):
        paste_patch(images, flat, frac=0.0)


def test_grayscale_is_itu_r_601_luma_on_three_channels():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    out = grayscale(images)
    assert out.dtype == np.uint8 and out.shape == images.shape
    for n, i, j in [(0, 0, 0), (1, 4, 6), (0, 2, 3), (1, 1, 5)]:
        r, g, b = (float(v) for v in images[n, i, j])
        y = round(0.299 * r + 0.587 * g + 0.114 * b)
        assert list(out[n, i, j]) == [y, y, y]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_paper_values_are_the_quoted_tables():
    from diffsec.paper import paper_values
    from diffsec.paper.sau import METHODS, TABLES

    pv = paper_values("sau")
    assert set(pv) == {(t, r, c, spec["metric"]) for t, spec in TABLES.items() for r in spec["rows"]
                       for c in spec["columns"]}
    assert set(TABLES["sau_clip_iqa"]["rows"]) == set(METHODS)
    removal = {r: pv[("sau_removal", r, "Pixel", "removal_accuracy")] for r in TABLES["sau_removal"]["rows"]}
    assert removal == {"Finetune Reversal": 0.97, "Concept Erasure": 0.20, "Spatial Attention Unlearning": 1.00}
    iqa = {r: pv[("sau_clip_iqa", r, "Pixel", "clip_iqa")] for r in METHODS}
    assert iqa == {"Poisoned Unet": 0.6496, "Finetune Reversal": 0.6735, "Concept Erasure": 0.5843,
                   "Spatial Attention Unlearning": 0.7023}
    assert max(iqa, key=iqa.get) == "Spatial Attention Unlearning"  # the paper's claim
