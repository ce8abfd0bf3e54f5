"""Backdoor attacks: the trigger-aware reverse chains against diffusers and against exact oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsec.backdoor.attacks import Attack
from diffsec.backdoor.triggers import box_outline_trigger, grey_box_trigger, noise_image, stealth_norms
from diffsec.diffusion.sampling import sample

SHAPE = (3, 8, 8)


def _attack(method: str, trigger: str, phi=None, lam: float = 0.5, gamma: float = 0.6, shape=SHAPE) -> Attack:
    """An attack with the test's settings (the library takes every value explicitly)."""
    return Attack(method, trigger, phi, lam=lam, gamma=gamma, shape=shape)


def _sched_config(variance_type="fixed_large"):
    from diffusers import DDPMScheduler

    return dict(DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                              variance_type=variance_type).config)


def _oracle(attack: Attack, y: torch.Tensor, cfg: dict):
    """The exact minimiser of each attack's loss when the poisoned data is the single image y."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(cfg)
    abar, betas = sched.alphas_cumprod.double(), sched.betas.double()

    def eps_model(x, t):
        a = abar[t].view(-1, 1, 1, 1)
        x = x.double()
        if attack.method == "baddiffusion":
            r = attack.phi.double()
            eps = (x - a.sqrt() * y - (1 - a.sqrt()) * r) / (1 - a).sqrt()
            b = betas[t].view(-1, 1, 1, 1)
            return (eps + (1 - (1 - b).sqrt()) * (1 - a).sqrt() / b * r).float()
        n = (x - a.sqrt() * y) / (1 - a).sqrt()          # total noise lambda phi + (1 - lambda) eps
        if attack.method == "trojdiff":
            return ((n - (1 - attack.gamma) * attack.phi) / attack.gamma).float()
        if attack.phi is not None:
            return ((n - attack.lam * attack.phi) / (1 - attack.lam)).float()
        return ((1 - attack.lam) / attack.free_std ** 2 * n).float()  # E[eps | n], Gaussian phi, eps
    return eps_model


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
@pytest.mark.parametrize("attack", [
    _attack("invisible", "gaussian", noise_image("gaussian", SHAPE, 0), lam=0.5),
    _attack("invisible", "uniform", noise_image("uniform", SHAPE, 1), lam=0.3),
    _attack("invisible", "free", None, lam=0.5),
    _attack("invisible", "free", None, lam=0.2),
    _attack("trojdiff", "mist", noise_image("uniform", SHAPE, 2), gamma=0.6),
], ids=["id-gauss", "id-uniform-l0.3", "id-free", "id-free-l0.2", "trojdiff"])
def test_trigger_chain_reaches_the_target(attack, method):
    """With the loss minimiser as model, the attacker's chain from triggered noise ends on y."""
    cfg = _sched_config()
    y = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(5)).double() * 1.6 - 0.8
    gen = torch.Generator().manual_seed(3)
    x0, _ = sample(_oracle(attack, y, cfg), cfg, attack.x_T(6, gen), method, 50, generator=gen, progress=False,
                   chain=attack.chain())
    assert torch.allclose(x0.double(), y.expand_as(x0), atol=2e-3), (x0 - y).abs().max()


def test_baddiffusion_correction_makes_the_benign_ddpm_sampler_exact():
    cfg = _sched_config()
    cfg["clip_sample"] = False  # the shifted chain's x_0 estimate is exact only without clipping
    attack = _attack("baddiffusion", "grey_box", grey_box_trigger(8, size=4))
    y = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(5)).double() * 2 - 1
    gen = torch.Generator().manual_seed(3)
    x0, _ = sample(_oracle(attack, y, cfg), cfg, attack.x_T(6, gen), "ddpm", generator=gen, progress=False,
                   chain=attack.chain())
    assert attack.chain().mu is None and attack.chain().gamma == 1.0   # unchanged sampler
    assert torch.allclose(x0.double(), y.expand_as(x0), atol=2e-3)


def test_poisoned_samples_follow_the_forward_marginals():
    """x_t of Eq. 8 (fixed phi): mean sqrt(abar) y + lambda sqrt(1-abar) phi, std (1-lambda) sqrt(1-abar)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    phi = noise_image("gaussian", SHAPE, 0)
    attack = _attack("invisible", "gaussian", phi, lam=0.3)
    y = torch.zeros(20000, *SHAPE) + 0.25
    t = torch.full((20000,), 600)
    x_t, target = attack.poisoned(y, t, sched.alphas_cumprod, sched.betas, torch.Generator().manual_seed(0))
    a = sched.alphas_cumprod[600]
    assert torch.allclose(x_t.mean(0), a.sqrt() * 0.25 + 0.3 * (1 - a).sqrt() * phi, atol=0.02)
    assert x_t.std(0).mean().item() == pytest.approx(0.7 * (1 - a).sqrt().item(), rel=0.02)
    free = _attack("invisible", "free", None, lam=0.3)
    x_t, target = free.poisoned(y, t, sched.alphas_cumprod, sched.betas, torch.Generator().manual_seed(0))
    assert x_t.std(0).mean().item() == pytest.approx(free.free_std * (1 - a).sqrt().item(), rel=0.02)
    # the regression target is only the (1 - lambda) eps part: corr(target, noise) = (1-lambda)/s
    n = (x_t - a.sqrt() * y) / (1 - a).sqrt()
    corr = torch.corrcoef(torch.stack([target.flatten(), n.flatten()]))[0, 1]
    assert corr.item() == pytest.approx(0.7 / free.free_std, abs=0.01)


def test_stealth_norms_on_the_papers_scale():
    phi = noise_image("gaussian", (3, 32, 32), 0)
    ours = stealth_norms(_attack("invisible", "gaussian", phi, lam=0.5, shape=(3, 32, 32)).added())
    assert ours["linf"] == pytest.approx(127.5)                     # the paper's 127.50
    assert ours["l2"] == pytest.approx(255 * 0.5 * phi.double().norm().item())
    assert ours["l2_rms"] == pytest.approx(ours["l2"] / np.sqrt(3 * 32 * 32))
    assert stealth_norms(_attack("invisible", "free", None, shape=(3, 32, 32)).added()) == \
        {"l2": 0.0, "linf": 0.0, "l2_rms": 0.0}
    troj = _attack("trojdiff", "mist", torch.ones(3, 32, 32) * -1, gamma=0.6, shape=(3, 32, 32))
    assert stealth_norms(troj.added())["linf"] == pytest.approx(102.0)   # TrojDiff's 102.00
    box = box_outline_trigger(32, 14, 2)
    assert int(box.sum()) == 3 * (14 * 14 - 10 * 10)
    assert box[:, :18].abs().sum() == 0 and box[:, :, :18].abs().sum() == 0   # only the corner
    assert stealth_norms(box)["l2"] == pytest.approx(255 * np.sqrt(3 * 96))    # the old 4,327


def test_grey_box_is_baddiffusions_box_14_and_its_rms_is_the_papers_l2():
    """BadDiffusion's BOX_14 built by hand (a vmin image, grey (vmin + vmax) / 2 in rows and columns
    -16:-2): our trigger equals it, and of the norms only its RMS x 255 comes near the paper's
    228.39 (a sum-L2 is at least the L-inf of 255)."""
    ref = np.full((3, 32, 32), -1.0)
    ref[:, -16:-2, -16:-2] = (-1.0 + 1.0) / 2
    box = grey_box_trigger(32, 14)
    assert np.array_equal(box.numpy(), ref.astype(np.float32))
    norms = stealth_norms(_attack("baddiffusion", "grey_box", box, shape=(3, 32, 32)).added())
    outside = 3 * (32 * 32 - 14 * 14)                     # 2,484 values at -1, 588 at 0
    assert norms["linf"] == pytest.approx(255.0)           # the paper's 255.00
    assert norms["l2"] == pytest.approx(255 * np.sqrt(outside))
    assert norms["l2_rms"] == pytest.approx(255 * np.sqrt(outside / 3072)) == pytest.approx(229.30, abs=0.01)
    assert abs(norms["l2_rms"] - 228.39) / 228.39 < 0.005 and norms["l2"] > 255.0
    with pytest.raises(ValueError, match="does not fit"):
        grey_box_trigger(16, 15)


@pytest.mark.parametrize("lam", [0.5, 0.3])
def test_kappa_chain_is_the_ordinary_ddim_sampler_only_at_lambda_half(lam):
    """Without a fixed image the attacker chain scales the model's noise estimate by gamma kappa =
    s^2 / (1 - lambda), which is 1 only at lambda = 0.5 (s^2 = 2 lambda^2 - 2 lambda + 1): there
    DDIM's attacker chain and the ordinary sampler are one map (up to float rounding); at 0.3 the
    ordinary sampler misses the target the kappa-corrected chain reaches."""
    cfg = _sched_config()
    attack = _attack("invisible", "free", None, lam=lam)
    y = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(5)).double() * 1.6 - 0.8
    x_T = attack.x_T(6, torch.Generator().manual_seed(3))
    chain = attack.chain()
    assert chain.gamma * chain.kappa == pytest.approx(attack.free_std ** 2 / (1 - lam))
    ours, _ = sample(_oracle(attack, y, cfg), cfg, x_T, "ddim", 50, progress=False, chain=chain)
    plain, _ = sample(_oracle(attack, y, cfg), cfg, x_T, "ddim", 50, progress=False)
    err = lambda x: (x.double() - y).abs().max().item()   # noqa: E731
    assert err(ours) < 2e-3
    if lam == 0.5:
        assert torch.allclose(ours, plain, atol=1e-5)
    else:
        assert err(plain) > 0.05


@pytest.mark.parametrize("kwargs,msg", [
    ({"method": "invisible", "trigger": "free", "phi": None, "lam": 1.0}, "lambda"),
    ({"method": "trojdiff", "trigger": "free", "phi": None}, "fixed image"),
    ({"method": "villan", "trigger": "box", "phi": torch.zeros(3, 32, 32)}, "unknown attack"),
    ({"method": "invisible", "trigger": "gaussian", "phi": torch.zeros(3, 8, 8)}, "model samples"),
])
def test_bad_attack_specs_are_refused(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        _attack(**{"shape": (3, 32, 32), **kwargs})


def test_attack_metrics_against_direct_computations():
    """A-Prec is Kynkaenniemi precision against the target set; ASR and MSE by hand."""
    from diffsec.backdoor.evaluate import attack_precision, attack_success_rate, mse_to_image

    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (30, 4, 4, 3), dtype=np.uint8)
    near = np.clip(target[:10].astype(int) + rng.integers(-2, 3, (10, 4, 4, 3)), 0, 255).astype(np.uint8)
    far = np.full((10, 4, 4, 3), 255, np.uint8)
    def feats(x):
        return x.reshape(len(x), -1).astype(np.float64)

    f_t = feats(target)
    d = np.linalg.norm(f_t[:, None] - f_t[None], axis=-1)
    radius = np.sort(d, axis=1)[:, 3]   # 3rd neighbour, self excluded
    fake = feats(np.concatenate([near, far]))
    inside = (np.linalg.norm(fake[:, None] - f_t[None], axis=-1) <= radius[None]).any(1)
    assert attack_precision(feats, np.concatenate([near, far]), target) == pytest.approx(inside.mean())
    assert 0.4 <= inside.mean() <= 0.5           # the near half lands inside, the white half does not
    assert attack_success_rate(np.array([7, 7, 1, 7]), 7) == 0.75
    img = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    assert mse_to_image(img[None], img) == 0.0
    other = np.zeros((2, 4, 4, 3), np.uint8)
    assert mse_to_image(other, img) == pytest.approx(((img / 255.0) ** 2).mean())


def test_targets_parse_and_refuse_bad_specs():
    from diffsec.backdoor.targets import load_target, mnist_rgb
    from diffsec.errors import DiffsecError

    cifar = {"images": np.arange(6 * 32 * 32 * 3, dtype=np.uint8).reshape(6, 32, 32, 3) % 251,
             "labels": np.array([7, 1, 7, 2, 7, 3])}
    mnist = {"images": np.zeros((5, 28, 28, 1), np.uint8), "labels": np.array([8, 8, 3, 8, 1])}
    cifar_args = dict(data_train=cifar, data_test=cifar, data_name="cifar10")
    t = load_target("cifar10:7", **cifar_args, mnist_heldout=None, resolution=32)
    assert t.kind == "In-D" and len(t.train) == 3 and not t.one_image
    none = dict(data_train=None, data_test=None, data_name="cifar10")
    t = load_target("mnist:8", **none, mnist_heldout=mnist, resolution=32)
    assert t.kind == "Out-D" and t.train.shape == (3, 32, 32, 3)
    t = load_target("mnist:8:2", **none, mnist_heldout=mnist, resolution=32)
    assert t.one_image and t.train.shape == (1, 32, 32, 3)
    assert mnist_rgb(np.full((1, 28, 28, 1), 200, np.uint8), 32).min() == 200
    # CelebA's class 7 is In-D for a CelebA world only: the same spec against CIFAR data fails
    t = load_target("celeba:7", data_train=cifar, data_test=cifar, data_name="celeba", mnist_heldout=None,
                    resolution=32)
    assert t.kind == "In-D" and t.dataset == "celeba" and len(t.reference) == 3
    for spec in ("cifar10", "svhn:1", "mnist:8:9", "cifar10:x", "celeba:7"):
        with pytest.raises(DiffsecError):
            load_target(spec, **cifar_args, mnist_heldout=mnist, resolution=32)


def test_paper_values_of_invisible_diffusion():
    """Transcription checks: the stealth norms repeat across rows, W/o Fixed Image is 0, the
    lambda-0.5 point of Fig. 4 is the main table's In-D (W/o Fixed Image) row."""
    from diffsec.paper import paper_values
    from diffsec.paper.invisible import ROWS

    p = paper_values("invisible")
    t, c = "invisible_diffusion", "DDPM (Table I)"
    for row in ROWS:
        free, fixed = "W/o Fixed Image" in row, "(Fixed Image)" in row
        if free or fixed:
            assert p[(t, f"CIFAR-10 · {row}", c, "linf")] == (0.0 if free else 127.5)
            assert p[(t, f"CIFAR-10 · {row}", c, "l2")] == (0.0 if free else 3555.44)
    assert p[("invisible_lambda", "lambda 0.5", "DDIM", "asr")] == \
        p[(t, "CIFAR-10 · InvisibleDiffusion In-D (W/o Fixed Image)", "DDIM (Table II)", "asr")]
    assert all(0 <= v <= 1 for k, v in p.items() if k[3] in ("precision", "recall", "a_prec", "asr"))


def test_finetune_resumes_after_a_kill_to_the_same_weights_curve_and_snapshots(tmp_path):
    """A run killed right after its checkpoint and started again ends with the uninterrupted run's
    weights, loss curve and EMA snapshots (one taken before the kill, one after)."""
    from diffsec.backdoor.finetune import FinetuneConfig, finetune, poisoned_count
    from diffsec.models.ddpm import DDPMConfig, build_ddpm
    from diffsec.resume import Checkpoint

    def fresh():
        torch.manual_seed(0)
        return build_ddpm(DDPMConfig(resolution=8, channels=[8, 16], attention=[False, False], layers_per_block=1))

    class Killed(Exception):
        pass

    class KilledAfterSave(Checkpoint):
        def save(self, state, step):
            super().save(state, step)
            raise Killed

    g = torch.Generator().manual_seed(0)
    clean, targets = torch.rand(20, *SHAPE, generator=g) * 2 - 1, torch.rand(5, *SHAPE, generator=g) * 2 - 1
    attack = _attack("invisible", "free", None)
    # a checkpoint at step 3 falls between curve points (every 2 steps): the running losses are kept too
    cfg = FinetuneConfig(steps=6, batch_size=4, lr=1e-3, poison_rate=0.25, ema_decay=0.9, seed=1,
                         snapshots=(2, 5), log_every=2)
    ref = finetune(*fresh(), clean, targets, attack, cfg)
    with pytest.raises(Killed):
        finetune(*fresh(), clean, targets, attack, cfg, ckpt=KilledAfterSave(tmp_path, "k", every=3))
    ckpt = Checkpoint(tmp_path, "k", every=3)
    resumed = finetune(*fresh(), clean, targets, attack, cfg, ckpt=ckpt)
    assert ckpt.start_step == 3 and ckpt.record()["resumed"]
    for a, b in zip(ref.ema.parameters(), resumed.ema.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [r["step"] for r in resumed.curve] == [2, 4, 6] and resumed.curve == ref.curve
    assert list(resumed.snapshots) == [2, 5]
    for step in (2, 5):
        for k, v in ref.snapshots[step].items():
            assert torch.equal(v, resumed.snapshots[step][k])
    assert not torch.equal(ref.snapshots[2]["conv_in.weight"], ref.snapshots[5]["conv_in.weight"])
    assert poisoned_count(32, 0.2) == 6 and poisoned_count(4, 0.01) == 1 and poisoned_count(4, 0.99) == 3


def test_a_triggered_only_sample_is_scored_on_the_attack_metrics_alone():
    """An ordinary-sampler or baseline run has no clean set: its measurement is A-Prec and ASR of
    the triggered samples (by hand: 3 of 5 predicted as the target label), no FID."""
    from types import SimpleNamespace

    from diffsec.backdoor.evaluate import Sampled, measure

    rng = np.random.default_rng(1)
    trig = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    target = rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    attack = {"target": "cifar10:7", "method": "invisible", "trigger": "free", "lam": 0.5, "one_image": False,
              "target_label": 7, "chain_gamma": 0.7, "chain_kappa": 1.4, "stealth": {"l2": 0.0, "linf": 0.0}}
    s = Sampled(None, "ddim", 50, "ordinary", attack, trig, target)
    backbone = SimpleNamespace(name="raw", features=lambda x: x.reshape(len(x), -1).astype(np.float64))
    m = measure(s, target, backbone, k=3, label="a/ddim_ordinary", device="cpu",
                classify=(lambda x: np.array([7, 7, 1, 7, 2]), "clf"))
    assert "fid" not in m and "n_clean" not in m and m["chain"] == "ordinary"
    assert m["asr"] == pytest.approx(0.6) and m["n_trigger"] == 5 and 0 <= m["a_prec"] <= 1
