"""SAU slice stages after the fine-tunes: seed-matched generation, sau-apply, the target detectors,
sau-eval, table-sau and figure-sau, on a micro text-to-image world the tests build themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.backdoor import t2i_detector as td
from diffsec.backdoor.t2i_generate import decode_latents, initial_latents, load_generations, noise_seed
from diffsec.cli.main import main
from diffsec.defense.sau_eval import iou, latent_footprint
from diffsec.errors import DiffsecError

torch.set_num_threads(1)
CLASSES = ["cat", "dog", "ship"]
GEN = ["--classes", *CLASSES, "--steps", "2", "--guidance", "3", "--batch-size", "4", "--threads", "1",
       "--device", "cpu"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A random SD-shaped pipeline: 32 px images, 4 x 16 x 16 latents, CLIP's real BPE tokenizer."""
    from diffsec.models import t2i
    from diffsec.models.tokenizer import clip_tokenizer

    root = tmp_path_factory.mktemp("sau-world")
    torch.manual_seed(0)
    pipe = t2i.make_pipeline(t2i.build_vae([8, 8]), t2i.build_text_encoder(16, 1, 2), clip_tokenizer(root / "tok"),
                             t2i.build_unet([16, 16], [False, True], 1, 4, 16, cross_dim=16, head_dim=8),
                             t2i.build_scheduler())
    t2i.save_pipeline(pipe, root / "world" / "pipeline")
    return root / "world"


def _generate(world, out, prompt_set, seeds="0:2", *extra):
    assert main(["t2i-generate", "--model", str(world), "--seeds", seeds, "--prompt-set", prompt_set,
                 "--out", str(out), *GEN, *extra]) == 0
    return load_generations(out, "test")


@pytest.fixture(scope="module")
def sets(world, tmp_path_factory):
    """Seed-matched test (seeds 0-1) and calibration (seeds 10-11) generations, clean and triggered."""
    d = tmp_path_factory.mktemp("sau-sets")
    return {name: (d / name, _generate(world, d / name, ps, seeds))
            for name, ps, seeds in (("clean", "clean", "0:2"), ("triggered", "triggered", "0:2"),
                                    ("calib_clean", "clean", "10:2"), ("calib_triggered", "triggered", "10:2"))}


def _apply(world, sets, out, *flags):
    args = ["sau-apply", "--model", str(world), "--out", str(out), "--threads", "1", "--device", "cpu"]
    for name in ("triggered", "clean", "calib_triggered", "calib_clean"):
        args += [f"--{name.replace('_', '-')}", str(sets[name][0])]
    assert main([*args, *flags]) == 0
    return load_generations(out, "test"), dict(np.load(out / "masks.npz"))


def _smooth_images(n, seed):
    """CIFAR-like stand-ins: smooth random colour fields (4 x 4 noise, bicubic up to 32 px) plus grain."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False)
    x = x + 0.05 * torch.randn(n, 3, 32, 32, generator=g)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def patch():
    return np.random.default_rng(7).integers(0, 256, (16, 16, 3), dtype=np.uint8)


# --- generation ----------------------------------------------------------------------------------


def test_trigger_reaches_the_worlds_text_encoder(world):
    from diffsec.backdoor.badt2i import triggered
    from diffsec.models.t2i import open_pipeline

    pipe = open_pipeline(str(world))
    clean, trig = (pipe.tokenizer(p).input_ids for p in ("a photo of a cat", triggered("a photo of a cat")))
    assert 9844 in trig and 9844 not in clean and trig != clean
    with torch.no_grad():
        e_clean, e_trig = (pipe.encode_prompt(p, "cpu", 1, False)[0] for p in
                           ("a photo of a cat", triggered("a photo of a cat")))
    assert not torch.allclose(e_clean, e_trig)


def test_initial_latent_depends_only_on_class_and_seed():
    a = initial_latents([("cat", 3), ("dog", 3)], (4, 16, 16))
    b = initial_latents([("ship", 9), ("dog", 3), ("cat", 3)], (4, 16, 16))
    assert torch.equal(a[0], b[2]) and torch.equal(a[1], b[1])  # job order and the other jobs do not matter
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], initial_latents([("cat", 4)], (4, 16, 16))[0])
    assert noise_seed("cat", 3) == noise_seed("cat", 3) < 2 ** 63


def test_same_class_and_seed_give_identical_images_in_two_runs(world, sets, tmp_path):
    first = sets["clean"][1]
    again = _generate(world, tmp_path / "again", "clean")
    assert np.array_equal(first["images"], again["images"]) and np.array_equal(first["latents"], again["latents"])
    assert [str(c) for c in first["class_name"]] == ["cat", "cat", "dog", "dog", "ship", "ship"]
    assert first["seeds"].tolist() == [0, 1] * 3 and first["prompt_set"] == "clean"
    trig = sets["triggered"][1]
    assert all(p.startswith("\u200b a photo of a ") for p in trig["prompts"].tolist())
    assert trig["prompt_set"] == "triggered"
    manifest = json.loads((sets["triggered"][0] / "manifest.json").read_text())
    assert 9844 in manifest["trigger_token_ids"] and manifest["images_per_s"] > 0


def test_saved_latent_is_exactly_what_was_decoded(world, sets):
    from diffsec.models.t2i import load_vae

    gen = sets["triggered"][1]
    images = decode_latents(load_vae(world), torch.from_numpy(gen["latents"]), batch_size=4)
    assert np.array_equal(images, gen["images"])


# --- sau-apply -----------------------------------------------------------------------------------


def test_sau_apply_with_alpha_one_and_full_masks_returns_the_clean_generation(world, sets, tmp_path):
    out, maps = _apply(world, sets, tmp_path / "full", "--tau", "-1", "--tau-s", "0", "--k", "1e4", "--alpha", "1",
                       "--sigma-f", "0")
    clean = sets["clean"][1]
    assert (maps["weight"] > 1 - 1e-6).all()
    torch.testing.assert_close(torch.from_numpy(out["latents"]), torch.from_numpy(clean["latents"]),
                               atol=1e-5, rtol=0)
    assert np.abs(out["images"].astype(int) - clean["images"]).max() <= 1
    assert out["seeds"].tolist() == clean["seeds"].tolist() and out["prompt_set"] == "triggered"
    assert maps["delta"].shape == (4, 16, 16) and maps["primary"].shape == (6, 16, 16)


def test_sau_apply_with_empty_masks_returns_the_poisoned_generation(world, sets, tmp_path):
    out, maps = _apply(world, sets, tmp_path / "empty", "--tau", "1", "--tau-s", "1", "--k", "1e4",
                       "--sigma-f", "0")
    poisoned = sets["triggered"][1]
    assert not maps["primary"].any() and not maps["secondary"].any()
    # the soft masks vanish everywhere but at the blurred activation's peak, where s(1; 1, k) = 1/2
    away = maps["activation"] < 1 - 1e-6
    assert (maps["weight"][away] < 1e-6).all()
    diff = np.abs(out["latents"] - poisoned["latents"]).max(1)
    assert (diff[away] < 1e-5).all()
    # alpha = 0 leaves every latent as it was (to float rounding of (1 - R) z + R z), whatever the masks
    out0, _ = _apply(world, sets, tmp_path / "alpha0", "--alpha", "0", "--sigma-f", "0")
    assert np.abs(out0["latents"] - poisoned["latents"]).max() < 1e-5
    assert np.abs(out0["images"].astype(int) - poisoned["images"]).max() <= 1


def test_sau_apply_refuses_sets_that_are_not_seed_matched(world, sets, tmp_path, capsys):
    args = ["sau-apply", "--model", str(world), "--triggered", str(sets["triggered"][0]),
            "--clean", str(sets["calib_clean"][0]), "--calib-triggered", str(sets["calib_triggered"][0]),
            "--calib-clean", str(sets["calib_clean"][0]), "--out", str(tmp_path / "bad")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not seed-matched" in err[0]
    assert not (tmp_path / "bad").exists()
    args[args.index("--clean") + 1] = str(sets["triggered"][0])
    assert main(args) == 2 and "expected a triggered and a clean" in capsys.readouterr().err


def test_bad_seeds_are_one_line_errors(world, tmp_path, capsys):
    for seeds in ("5", "a:b", "0:0", "-1:3"):
        assert main(["t2i-generate", "--model", str(world), f"--seeds={seeds}", "--prompt-set", "clean",
                     "--out", str(tmp_path / "g")]) == 2
        assert "--seeds" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


# --- detectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, min_contrast", [("patch", 1.0), ("patch", 0.25), ("gray", 1.0)])
def test_detector_reaches_095_heldout_accuracy(kind, min_contrast, patch):
    cfg = td.DetectorConfig(kind, width=8, epochs=4, batch_size=32, lr=3e-3, min_contrast=min_contrast)
    x, y = td.examples(_smooth_images(640, 0), kind, patch, seed=0, min_contrast=min_contrast)
    hx, hy = td.examples(_smooth_images(200, 1), kind, patch, seed=1, min_contrast=min_contrast)
    assert y.sum() == 320 and (x[y == 0] == _smooth_images(640, 0)[y == 0]).all()
    model, curve = td.train(x, y, cfg, (hx, hy))
    rep = td.report(model, hx, hy)
    assert rep["accuracy"] >= 0.95, rep
    assert td.detect(model, hx).dtype == bool and curve[-1]["heldout_acc"] == rep["accuracy"]


def test_faded_patch_is_its_mean_colour_plus_contrast_times_the_deviation(patch):
    x = _smooth_images(6, 5)
    c = np.array([1.0, 0.0, 0.5, 0.25, 0.8, 0.1])
    out = td.fade_corner(td.with_target(x, "patch", patch), c)
    s = round(0.25 * 32)
    for i in range(6):   # by hand, one image and channel at a time
        sq = td.with_target(x, "patch", patch)[i, :s, :s].astype(float)
        for ch in range(3):
            m = sq[..., ch].sum() / (s * s)
            want = np.clip(np.rint(m + c[i] * (sq[..., ch] - m)), 0, 255)
            assert np.array_equal(out[i, :s, :s, ch], want)
    assert np.array_equal(out[:, s:], x[:, s:]) and np.array_equal(out[:, :, s:], x[:, :, s:])
    assert np.array_equal(out[0], td.with_target(x, "patch", patch)[0])   # contrast 1: the exact patch
    assert out[1, :s, :s].std(axis=(0, 1)).max() == 0                       # contrast 0: a flat square


def test_faded_examples_fade_only_positives_and_keep_the_labels(patch):
    x = _smooth_images(40, 6)
    exact, y = td.examples(x, "patch", patch, seed=3)
    faded, y2 = td.examples(x, "patch", patch, seed=3, min_contrast=0.25)
    assert np.array_equal(y, y2) and np.array_equal(faded[y == 0], x[y == 0])
    s = round(0.25 * 32)
    spread = lambda im: im[:, :s, :s].astype(float).std(axis=(1, 2)).mean()   # noqa: E731
    assert spread(faded[y == 1]) < spread(exact[y == 1])
    with pytest.raises(DiffsecError, match="min_contrast"):
        td.DetectorConfig("patch", min_contrast=1.5)


def test_a_seeded_share_of_the_examples_goes_through_the_round_trip():
    x = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    out, mask = td.roundtrip_share(x, lambda im: 255 - im, 0.5, seed=4)
    assert mask.sum() == 5 and np.array_equal(out[mask], 255 - x[mask]) and np.array_equal(out[~mask], x[~mask])
    assert np.array_equal(td.roundtrip_share(x, lambda im: 255 - im, 0.5, seed=4)[1], mask)
    assert not td.roundtrip_share(x, lambda im: 255 - im, 0.0, seed=4)[1].any()


@pytest.fixture(scope="module")
def detector(tmp_path_factory, patch):
    """A t2i-detector artifact (patch kind) trained through the CLI on the smooth stand-ins."""
    from PIL import Image

    from diffsec.imageset import save_imageset

    d = tmp_path_factory.mktemp("det")
    Image.fromarray(patch).save(d / "patch.png")
    save_imageset(d / "train.npz", _smooth_images(640, 2))
    save_imageset(d / "test.npz", _smooth_images(200, 3))
    assert main(["t2i-detector", "--kind", "patch", "--images", str(d / "train.npz"), "--heldout", str(d / "test.npz"),
                 "--patch", str(d / "patch.png"), "--min-contrast", "1", "--n", "0", "--n-heldout", "0",
                 "--width", "8", "--epochs", "4", "--batch-size", "32", "--lr", "3e-3", "--threads", "1",
                 "--device", "cpu", "--out", str(d / "det")]) == 0
    return d / "det"


def test_detector_stage_writes_its_metrics_and_reloads(detector):
    m = json.loads((detector / "metrics.json").read_text())
    assert m["heldout_accuracy"] >= 0.95 and m["kind"] == "patch" and m["n_heldout"] == 200
    model, cfg = td.load(detector)
    assert cfg["kind"] == "patch" and cfg["width"] == 8
    assert {"curve.csv", "curve.png", "examples.png"} <= {p.name for p in detector.iterdir()}


def test_detector_below_the_required_accuracy_writes_nothing(detector, tmp_path, capsys):
    d = detector.parent
    assert main(["t2i-detector", "--kind", "gray", "--images", str(d / "train.npz"), "--heldout", str(d / "test.npz"),
                 "--n", "64", "--n-heldout", "40", "--width", "4", "--epochs", "1", "--min-accuracy", "1.0",
                 "--lr", "1e-9", "--threads", "1", "--out", str(tmp_path / "weak")]) == 2
    assert "held-out accuracy" in capsys.readouterr().err and not (tmp_path / "weak").exists()


# --- eval, table, figures ------------------------------------------------------------------------


def test_eval_asr_is_the_hand_count_of_detections(world, sets, detector, tmp_path):
    from PIL import Image

    from diffsec.backdoor.t2i_generate import save_generations

    model, _ = td.load(detector)
    gen = sets["triggered"][1]
    images = gen["images"].copy()
    patch = np.array(Image.open(detector.parent / "patch.png").convert("RGB"))
    images[::2] = td.with_target(images[::2], "patch", patch)
    save_generations(tmp_path / "mixed.npz", {**gen, "images": images})
    out = tmp_path / "eval"
    assert main(["sau-eval", "--images", str(tmp_path / "mixed.npz"), "--detector", str(detector), "--backdoor",
                 "pixel", "--method", "poisoned", "--reference", str(tmp_path / "mixed.npz"), "--threads", "1",
                 "--device", "cpu", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    hand = int(sum(bool(v) for v in model.predict(images)))
    assert m["metrics"]["asr"] == pytest.approx(hand / len(images)) and sum(m["detected"]) == hand
    assert m["metrics"]["ssim"] == pytest.approx(1.0) and m["metrics"]["identical_to_reference"] == 1.0
    assert (m["label"], m["prompt_set"], m["detector"]["kind"]) == ("pixel/poisoned/triggered", "triggered", "patch")


def test_eval_of_a_sau_output_measures_mask_iou(world, sets, detector, tmp_path):
    _apply(world, sets, tmp_path / "sau")
    out = tmp_path / "eval"
    assert main(["sau-eval", "--images", str(tmp_path / "sau"), "--detector", str(detector), "--backdoor", "pixel",
                 "--method", "sau", "--threads", "1", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["sau"]["tau"] == 0.5 and 0 <= m["metrics"]["mask_area_region"] <= 1
    assert m["metrics"]["footprint_area"] == pytest.approx(16 / 256)
    assert main(["sau-eval", "--images", str(tmp_path / "sau"), "--detector", str(detector), "--backdoor", "style",
                 "--method", "sau", "--out", str(tmp_path / "wrong")]) == 2  # a patch detector cannot judge style


def test_mask_iou_and_the_patch_footprint():
    foot = latent_footprint((16, 16), 32, 0.25)
    assert foot.sum() == 16 and foot[:4, :4].all()
    masks = np.zeros((3, 16, 16), bool)
    masks[1, :4, :4] = True
    masks[2, :2, :8] = True  # 8 inside, 8 outside: 8 / (16 + 8)
    assert iou(masks, foot).tolist() == pytest.approx([0.0, 1.0, 8 / 24])
    assert np.isnan(iou(np.zeros((1, 16, 16), bool), np.zeros((16, 16), bool))[0])


def test_clip_iqa_with_a_pair_per_image_is_the_softmax_over_each_pair():
    from diffsec.metrics.similarity import clip_iqa_from_features

    rng = np.random.default_rng(0)
    img, good, bad = rng.normal(size=(5, 8)), rng.normal(size=(5, 8)), rng.normal(size=(5, 8))

    def cos(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    want = [1 / (1 + np.exp(13.7 * (cos(i, b) - cos(i, g)))) for i, g, b in zip(img, good, bad, strict=True)]
    assert clip_iqa_from_features(img, good, bad, 13.7) == pytest.approx(want)
    assert clip_iqa_from_features(img, good[0], bad[0], 13.7) == pytest.approx(
        clip_iqa_from_features(img, np.repeat(good[:1], 5, 0), np.repeat(bad[:1], 5, 0), 13.7))


def _eval_json(path, backdoor, method, prompt_set, asr, variant="", sau=None):
    m = {"label": f"{backdoor}/{method}/{prompt_set}", "backdoor": backdoor, "method": method, "variant": variant,
         "prompt_set": prompt_set, "n": 200, "sau": sau, "backbones": {"clip_iqa": "clip-tiny"},
         "metrics": {"asr": asr, "clip_iqa": 0.5, "psnr": 30.0, "iou_primary": 0.4},
         "stderr": {"asr": round((asr * (1 - asr) / 200) ** 0.5, 6), "clip_iqa": 0.01},
         "detector": {"kind": "patch" if backdoor == "pixel" else "gray", "vae": True, "heldout_accuracy": 0.99,
                      "heldout_false_alarm_rate": 0.01, "heldout_miss_rate": 0.01, "n_heldout": 2000}}
    path.mkdir()
    (path / "metrics.json").write_text(json.dumps(m))
    return path


def test_table_sau_puts_the_paper_values_beside_ours(tmp_path):
    from diffsec.tables import read_table

    sau = {"tau": 0.5, "tau_s": 0.3, "k": 20.0, "alpha": 1.0, "sigma": 1.0, "sigma_f": 0.5, "source": "delta"}
    evals = [_eval_json(tmp_path / "a", "pixel", "sau", "triggered", 0.0, sau=sau),
             _eval_json(tmp_path / "b", "pixel", "poisoned", "triggered", 0.9),
             _eval_json(tmp_path / "c", "pixel", "poisoned", "clean", 0.05),
             _eval_json(tmp_path / "d", "pixel", "sau", "triggered", 0.2, variant="tau-0.8", sau={**sau, "tau": 0.8})]
    out = tmp_path / "sau.csv"
    paths = [str(evals[0] / "metrics.json"), *map(str, evals[1:])]  # an artifact or its metrics.json
    assert main(["table-sau", "--metrics", *paths, "--profile", "tiny", "--out", str(out)]) == 0
    rows = {(r["table"], r["row"], r["column"], r["metric"]): r for r in read_table(out)}
    cell = rows[("sau", "Spatial Attention Unlearning", "Pixel", "removal_accuracy")]
    assert (float(cell["value"]), float(cell["paper_value"])) == (1.0, 1.0)
    assert float(rows[("sau", "Poisoned Unet", "Pixel", "clip_iqa")]["paper_value"]) == 0.6496
    assert rows[("sau", "Poisoned Unet", "Pixel", "clip_iqa")]["backbone"] == "clip-tiny"
    # sau-eval's standard errors ride along: removal accuracy = 1 - ASR has the ASR's
    assert float(rows[("sau", "Poisoned Unet", "Pixel", "clip_iqa")]["se"]) == 0.01
    assert float(rows[("sau", "Poisoned Unet", "Pixel", "removal_accuracy")]["se"]) == pytest.approx(
        (0.09 / 200) ** 0.5, rel=1e-3)   # the CSV keeps 4 digits
    assert rows[("sau", "Poisoned Unet", "Pixel", "psnr")]["se"] == ""
    assert float(rows[("sau", "Poisoned Unet", "Pixel", "asr_clean")]["value"]) == 0.05
    fr = rows[("sau", "Finetune Reversal", "Pixel", "removal_accuracy")]
    assert fr["value"] == "" and fr["note"].startswith("not run") and float(fr["paper_value"]) == 0.97
    assert float(rows[("sau_detectors", "patch detector", "held-out real images (VAE round trip)", "accuracy")]
                 ["value"]) == 0.99
    sweep = {r for t, r, _, _ in rows if t == "sau_sweep"}
    assert len(sweep) == 2 and any(r.startswith("tau 0.8") and r.endswith("[tau-0.8]") for r in sweep)
    assert "Spatial Attention Unlearning" in out.with_suffix(".md").read_text()
    dup = _eval_json(tmp_path / "e", "pixel", "poisoned", "clean", 0.1)
    assert main(["table-sau", "--metrics", str(evals[2]), str(dup), "--profile", "tiny",
                 "--out", str(tmp_path / "dup.csv")]) == 2


def test_figure_sau_draws_the_grids_and_the_mask_figure(world, sets, detector, tmp_path):
    _apply(world, sets, tmp_path / "sau")
    out = tmp_path / "fig"
    trig = str(sets["triggered"][0])
    assert main(["figure-sau", "--pixel", f"unpoisoned={sets['clean'][0]}", f"poisoned={trig}",
                 f"sau={tmp_path / 'sau'}", "--style", f"poisoned={trig}", "--detectors", f"pixel={detector}",
                 "--rows", "2", "--mask-sau", str(tmp_path / "sau"), "--mask-triggered", trig,
                 "--mask-clean", str(sets["clean"][0]), "--out", str(out)]) == 0
    assert {"table1_pixel.png", "table2_style.png", "masks.png"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("stage", ["t2i-generate", "sau-apply", "t2i-detector", "sau-eval", "table-sau",
                                   "figure-sau"])
def test_every_sau_stage_documents_its_flags(stage, capsys):
    with pytest.raises(SystemExit) as e:
        main([stage, "--help"])
    assert e.value.code == 0 and "--out" in capsys.readouterr().out


def test_killed_generation_resumes_bytes_identical(world, tmp_path, capsys):
    from resume_harness import check_kill_resume

    argv = ["t2i-generate", "--model", str(world), "--seeds", "0:2", "--prompt-set", "triggered", "--classes",
            *CLASSES, "--steps", "2", "--guidance", "3", "--batch-size", "2"]
    check_kill_resume(argv, tmp_path, capsys, 1, 1, ["generations.npz"], ["--guidance", "4"])


def test_killed_detector_training_resumes_bytes_identical(detector, tmp_path, capsys):
    from resume_harness import check_kill_resume

    d = detector.parent
    argv = ["t2i-detector", "--kind", "patch", "--images", str(d / "train.npz"), "--heldout", str(d / "test.npz"),
            "--patch", str(d / "patch.png"), "--n", "320", "--n-heldout", "100", "--width", "4", "--epochs", "2",
            "--batch-size", "32", "--lr", "3e-3", "--min-accuracy", "0"]
    check_kill_resume(argv, tmp_path, capsys, 1, 1, ["model.safetensors"], ["--lr", "1e-3"])
