"""The MNIST classifier: trains to >= 95% held-out in one quick epoch, and classifies the
3-channel 32x32 digits the backdoor stages hand it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffsec.cli.main import main
from diffsec.imageset import load_imageset
from diffsec.models.mnist_net import MnistNet, load_mnist_classifier, preprocess
from diffsec.sources import default_mirror

MIRROR = default_mirror(Path(__file__).resolve().parents[1])


def test_preprocess_rgb32_matches_gray28():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    assert preprocess(gray).shape == (2, 1, 28, 28)
    rgb = np.repeat(gray, 3, axis=-1)  # equal channels: luma is the gray value itself
    assert torch.allclose(preprocess(rgb), preprocess(gray), atol=1e-5)
    big = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert preprocess(big).shape == (3, 1, 28, 28)
    assert MnistNet().predict(big).shape == (3,)


@pytest.mark.slow
@pytest.mark.skipif(MIRROR is None, reason="no ../shared/mirror")
def test_train_mnist_classifier(tmp_path):
    for name in ("mnist_test_images", "mnist_test_labels"):
        assert main(["fetch-source", "--name", name, "--mirror", str(MIRROR),
                     "--out", str(tmp_path / name)]) == 0
    assert main(["prepare-mnist", "--images", str(tmp_path / "mnist_test_images"),
                 "--labels", str(tmp_path / "mnist_test_labels"), "--classifier-train", "5000",
                 "--out", str(tmp_path / "mnist")]) == 0
    out = tmp_path / "clf"
    assert main(["train-mnist-classifier", "--data", str(tmp_path / "mnist"), "--epochs", "1",
                 "--batch-size", "32", "--lr", "3e-3", "--threads", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["heldout_accuracy"] >= 0.95 and result["n_heldout"] == 5000
    for f in ("model.safetensors", "config.json", "curve.csv", "curve.png", "manifest.json"):
        assert (out / f).is_file(), f

    model = load_mnist_classifier(out)
    ho = load_imageset(tmp_path / "mnist" / "heldout.npz")
    images, labels = ho["images"][:1000], ho["labels"][:1000]
    assert np.mean(model.predict(images) == labels) >= 0.95
    # what a diffusion model hands over: RGB at 32x32
    up = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(), size=(32, 32),
                       mode="bilinear", align_corners=False)
    rgb32 = up.round().clamp(0, 255).byte().repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    assert np.mean(model.predict(rgb32) == labels) >= 0.93
