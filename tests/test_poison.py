"""Per-image PGD poisons on a tiny random SD-shaped pipeline the test builds and saves itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.imageset import load_imageset, save_imageset
from diffsec.poison import METHODS, Budget, DAConfig, LatentDiffusion, image_generators, make_objective, poison_images
from diffsec.poison.objectives import Batch, noise_loss, sds_surrogate
from diffsec.training import read_curves

torch.set_num_threads(1)
N, SIZE = 3, 32
PROMPTS = ["a photo of a dog", "a photo of a cat", "a photo of a dog"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random SD-shaped pipeline (KL VAE 32 px -> 4 x 8 x 8, CLIP text, cross-attn UNet)."""
    from diffsec.models import t2i
    from diffsec.models.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("poison")
    pipe = t2i.make_pipeline(t2i.build_vae([8, 8, 8], 1, 4, SIZE), t2i.build_text_encoder(32, 1, 2),
                             clip_tokenizer(root / "tok"),
                             t2i.build_unet([16, 32], [False, True], 1, 4, 8, 32, 16),
                             t2i.build_scheduler())
    return t2i.save_pipeline(pipe, root / "pipeline")


@pytest.fixture(scope="module")
def ldm(model_dir):
    from diffsec.models.t2i import load_pipeline

    return LatentDiffusion(load_pipeline(str(model_dir)), "cpu")


@pytest.fixture(scope="module")
def images():
    # Smooth random images (not i.i.d. noise), away from 0/255 so the budget, not [0, 1], binds.
    rng = np.random.default_rng(1)
    low = rng.uniform(40, 215, (N, 4, 4, 3))
    return np.repeat(np.repeat(low, 8, 1), 8, 2).round().astype(np.uint8)


@pytest.fixture(scope="module")
def target():
    """A high-contrast target (stripes) at another size, as the MIST image is."""
    im = np.zeros((40, 50, 3), np.uint8)
    im[::4] = 255
    im[:, ::6, 0] = 255
    return im


def _target01(t):
    from PIL import Image

    arr = np.asarray(Image.fromarray(t).resize((SIZE, SIZE), Image.BICUBIC))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255


def _x01(u8):
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255


def _fixed_draws(ldm, k=8, seed=123):
    """k fixed (t, eps) per image, shared by the clean and poisoned evaluation."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, ldm.T, (N,), generator=g), torch.randn((N, 4, 8, 8), generator=g))
            for _ in range(k)]


@torch.no_grad()
def _mean_noise_loss(ldm, u8, draws):
    z0, cond = ldm.encode(_x01(u8)), ldm.embed(PROMPTS)
    return float(torch.stack([noise_loss(ldm, z0, t, e, cond) for t, e in draws]).mean())


_RUNS: dict = {}
BUDGET = Budget(16, 2, 256)


def _run(ldm, images, target, method, steps=8, budget=BUDGET, batch_size=N):
    key = (method, steps, budget, batch_size)
    if key not in _RUNS:
        obj = make_objective(method, ldm, _target01(target),
                             DAConfig(steps=2, strength=0.5, guidance=2.0))
        _RUNS[key] = poison_images(ldm, images, PROMPTS, obj, budget, steps, batch_size, seed=0,
                                   uncond=method.startswith("da"))
    return _RUNS[key]


# ---------------------------------------------------------------- (a) the budget holds

@pytest.mark.parametrize("method", METHODS)
def test_every_pixel_within_budget(ldm, images, target, method):
    budget = Budget(16, 8, 256)  # big steps: the projection must bind after 3 of them
    adv, losses = _run(ldm, images, target, method, steps=3, budget=budget)
    d = np.abs(adv.astype(np.int16) - images)
    assert adv.dtype == np.uint8 and adv.shape == images.shape
    assert d.max() <= 16 / 256 * 255 + 0.5  # eps in [0,1] units + 8-bit rounding, in levels
    assert d.max() == budget.max_levels == 16  # and the attack actually uses it
    assert losses.shape == (N, 3) and np.isfinite(losses).all()


def test_quantize_clips_to_budget_and_range():
    from diffsec.poison import quantize

    clean = np.array([[[[0, 128, 255]]]], np.uint8)
    far = torch.tensor([[[[-1.0]], [[0.9]], [[2.0]]]])  # way outside ball and [0, 1]
    out = quantize(far, clean, Budget(4, 1, 255))
    assert out.tolist() == [[[[0, 132, 255]]]]


def test_cli_lists_every_method():
    from diffsec.cli.poison import METHODS as CLI_METHODS  # kept light: no torch import for --help

    assert CLI_METHODS == METHODS


def test_scale_is_explicit():
    b = Budget(16, 1, 256)
    assert (b.eps01, b.step01, b.max_levels) == (0.0625, 1 / 256, 16)
    assert Budget(8, 1, 255).max_levels == 8 and Budget(8.6, 1, 255).max_levels == 9


# ---------------------------------------------------------------- (b) each attack does what it claims

def test_adm_moves_the_noise_loss(ldm, images, target):
    """On fresh fixed (t, eps) draws, not the attack's own. A random UNet barely reads its input,
    so the effect is small (~1e-4 of ~1.1) but its sign held for 5 of 5 model seeds at 30 steps."""
    draws = _fixed_draws(ldm, k=32)
    clean = _mean_noise_loss(ldm, images, draws)
    up = _mean_noise_loss(ldm, _run(ldm, images, target, "adm+", steps=30, budget=Budget(16, 1, 256))[0], draws)
    down = _mean_noise_loss(ldm, _run(ldm, images, target, "adm-", steps=30, budget=Budget(16, 1, 256))[0], draws)
    assert up > clean > down


def test_sds_gradient_is_encoder_only(ldm, images):
    """d/dx <sg(eps_theta(z_t) - eps), z0> = J_E^T (eps_theta - eps): the UNet Jacobian is skipped.

    (SDS's loss direction is not tested: it assumes the UNet Jacobian is near the identity, which a
    random UNet is not; on 5 random models sds+/- moved the loss either way.)"""
    x = _x01(images).requires_grad_(True)
    cond = ldm.embed(PROMPTS)
    surrogate, _ = sds_surrogate(ldm, x, Batch(cond, image_generators(7, range(N))))
    (g_sds,) = torch.autograd.grad(surrogate.sum(), x)

    x2 = _x01(images).requires_grad_(True)
    gens = image_generators(7, range(N))  # the same streams: same posterior sample, t, eps
    z0 = ldm.encode(x2, gens)
    t, eps = ldm.draw(gens, z0.shape[1:])
    with torch.no_grad():
        resid = ldm.eps_pred(ldm.noisy(z0, t, eps), t, cond) - eps
    (g_ref,) = torch.autograd.grad(z0, x2, grad_outputs=resid)
    torch.testing.assert_close(g_sds, g_ref)
    # ...and it is not the full DM-loss gradient (which goes through the UNet).
    x3 = _x01(images).requires_grad_(True)
    gens = image_generators(7, range(N))
    z0 = ldm.encode(x3, gens)
    t, eps = ldm.draw(gens, z0.shape[1:])
    (g_full,) = torch.autograd.grad(noise_loss(ldm, z0, t, eps, cond).sum(), x3)
    assert not torch.allclose(g_full.sign(), g_sds.sign())


@torch.no_grad()
def test_ea_pulls_the_latent_to_the_target(ldm, images, target):
    zt = ldm.encode(_target01(target)[None])
    def dist(u8):
        return float((ldm.encode(_x01(u8)) - zt).pow(2).mean())

    adv, losses = _run(ldm, images, target, "ea")
    assert dist(adv) < dist(images)
    assert (losses[:, -1] < losses[:, 0]).all()


def test_da_targeted_pulls_the_img2img_output_to_the_target(ldm, images, target):
    """Its own objective, with the noise of each draw held fixed, drops on the poisoned images."""
    obj = make_objective("da-targeted", ldm, _target01(target), DAConfig(steps=2, strength=0.5, guidance=2.0))

    def loss(u8):
        empty = ldm.embed([""]).expand(N, -1, -1)
        with torch.no_grad():
            return float(np.mean([obj(ldm, _x01(u8), Batch(ldm.embed(PROMPTS), image_generators(s, range(N)),
                                                           empty))[1].mean() for s in (11, 12, 13)]))
    assert loss(_run(ldm, images, target, "da-targeted")[0]) < loss(images)


def test_da_pushes_the_img2img_output_away_from_the_clean_image(ldm, images, target):
    """The paper's untargeted DA: with each draw's noise held fixed, the edit of the poisoned
    image lies farther from the CLEAN image than the edit of the clean image does."""
    from diffsec.poison.objectives import da_schedule, img2img_chain

    cfg = DAConfig(steps=2, strength=0.5, guidance=2.0)
    steps, sched = da_schedule(ldm, cfg)
    clean = _x01(images)

    def dist(u8):
        empty = ldm.embed([""]).expand(N, -1, -1)
        with torch.no_grad():
            return float(np.mean([(img2img_chain(ldm, _x01(u8), Batch(ldm.embed(PROMPTS), image_generators(s, range(N)),
                                                                       empty), steps, sched, cfg) - clean).pow(2).mean()
                                  for s in (11, 12, 13)]))
    assert dist(_run(ldm, images, target, "da")[0]) > dist(images)


def test_batch_size_does_not_change_the_poison(ldm, images, target):
    a, la = _run(ldm, images, target, "sds+", steps=3)
    b, lb = _run(ldm, images, target, "sds+", steps=3, batch_size=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(la, lb, rtol=1e-5)


# ---------------------------------------------------------------- (c, d) the CLI

@pytest.fixture()
def inputs(tmp_path, images, target):
    from PIL import Image

    masks = np.zeros((N, SIZE, SIZE), np.uint8)
    masks[:, 8:24, 8:24] = 1
    path = save_imageset(tmp_path / "set.npz", images, masks=masks, concept=np.array(["x", "y", "z"]),
                         class_name=np.array(["dog", "cat", "dog"]))
    Image.fromarray(target).save(tmp_path / "target.png")
    return path, tmp_path / "target.png"


def _cli(model_dir, images, out, *extra):
    return main(["poison", "--images", str(images), "--model", str(model_dir), "--out", str(out),
                 "--steps", "3", "--step", "4", "--threads", "1", "--batch-size", "2", *extra])


def test_cli_writes_the_artifact(model_dir, inputs, tmp_path):
    src, tgt = inputs
    out = tmp_path / "ea"
    assert _cli(model_dir.parent, src, out, "--method", "ea", "--target", str(tgt)) == 0  # artifact dir
    got, want = load_imageset(out / "images.npz"), load_imageset(src)
    assert sorted(got) == sorted(want)
    for k in ("masks", "concept", "class_name"):
        np.testing.assert_array_equal(got[k], want[k])
    assert np.abs(got["images"].astype(int) - want["images"]).max() <= 16
    dist = json.loads((out / "distances.json").read_text())
    assert dist["within_budget"] and len(dist["per_image"]) == N
    assert dist["mean"]["linf_unit255"] == pytest.approx(dist["mean"]["linf_unit01"] * 255)
    for f in ("before_after.png", "loss_curve.csv", "loss_curve.png", "target.png", "manifest.json"):
        assert (out / f).is_file()
    curves = read_curves(out / "loss_curve.csv")  # per PGD step, over the images
    assert set(curves) == {"mean", "min", "max", "std"} and all(s == [0, 1, 2] for s, _ in curves.values())
    assert all(lo <= m <= hi for lo, m, hi in zip(curves["min"][1], curves["mean"][1], curves["max"][1], strict=True))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "poison" and set(manifest["inputs"]) == {"images", "model", "target"}
    assert not (tmp_path / "ea.ckpt").exists()


def test_cli_missing_target_is_a_clean_error(model_dir, inputs, tmp_path, capsys):
    src, _ = inputs
    out = tmp_path / "ea"
    assert _cli(model_dir, src, out, "--method", "ea") == 2
    assert "--target" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".ea*"))


def test_cli_class_prompt_needs_class_names(model_dir, images, tmp_path, capsys):
    save_imageset(tmp_path / "bare.npz", images)
    out = tmp_path / "adm"
    assert _cli(model_dir, tmp_path / "bare.npz", out, "--method", "adm+") == 2
    assert "--prompt-mode" in capsys.readouterr().err and not out.exists()
    assert _cli(model_dir, tmp_path / "bare.npz", out, "--method", "adm+", "--prompt-mode", "empty") == 0


def test_cli_same_seed_same_bytes_and_resume(model_dir, inputs, tmp_path, monkeypatch):
    src, _ = inputs
    runs = []
    for name in ("a", "b"):
        assert _cli(model_dir, src, tmp_path / name, "--method", "adm+", "--seed", "3") == 0
        runs.append(tmp_path / name)
    for f in ("images.npz", "distances.json", "loss_curve.csv"):
        assert (runs[0] / f).read_bytes() == (runs[1] / f).read_bytes()

    # Killed after the first batch, then rerun: the checkpoint resumes to the same images.
    import diffsec.poison.run as lib

    real = lib.poison_images

    def dies_after_one_batch(*args, on_batch, **kw):
        def cb(*a):
            on_batch(*a)
            raise KeyboardInterrupt
        return real(*args, on_batch=cb, **kw)

    monkeypatch.setattr(lib, "poison_images", dies_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        _cli(model_dir, src, tmp_path / "c", "--method", "adm+", "--seed", "3")
    assert (tmp_path / "c.ckpt").is_dir() and not (tmp_path / "c").exists()
    monkeypatch.setattr(lib, "poison_images", real)
    assert _cli(model_dir, src, tmp_path / "c", "--method", "adm+", "--seed", "3") == 0
    for f in ("images.npz", "distances.json", "loss_curve.csv"):
        assert (tmp_path / "c" / f).read_bytes() == (runs[0] / f).read_bytes()
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["resumed_from"] == 2 and manifest["resume"]["resumed"]
    assert [a["start_step"] for a in manifest["resume"]["attempts"]] == [0, 1]  # in batches
    assert not (tmp_path / "c.ckpt").exists()
