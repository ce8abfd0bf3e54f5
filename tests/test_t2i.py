"""The text-to-image world: CLIP tokenizer, a micro training run, --pretrained, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.imageset import load_imageset, save_imageset
from diffsec.training import read_curves

MICRO = ["--vae-channels", "[8,8]", "--unet-channels", "[16,16]", "--unet-cross-attn", "[false,true]",
         "--text-hidden", "16", "--text-layers", "1", "--text-heads", "2",
         "--vae-batch", "4", "--unet-batch", "4", "--samples-per-class", "1", "--sample-steps", "2",
         "--vae-crop", "0", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("t2i") / "train.npz"
    rng = np.random.default_rng(0)
    labels = np.arange(8) % 2
    save_imageset(path, rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), labels=labels,
                  class_name=np.array(["cat", "dog"])[labels])
    return path


@pytest.fixture(scope="module")
def world(data):
    out = data.parent / "world"
    assert main(["train-t2i", "--data", str(data), "--out", str(out), "--vae-steps", "2",
                 "--unet-steps", "2", *MICRO]) == 0
    return out


def test_tokenizer_matches_open_clip(tmp_path):
    from open_clip.tokenizer import SimpleTokenizer

    from diffsec.models.tokenizer import clip_tokenizer

    tok, ref = clip_tokenizer(tmp_path), SimpleTokenizer()
    assert len(tok) == 49408 and tok.model_max_length == 77
    for text in ["a photo of a cat", "A Photo of an AUTOMOBILE!!", "", "a photo of a <token>",
                 "an oil-painting of a dog's face, 4k", "café naïve 東京"]:
        assert tok(text).input_ids == [ref.sot_token_id, *ref.encode(text), ref.eot_token_id], text
    # SD pads with <|endoftext|> up to 77 tokens.
    assert tok("a cat", padding="max_length").input_ids[-1] == ref.eot_token_id


def test_micro_world_is_a_stable_diffusion_pipeline(world):
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    assert {"pipeline", "samples.png", "samples.npz", "curve.csv", "curve.png", "manifest.json"} \
        <= {p.name for p in world.iterdir()}
    assert not list((world / "pipeline").rglob("*.bin")), "weights must be safetensors"
    samples = load_imageset(world / "samples.npz")
    assert samples["images"].shape == (2, 32, 32, 3)
    assert list(samples["labels"]) == [0, 1] and list(samples["class_name"]) == ["cat", "dog"]
    assert "scaling_factor" in json.loads((world / "manifest.json").read_text())
    curves = read_curves(world / "curve.csv")  # long format: curve, step, value
    assert {k: x for k, (x, _) in curves.items()} == {"vae": [1, 2], "unet": [1, 2]}

    kw = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = StableDiffusionPipeline.from_pretrained(world / "pipeline", **kw)
    out = pipe("a photo of a cat", num_inference_steps=2, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 32, 32, 3) and np.isfinite(out.images).all()
    i2i = StableDiffusionImg2ImgPipeline.from_pretrained(world / "pipeline", **kw)
    out = i2i("a photo of a dog", image=torch.zeros(1, 3, 32, 32), strength=1.0,
              num_inference_steps=2, output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_pretrained_directory_is_loaded_not_trained(world, tmp_path):
    out = tmp_path / "loaded"
    assert main(["train-t2i", "--pretrained", str(world / "pipeline"), "--out", str(out), *MICRO]) == 0
    name = "unet/diffusion_pytorch_model.safetensors"
    assert (out / "pipeline" / name).read_bytes() == (world / "pipeline" / name).read_bytes()
    assert json.loads((out / "manifest.json").read_text())["source"] == str(world / "pipeline")
    assert (out / "samples.png").exists() and read_curves(out / "curve.csv") == {}  # nothing trained here


def test_killed_run_resumes_from_checkpoint(data, tmp_path, monkeypatch):
    from diffsec import resume
    from diffsec.models import t2i_train

    args = ["train-t2i", "--data", str(data), "--vae-steps", "3", "--unet-steps", "6",
            "--ckpt-every", "2", *MICRO]
    ref = tmp_path / "ref"
    assert main([*args, "--out", str(ref)]) == 0

    out, ckpt = tmp_path / "run", tmp_path / "run.ckpt"
    save = resume.Checkpoint.save

    def save_then_die(self, state, step):  # a kill right after the UNet's step-4 checkpoint
        save(self, state, step)
        if state["phase"] == "unet" and state["step"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume.Checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--out", str(out)])
    monkeypatch.undo()
    assert not out.exists(), "a killed run must leave nothing that looks finished"
    state = torch.load(ckpt / "state.pt", weights_only=True)
    assert (state["phase"], state["step"], state["_step"]) == ("unet", 4, 3 + 4)  # global step: VAE's 3 first

    seen = []
    phase = t2i_train.run_phase

    def spy(world, ph, seed, ckpt, state):
        seen.append((ph.name, state["step"] if state and state["phase"] == ph.name else 0))
        return phase(world, ph, seed, ckpt, state)

    monkeypatch.setattr(t2i_train, "run_phase", spy)
    assert main([*args, "--out", str(out)]) == 0
    assert seen == [("unet", 4)], "stage 1 is skipped and stage 2 resumes at step 4"
    assert not ckpt.exists(), "the checkpoint is removed on success"
    resumed = json.loads((out / "manifest.json").read_text())["resume"]
    assert resumed["resumed"] and [a["start_step"] for a in resumed["attempts"]] == [0, 7]
    # Same seed, same device: resuming reproduces the uninterrupted run bit for bit.
    for name in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        assert (out / "pipeline" / name).read_bytes() == (ref / "pipeline" / name).read_bytes()
    assert (out / "curve.csv").read_text() == (ref / "curve.csv").read_text()


def test_vae_roundtrip_ceiling(world, data, tmp_path):
    """eval-class --vae-roundtrip classifies what the world's VAE gives back: checked against a
    direct encode (posterior mean) / decode, skimage's PSNR and the classifier run by hand."""
    import torch
    from skimage.metrics import peak_signal_noise_ratio

    from diffsec.models import resnet_cifar as rc
    from diffsec.models.t2i import load_pipeline

    torch.manual_seed(0)
    rc.save_classifier(rc.resnet20(), tmp_path / "clf")
    assert main(["eval-class", "--images", str(data), "--vae-roundtrip", str(world), "--classifier",
                 str(tmp_path / "clf"), "--out", str(tmp_path / "ceiling"), "--threads", "1",
                 "--device", "cpu"]) == 0
    m = json.loads((tmp_path / "ceiling/metrics.json").read_text())
    d = load_imageset(data)
    vae = load_pipeline(str(world / "pipeline")).vae
    with torch.no_grad():
        x = torch.from_numpy(d["images"]).permute(0, 3, 1, 2).float() / 127.5 - 1
        y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    rec = ((y + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    want = np.mean([peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(d["images"], rec, strict=True)])
    assert m["vae_psnr"] == pytest.approx(want, rel=1e-4)
    clf = rc.load_classifier(tmp_path / "clf")
    assert m["accuracy"] == pytest.approx(np.mean(rc.predict_logits(clf, rec).argmax(1) == d["labels"]))
    assert m["accuracy_original"] == pytest.approx(
        np.mean(rc.predict_logits(clf, d["images"]).argmax(1) == d["labels"]))
    assert m["n"] == 8


def test_fine_tuned_unet_replaces_the_pipelines_and_keeps_its_bytes(world, tmp_path):
    from diffsec.errors import DiffsecError
    from diffsec.models.t2i import open_pipeline, save_unet

    base = open_pipeline(str(world))
    unet = base.unet
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.01)  # a "fine-tune": every weight moved
    save_unet(unet, tmp_path / "ft")
    pipe = open_pipeline(str(world), unet=tmp_path / "ft")
    assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), pipe.unet.state_dict().values(),
                                                      strict=True))
    assert not torch.equal(next(open_pipeline(str(world)).unet.parameters()), next(pipe.unet.parameters()))
    with pytest.raises(DiffsecError, match="--unet .*no fine-tuned UNet"):
        open_pipeline(str(world), unet=tmp_path / "missing")
