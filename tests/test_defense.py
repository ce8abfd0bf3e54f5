"""SZT defenses: purifiers (JPEG, AdverseCleaner, Regen, PDM-Pure), timestep samplers, loss
masking, mask dilation, aligned flips, and the `purify` CLI. Tiny models are built here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.defense import advclean as ac
from diffsec.defense import masking, sdedit, timesteps
from diffsec.defense.jpeg import jpeg

torch.set_num_threads(1)


def smooth_images(n=4, size=32, seed=0):
    """Natural-ish images: colour gradients plus a disc, so JPEG and filters have work to do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0.2, 0.8, 3)
        img = np.stack([a * xx + 0.2, b * yy + 0.1, c * (xx + yy) / 2 + 0.1], -1)
        cy, cx, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.15, 0.3)]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = rng.uniform(0.2, 0.9, 3)
        out.append(img)
    return (np.stack(out) * 255).round().clip(0, 255).astype(np.uint8)


def checkerboard(n=2, size=16):
    """1 px black/white checkerboards (all detail at the Nyquist frequency), uint8 NHWC."""
    c = ((np.arange(size)[:, None] + np.arange(size)[None, :]) % 2 * 255).astype(np.uint8)
    return np.repeat(np.repeat(c[None, :, :, None], n, 0), 3, 3)


def sign_noise(images, eps=16, seed=1):
    s = np.random.default_rng(seed).choice([-eps, eps], images.shape)
    return (images.astype(int) + s).clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------- JPEG


def test_jpeg_shape_dtype_and_near_idempotent():
    x = sign_noise(smooth_images())
    y = jpeg(x, 25)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert np.abs(y.astype(int) - x).mean() > 2  # it did change the image
    z = jpeg(y, 25)  # recompressing a JPEG at the same quality changes it far less
    assert np.abs(z.astype(int) - y).mean() < 0.3 * np.abs(y.astype(int) - x).mean()
    g = jpeg(x[..., :1], 50)
    assert g.shape == x[..., :1].shape
    with pytest.raises(ValueError):
        jpeg(x, 0)
    with pytest.raises(ValueError):
        jpeg(x.astype(np.float32), 25)


# ---------------------------------------------------------------- AdverseCleaner


def _refl(j, n):  # cv2.BORDER_REFLECT: fedcba|abcdefgh|hgfedcb
    return -j - 1 if j < 0 else (2 * n - j - 1 if j >= n else j)


def slow_guided_filter(G, p, r, eps):
    """Window by window, straight from He et al. 2010 (Eqs. 5-8 with a colour guide)."""
    G = G.reshape(*G.shape[:2], -1).astype(np.float64)
    p = p.reshape(*p.shape[:2], -1).astype(np.float64)
    h, w, k = G.shape
    def win(y, x):
        return [(_refl(a, h), _refl(b, w)) for a in range(y - r, y + r + 1) for b in range(x - r, x + r + 1)]
    A = np.zeros((h, w, k, p.shape[2]))
    B = np.zeros((h, w, p.shape[2]))
    for y in range(h):
        for x in range(w):
            idx = win(y, x)
            Gw = np.array([G[a, b] for a, b in idx])
            pw = np.array([p[a, b] for a, b in idx])
            mu, pm = Gw.mean(0), pw.mean(0)
            cov = (Gw - mu).T @ (Gw - mu) / len(idx)
            cGp = (Gw - mu).T @ (pw - pm) / len(idx)
            A[y, x] = np.linalg.solve(cov + eps * np.eye(k), cGp)
            B[y, x] = pm - A[y, x].T @ mu
    q = np.zeros_like(p)
    for y in range(h):
        for x in range(w):
            idx = win(y, x)
            ma = np.mean([A[a, b] for a, b in idx], 0)
            mb = np.mean([B[a, b] for a, b in idx], 0)
            q[y, x] = ma.T @ G[y, x] + mb
    return q


@pytest.mark.parametrize("guide_c", [1, 3])
def test_guided_filter_matches_slow_reference(guide_c):
    rng = np.random.default_rng(0)
    G = rng.uniform(0, 255, (9, 11, guide_c))
    p = rng.uniform(0, 255, (9, 11, 3))
    fast = ac.guided_filter(G, p, 2, 40.0)
    np.testing.assert_allclose(fast, slow_guided_filter(G, p, 2, 40.0), rtol=1e-7, atol=1e-6)
    flat = ac.guided_filter(G[..., 0], p[..., 0], 2, 40.0)  # 2-D in, 2-D out
    assert flat.shape == (9, 11)


def high_freq_energy(images):
    """Mean squared difference of neighbouring pixels (both directions)."""
    x = np.asarray(images, np.float64)
    return float(((x[:, 1:] - x[:, :-1]) ** 2).mean() + ((x[:, :, 1:] - x[:, :, :-1]) ** 2).mean())


# lllyasviel/AdverseCleaner clean.py: 64 bilateral filters (d 5, sigmas 8), 4 guided (radius 4, eps 16)
SCRIPT = {"bilateral_iters": 64, "diameter": 5, "sigma_color": 8.0, "sigma_space": 8.0, "guided_iters": 4,
          "radius": 4, "eps": 16.0}


def test_advclean_removes_sign_noise():
    """AdverseCleaner's defaults (bilateral sigma_color 8) only partly undo +-16/255 steps (a step
    of 32 gets bilateral weight exp(-8)), much more of +-8/255; the noise left must shrink."""
    clean = smooth_images(3)
    for eps, keep in ((16, 0.8), (8, 0.5)):
        noisy = sign_noise(clean, eps)
        out = ac.advclean(noisy, **SCRIPT)
        assert out.shape == noisy.shape and out.dtype == np.uint8
        assert high_freq_energy(out) < high_freq_energy(noisy)
        def residual(im, clean=clean):
            return high_freq_energy(im.astype(int) - clean)

        assert residual(out) < keep * residual(noisy), eps
        assert np.abs(out.astype(int) - clean).mean() < np.abs(noisy.astype(int) - clean).mean()
    assert ac.advclean(noisy[..., :1], **{**SCRIPT, "bilateral_iters": 2}).shape == noisy[..., :1].shape


# ---------------------------------------------------------------- timestep samplers

SPECS = ["uniform", "high:600", "low:500", "high:0.5", "power:2", "power:0.25", "tanh:5", "tanh:1",
         "tanh:-3"]


@pytest.mark.parametrize("spec", SPECS)
def test_sampler_histogram_matches_pdf(spec):
    from scipy.stats import chisquare

    s = timesteps.make_sampler(spec)
    t = s.sample(20000, torch.Generator().manual_seed(0))
    assert t.dtype == torch.int64 and int(t.min()) >= 0 and int(t.max()) <= 999
    # the T-bin probabilities integrate the pdf (midpoint rule per timestep)
    u = (np.arange(1000)[:, None] + (np.arange(50) + 0.5)[None] / 50) / 1000
    np.testing.assert_allclose(s.probs(), s.pdf(u).mean(1) / 1000, atol=2e-5)
    assert abs(s.pdf(np.linspace(0, 1, 200001)[:-1] + 2.5e-6).mean() - 1) < 1e-3
    expected = s.probs().reshape(20, 50).sum(1) * len(t)
    observed = np.bincount(t.numpy() // 50, minlength=20)
    keep = expected > 0
    assert observed[~keep].sum() == 0
    assert chisquare(observed[keep], expected[keep]).pvalue > 1e-3


def test_thresholds_are_exact_and_parsing():
    g = torch.Generator().manual_seed(1)
    hi = timesteps.make_sampler("high:600").sample(50000, g)
    lo = timesteps.make_sampler("low:500").sample(50000, g)
    assert int(hi.min()) == 600 and int(hi.max()) == 999
    assert int(lo.min()) == 0 and int(lo.max()) == 499
    assert timesteps.make_sampler("high:0.6").t_th == 600
    assert timesteps.make_sampler("T500".replace("T", "high:")).t_th == 500
    assert timesteps.make_sampler("high:60", T=100).sample(10, g).min() >= 60
    a = timesteps.make_sampler("tanh:5").sample(100, torch.Generator().manual_seed(3))
    b = timesteps.make_sampler("tanh:5").sample(100, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    for bad in ["gauss", "high", "high:1000", "power:-2", "low:x"]:
        with pytest.raises(ValueError):
            timesteps.make_sampler(bad)


# ---------------------------------------------------------------- loss masking


@pytest.fixture(scope="module")
def sched():
    from diffsec.models.t2i import build_scheduler

    return build_scheduler()


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    def encode(im):
        return torch.nn.functional.avg_pool2d(im, 4).repeat(1, 2, 1, 1)[:, :4] * 0.7

    noise = torch.randn(2, 4, 4, 4, generator=g)
    t = torch.tensor([10, 700])
    cond = torch.tensor([0.5, -1.5])
    # not pixel-local (a global mean term), else LM and LIM coincide inside an aligned mask
    def eps_model(z, t, c):
        return torch.tanh(z * c.view(-1, 1, 1, 1) + z.mean((1, 2, 3), keepdim=True) + t.view(-1, 1, 1, 1) / 1000)

    return dict(x=x, encode=encode, z0=encode(x), noise=noise, t=t, cond=cond, eps_model=eps_model)


@pytest.mark.parametrize("norm", masking.NORMS)
def test_all_ones_masks_equal_nominal(sched, norm):
    b = _batch()
    ones = torch.ones(2, 16, 16, dtype=torch.bool)
    nominal = masking.training_loss("nominal", scheduler=sched, **b)
    for obj in ("lm", "im", "lim", "zm"):
        got = masking.training_loss(obj, scheduler=sched, mask_x=ones, norm=norm, **b)
        torch.testing.assert_close(got, nominal, rtol=1e-6, atol=1e-7)
    half = ones.clone()
    half[:, :, 8:] = False
    losses = {o: masking.training_loss(o, scheduler=sched, mask_x=half, norm=norm, **b).item()
              for o in ("lm", "im", "lim", "zm")}
    assert len({round(v, 7) for v in losses.values()}) == 4  # the four objectives differ


def test_lm_half_mask_gradient_only_inside(sched):
    b = _batch()
    P = torch.zeros(2, 4, 4, 4, requires_grad=True)  # the prediction itself, to read its gradient
    b["eps_model"] = lambda z, t, c: z * 0 + P
    mask = torch.zeros(2, 16, 16)
    mask[:, :, :8] = 1  # left half of the image -> left half (2 of 4 columns) of the latent
    masking.training_loss("lm", scheduler=sched, mask_x=mask, **b).backward()
    assert P.grad[..., 2:].abs().max() == 0
    assert (P.grad[..., :2].abs() > 0).all()


def test_latent_mask_and_velocity_target(sched):
    m = np.zeros((32, 32), bool)
    m[:, :16] = True
    m[:3, 16] = True  # a sliver under the threshold stays out
    mz = masking.latent_mask(m, (8, 8))
    assert mz.shape == (1, 1, 8, 8) and mz[0, 0, :, :4].all() and not mz[0, 0, :, 4:].any()
    assert masking.latent_mask(m, (8, 8), threshold=0.01)[0, 0, 0, 4] == 1
    from diffusers import DDPMScheduler

    v_sched = DDPMScheduler.from_config(sched.config, prediction_type="v_prediction")
    b = _batch()
    b["eps_model"] = lambda z, t, c: v_sched.get_velocity(b["z0"], b["noise"], t)
    assert masking.training_loss("nominal", scheduler=v_sched, **b).item() < 1e-10
    with pytest.raises(ValueError):
        masking.training_loss("lm", scheduler=sched, **b)  # no mask
    with pytest.raises(ValueError):
        masking.training_loss("im", scheduler=sched, mask_x=np.ones((2, 16, 16)), eps_model=b["eps_model"],
                              z0=b["z0"], noise=b["noise"], t=b["t"], cond=b["cond"])


@pytest.mark.parametrize("px512,res,grow", [(16, 32, 1), (8, 32, 1), (24, 32, 2), (16, 128, 4),
                                            (4, 32, 0)])
def test_dilation_grows_single_pixel(px512, res, grow):
    m = np.zeros((res, res), bool)
    m[res // 2, res // 3] = True
    d = masking.dilate_mask(m, px512)
    ys, xs = np.nonzero(d)
    assert d.sum() == (2 * grow + 1) ** 2
    assert ys.min() == res // 2 - grow and ys.max() == res // 2 + grow
    assert xs.min() == res // 3 - grow and xs.max() == res // 3 + grow
    stack = masking.dilate_mask(np.stack([m, m]), px512)
    assert stack.shape == (2, res, res) and (stack[1] == d).all()


def test_paired_hflip_keeps_alignment():
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(16, 3, 8, 8)
    for i in range(16):
        img[i, :, :, i % 8] = 1  # one bright column per image, at a different place
    mask = img[:, 0] > 0
    fi, fm = masking.paired_hflip(img, mask, generator=g)
    assert torch.equal(fm, fi[:, 0] > 0)
    flipped = (fi != img).flatten(1).any(1)
    assert 0 < flipped.sum() < 16  # some were flipped, some not
    fi, fm = masking.paired_hflip(img, mask[:, None], p=1.0)
    assert torch.equal(fi, img.flip(-1)) and torch.equal(fm[:, 0], mask.flip(-1))


# ---------------------------------------------------------------- SDEdit core, Regen, PDM-Pure


@pytest.mark.parametrize("method,pred", [("ddim", "epsilon"), ("ddpm", "epsilon"),
                                         ("ddim", "v_prediction")])
def test_sdedit_returns_the_point_an_oracle_model_knows(sched, method, pred):
    """A model that knows the data is one point c must denoise any x_t* back to exactly c."""
    ac_ = sched.alphas_cumprod.double()
    c = torch.full((2, 3, 4, 4), 0.3, dtype=torch.float64)

    def oracle(x, t):
        a = ac_[t].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * c) / (1 - a).sqrt()
        return eps if pred == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * c

    out = sdedit.sdedit(oracle, ac_, c * 0 - 0.8, 400, 7 if method == "ddim" else None, method,
                        torch.Generator().manual_seed(0), pred)
    torch.testing.assert_close(out, c)
    assert sdedit.reverse_timesteps(60, 3) == [60, 30, 0]
    assert sdedit.reverse_timesteps(5, 100) == [5, 4, 3, 2, 1, 0]
    assert sdedit.t_star_of(0.1, None, 1000, 60) == 100
    assert sdedit.t_star_of(None, None, 1000, 60) == 60


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from diffsec.models import t2i
    from diffsec.models.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("sd")
    pipe = t2i.make_pipeline(t2i.build_vae([8, 8], 1, 4, 16), t2i.build_text_encoder(32, 1, 2),
                             clip_tokenizer(root / "tok"),
                             t2i.build_unet([16, 32], [False, True], 1, 4, 8, 32, 16),
                             t2i.build_scheduler())
    t2i.save_pipeline(pipe, root / "pipeline")
    return root


@pytest.fixture(scope="module")
def tiny_ddpm(tmp_path_factory):
    from diffsec.models.ddpm import DDPMConfig, build_ddpm, save_ddpm

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ddpm")
    unet, sch = build_ddpm(DDPMConfig(resolution=16, channels=[16, 16], attention=[False, False], layers_per_block=1))
    save_ddpm(unet, sch, root / "pipeline")
    return root


def test_regen_end_to_end(tiny_sd):
    from diffsec.defense.regen import regen
    from diffsec.models.t2i import load_pipeline

    pipe = load_pipeline(str(tiny_sd / "pipeline"))
    x = smooth_images(3, 16)
    a = regen(x, pipe, t_star=60, seed=0, progress=False)
    assert a.shape == x.shape and a.dtype == np.uint8
    assert np.array_equal(a, regen(x, pipe, t_star=60, seed=0, progress=False))
    b = regen(smooth_images(2, 24), pipe, t_star=200, steps=2, prompts=["a photo of a cat", "a dog"],
              guidance=3.0, seed=1, batch_size=1, progress=False)
    assert b.shape == (2, 24, 24, 3)


def test_pdmpure_end_to_end(tiny_ddpm):
    from diffsec.defense.pdmpure import pdmpure
    from diffsec.models.ddpm import load_ddpm

    unet, sch = load_ddpm(str(tiny_ddpm / "pipeline"))
    x = smooth_images(3, 16)  # the model's 16 px
    a = pdmpure(x, unet, sch, t_star=20, method="ddpm", seed=0, progress=False)
    assert a.shape == x.shape and a.dtype == np.uint8
    assert np.array_equal(a, pdmpure(x, unet, sch, t_star=20, method="ddpm", seed=0, progress=False))
    b = pdmpure(x, unet, sch, t_star=100, method="ddim", steps=3, seed=0, batch_size=2, progress=False)
    assert b.shape == x.shape
    with pytest.raises(ValueError):
        pdmpure(x[..., :1], unet, sch, progress=False)


def _psnr(a, b):
    from diffsec.metrics.quality import psnr

    return float(psnr(a, b).mean())


def test_pdmpure_refuses_a_model_at_another_resolution(tiny_ddpm):
    from diffsec.defense.pdmpure import pdmpure
    from diffsec.models.ddpm import load_ddpm

    unet, sch = load_ddpm(str(tiny_ddpm / "pipeline"))
    with pytest.raises(ValueError, match=r"works at 16x16 px, the images are 24x24 px"):
        pdmpure(smooth_images(2, 24), unet, sch, progress=False)
    with pytest.raises(ValueError, match=r"the images are 16x24 px"):  # same width, not the same shape
        pdmpure(np.zeros((1, 16, 24, 3), np.uint8), unet, sch, progress=False)


def test_pdmpure_at_the_models_resolution_does_not_resize(tiny_ddpm):
    """t* = 0 is one step of noise std 0.01 and back: at the model's own resolution a 1 px
    checkerboard survives (output ~ input), which no 16 px round trip could keep."""
    from diffsec.defense.pdmpure import pdmpure
    from diffsec.models.ddpm import load_ddpm

    unet, sch = load_ddpm(str(tiny_ddpm / "pipeline"))
    x = checkerboard(2, 16)
    y = pdmpure(x, unet, sch, t_star=0, seed=0, progress=False)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert _psnr(y, x) > 30


def test_pdmpure_allow_resize_runs_at_the_models_resolution_and_back(tiny_ddpm):
    """The opt-in path: 24 px images go to the model's 16 px and back, so a 1 px checkerboard is
    lost (the output is the bicubic round trip, not the input)."""
    from diffsec.defense.images import resize
    from diffsec.defense.pdmpure import pdmpure
    from diffsec.imageset import to_float, to_uint8
    from diffsec.models.ddpm import load_ddpm

    unet, sch = load_ddpm(str(tiny_ddpm / "pipeline"))
    x = checkerboard(2, 24)
    y = pdmpure(x, unet, sch, t_star=0, seed=0, progress=False, allow_resize=True)
    assert y.shape == x.shape and y.dtype == np.uint8
    round_trip = to_uint8(resize(resize(to_float(x), (16, 16)), (24, 24)))
    assert _psnr(y, x) < 15 < 30 < _psnr(y, round_trip)


# ---------------------------------------------------------------- CLI


@pytest.fixture
def imageset(tmp_path):
    from diffsec.imageset import save_imageset

    x = sign_noise(smooth_images(4, 16))
    masks = np.zeros((4, 16, 16), bool)
    masks[:, 4:12, 4:12] = True
    path = tmp_path / "in.npz"
    save_imageset(path, x, masks=masks, concept=np.array(["c0", "c0", "c1", "c1"]),
                  class_name=np.array(["cat", "cat", "dog", "dog"]))
    return path


def _cli(*args):
    from diffsec.cli.main import main

    return main(["purify", *map(str, args), "--threads", "1"])


@pytest.mark.parametrize("method,extra", [("jpeg", ["--quality", "30"]),
                                          ("advclean", ["--bilateral-iters", "8"]),
                                          ("pdmpure", ["--t-star", "30", "--sampler", "ddim"]),
                                          ("regen", ["--strength", "0.1", "--prompt",
                                                     "a photo of a {class_name}"])])
def test_cli_end_to_end(tmp_path, imageset, tiny_sd, tiny_ddpm, method, extra):
    from diffsec.imageset import load_imageset

    model = {"pdmpure": ["--model", tiny_ddpm], "regen": ["--model", tiny_sd / "pipeline"]}
    out = tmp_path / "out"
    assert _cli("--method", method, "--images", imageset, "--out", out, *model.get(method, []),
                *extra) == 0
    src, got = load_imageset(imageset), load_imageset(out / "images.npz")
    assert got["images"].shape == src["images"].shape and got["images"].dtype == np.uint8
    for k in ("masks", "concept", "class_name"):
        assert np.array_equal(got[k], src[k])
    d = json.loads((out / "distances.json").read_text())
    assert len(d["psnr_db"]) == len(d["l2"]) == 4 and d["mean_psnr_db"] > 5
    assert (out / "before_after.png").stat().st_size > 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["stage"] == "purify" and man["params"]["method"] == method


def test_cli_errors_write_nothing(tmp_path, imageset, tiny_sd, tiny_ddpm, capsys):
    out = tmp_path / "out"
    cases = [
        ["--method", "regen"],  # missing --model
        ["--method", "pdmpure"],
        ["--method", "pdmpure", "--model", tiny_sd / "pipeline"],  # wrong kind of model
        ["--method", "pdmpure", "--model", tmp_path],  # not a pipeline
        ["--method", "regen", "--model", tiny_sd, "--prompt", "a {colour} thing"],
        ["--method", "pdmpure", "--model", tiny_ddpm, "--t-star", "5000"],
        ["--method", "jpeg", "--quality", "0"],
    ]
    for case in cases:
        assert _cli(*case, "--images", imageset, "--out", out) == 2, case
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("diffsec purify: error:")]
    assert len(err) == len(cases)  # one line per error, each naming its cause
    assert "needs --model" in err[0] and "needs --model" in err[1]
    assert "is a StableDiffusionPipeline" in err[2] and "not a diffusers pipeline" in err[3]
    assert "colour" in err[4] and "t*" in err[5] and "--quality" in err[6]
    assert _cli("--method", "jpeg", "--images", tmp_path / "nope.npz", "--out", out) == 2


@pytest.fixture(scope="module")
def bare_unets(tmp_path_factory):
    """Bare UNet2DModel directories (config.json + weights, no scheduler, no model_index.json), one
    at the `imageset`'s 16 px and one at 8 px."""
    from diffsec.models.ddpm import DDPMConfig, build_ddpm

    root = tmp_path_factory.mktemp("unets")
    for r in (16, 8):
        torch.manual_seed(0)
        unet, _ = build_ddpm(DDPMConfig(resolution=r, channels=[16, 16], attention=[False, False], layers_per_block=1))
        unet.save_pretrained(root / f"unet{r}")
    return root


def test_cli_pdmpure_refuses_a_resolution_mismatch_in_one_line_writing_nothing(tmp_path, imageset, bare_unets,
                                                                               capsys):
    out = tmp_path / "out"
    assert _cli("--method", "pdmpure", "--images", imageset, "--out", out, "--model", bare_unets / "unet8") == 2
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]  # no temporary directory either
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == ["diffsec purify: error: pdmpure: the pixel model works at 8x8 px, the images are 16x16 px: "
                   "name a model at the images' resolution, or allow resizing there and back (--allow-resize)"]


def test_cli_pdmpure_runs_a_unet_dir_at_the_images_resolution(tmp_path, imageset, bare_unets):
    from diffsec.imageset import load_imageset

    out = tmp_path / "out"
    assert _cli("--method", "pdmpure", "--images", imageset, "--out", out, "--model", bare_unets / "unet16",
                "--t-star", "0") == 0
    src, got = load_imageset(imageset)["images"], load_imageset(out / "images.npz")["images"]
    assert got.shape == src.shape == (4, 16, 16, 3) and got.dtype == np.uint8
    man = json.loads((out / "manifest.json").read_text())
    assert man["model_resolution"] == [16, 16] and man["resized"] is False and man["t_star"] == 0
    # t* = 0 at the images' own resolution keeps the +-16 sign noise that a resize would smooth away
    assert json.loads((out / "distances.json").read_text())["mean_psnr_db"] > 30


def test_cli_pdmpure_allow_resize_resizes_to_the_model_and_back(tmp_path, imageset, bare_unets):
    from diffsec.imageset import load_imageset

    out = tmp_path / "out"
    assert _cli("--method", "pdmpure", "--images", imageset, "--out", out, "--model", bare_unets / "unet8",
                "--t-star", "0", "--allow-resize") == 0
    got = load_imageset(out / "images.npz")["images"]
    assert got.shape == (4, 16, 16, 3)
    man = json.loads((out / "manifest.json").read_text())
    assert man["model_resolution"] == [8, 8] and man["resized"] is True
    assert json.loads((out / "distances.json").read_text())["mean_psnr_db"] < 30  # 8 px lost the sign noise


def test_figures(tmp_path):
    from diffsec.defense.figures import perturbation_histograms, sampler_pdfs

    clean = smooth_images(3)
    st = perturbation_histograms(clean, sign_noise(clean, 8), tmp_path / "fig7.png", title="ADM+")
    assert (tmp_path / "fig7.png").stat().st_size > 0
    assert abs(st["poisoned"]["std"] - 16 / 255) < 1e-3  # +-8 on [0, 255] is +-16/255 on [-1, 1]
    # the bimodal +-8 steps become an error with mass around 0 after JPEG (Fig. 7's point)
    noisy = sign_noise(clean, 8)
    d = jpeg(noisy, 25).astype(int) - clean
    assert (np.abs(d) < 4).mean() > 0.3 and (np.abs(noisy.astype(int) - clean) < 4).mean() == 0
    sampler_pdfs(["uniform", "high:600", "power:2", "tanh:5"], tmp_path / "fig15.png")
    assert (tmp_path / "fig15.png").stat().st_size > 0
