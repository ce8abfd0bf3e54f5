"""Bad input to the world and classifier stages is refused in one line before anything is written:
exit status 2, stderr is exactly `diffsec <stage>: error: <why>`, and --out (and its checkpoint)
does not exist afterwards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.imageset import save_imageset

RUN = ["--threads", "1", "--device", "cpu"]
DDPM = ["--resolution", "8", "--channels", "[8,16]", "--attention", "[false,false]", "--steps", "2",
        "--batch-size", "2", "--grid-samples", "1", "--grid-steps", "1"]
T2I = ["--vae-channels", "[8,8]", "--unet-channels", "[16,16]", "--unet-cross-attn", "[false,true]",
       "--text-hidden", "16", "--text-layers", "1", "--text-heads", "2", "--vae-steps", "1", "--unet-steps", "1"]
CLIP = ["--steps", "1", "--batch", "4", "--embed-dim", "16", "--vision-layers", "1", "--patch-size", "8",
        "--vision-width", "16", "--vision-head-width", "8", "--text-width", "16", "--text-heads", "2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny valid inputs, and broken variants of them."""
    from diffsec.models import ddpm
    from diffsec.models import resnet_cifar as rc

    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    labels = np.arange(8) % 2
    img8 = rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    img32 = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    save_imageset(d / "img8.npz", img8, labels=labels)
    save_imageset(d / "img32.npz", img32, labels=labels, class_name=np.array(["cat", "dog"])[labels])
    save_imageset(d / "nolabels.npz", img32)
    np.savez(d / "float.npz", images=img8.astype(np.float32))
    np.savez(d / "object.npz", images=np.array([object()] * 2, dtype=object))
    (d / "junk.npz").write_text("not an npz")
    (d / "empty").mkdir()
    (d / "empty" / "model_index.json").write_text("{}")  # claims a pipeline, holds none
    for split, n in (("classifier_train", 8), ("heldout", 4), ("train", 8)):
        save_imageset(d / "mnist" / f"{split}.npz", rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                      labels=np.arange(n) % 10)
    torch.manual_seed(0)
    unet, sched = ddpm.build_ddpm(ddpm.DDPMConfig(8, [8, 16], [False, False], 1))
    ddpm.save_ddpm(unet, sched, d / "ddpm" / "pipeline")
    rc.save_classifier(rc.resnet20(), d / "clf")
    (d / "badclf").mkdir()
    (d / "badclf" / "config.json").write_text(json.dumps({"arch": "resnet20"}))
    (d / "badclf" / "model.safetensors").write_text("torn")
    return d


def cases():
    """(id, stage, argv with {d} = the inputs dir, what the error must mention)."""
    ddpm, t2i, clip = ["--data", "{d}/img8.npz", *DDPM], ["--data", "{d}/img32.npz", *T2I], \
        ["--data", "{d}/img32.npz", "--test", "{d}/img32.npz", *CLIP]
    return [
        ("ddpm-steps-0", "train-ddpm", [*ddpm, "--steps", "0"], "steps must be positive"),
        ("ddpm-steps-neg", "train-ddpm", [*ddpm, "--steps", "-1"], "steps must be positive"),
        ("ddpm-ema-2", "train-ddpm", [*ddpm, "--ema-decay", "2"], "ema_decay must be in [0, 1]"),
        ("ddpm-batch-0", "train-ddpm", [*ddpm, "--batch-size", "0"], "batch_size must be positive"),
        ("ddpm-ckpt-0", "train-ddpm", [*ddpm, "--ckpt-every", "0"], "ckpt_every must be positive"),
        ("ddpm-lr-neg", "train-ddpm", [*ddpm, "--lr", "-1"], "lr must be positive"),
        ("ddpm-channels-empty", "train-ddpm", [*ddpm, "--channels", "[]"], "channels must be a non-empty list"),
        ("ddpm-groups", "train-ddpm", [*ddpm, "--channels", "[6,8]"], "divisible by the GroupNorm"),
        ("ddpm-float-data", "train-ddpm", [*DDPM, "--data", "{d}/float.npz"], "must be non-empty uint8"),
        ("ddpm-object-data", "train-ddpm", [*DDPM, "--data", "{d}/object.npz"], "cannot read image set"),
        ("ddpm-junk-data", "train-ddpm", [*DDPM, "--data", "{d}/junk.npz"], "cannot read image set"),
        ("ddpm-resolution", "train-ddpm", [*DDPM, "--data", "{d}/img32.npz"], "resolution is 8"),
        ("ddpm-pretrained-dir", "train-ddpm", ["--pretrained", "{d}/nolabels.npz"], "--pretrained"),
        ("ddpm-pretrained-empty", "train-ddpm", ["--pretrained", "{d}/empty"], "cannot load a DDPMPipeline"),
        ("ddpm-device-cuda-x", "train-ddpm", [*ddpm, "--device", "cuda:x"], "--device 'cuda:x'"),
        ("ddpm-device-tpu", "train-ddpm", [*ddpm, "--device", "tpu"], "--device 'tpu'"),
        ("ddpm-threads-neg", "train-ddpm", [*ddpm, "--threads", "-1"], "--threads -1"),
        ("t2i-attn-length", "train-t2i", [*t2i, "--unet-cross-attn", "[true]"], "unet_cross_attn must be a list"),
        ("t2i-vae-steps-0", "train-t2i", [*t2i, "--vae-steps", "0"], "vae_steps must be positive"),
        ("t2i-cond-drop", "train-t2i", [*t2i, "--cond-drop", "1.5"], "cond_drop must be in [0, 1]"),
        ("t2i-heads", "train-t2i", [*t2i, "--text-heads", "3"], "not a multiple of text_heads"),
        ("t2i-crop", "train-t2i", [*t2i, "--vae-crop", "40"], "vae_crop 40 exceeds the 32 px images"),
        ("t2i-levels", "train-t2i", [*t2i, "--vae-channels", "[8,8,8,8,8,8]"], "do not fit"),
        ("t2i-no-labels", "train-t2i", [*T2I, "--data", "{d}/nolabels.npz"], "`labels` must be 8 integers"),
        ("t2i-pretrained", "train-t2i", ["--pretrained", "{d}/empty"], "cannot load a StableDiffusionPipeline"),
        ("clip-steps-0", "train-clip", [*clip, "--steps", "0"], "steps must be positive"),
        ("clip-vision-layers", "train-clip", [*clip, "--vision-layers", "[1,1]"], "vision_layers must be"),
        ("clip-patch", "train-clip", [*clip, "--patch-size", "5"], "not divisible by 5"),
        ("clip-test-labels", "train-clip", [*clip, "--test", "{d}/nolabels.npz"], "--test"),
        ("mnist-epochs-0", "train-mnist-classifier", ["--data", "{d}/mnist", "--epochs", "0"],
         "epochs must be positive"),
        ("mnist-not-artifact", "train-mnist-classifier", ["--data", "{d}/empty"], "classifier_train.npz is missing"),
        ("celeba-lr-0", "train-celeba-classifier", ["--data", "{d}/mnist", "--lr", "0"], "lr must be positive"),
        ("celeba-width-0", "train-celeba-classifier", ["--data", "{d}/mnist", "--width", "0"],
         "width must be positive"),
        ("resnet-batch-0", "classifier-resnet", ["--weights", "{d}/junk.npz", "--arch", "resnet20", "--testset",
                                                 "{d}/img32.npz", "--batch-size", "0"], "batch_size must be positive"),
        ("resnet-weights", "classifier-resnet", ["--weights", "{d}/junk.npz", "--arch", "resnet20", "--testset",
                                                 "{d}/img32.npz"], "cannot read"),
        ("sample-not-pipeline", "sample-ddpm", ["--model", "{d}/clf"], "not a diffusers pipeline"),
        ("sample-n-0", "sample-ddpm", ["--model", "{d}/ddpm", "--n", "0"], "n must be positive"),
        ("sample-batch-0", "sample-ddpm", ["--model", "{d}/ddpm", "--batch-size", "0"], "batch_size must be"),
        ("sample-ckpt-0", "sample-ddpm", ["--model", "{d}/ddpm", "--ckpt-every", "0"], "ckpt_every"),
        ("fid-too-many", "eval-fid", ["--fake", "{d}/img32.npz", "--real", "{d}/img32.npz", "--fake-n", "9"],
         "cannot take the first 9"),
        ("fid-k-0", "eval-fid", ["--fake", "{d}/img32.npz", "--real", "{d}/img32.npz", "--k", "0"],
         "k must be positive"),
        ("fid-k-large", "eval-fid", ["--fake", "{d}/img32.npz", "--real", "{d}/img32.npz", "--k", "8",
                                     "--backbone", "resnet20-cifar10", "--backbone-weights", "{d}/clf"],
         "need more than"),
        ("fid-float", "eval-fid", ["--fake", "{d}/float.npz", "--real", "{d}/img32.npz"], "uint8"),
        ("class-bad-classifier", "eval-class", ["--images", "{d}/img32.npz", "--classifier", "{d}/badclf"],
         "cannot load the CIFAR ResNet"),
        ("class-no-labels", "eval-class", ["--images", "{d}/nolabels.npz", "--classifier", "{d}/clf"], "labels"),
        ("class-n", "eval-class", ["--images", "{d}/img32.npz", "--classifier", "{d}/clf", "--n", "-1"],
         "cannot take the first -1"),
        ("class-vae", "eval-class", ["--images", "{d}/img32.npz", "--classifier", "{d}/clf", "--vae-roundtrip",
                                     "{d}/empty"], "cannot load the pipeline's VAE"),
    ]


@pytest.mark.parametrize("stage,argv,why", [c[1:] for c in cases()], ids=[c[0] for c in cases()])
def test_bad_input_is_one_line_and_writes_nothing(files, tmp_path, capsys, stage, argv, why):
    out = tmp_path / "out"
    argv = [a.format(d=files) for a in argv]
    capsys.readouterr()
    assert main([stage, *RUN, *argv, "--out", str(out)]) == 2  # a flag in argv overrides RUN's
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"diffsec {stage}: error: "), err
    assert why in lines[0], lines[0]
    assert not out.exists() and not (tmp_path / "out.ckpt").exists() and list(tmp_path.iterdir()) == []
