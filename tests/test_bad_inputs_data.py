"""Bad inputs to fetch-source and the prepare-* stages: each ends in rc 2, ONE stderr line
`diffsec <stage>: error: ...` naming the problem, and no --out (nor a temporary of it) afterwards."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from diffsec.catalog import SOURCES
from test_celeba import celeba  # noqa: F401  (fixtures)
from test_data import _binary_cifar_tar
from test_safety import dreambooth_tar, fake_mnist, refused  # noqa: F401


def _mnist(request, images=None, labels=None, n="10"):
    img, lab = request.getfixturevalue("fake_mnist")
    return ["prepare-mnist", "--images", str(images or img), "--labels", str(labels or lab), "--classifier-train", n]


def _corrupt_mirror(request, tmp: Path) -> str:
    request.getfixturevalue("fake_mnist")  # a mirror whose labels match the (patched) catalog ...
    path = tmp / "mirror" / SOURCES["mnist_test_labels"].mirror_path
    path.write_bytes(path.read_bytes() + b"\0")  # ... until one byte is appended
    return str(tmp / "mirror")


def _file(tmp: Path, name: str, data: bytes = b"not what you think") -> str:
    (tmp / name).write_bytes(data)
    return str(tmp / name)


def _empty(tmp: Path) -> str:
    (tmp / "empty").mkdir()
    return str(tmp / "empty")


def _no_manifest(tmp: Path) -> str:
    (tmp / "loose").mkdir()
    _file(tmp / "loose", "t10k-images-idx3-ubyte.gz")
    return str(tmp / "loose")


def _db(tmp: Path, *extra: str) -> list[str]:
    return ["prepare-dreambooth", "--source", str(dreambooth_tar(tmp / "db.tar.gz")), "--resolution", "8",
            "--images-per-concept", "1", *extra]


def _celeba(request, tmp: Path, zip_member: str = "img_align_celeba/000001.jpg", attributes: str = "") -> list[str]:
    root, _, _ = request.getfixturevalue("celeba")
    with zipfile.ZipFile(tmp / "faces.zip", "w") as z:
        z.writestr(zip_member, b"")
    return ["prepare-celeba", "--images", str(tmp / "faces.zip"), "--partition", str(root / "list_eval_partition.txt"),
            "--attributes", attributes or str(root / "list_attr_celeba.txt")]


def _cifar_tar(tmp: Path) -> str:
    _binary_cifar_tar(tmp / "c.tar.gz")
    return str(tmp / "c.tar.gz")


# id -> (argv builder (request, tmp_path) without --out, a piece of the expected message)
CASES = {
    "fetch_unknown_source": (lambda r, t: ["fetch-source", "--name", "nope", "--mirror", "none"], "unknown source"),
    "fetch_no_mirror_dir": (lambda r, t: ["fetch-source", "--name", "cifar10", "--mirror", str(t / "none")],
                            "does not exist"),
    "fetch_missing_in_mirror": (lambda r, t: ["fetch-source", "--name", "cifar10", "--mirror", _empty(t)],
                                "missing from the mirror"),
    "fetch_corrupt_mirror": (lambda r, t: ["fetch-source", "--name", "mnist_test_labels", "--mirror",
                                           _corrupt_mirror(r, t)], "sha256 mismatch"),
    "mnist_missing_input": (lambda r, t: _mnist(r, images=t / "gone"), "no such source"),
    "mnist_wrong_source": (lambda r, t: _mnist(r, labels=r.getfixturevalue("fake_mnist")[0]),
                           "fetch-source artifact of mnist_test_labels"),
    "mnist_dir_without_manifest": (lambda r, t: _mnist(r, images=_no_manifest(t)), "not a fetch-source artifact"),
    "mnist_not_idx": (lambda r, t: _mnist(r, images=_file(t, "x.gz")), "cannot read IDX"),
    "mnist_train_size_zero": (lambda r, t: _mnist(r, n="0"), "--classifier-train"),
    "cifar_resolution_zero": (lambda r, t: ["prepare-cifar10", "--source", _file(t, "c.tar"), "--resolution", "0"],
                              "--resolution must be positive"),
    "cifar_not_a_tar": (lambda r, t: ["prepare-cifar10", "--source", _file(t, "c.tar")], "not a readable tar"),
    "cifar_given_mnist": (lambda r, t: ["prepare-cifar10", "--source", str(r.getfixturevalue("fake_mnist")[0])],
                          "fetch-source artifact of cifar10"),
    "dreambooth_zero_images": (lambda r, t: _db(t, "--images-per-concept", "0"), "--images-per-concept"),
    "dreambooth_unknown_concept": (lambda r, t: _db(t, "--concepts", "dragon"), "no DreamBooth subjects"),
    "dreambooth_sam_without_weights": (lambda r, t: _db(t, "--masker", "sam", "--sam-checkpoint", str(t / "no.pth")),
                                       "--sam-checkpoint"),
    "dreambooth_no_prompts": (lambda r, t: ["prepare-dreambooth", "--source", _cifar_tar(t)],
                              "prompts_and_classes.txt"),
    "celeba_bad_attributes": (lambda r, t: _celeba(r, t, attributes=_file(t, "attr.txt")),
                              "not a CelebA attribute file"),
    "celeba_zip_escape": (lambda r, t: _celeba(r, t, "../000001.jpg"), "unsafe archive member"),
    "celeba_negative_resolution": (lambda r, t: [*_celeba(r, t), "--resolution", "-1"], "--resolution"),
    "out_under_a_file": (lambda r, t: ["fetch-source", "--name", "cifar10", "--mirror", "none", "--out",
                                       str(Path(_file(t, "f")) / "out")], "File exists"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_writes_nothing(request, tmp_path, capsys, case):
    build, expected = CASES[case]
    argv = build(request, tmp_path)
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "results" / "out")]
    out = Path(argv[argv.index("--out") + 1])
    line = refused(capsys, argv)
    assert expected in line.split(": error: ", 1)[1], line
    assert not out.exists()
    assert not out.parent.is_dir() or [p.name for p in out.parent.iterdir() if p.name.startswith(".out.")] == []
