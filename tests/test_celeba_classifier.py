"""The CelebA attribute classifier on synthetic faces whose 3 class bits are visible colour bands:
it learns the 8 classes, survives a save/load round trip, classifies other resolutions, and the
CLI stage's eval.json is what the saved model predicts; bad input fails in one line, no artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.data.celeba import CLASSES
from diffsec.errors import DiffsecError
from diffsec.imageset import load_imageset, save_imageset
from diffsec.models.celeba_net import CelebaNet, load_celeba_classifier, save_celeba_classifier, train
from diffsec.models.classifier_fit import FitConfig


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def faces(per_class: int, res: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images; class bit k lights a horizontal band (top red, middle green, bottom blue).
    Bands span the full width, so the horizontal-flip augmentation keeps the class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(8), per_class)
    x = rng.integers(0, 110, (len(labels), res, res, 3)).astype(np.int16)
    bands = [(0, res // 4), (3 * res // 8, 5 * res // 8), (3 * res // 4, res)]
    for i, y in enumerate(labels):
        for bit, (r0, r1) in enumerate(bands):
            if y >> bit & 1:
                x[i, r0:r1, :, bit] += rng.integers(100, 146)
    return x.clip(0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def trained():
    x, y = faces(40, 16, seed=0)
    xh, yh = faces(10, 16, seed=1)
    torch.manual_seed(0)
    model = CelebaNet(8, width=8, size=16)
    curve = train(model, x, y, FitConfig(epochs=6, batch_size=32, lr=5e-3, seed=0), heldout=(xh, yh))
    return model, curve, (xh, yh)


def test_learns_eight_classes(trained):
    model, curve, (xh, yh) = trained
    assert len(curve) == 6 * 10 and curve[-1]["epoch"] == 6
    assert curve[-1]["heldout_acc"] >= 0.9  # chance is 0.125
    assert (model.predict(xh) == yh).mean() == curve[-1]["heldout_acc"]
    assert model.predict(xh).dtype == np.int64 and not model.training
    assert model.std.min() > 0 and abs(model.mean[2].item() - 0.3) < 0.1  # fitted to the data


def test_save_load_round_trip(trained, tmp_path):
    model, _, (xh, _) = trained
    save_celeba_classifier(model, tmp_path / "clf", note="x")
    config = json.loads((tmp_path / "clf/config.json").read_text())
    assert config["arch"] == "celeba_net" and config["size"] == 16 and config["width"] == 8
    assert np.allclose(config["mean"], model.mean.tolist()) and config["note"] == "x"
    loaded = load_celeba_classifier(tmp_path / "clf")
    assert (loaded.predict(xh) == model.predict(xh)).all()
    with pytest.raises(DiffsecError, match="not a saved CelebA classifier"):
        load_celeba_classifier(tmp_path)
    config["arch"] = "mnist_net"
    (tmp_path / "clf/config.json").write_text(json.dumps(config))
    with pytest.raises(DiffsecError, match="not a CelebA classifier"):
        load_celeba_classifier(tmp_path / "clf")


def test_other_resolutions(trained):
    model, _, _ = trained
    for res in (32, 12):  # a 64 px-style upscale and a smaller one
        x, y = faces(10, res, seed=2)
        assert (model.predict(x) == y).mean() >= 0.85
    with pytest.raises(DiffsecError, match="uint8 NHWC RGB"):
        model.predict(np.zeros((2, 16, 16, 1), np.uint8))


def _celeba_dir(path, res: int = 16, train_labels=None):
    x, y = faces(24, res, seed=3)
    xt, yt = faces(6, res, seed=4)
    y = y if train_labels is None else train_labels
    save_imageset(path / "train.npz", x, labels=y, index=np.arange(len(y)),
                  class_name=[CLASSES[k % 8] for k in y])
    save_imageset(path / "test.npz", xt, labels=yt, index=np.arange(len(yt)),
                  class_name=[CLASSES[k] for k in yt])
    return path


ARGS = ["--epochs", "3", "--batch-size", "32", "--lr", "5e-3", "--width", "8", "--size", "16",
        "--threads", "1", "--device", "cpu"]


def test_cli_eval_matches_saved_model(tmp_path, capsys):
    data = _celeba_dir(tmp_path / "celeba")
    out = tmp_path / "clf"
    assert main(["train-celeba-classifier", "--data", str(data), *ARGS, "--out", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    for f in ("model.safetensors", "config.json", "curve.csv", "curve.png", "eval.json", "manifest.json"):
        assert (out / f).is_file(), f
    result = json.loads((out / "eval.json").read_text())
    test = load_imageset(data / "test.npz")
    pred = load_celeba_classifier(out).predict(test["images"])
    confusion = np.zeros((8, 8), np.int64)
    np.add.at(confusion, (test["labels"], pred), 1)
    assert result["confusion"] == confusion.tolist()
    assert result["test_accuracy"] == pytest.approx((pred == test["labels"]).mean())
    assert result["per_class_accuracy"] == pytest.approx(confusion.diagonal() / confusion.sum(1), abs=1e-4)
    assert result["n_train"] == 192 and result["n_test"] == 48 and result["classes"] == list(CLASSES)
    assert result["test_accuracy"] > 0.5  # three epochs of 6 steps: learning, not chance
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["inputs"]) == {"train", "test"}
    assert manifest["test_accuracy"] == result["test_accuracy"]


def test_cli_bad_data_fails_cleanly(tmp_path, capsys):
    data = _celeba_dir(tmp_path / "celeba")
    (data / "test.npz").unlink()
    assert main(["train-celeba-classifier", "--data", str(data), *ARGS, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "test.npz is missing" in err and len(err.splitlines()) == 1
    bad = _celeba_dir(tmp_path / "labels", train_labels=np.arange(192) % 9)  # an 8 slips in
    assert main(["train-celeba-classifier", "--data", str(bad), *ARGS, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "labels must lie in 0..7" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
