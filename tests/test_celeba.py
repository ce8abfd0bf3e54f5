"""The CelebA adapter on a small file-format fixture (CelebA itself is not offline): the three
attributes give the paper's 8 classes, splits follow the official partition, the face crop is
where the DDIM repository puts it, and bad input fails in one line with no artifact."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from diffsec.cli.main import main
from diffsec.data.celeba import CLASSES, eight_classes, prepare_celeba, read_attributes
from diffsec.errors import DiffsecError
from diffsec.imageset import load_imageset

# The 40 attribute names in the order of the real list_attr_celeba.txt.
NAMES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
         "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
         "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
         "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
         "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
N = 48


def _face(i: int) -> bytes:
    """A 178 x 218 JPEG: dark frame, the 128 px crop region filled with a per-image grey."""
    image = np.full((218, 178, 3), 10, np.uint8)
    image[57:185, 25:153] = 100 + i
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=100)
    return buf.getvalue()


@pytest.fixture
def celeba(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.choice(np.array([-1, 1], np.int8), size=(N, len(NAMES)))
    files = [f"{i + 1:06d}.jpg" for i in range(N)]
    # the real files pad single digits to two columns ("000001.jpg -1  1  1 ...")
    (tmp_path / "list_attr_celeba.txt").write_text(
        f"{N}\n{' '.join(NAMES)}\n" + "".join(f"{f} " + " ".join(f"{v:2d}" for v in row) + "\n"
                                              for f, row in zip(files, values, strict=True)))
    codes = np.array([0, 0, 1, 2] * (N // 4))
    (tmp_path / "list_eval_partition.txt").write_text("".join(f"{f} {c}\n" for f, c in zip(files, codes, strict=True)))
    with zipfile.ZipFile(tmp_path / "img_align_celeba.zip", "w") as z:
        for i, f in enumerate(files):
            z.writestr(f"img_align_celeba/{f}", _face(i))
    return tmp_path, values, codes


def _expected_labels(values: np.ndarray) -> np.ndarray:
    m, o, s = (values[:, NAMES.index(a)] > 0 for a in ("Heavy_Makeup", "Mouth_Slightly_Open", "Smiling"))
    # TrojDiff's datasets/celeba.py: attr[18] + 2 attr[21] + 4 attr[31]
    return np.array([int(f"{int(c)}{int(b)}{int(a)}", 2) for a, b, c in zip(m, o, s, strict=True)])


def test_eight_classes_from_three_attributes(celeba):
    root, values, _ = celeba
    names, files, parsed = read_attributes(root / "list_attr_celeba.txt")
    assert names == NAMES and files[0] == "000001.jpg" and (parsed == values).all()
    assert (eight_classes(names, parsed) == _expected_labels(values)).all()
    assert CLASSES[7] == "makeup+mouth+smile" and CLASSES[0] == "none" and CLASSES[1] == "makeup"
    assert [NAMES.index(a) for a in ("Heavy_Makeup", "Mouth_Slightly_Open", "Smiling")] == [18, 21, 31]


def test_splits_follow_partition_and_crop(celeba):
    root, values, codes = celeba
    data = prepare_celeba(root / "img_align_celeba.zip", root / "list_attr_celeba.txt",
                          root / "list_eval_partition.txt", 128, {"train": 0, "test": 10}, seed=3)
    train_imgs, train_labels, train_rows = data["train"]
    test_imgs, test_labels, test_rows = data["test"]
    assert sorted(train_rows) == list(np.flatnonzero(codes == 0))  # size 0: the whole partition
    assert len(test_rows) == 10 and set(codes[test_rows]) == {2}  # never val or train
    assert (train_labels == _expected_labels(values)[train_rows]).all()
    # at 128 px the crop is not resized: exactly the filled region, no dark frame
    assert train_imgs.shape == (len(train_rows), 128, 128, 3)
    for img, row in zip(train_imgs, train_rows, strict=True):
        assert abs(float(np.median(img)) - (100 + row)) <= 1 and img.min() > 60
    small = prepare_celeba(root / "img_align_celeba.zip", root / "list_attr_celeba.txt",
                           root / "list_eval_partition.txt", 32, {"train": 6, "test": 4}, seed=3)
    assert small["train"][0].shape == (6, 32, 32, 3)


def test_cli_writes_sets_and_fails_cleanly(celeba, tmp_path):
    root, values, _ = celeba
    args = ["prepare-celeba", "--images", str(root / "img_align_celeba.zip"),
            "--attributes", str(root / "list_attr_celeba.txt"),
            "--partition", str(root / "list_eval_partition.txt"), "--resolution", "16"]
    assert main([*args, "--out", str(tmp_path / "ok")]) == 0
    test = load_imageset(tmp_path / "ok/test.npz")
    assert (test["labels"] == _expected_labels(values)[test["index"]]).all()
    assert (tmp_path / "ok/samples.png").is_file()
    # drop Smiling from the header: the stage names the missing attribute and writes nothing
    text = (root / "list_attr_celeba.txt").read_text().replace("Smiling", "Smiles")
    (root / "list_attr_celeba.txt").write_text(text)
    with pytest.raises(DiffsecError, match="Smiling"):
        prepare_celeba(root / "img_align_celeba.zip", root / "list_attr_celeba.txt",
                       root / "list_eval_partition.txt", 16, {}, seed=0)
    assert main([*args, "--out", str(tmp_path / "bad")]) != 0
    assert not (tmp_path / "bad").exists()
