"""The SAU slice's fine-tunes (backdoor-t2i, unlearn-t2i): resume, ESD-x's trainable set, one step's
losses against the library functions, bad input, on a micro T2I world trained by the test itself."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.imageset import load_imageset, save_imageset, save_png
from diffsec.training import read_curves

MICRO = ["--vae-channels", "[8,8]", "--unet-channels", "[16,16]", "--unet-cross-attn", "[false,true]",
         "--text-hidden", "16", "--text-layers", "1", "--text-heads", "2", "--vae-batch", "4", "--unet-batch", "4",
         "--samples-per-class", "1", "--sample-steps", "2", "--vae-crop", "0"]
RUN = ["--threads", "1", "--device", "cpu"]
FAST = ["--batch-size", "2", "--n-images", "4", "--samples-per-class", "1", "--sample-steps", "2", *RUN]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A labelled 8-image set, a patch PNG and a micro world trained on them (2 + 2 steps)."""
    d = tmp_path_factory.mktemp("sau_train")
    rng = np.random.default_rng(0)
    labels = np.arange(8) % 2
    save_imageset(d / "train.npz", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), labels=labels,
                  class_name=np.array(["cat", "dog"])[labels])
    save_png(d / "patch.png", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    assert main(["train-t2i", "--data", str(d / "train.npz"), "--out", str(d / "world"), "--vae-steps", "2",
                 "--unet-steps", "2", *MICRO, *RUN]) == 0
    return d


def _backdoor(d, out, *extra):
    return ["backdoor-t2i", "--model", str(d / "world"), "--images", str(d / "train.npz"), "--kind", "pixel",
            "--patch", str(d / "patch.png"), "--out", str(out), *FAST, *extra]


@pytest.fixture(scope="module")
def poisoned(d):
    out = d / "poisoned"
    assert main(_backdoor(d, out, "--steps", "3")) == 0
    return out


def _pipe_data(d, objective, unet=None):
    from PIL import Image

    from diffsec.backdoor.t2i_finetune import make_data
    from diffsec.imageset import load_imageset
    from diffsec.models.t2i import open_pipeline

    pipe = open_pipeline(str(d / "world"), unet=unet)
    s = load_imageset(d / "train.npz")
    with Image.open(d / "patch.png") as im:
        patch = np.asarray(im.convert("RGB")).copy()
    return pipe, make_data(pipe, s["images"], s["labels"], ["cat", "dog"], objective, "pixel", patch)


def test_backdoor_t2i_writes_unet_curves_samples_and_manifest(poisoned):
    from diffsec.models.t2i import load_unet

    assert {"unet", "curve.csv", "curve.png", "samples.png", "samples.npz", "manifest.json"} <= \
        {p.name for p in poisoned.iterdir()}
    assert load_unet(poisoned).config.sample_size == 16
    curves = read_curves(poisoned / "curve.csv")
    assert set(curves) == {"loss", "backdoor", "preservation"} and curves["loss"][0] == [1, 2, 3]
    s = load_imageset(poisoned / "samples.npz")
    assert s["images"].shape == (4, 32, 32, 3) and list(s["triggered"]) == [False, False, True, True]
    assert list(s["prompt"]) == ["a photo of a cat", "a photo of a dog", "\u200b a photo of a cat",
                                 "\u200b a photo of a dog"]
    assert list(s["pair"]) == [0, 1, 0, 1]
    man = json.loads((poisoned / "manifest.json").read_text())
    assert man["stage"] == "backdoor-t2i" and 9844 in man["trigger_token_ids"]
    assert not (poisoned.parent / "poisoned.ckpt").exists()


def test_killed_backdoor_run_resumes_to_the_uninterrupted_bytes(d, tmp_path, monkeypatch):
    from diffsec import resume

    args = ["--steps", "4", "--ckpt-every", "2"]
    ref = tmp_path / "ref"
    assert main(_backdoor(d, ref, *args)) == 0
    out = tmp_path / "run"
    save = resume.Checkpoint.save

    def save_then_die(self, state, step):
        save(self, state, step)
        raise KeyboardInterrupt

    monkeypatch.setattr(resume.Checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        main(_backdoor(d, out, *args))
    monkeypatch.undo()
    assert not out.exists() and (tmp_path / "run.ckpt" / "state.pt").exists()
    assert main(_backdoor(d, out, *args)) == 0
    name = "unet/diffusion_pytorch_model.safetensors"
    assert (out / name).read_bytes() == (ref / name).read_bytes()
    assert (out / "curve.csv").read_text() == (ref / "curve.csv").read_text()
    assert json.loads((out / "manifest.json").read_text())["resume"]["resumed"]


def test_esd_trains_only_cross_attention(d, poisoned):
    from diffsec.backdoor.t2i_finetune import FinetuneConfig, finetune

    pipe, data = _pipe_data(d, "esd", unet=poisoned)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    curves = finetune(pipe.unet, pipe.scheduler, data, FinetuneConfig("esd", 3, 2, 1e-2, ddim_steps=4))
    assert len(curves["loss"]) == 3
    after = pipe.unet.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("attn2" in k for k in changed), sorted(changed)[:5]
    assert any("attn2.to_k" in k for k in changed)


def test_one_step_losses_equal_the_library_functions(d):
    from diffsec.backdoor.badt2i import badt2i_terms, reversal_loss
    from diffsec.backdoor.t2i_finetune import FinetuneConfig, draw_batch, step_terms

    torch.manual_seed(0)
    pipe, data = _pipe_data(d, "badt2i")
    unet, frozen = pipe.unet, copy.deepcopy(pipe.unet)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    for objective in ("badt2i", "reversal"):
        cfg = FinetuneConfig(objective, 1, 4, 1e-3, lam=0.3, cond_drop=0.5)
        got = step_terms(objective, unet, frozen, pipe.scheduler, data, cfg, torch.Generator().manual_seed(5), "cpu")
        g = torch.Generator().manual_seed(5)
        idx, c, c_tr, coins = draw_batch(data, 4, g)
        drop = (coins < 0.5)[:, None, None]
        assert 0 < drop.sum() < 4, "the seed must drop some captions and keep others"
        if objective == "badt2i":  # caption dropout acts on the preservation half only
            c = torch.where(drop, data.empty.expand_as(c), c)
            bkd, pres = badt2i_terms(unet, frozen, pipe.scheduler, data.latents[idx], data.targets[idx], c_tr, c, g,
                                     "noise")
            assert torch.equal(got["backdoor"], bkd) and torch.equal(got["preservation"], pres)
            assert torch.equal(got["loss"], 0.3 * bkd + 0.7 * pres)
        else:
            c_tr = torch.where(drop, data.empty.expand_as(c_tr), c_tr)
            assert torch.equal(got["loss"], reversal_loss(unet, pipe.scheduler, data.latents[idx], c_tr, g))
    # the triggered captions differ from the clean ones, and the targets carry the patch
    assert not torch.equal(data.clean, data.trigger)
    assert not torch.equal(data.latents[:, :, :3, :3], data.targets[:, :, :3, :3])


def test_unlearn_t2i_reversal_and_esd_run(d, poisoned, tmp_path):
    for method in ("reversal", "esd"):
        out = tmp_path / method
        assert main(["unlearn-t2i", "--method", method, "--model", str(d / "world"), "--unet", str(poisoned),
                     "--images", str(d / "train.npz"), "--steps", "2", "--esd-ddim-steps", "3", "--out", str(out),
                     *FAST]) == 0
        assert (out / "unet" / "config.json").is_file() and (out / "samples.png").is_file()
        assert json.loads((out / "manifest.json").read_text())["objective"] == method


@pytest.mark.parametrize("argv, word", [
    (["--kind", "plaid"], "--kind 'plaid'"),
    (["--kind", "pixel", "--patch", None], "needs --patch"),
    (["--kind", "style"], "only for --kind pixel"),
    (["--steps", "0"], "--steps"),
    (["--n-images", "100"], "only 8 images"),
    (["--patch", "{d}/train.npz"], "not a readable image"),
], ids=["bad_kind", "pixel_without_patch", "style_with_patch", "zero_steps", "too_many_images", "patch_not_image"])
def test_bad_input_is_one_line_and_writes_nothing(d, tmp_path, capsys, argv, word):
    base = _backdoor(d, tmp_path / "out", "--steps", "1")
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        i = base.index(flag) if flag in base else None
        if value is None:
            del base[i:i + 2]
        elif i is None:
            base += [flag, value.format(d=d)]
        else:
            base[i + 1] = value.format(d=d)
    capsys.readouterr()
    assert main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffsec backdoor-t2i: error: ") and word in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_unlearn_refuses_a_bad_method_and_a_non_artifact_unet(d, tmp_path, capsys):
    base = ["unlearn-t2i", "--model", str(d / "world"), "--images", str(d / "train.npz"), "--out",
            str(tmp_path / "out"), *FAST]
    for extra, word in ((["--method", "forget", "--unet", str(d / "world")], "--method 'forget'"),
                        (["--method", "esd", "--unet", str(d / "world")], "not a backdoor-t2i artifact")):
        capsys.readouterr()
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stage", ["backdoor-t2i", "unlearn-t2i"])
def test_help_lists_the_flags(stage, capsys):
    with pytest.raises(SystemExit) as e:
        main([stage, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--images", "--steps", "--batch-size", "--lr", "--n-images", "--out", "--seed"):
        assert flag in text, flag
    assert ("--patch" in text) == (stage == "backdoor-t2i") and ("--eta" in text) == (stage == "unlearn-t2i")
