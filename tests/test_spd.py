"""SPD's universal perturbation (paper 003) on a tiny random KL VAE the test builds itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsec.errors import DiffsecError
from diffsec.poison import Budget
from diffsec.poison.universal import (
    UniversalConfig,
    apply_universal,
    fit_universal,
    kl_to_standard_normal,
    objective_loss,
    photoguard_per_image,
    posterior,
    random_baseline,
    step_sizes,
    target_latent,
    universal_gradient,
)

torch.set_num_threads(1)
N, SIZE = 6, 16
BUDGET = Budget(16, 4, 255)  # eps 16/255, first PGD step 4/255


@pytest.fixture(scope="module")
def vae():
    """A random KL VAE (16 px -> 4 x 8 x 8), frozen as the attacks use it."""
    from diffsec.models.t2i import build_vae

    torch.manual_seed(0)
    return build_vae([8, 16], 1, 4, SIZE).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def images():
    """uint8 NHWC, smooth and away from 0/255 plus a few saturated pixels (so the clip binds)."""
    rng = np.random.default_rng(1)
    low = rng.uniform(30, 225, (N, 4, 4, 3))
    im = np.repeat(np.repeat(low, 4, 1), 4, 2).round().astype(np.uint8)
    im[0, :2, :2], im[1, -2:, -2:] = 0, 255
    return im


def _x01(u8):
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255


def _mean_loss(vae, x01, delta, objective, z_targ=None):
    with torch.no_grad():
        return objective_loss(vae, x01, delta, objective, z_targ).double().mean().item()


@pytest.mark.parametrize("objective", ["encoder", "pca+", "pca-"])
def test_universal_gradient_is_the_mean_of_per_image_gradients(vae, images, objective):
    x = _x01(images)
    z = target_latent(vae, (SIZE, SIZE), "grey")
    delta = random_baseline((3, SIZE, SIZE), BUDGET, 3)
    per_image, losses = [], []
    for i in range(N):  # one image at a time, by plain autograd
        d = delta.clone().requires_grad_(True)
        loss = objective_loss(vae, x[i:i + 1], d, objective, z)[0]
        loss.backward()
        per_image.append(d.grad)
        losses.append(loss.item())
    expected = torch.stack(per_image).mean(0)
    assert expected.abs().max() > 0
    for bs in (1, 4, N):
        loss, grad = universal_gradient(vae, x, delta, objective, z, batch_size=bs)
        assert loss == pytest.approx(np.mean(losses), rel=1e-5)
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6 * expected.abs().max().item())


def test_hand_written_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 4, 3, 3, generator=g) * 2, torch.randn(5, 4, 3, 3, generator=g)
    Normal = torch.distributions.Normal
    ref = torch.distributions.kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), ref, rtol=1e-5, atol=1e-5)


def test_losses_are_the_stated_formulas_of_the_posterior(vae, images):
    """encoder = ||mu - E(grey)||^2, pca+ = -KL, pca- = sum(mu^2 + sigma^2), at clip(x + delta)."""
    x, delta = _x01(images), random_baseline((3, SIZE, SIZE), BUDGET, 5)
    with torch.no_grad():
        post = posterior(vae, (x + delta).clamp(0, 1))
        grey = posterior(vae, torch.full((1, 3, SIZE, SIZE), 0.5)).mean
        z = target_latent(vae, (SIZE, SIZE), "grey")
        mu, var = post.mean.double(), post.var.double()
        enc = ((mu - grey.double()) ** 2).sum((1, 2, 3))
        kl = 0.5 * (mu ** 2 + var - var.log() - 1).sum((1, 2, 3))
        torch.testing.assert_close(objective_loss(vae, x, delta, "encoder", z).double(), enc, rtol=1e-5, atol=0)
        torch.testing.assert_close(objective_loss(vae, x, delta, "pca+").double(), -kl, rtol=1e-5, atol=0)
        torch.testing.assert_close(objective_loss(vae, x, delta, "pca-").double(), (mu ** 2 + var).sum((1, 2, 3)),
                                   rtol=1e-5, atol=0)
    assert target_latent(vae, (SIZE, SIZE), "zero").abs().max() == 0


def test_photoguard_schedule_decays_linearly_to_a_hundredth():
    a = step_sizes(0.03, 100, "photoguard")
    assert a[0] == 0.03 and a[-1] == pytest.approx(0.03 * (1 - 0.99 * 99 / 100))
    assert np.allclose(np.diff(a), -0.03 * 0.99 / 100)
    assert step_sizes(0.03, 5, "fixed") == [0.03] * 5


@pytest.mark.parametrize("optimizer", ["pgd", "adam"])
def test_fit_follows_the_papers_algorithms(vae, images, optimizer):
    """Algorithm 1 (sign of the mean gradient) and 2 (torch's Adam on the mean gradient), each
    step followed by the clip onto the eps ball, from the seeded uniform start: same delta."""
    x, eps = _x01(images), BUDGET.eps01
    cfg = UniversalConfig(objective="pca+", optimizer=optimizer, iters=4, batch_size=4, seed=2)
    delta = random_baseline((3, SIZE, SIZE), BUDGET, cfg.seed).requires_grad_(True)
    adam = torch.optim.Adam([delta], betas=(0.9, 0.999), eps=1e-8)
    for k in range(cfg.iters):
        alpha = BUDGET.step01 * (1 - 0.99 * k / cfg.iters)
        _, g = universal_gradient(vae, x, delta.detach(), "pca+", batch_size=cfg.batch_size)
        with torch.no_grad():
            if optimizer == "pgd":
                delta -= alpha * g.sign()
            else:
                adam.param_groups[0]["lr"], delta.grad = alpha, g
                adam.step()
            delta.clamp_(-eps, eps)
    got, _ = fit_universal(vae, x, BUDGET, cfg, progress=False)
    torch.testing.assert_close(got, delta.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["pgd", "adam"])
def test_immunized_images_stay_within_eps_after_quantisation(vae, images, optimizer):
    cfg = UniversalConfig(optimizer=optimizer, iters=4, batch_size=4, seed=1)
    delta, curve = fit_universal(vae, _x01(images), BUDGET, cfg, progress=False)
    assert delta.shape == (3, SIZE, SIZE) and delta.abs().max() <= BUDGET.eps01 + 1e-7
    assert curve.shape == (cfg.iters + 1,)
    adv = apply_universal(images, delta, BUDGET)
    assert adv.dtype == np.uint8 and adv.shape == images.shape
    diff = np.abs(adv.astype(int) - images.astype(int))
    assert diff.max() <= BUDGET.max_levels and diff.max() > 0
    # what quantize rounds is clip(x + delta, 0, 1): recompute it independently
    ref = np.clip(images / 255 + delta.permute(1, 2, 0).numpy()[None], 0, 1) * 255
    assert np.abs(adv - ref).max() <= 0.5 + 1e-4


def test_same_seed_same_delta_bytes_different_seed_different(vae, images):
    x = _x01(images)
    cfg = UniversalConfig(iters=3, batch_size=4, seed=7)
    a, _ = fit_universal(vae, x, BUDGET, cfg, progress=False)
    b, _ = fit_universal(vae, x, BUDGET, cfg, progress=False)
    c, _ = fit_universal(vae, x, BUDGET, UniversalConfig(iters=3, batch_size=4, seed=8), progress=False)
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert a.numpy().tobytes() != c.numpy().tobytes()
    r = random_baseline((3, SIZE, SIZE), BUDGET, 7)
    assert r.numpy().tobytes() == random_baseline((3, SIZE, SIZE), BUDGET, 7).numpy().tobytes()
    assert r.abs().max() <= BUDGET.eps01 and r.abs().max() > 0.9 * BUDGET.eps01


@pytest.mark.parametrize("objective,optimizer", [("encoder", "pgd"), ("encoder", "adam"), ("pca+", "pgd"),
                                                 ("pca-", "pgd")])
def test_universal_attack_moves_its_objective(vae, images, objective, optimizer):
    """vs delta = 0 the loss falls (the encoder distance and sum(mu^2 + sigma^2) fall, the KL to
    N(0, I) rises) by over 5x the largest change that random noise in the same ball makes."""
    x, zero = _x01(images), torch.zeros(3, SIZE, SIZE)
    z = target_latent(vae, (SIZE, SIZE), "grey")
    clean = _mean_loss(vae, x, zero, objective, z)
    noise = max(abs(_mean_loss(vae, x, random_baseline(zero.shape, BUDGET, s), objective, z) - clean)
                for s in range(5))
    cfg = UniversalConfig(objective=objective, optimizer=optimizer, iters=30, batch_size=N)
    delta, curve = fit_universal(vae, x, BUDGET, cfg, progress=False)
    after = _mean_loss(vae, x, delta, objective, z)
    assert curve[-1] == pytest.approx(after, rel=1e-5)
    assert clean - after > 5 * noise > 0, (objective, clean, after, noise)
    with torch.no_grad():
        p0, p1 = posterior(vae, x), posterior(vae, (x + delta).clamp(0, 1))
    if objective != "encoder":
        kl0, kl1 = (kl_to_standard_normal(p.mean, p.logvar).mean().item() for p in (p0, p1))
        assert (kl1 > kl0) == (objective == "pca+")
    if objective == "pca-":  # both halves of the collapse move toward 0
        assert p1.mean.pow(2).sum() < p0.mean.pow(2).sum() and p1.var.sum() < p0.var.sum()


def test_per_image_photoguard_is_within_budget_and_at_least_as_strong(vae, images):
    x = _x01(images)
    cfg = UniversalConfig(iters=30, batch_size=4)
    deltas, curves = photoguard_per_image(vae, x, BUDGET, cfg, progress=False)
    assert deltas.shape == x.shape and curves.shape == (N, cfg.iters + 1)
    assert deltas.abs().max() <= BUDGET.eps01 + 1e-6
    assert (x + deltas).min() >= 0 and (x + deltas).max() <= 1
    # each image's delta is its own: batching does not change it
    again, _ = photoguard_per_image(vae, x, BUDGET, UniversalConfig(iters=30, batch_size=N), progress=False)
    torch.testing.assert_close(again, deltas, rtol=0, atol=1e-6)
    universal, curve = fit_universal(vae, x, BUDGET, cfg, progress=False)
    assert curves[:, -1].mean() <= curve[-1]
    adv = apply_universal(images, deltas, BUDGET)
    assert np.abs(adv.astype(int) - images.astype(int)).max() <= BUDGET.max_levels


def test_paper_table_holds_64_cells_and_the_quoted_values():
    from diffsec.paper import paper_values
    from diffsec.paper.spd import COLUMNS, METRICS, ROWS

    pv = paper_values("spd")
    assert len(pv) == 64
    assert set(pv) == {("spd", r, c, m) for r in ROWS for c in COLUMNS for m in METRICS}
    quoted = {"P1 · Train": (0.6889, 0.548, 22.0869, 18.6758, 0.1862, 0.1093, 0.8285, 0.7461),
              "P4 · Test": (0.8249, 0.5704, 26.1777, 19.6394, 0.2965, 0.1202, 0.9117, 0.7683)}
    for row, values in quoted.items():
        got = [pv[("spd", row, c, m)] for m in METRICS for c in ("Baseline", "Ours")]
        assert got == list(values)
    # the paper's claim: the universal perturbation beats random noise in every cell
    assert all(pv[("spd", r, "Ours", m)] < pv[("spd", r, "Baseline", m)] for r in ROWS for m in METRICS)


@pytest.mark.parametrize("kwargs", [{"objective": "pca"}, {"optimizer": "sgd"}, {"target": "black"},
                                    {"iters": 0}, {"batch_size": 0}, {"seed": -1}, {"schedule": "cosine"},
                                    {"iters": 2.5}])
def test_bad_config_raises_a_one_line_error(kwargs):
    with pytest.raises(DiffsecError) as e:
        UniversalConfig(**kwargs)
    assert "\n" not in str(e.value) and str(e.value)


def test_apply_rejects_a_perturbation_over_budget_or_of_another_shape(images):
    with pytest.raises(DiffsecError, match="exceeds eps"):
        apply_universal(images, torch.full((3, SIZE, SIZE), 2 * BUDGET.eps01), BUDGET)
    with pytest.raises(DiffsecError, match="does not fit"):
        apply_universal(images, torch.zeros(3, 8, 8), BUDGET)


def test_apply_accepts_a_per_image_delta_projected_at_the_ball_edge():
    """eps 4/255 (the tiny run that found it): (x + d).clamp(0, 1) - x in float32 exceeds |d| = eps
    by an ulp of x; that is no budget violation, and the quantised images stay within max_levels."""
    from diffsec.metrics.backbones import to_tensor
    from diffsec.poison.budget import Budget

    budget = Budget(4, 1, 255)
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    x = to_tensor(clean)
    signs = torch.from_numpy(rng.choice([-1.0, 1.0], x.shape)).float()
    delta = (x + signs * budget.eps01).clamp(0, 1) - x
    assert float(delta.abs().max()) > budget.eps01   # the float32 excess this test is about
    out = apply_universal(clean, delta, budget)
    assert np.abs(out.astype(int) - clean.astype(int)).max() <= budget.max_levels
