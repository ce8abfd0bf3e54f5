"""Checksummed sources: good fetches reproduce SHA256SUMS; every failure is one line and leaves nothing."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from diffsec.artifact import read_manifest, sha256_file
from diffsec.cli.main import main
from diffsec.errors import DiffsecError
from diffsec.sources import SOURCES, default_mirror, fetch, verify_source

REPO = Path(__file__).resolve().parents[1]
MIRROR = default_mirror(REPO)  # ../shared/mirror beside the checkout
needs_mirror = pytest.mark.skipif(MIRROR is None, reason="no ../shared/mirror")
LABELS = "mnist_test_labels"  # the smallest source (4.5 kB)


@pytest.fixture
def bad_mirror(tmp_path: Path) -> Path:
    """A mirror tree holding the MNIST labels file with one byte flipped."""
    if MIRROR is None:
        pytest.skip("no ../shared/mirror")
    root = tmp_path / "bad_mirror"
    dest = root / SOURCES[LABELS].mirror_path
    dest.parent.mkdir(parents=True)
    shutil.copyfile(MIRROR / SOURCES[LABELS].mirror_path, dest)
    data = bytearray(dest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dest.write_bytes(bytes(data))
    return root


@pytest.fixture
def offline(monkeypatch):
    """Point the labels source at a closed local port: the download fails at once."""
    monkeypatch.setitem(SOURCES, LABELS, dataclasses.replace(SOURCES[LABELS], url="http://127.0.0.1:9/x"))


def _one_line_error(fn) -> str:
    with pytest.raises(DiffsecError) as e:
        fn()
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def _read_sums() -> dict[str, str]:
    sums = {}
    for line in (MIRROR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    return sums


@needs_mirror
@pytest.mark.parametrize("name", [LABELS, "mnist_test_images"])
def test_mirror_fetch_matches_sha256sums(tmp_path, name):
    path, origin = fetch(name, tmp_path / "dest", MIRROR)
    assert origin == "mirror"
    assert sha256_file(path) == _read_sums()[SOURCES[name].mirror_path] == SOURCES[name].sha256
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == [path.name]


@needs_mirror
def test_every_source_declared_in_sha256sums():
    sums = _read_sums()
    for s in SOURCES.values():
        if s.sha256:  # md5-only sources (CelebA) are not in the shared mirror
            assert sums[s.mirror_path] == s.sha256, s.name
        else:
            assert s.md5 and s.mirror_path not in sums, s.name


@pytest.fixture
def md5_mirror(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(mirror root, its celeba_partition file), the catalog's md5 patched to the file's."""
    import hashlib

    root = tmp_path / "mirror"
    path = root / SOURCES["celeba_partition"].mirror_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"000001.jpg 0\n000002.jpg 2\n")
    monkeypatch.setitem(SOURCES, "celeba_partition", dataclasses.replace(
        SOURCES["celeba_partition"], md5=hashlib.md5(path.read_bytes()).hexdigest()))
    return root, path


def test_md5_source_is_verified_by_md5(tmp_path, md5_mirror):
    """CelebA's publishers give md5s only: a mirror file is checked against the md5."""
    root, path = md5_mirror
    got, origin = fetch("celeba_partition", tmp_path / "ok", root)
    assert origin == "mirror" and got.read_bytes() == path.read_bytes()
    path.write_bytes(b"000001.jpg 1\n000002.jpg 2\n")
    msg = _one_line_error(lambda: fetch("celeba_partition", tmp_path / "bad", root))
    assert "md5 mismatch" in msg and list((tmp_path / "bad").iterdir()) == []


def test_read_time_check_uses_the_catalog_md5(tmp_path, md5_mirror):
    """A stage reading an md5-only source checks the md5 again; a file named directly is read as
    given, with whether its bytes are the catalog's recorded."""
    root, path = md5_mirror
    out = tmp_path / "fetched"
    assert main(["fetch-source", "--name", "celeba_partition", "--mirror", str(root), "--out", str(out)]) == 0
    assert verify_source(out, "celeba_partition").in_catalog
    assert verify_source(path, "celeba_partition").in_catalog
    local = tmp_path / "local.txt"
    local.write_bytes(b"000001.jpg 1\n000002.jpg 2\n")
    assert not verify_source(local, "celeba_partition").in_catalog
    (out / path.name).write_bytes(local.read_bytes())
    assert "catalog checksum" in _one_line_error(lambda: verify_source(out, "celeba_partition"))


def test_celeba_without_mirror_says_where_to_put_it(tmp_path):
    msg = _one_line_error(lambda: fetch("celeba_images", tmp_path / "dest", None))
    assert "celeba/img_align_celeba.zip" in msg and "mirror" in msg
    assert list((tmp_path / "dest").iterdir()) == []


def test_corrupted_mirror_file(tmp_path, bad_mirror):
    dest = tmp_path / "dest"
    msg = _one_line_error(lambda: fetch(LABELS, dest, bad_mirror))
    assert "sha256 mismatch" in msg
    assert list(dest.iterdir()) == []  # neither the file nor a temp file


def test_missing_mirror_file(tmp_path):
    (tmp_path / "empty_mirror").mkdir()
    dest = tmp_path / "dest"
    msg = _one_line_error(lambda: fetch(LABELS, dest, tmp_path / "empty_mirror"))
    assert "missing from the mirror" in msg
    assert list(dest.iterdir()) == []


def test_no_mirror_no_network(tmp_path, offline):
    dest = tmp_path / "dest"
    msg = _one_line_error(lambda: fetch(LABELS, dest, None, timeout=5))
    assert "download" in msg and "127.0.0.1:9" in msg
    assert list(dest.iterdir()) == []


def test_unknown_source(tmp_path):
    msg = _one_line_error(lambda: fetch("no_such_source", tmp_path / "dest", None))
    assert "unknown source" in msg and "cifar10" in msg
    assert not (tmp_path / "dest").exists() or list((tmp_path / "dest").iterdir()) == []


@pytest.mark.parametrize("case", ["corrupt", "offline", "unknown"])
def test_cli_failure_is_one_line_and_leaves_no_artifact(tmp_path, capsys, request, case):
    name, mirror = LABELS, "none"
    if case == "corrupt":
        mirror = str(request.getfixturevalue("bad_mirror"))
    elif case == "offline":
        request.getfixturevalue("offline")
    else:
        name = "no_such_source"
    out = tmp_path / "results" / "src"
    rc = main(["fetch-source", "--name", name, "--mirror", mirror, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("diffsec fetch-source: error:")
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary artifact directory either


@needs_mirror
def test_cli_fetch_writes_verified_artifact(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # --mirror auto resolves beside the current directory
    out = tmp_path / "labels"
    assert main(["fetch-source", "--name", LABELS, "--mirror", "auto", "--out", str(out)]) == 0
    m = read_manifest(out)
    assert m["origin"] == "mirror" and m["sha256"] == SOURCES[LABELS].sha256
    assert sha256_file(out / m["file"]) == SOURCES[LABELS].sha256
    assert sorted(p.name for p in out.iterdir()) == sorted([m["file"], "manifest.json"])


def test_cli_bad_mirror_dir(tmp_path, capsys):
    out = tmp_path / "x"
    rc = main(["fetch-source", "--name", LABELS, "--mirror", str(tmp_path / "nope"), "--out", str(out)])
    assert rc == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()
