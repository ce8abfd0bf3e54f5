"""SeDID's pieces against independent computations: the DDIM move equals diffusers' DDIM and
DDIM-inverse steps, an oracle noise predictor makes the t-error vanish, the t-error equals a
direct SecMI-style computation, the loss attack equals its formula, a score with AUC < 0.5 is
kept as it is, and the NN detector never sees a test image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsec.detect.loss import image_noise, loss_scores
from diffsec.detect.nn import NNConfig, split, train_detector
from diffsec.detect.terror import error_maps, stat_scores
from diffsec.diffusion.inversion import alphas_cumprod, ddim_move, invert
from diffsec.metrics.roc import roc_metrics, scores_labels


def _config() -> dict:
    from diffusers import DDPMScheduler

    return dict(DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False).config)


def _eps_model(x, t):  # any deterministic, non-oracle function of (x, t)
    return torch.tanh(1.3 * x) * 0.6 + 0.2 * torch.sin(x.flip(-1)) + 0.05 * (t.float() / 1000).view(-1, 1, 1, 1)


@pytest.mark.parametrize("k", [10, 125])  # k with T // (T // k) == k: diffusers spaces by T // steps
def test_ddim_move_equals_diffusers_ddim_and_inverse_steps(k):
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    cfg, abar = _config(), alphas_cumprod(_config())
    down, up = DDIMScheduler.from_config(cfg), DDIMInverseScheduler.from_config(cfg)
    down.set_timesteps(1000 // k)
    up.set_timesteps(1000 // k)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    for t in (2 * k, 5 * k):
        ref_down = down.step(eps, t, x, eta=0.0).prev_sample
        assert torch.equal(ddim_move(x, eps, abar[t], abar[t - k]), ref_down)
        ref_up = up.step(eps, t, x).prev_sample  # DDIMInverseScheduler: from t - k up to t
        assert torch.equal(ddim_move(x, eps, abar[t - k], abar[t]), ref_up)


def test_oracle_noise_predictor_makes_the_t_error_zero():
    """For data that is one image x*, eps*(x_t, t) = (x_t - sqrt(abar_t) x*) / sqrt(1 - abar_t) is
    the exact noise predictor: every DDIM move then keeps x0_hat = x*, so inverting and
    denoising agree exactly; a model that is not the oracle leaves an error."""
    abar = alphas_cumprod(_config()).double()
    x_star = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1

    def oracle(x, t):
        a = abar[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * x_star) / (1 - a).sqrt()

    maps = error_maps(oracle, abar, x_star.expand(2, -1, -1, -1), k=165, t_secs=[165, 495, 990])
    assert all(float(m.abs().max()) < 1e-20 for m in maps.values())
    other = error_maps(_eps_model, abar, x_star.expand(2, -1, -1, -1), k=165, t_secs=[165, 990])
    assert all(float(m.sum()) > 1e-6 for m in other.values())


def test_t_error_equals_a_direct_secmi_singlestep_computation():
    """SecMI's pattern written out: invert 0 -> k -> ... -> t (noise at the source step), one
    more step to t + k, one step back with the noise at t + k, squared difference on [0, 1]."""
    abar = alphas_cumprod(_config())
    x0 = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    k, t_sec = 10, 100

    def single(x, s, u):
        eps = _eps_model(x, torch.full((x.shape[0],), s))
        x0_hat = (x - (1 - abar[s]).sqrt() * eps) / abar[s].sqrt()
        return abar[u].sqrt() * x0_hat + (1 - abar[u]).sqrt() * eps

    x, s = x0, 0
    for u in range(k, t_sec - k + 1, k):
        x, s = single(x, s, u), u
    back = single(single(x, s, s + k), s + k, s)
    direct = ((x + 1) / 2 - (back + 1) / 2).square()
    ours = error_maps(_eps_model, abar, x0, k=k, t_secs=[t_sec])[t_sec]
    torch.testing.assert_close(ours, direct, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(stat_scores({t_sec: ours})[t_sec], -direct.flatten(1).sum(1))
    # the chain itself: invert lists every grid state
    assert len(invert(_eps_model, abar, x0, [10, 20, 30])) == 3


def test_grid_refuses_a_t_that_is_not_a_multiple_of_k():
    abar = alphas_cumprod(_config())
    with pytest.raises(ValueError, match="not a multiple"):
        error_maps(_eps_model, abar, torch.zeros(1, 3, 4, 4), k=165, t_secs=[200])
    with pytest.raises(ValueError, match="not a multiple"):
        error_maps(_eps_model, abar, torch.zeros(1, 3, 4, 4), k=200, t_secs=[1000])  # T - 1 is the top


def test_loss_attack_equals_its_formula_and_ignores_batching():
    abar = alphas_cumprod(_config())
    x0 = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    t, seed = 300, 7
    scores = loss_scores(_eps_model, abar, x0, t, list(range(5)), seed)
    for j in range(5):
        eps = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(seed * 1_000_003 + j))
        x_t = abar[t].sqrt() * x0[j] + (1 - abar[t]).sqrt() * eps
        direct = -float((eps - _eps_model(x_t[None], torch.tensor([t]))[0]).square().sum())
        assert float(scores[j]) == pytest.approx(direct, rel=1e-5)
    halves = torch.cat([loss_scores(_eps_model, abar, x0[:2], t, [0, 1], seed),
                        loss_scores(_eps_model, abar, x0[2:], t, [2, 3, 4], seed)])
    torch.testing.assert_close(halves, scores)
    assert not torch.equal(image_noise((3, 8, 8), [0], 1), image_noise((3, 8, 8), [1], 1))


def test_a_score_with_auc_below_one_half_is_kept_as_it_is():
    """Stat's direction is fixed (small error = generated): where the generated images have the
    larger errors, AUC comes out below 0.5 and stays there (the paper's CelebA 990 row)."""
    rng = np.random.default_rng(0)
    gen_maps = {990: torch.as_tensor(rng.uniform(2, 3, (50, 3, 4, 4)))}
    real_maps = {990: torch.as_tensor(rng.uniform(0, 1, (50, 3, 4, 4)))}
    s, y = scores_labels(stat_scores(gen_maps)[990].numpy(), stat_scores(real_maps)[990].numpy())
    m = roc_metrics(s, y)
    assert m["auc"] == 0.0 and m["acc"] == 0.5


def test_split_is_stratified_and_disjoint():
    labels = np.r_[np.zeros(100, int), np.ones(100, int)]
    s = split(labels, 0.1, 0.2, seed=0)
    assert not set(s.train) & set(s.test) and not set(s.val) & set(s.test) and not set(s.train) & set(s.val)
    assert len(s.train) + len(s.val) + len(s.test) == 200
    assert len(s.test) == 180 and (labels[s.val] == 1).sum() == (labels[s.val] == 0).sum() == 2
    assert np.array_equal(split(labels, 0.1, 0.2, seed=0).test, s.test)
    assert not np.array_equal(split(labels, 0.1, 0.2, seed=1).test, s.test)


def test_nn_detector_never_sees_test_images_and_learns_a_separable_signal():
    rng = np.random.default_rng(0)
    n = 120
    labels = np.r_[np.zeros(n, int), np.ones(n, int)]
    maps = np.where(labels[:, None, None, None] == 1, 0.2, 1.0) * rng.uniform(0.5, 1.5, (2 * n, 3, 8, 8))
    maps = maps.astype(np.float32)
    s = split(labels, 0.5, 0.25, seed=0)
    poisoned = maps.copy()
    poisoned[s.test] = np.nan  # a network that read a test map would turn NaN
    model, curve, best = train_detector(poisoned, labels, s, NNConfig(epochs=6, batch_size=16, lr=0.05, width=8))
    assert all(torch.isfinite(p).all() for p in model.parameters()) and 1 <= best <= 6
    assert len(curve) == 6 * -(-len(s.train) // 16)
    m = roc_metrics(model.scores(maps[s.test]), labels[s.test])
    assert m["auc"] > 0.95
