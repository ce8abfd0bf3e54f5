"""The tiny CLIP: save/load, label-aware loss, a micro `train-clip` run, the clip-tiny backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.imageset import save_imageset
from diffsec.metrics.backbones import ClipBackbone, get_backbone
from diffsec.metrics.similarity import clip_score
from diffsec.models import clip_tiny, clip_train
from diffsec.training import read_curves

MICRO = {"name": "clip-tiny-cifar10", "embed_dim": 32, "image_size": 32, "vision_layers": 1, "vision_width": 32,
         "vision_head_width": 16, "patch_size": 8, "text_width": 32, "text_heads": 2, "text_layers": 1,
         "class_names": ["ship", "frog"]}
MICRO_RESNET = {**MICRO, "vision_layers": [1, 1, 1, 1], "vision_width": 8, "vision_head_width": 8}
MICRO_ARGS = ["--embed-dim", "32", "--patch-size", "8", "--vision-width", "32", "--vision-layers", "1",
              "--vision-head-width", "16", "--text-width", "32", "--text-layers", "1", "--text-heads", "2",
              "--threads", "1", "--device", "cpu"]
CLASSES = np.array(["ship", "frog"])


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def two_classes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 32x32 images of two easily separable classes: bluish 'ship', greenish 'frog'."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    colour = np.array([[40, 90, 200], [60, 170, 50]])[labels][:, None, None, :]
    images = np.clip(colour + rng.normal(0, 40, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return images, labels


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    paths = {}
    for split, n, seed in (("train", 128, 0), ("test", 32, 1)):
        images, labels = two_classes(n, seed)
        paths[split] = save_imageset(d / f"{split}.npz", images, labels=labels, class_name=CLASSES[labels])
    return paths


@pytest.fixture(scope="module")
def trained(sets):
    out = sets["train"].parent / "clip"
    assert main(["train-clip", "--data", str(sets["train"]), "--test", str(sets["test"]), "--out", str(out),
                 "--steps", "40", "--batch", "32", "--lr", "3e-3", "--name", "clip-tiny-test", *MICRO_ARGS]) == 0
    return out


@pytest.mark.parametrize("micro", [MICRO, MICRO_RESNET], ids=["vit", "resnet"])
def test_save_load_round_trip(micro, tmp_path):
    torch.manual_seed(0)
    cfg = clip_tiny.ClipConfig(**micro).as_dict()
    model = clip_tiny.build(cfg).eval()
    clip_tiny.save(model, cfg, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "config.json"}
    images, _ = two_classes(4, 0)
    texts = ["a photo of a ship", "an image of a frog"]
    ref = ClipBackbone(model=model, tokenizer=clip_tiny.tokenizer())
    loaded = get_backbone("clip-tiny", weights=tmp_path)
    assert loaded.name == "clip-tiny-cifar10"
    assert np.array_equal(ref.features(images), loaded.features(images))
    assert np.array_equal(ref.text_features(texts), loaded.text_features(texts))


def test_label_aware_loss_is_lowest_for_class_aligned_features():
    labels = torch.tensor([0, 0, 1, 1, 1])
    aligned = torch.nn.functional.one_hot(labels, 4).float()
    scale = torch.tensor(np.log(100.0))
    best = clip_train.contrastive_loss(aligned, aligned, labels, scale)
    # At its optimum every row spreads its probability over its same-class columns, so the
    # loss is their entropy, not 0: plain InfoNCE would instead try to split the same classes.
    entropy = torch.log(torch.tensor([2.0, 2, 3, 3, 3])).mean()
    assert best.item() == pytest.approx(entropy.item(), abs=1e-3)
    shuffled = clip_train.contrastive_loss(aligned, aligned[torch.tensor([2, 0, 1, 4, 3])], labels, scale)
    assert shuffled > best + 1


def test_augment_keeps_shape_and_pixels():
    x = torch.rand(6, 3, 32, 32)
    y = clip_train.augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert torch.isin(y, x).all()  # flips and (reflect-padded) crops only move pixels


def test_train_clip_artifact(trained, sets):
    assert {p.name for p in trained.iterdir()} == {"model.safetensors", "config.json", "curve.csv",
                                                   "curve.png", "manifest.json"}
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["stage"] == "train-clip" and set(manifest["inputs"]) == {"data", "test"}
    assert manifest["backbone"] == "clip-tiny-test"
    m = manifest["metrics"]
    assert m["zero_shot_top1"] >= 0.9
    assert m["clip_score_matched"] > m["clip_score_mismatched"]
    curves = read_curves(trained / "curve.csv")  # long format: curve, step, value
    steps, losses = curves["contrastive"]
    assert list(curves) == ["contrastive"] and steps == list(range(1, 41))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_clip_score_on_trained_backbone(trained):
    backbone = get_backbone("clip-tiny", weights=trained)
    assert backbone.name == "clip-tiny-test"
    images, labels = two_classes(16, 2)
    matched = clip_score(backbone, images, [f"a photo of a {c}" for c in CLASSES[labels]])
    mismatched = clip_score(backbone, images, [f"a photo of a {c}" for c in CLASSES[1 - labels]])
    assert matched > mismatched + 5


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train-clip", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--patch-size" in out and "zero-shot" in out


def test_bad_inputs_write_nothing(sets, tmp_path, capsys):
    images, _ = two_classes(4, 0)
    no_labels = save_imageset(tmp_path / "nolabels.npz", images)
    not_npz = tmp_path / "junk.npz"
    not_npz.write_text("not an npz")
    good = ["--test", str(sets["test"])]
    for argv in (["--data", str(tmp_path / "missing.npz"), *good], ["--data", str(no_labels), *good],
                 ["--data", str(not_npz), *good], ["--data", str(sets["train"]), "--test", str(no_labels)],
                 ["--data", str(sets["train"]), *good, "--vision-layers", "2", "--patch-size", "5"],
                 ["--data", str(sets["train"]), *good, "--vision-layers", "[1, 1]"]):
        capsys.readouterr()
        assert main(["train-clip", *argv, "--out", str(tmp_path / "bad" / "x"), "--threads", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("diffsec train-clip: error:") and "\n" not in err
    assert not (tmp_path / "bad").exists()
