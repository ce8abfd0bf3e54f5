"""Data stages on the real mirror (small sizes) and on synthetic archives."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from diffsec.artifact import read_manifest
from diffsec.cli.main import main
from diffsec.data import stratified_subset
from diffsec.data.cifar import CLASSES, read_cifar10
from diffsec.imageset import load_imageset
from diffsec.sources import default_mirror

MIRROR = default_mirror(Path(__file__).resolve().parents[1])
needs_mirror = pytest.mark.skipif(MIRROR is None, reason="no ../shared/mirror")
CONCEPTS = ["backpack", "berry_bowl", "can", "cat", "clock", "dog", "pink_sunglasses",
            "rc_car", "teapot", "vase"]


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """Fetch a source through the CLI once per module; returns the artifact directory."""
    root = tmp_path_factory.mktemp("sources")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            assert main(["fetch-source", "--name", name, "--mirror", str(MIRROR),
                         "--out", str(root / name)]) == 0
            cache[name] = root / name
        return cache[name]
    return get


def test_stratified_subset():
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])
    idx = stratified_subset(labels, 190, seed=3)
    assert len(set(idx)) == 190
    counts = np.bincount(labels[idx], minlength=10)
    assert np.all(np.abs(counts - np.bincount(labels) * 190 / len(labels)) < 1)
    assert np.array_equal(idx, stratified_subset(labels, 190, seed=3))
    assert not np.array_equal(idx, stratified_subset(labels, 190, seed=4))
    assert sorted(stratified_subset(labels, 0, seed=0)) == list(range(len(labels)))


@needs_mirror
def test_prepare_cifar10_mirror(fetched, tmp_path):
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["prepare-cifar10", "--source", str(fetched("cifar10")), "--resolution", "16",
                     "--train-size", "200", "--test-size", "50", "--seed", "7", "--threads", "1",
                     "--out", str(out)]) == 0
        outs.append(out)
    a_tr, a_te = load_imageset(outs[0] / "train.npz"), load_imageset(outs[0] / "test.npz")
    assert a_tr["images"].shape == (200, 16, 16, 3) and a_tr["images"].dtype == np.uint8
    assert a_te["images"].shape == (50, 16, 16, 3)
    assert a_tr["labels"].dtype == np.int64
    assert np.bincount(a_tr["labels"], minlength=10).tolist() == [20] * 10
    assert np.bincount(a_te["labels"], minlength=10).tolist() == [5] * 10
    assert [CLASSES[i] for i in a_tr["labels"]] == a_tr["class_name"].tolist()
    assert (outs[0] / "samples.png").is_file()
    assert read_manifest(outs[0])["source_format"] == "jpeg"
    for split in ("train", "test"):  # same seed -> the same bytes
        b = load_imageset(outs[1] / f"{split}.npz")
        a = load_imageset(outs[0] / f"{split}.npz")
        assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def _binary_cifar_tar(path: Path, per_batch: int = 4, n_test: int = 3,
                      extra: tuple[tarfile.TarInfo, ...] = ()) -> np.ndarray:
    """A tiny cifar-10-binary.tar.gz (plus `extra` empty members at the end); returns the CHW
    arrays it holds (train then test)."""
    rng = np.random.default_rng(0)
    chw = rng.integers(0, 256, size=(5 * per_batch + n_test, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(len(chw)) % 10
    with tarfile.open(path, "w:gz") as tf:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        starts = [i * per_batch for i in range(6)] + [len(chw)]
        for name, lo, hi in zip(names, starts, starts[1:], strict=False):
            data = b"".join(bytes([labels[j]]) + chw[j].tobytes() for j in range(lo, hi))
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        meta = "\n".join(CLASSES).encode()
        info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        info.size = len(meta)
        tf.addfile(info, io.BytesIO(meta))
        for info in extra:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return chw, labels


def test_read_cifar10_binary_format(tmp_path):
    chw, labels = _binary_cifar_tar(tmp_path / "cifar-10-binary.tar.gz")
    data, fmt = read_cifar10(tmp_path / "cifar-10-binary.tar.gz")
    assert fmt == "binary"
    assert data["train"][0].shape == (20, 32, 32, 3) and data["test"][0].shape == (3, 32, 32, 3)
    assert np.array_equal(data["train"][0], chw[:20].transpose(0, 2, 3, 1))
    assert np.array_equal(data["test"][0], chw[20:].transpose(0, 2, 3, 1))
    assert data["train"][1].tolist() == labels[:20].tolist()
    # and through the CLI, given the archive itself rather than a fetch-source artifact
    out = tmp_path / "prep"
    assert main(["prepare-cifar10", "--source", str(tmp_path / "cifar-10-binary.tar.gz"),
                 "--train-size", "10", "--test-size", "-1", "--out", str(out)]) == 0
    assert np.bincount(load_imageset(out / "train.npz")["labels"]).tolist() == [1] * 10
    assert len(load_imageset(out / "test.npz")["labels"]) == 3


def test_read_cifar10_rejects_other_archives(tmp_path, capsys):
    with tarfile.open(tmp_path / "x.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("readme.txt")
        tf.addfile(info, io.BytesIO(b""))
    out = tmp_path / "prep"
    assert main(["prepare-cifar10", "--source", str(tmp_path / "x.tar.gz"), "--out", str(out)]) == 2
    # progress bars share stderr; the error itself is the one last line
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("diffsec prepare-cifar10: error:") and "CIFAR-10" in last
    assert not out.exists()


@needs_mirror
def test_prepare_mnist_split(fetched, tmp_path):
    out = tmp_path / "mnist"
    assert main(["prepare-mnist", "--images", str(fetched("mnist_test_images")), "--labels",
                 str(fetched("mnist_test_labels")), "--classifier-train", "3000", "--seed", "1",
                 "--out", str(out)]) == 0
    tr, ho = load_imageset(out / "classifier_train.npz"), load_imageset(out / "heldout.npz")
    assert tr["images"].shape == (3000, 28, 28, 1) and ho["images"].shape == (7000, 28, 28, 1)
    assert tr["images"].dtype == np.uint8 and tr["labels"].dtype == np.int64
    assert not set(tr["index"]) & set(ho["index"])
    assert sorted([*tr["index"], *ho["index"]]) == list(range(10000))
    all_counts = np.bincount(np.concatenate([tr["labels"], ho["labels"]]))
    assert np.all(np.abs(np.bincount(tr["labels"]) - 0.3 * all_counts) < 1)  # stratified


@needs_mirror
def test_prepare_dreambooth_grabcut(fetched, tmp_path):
    out = tmp_path / "db"
    assert main(["prepare-dreambooth", "--source", str(fetched("dreambooth10")), "--resolution", "32",
                 "--images-per-concept", "2", "--masker", "grabcut", "--threads", "1",
                 "--out", str(out)]) == 0
    d = load_imageset(out / "concepts.npz")
    assert d["images"].shape == (20, 32, 32, 3) and d["masks"].shape == (20, 32, 32)
    assert sorted(set(d["concept"])) == CONCEPTS
    assert set(np.unique(d["masks"])) <= {0, 1}
    cover = d["masks"].reshape(20, -1).mean(1)
    assert (cover > 0).all()
    assert ((cover > 0.02) & (cover < 0.9)).mean() >= 0.8
    prompts = json.loads((out / "prompts.json").read_text())
    assert sorted(prompts["concepts"]) == CONCEPTS
    assert prompts["concepts"]["pink_sunglasses"]["class"] == "glasses"
    assert prompts["concepts"]["dog"]["live"] and not prompts["concepts"]["can"]["live"]
    assert len(prompts["object_prompts"]) == 25 and len(prompts["live_prompts"]) == 25
    assert all("{0} {1}" in p for p in prompts["concepts"]["vase"]["prompts"])
    assert (out / "masks.png").is_file() and (out / "references_and_licenses.txt").is_file()


@needs_mirror
def test_prepare_dreambooth_sam_needs_checkpoint(fetched, tmp_path, capsys):
    out = tmp_path / "db"
    rc = main(["prepare-dreambooth", "--source", str(fetched("dreambooth10")), "--masker", "sam",
               "--sam-checkpoint", str(tmp_path / "missing.pth"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--sam-checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
