"""Data safety: --out never replaces what it must not, sources are re-verified when read, archive
members cannot escape, and killed runs leave no litter that survives the next run.

Every refusal is one stderr line `diffsec <stage>: error: ...`, rc 2, with nothing deleted or written.
Sources are small fakes built in tmp_path (catalog entries patched to their checksums), except one
test that swaps a file fetched from the real mirror.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffsec.artifact import artifact_dir, atomic_file, check_out, read_manifest
from diffsec.catalog import SOURCES
from diffsec.cli.main import main
from diffsec.data.archive import iter_tar, zip_names
from diffsec.errors import DiffsecError
from diffsec.imageset import load_imageset
from test_data import _binary_cifar_tar

LABELS_FILE = "t10k-labels-idx1-ubyte.gz"


def idx_gz(arr: np.ndarray) -> bytes:
    """uint8 array -> gzipped IDX (magic 0x08 type, ndim, then big-endian dims)."""
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(head + arr.tobytes(), mtime=0)


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """fetch-source artifacts of 20 fake MNIST digits, their catalog entries patched to match."""
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = (np.arange(20) % 10).astype(np.uint8)
    for name, arr in (("mnist_test_images", images), ("mnist_test_labels", labels)):
        path = tmp_path / "mirror" / SOURCES[name].mirror_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(idx_gz(arr))
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        monkeypatch.setitem(SOURCES, name, dataclasses.replace(SOURCES[name], sha256=sha))
        out = tmp_path / "src" / name
        assert main(["fetch-source", "--name", name, "--mirror", str(tmp_path / "mirror"), "--out", str(out)]) == 0
    return tmp_path / "src" / "mnist_test_images", tmp_path / "src" / "mnist_test_labels"


def mnist_argv(images: Path | str, labels: Path | str, out: Path | str) -> list[str]:
    return ["prepare-mnist", "--images", str(images), "--labels", str(labels), "--classifier-train", "10",
            "--out", str(out)]


def refused(capsys, argv: list[str]) -> str:
    """Run a stage that must fail: rc 2 and exactly one stderr line `diffsec <stage>: error:`."""
    capsys.readouterr()
    rc = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"diffsec {argv[0]}: error: ")
    return lines[0]


def tree(root: Path) -> dict[str, str]:
    """Relative path -> content hash (or 'dir'/'link') of everything under root."""
    return {str(p.relative_to(root)): "link" if p.is_symlink() else "dir" if p.is_dir()
            else hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))}


def _dirs(tmp_path: Path, *parts: str) -> Path:
    d = tmp_path.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    (d / "keep.txt").write_text("precious")
    return d


# --out case -> (the --out value, the folder that must come through untouched, the --images value)
def _case(name, tmp_path, monkeypatch, images):
    work = _dirs(tmp_path, "work")
    if name == "dot":
        monkeypatch.chdir(work)
        return ".", work, images
    if name == "dotdot":
        monkeypatch.chdir(_dirs(work, "sub"))
        return "..", work, images
    if name == "ancestor":
        monkeypatch.chdir(_dirs(work, "a", "b"))
        return str(work), work, images
    if name == "existing_dir":
        return str(work), work, images
    if name == "other_stage":
        shutil.copytree(images, tmp_path / "fetched")
        return str(tmp_path / "fetched"), tmp_path / "fetched", images
    if name == "input_dir":
        return str(images), images, images
    if name == "input_file":
        return str(images / "t10k-images-idx3-ubyte.gz"), images, images / "t10k-images-idx3-ubyte.gz"
    if name == "inside_input":
        return str(images / "sub"), images, images
    if name == "holds_input":
        return str(images.parent), images.parent, images
    assert name == "symlink"
    (tmp_path / "link").symlink_to(work, target_is_directory=True)
    return str(tmp_path / "link"), work, images


OUT_CASES = ["dot", "dotdot", "ancestor", "existing_dir", "other_stage", "input_dir", "input_file",
             "inside_input", "holds_input", "symlink"]


@pytest.mark.parametrize("case", OUT_CASES)
def test_out_that_would_destroy_something_is_refused(fake_mnist, tmp_path, monkeypatch, capsys, case):
    images, labels = fake_mnist
    out, guard, images_arg = _case(case, tmp_path, monkeypatch, images)
    before, before_root = tree(guard), tree(tmp_path)
    line = refused(capsys, mnist_argv(images_arg, labels, out))
    assert "--out" in line
    assert tree(guard) == before and tree(tmp_path) == before_root  # nothing deleted, nothing written


def test_symlink_to_an_earlier_artifact_of_the_same_stage_is_refused(fake_mnist, tmp_path, capsys):
    images, labels = fake_mnist
    assert main(mnist_argv(images, labels, tmp_path / "prev")) == 0
    (tmp_path / "link").symlink_to(tmp_path / "prev", target_is_directory=True)
    before = tree(tmp_path / "prev")
    assert "symbolic link" in refused(capsys, mnist_argv(images, labels, tmp_path / "link"))
    assert tree(tmp_path / "prev") == before


def test_rerun_onto_an_earlier_artifact_of_the_same_stage_replaces_it(fake_mnist, tmp_path):
    images, labels = fake_mnist
    out = tmp_path / "results" / "mnist"
    assert main(mnist_argv(images, labels, out)) == 0
    first = {k: v for k, v in tree(out).items() if k != "manifest.json"}
    assert main(mnist_argv(images, labels, out)) == 0
    assert {k: v for k, v in tree(out).items() if k != "manifest.json"} == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist"]  # no temp or moved-aside copy left
    (tmp_path / "empty").mkdir()  # an empty directory holds nothing to lose
    assert main(mnist_argv(images, labels, tmp_path / "empty")) == 0


def test_check_out_runs_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DiffsecError, match="working directory"):
        check_out(".", "any-stage")
    with pytest.raises(DiffsecError, match="input"):
        check_out(tmp_path / "in" / "x", "any-stage", protect=[tmp_path / "in"])
    assert check_out(tmp_path / "new", "any-stage", protect=[None, ""]) == tmp_path / "new"
    with pytest.raises(DiffsecError, match="input"), artifact_dir(tmp_path / "in", "s", {}, protect=[tmp_path / "in"]):
        pytest.fail("the body must not run")
    assert list(tmp_path.iterdir()) == []


# --- sources are verified when they are read -------------------------------------------------------------------

def test_source_swapped_after_fetch_is_refused(fake_mnist, tmp_path, capsys):
    images, labels = fake_mnist
    (labels / LABELS_FILE).write_bytes(idx_gz(np.full(20, 3, np.uint8)))  # every digit becomes a 3
    assert "catalog checksum" in refused(capsys, mnist_argv(images, labels, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_real_mirror_labels_swapped_after_fetch_are_refused(mirror, tmp_path, capsys):
    for name in ("mnist_test_images", "mnist_test_labels"):
        assert main(["fetch-source", "--name", name, "--mirror", str(mirror), "--out", str(tmp_path / name)]) == 0
    images, labels = tmp_path / "mnist_test_images", tmp_path / "mnist_test_labels"
    (labels / LABELS_FILE).chmod(0o644)
    (labels / LABELS_FILE).write_bytes(idx_gz(np.full(10000, 3, np.uint8)))
    assert "catalog checksum" in refused(capsys, mnist_argv(images, labels, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink_out"])
def test_source_file_outside_the_artifact_is_refused(fake_mnist, tmp_path, capsys, how):
    """Even a file with the right bytes is refused when it lies outside the declared input."""
    images, labels = fake_mnist
    outside = tmp_path / "elsewhere" / LABELS_FILE
    outside.parent.mkdir()
    shutil.copyfile(labels / LABELS_FILE, outside)
    if how == "symlink_out":
        (labels / LABELS_FILE).unlink()
        (labels / LABELS_FILE).symlink_to(outside)
    else:
        m = read_manifest(labels)
        m["file"] = str(outside) if how == "absolute" else f"../../elsewhere/{LABELS_FILE}"
        (labels / "manifest.json").write_text(json.dumps(m))
    assert "inside the artifact" in refused(capsys, mnist_argv(images, labels, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_verified_sources_are_recorded(fake_mnist, tmp_path):
    images, labels = fake_mnist
    assert main(mnist_argv(images, labels, tmp_path / "out")) == 0
    m = read_manifest(tmp_path / "out")
    assert m["sources"]["labels"] == {"source": "mnist_test_labels", "file": LABELS_FILE, "verified": True,
                                      "sha256": SOURCES["mnist_test_labels"].sha256}
    assert m["inputs"]["labels"] == SOURCES["mnist_test_labels"].sha256


# --- archive members cannot escape ------------------------------------------------------------------------------

def _member(name: str, kind: str, size: int = 3) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if kind == "sym":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hard":
        info.type, info.linkname = tarfile.LNKTYPE, "db/cat/01.jpg"
    else:
        info.size = size
    return info


BAD_MEMBERS = {"dotdot": ("db/../LICENSE.md", "file", "'..'"), "absolute": ("/tmp/LICENSE.md", "file", "absolute"),
               "symlink": ("db/LICENSE.md", "sym", "symbolic link"), "hardlink": ("db/cat/02.jpg", "hard", "hard link")}

PROMPTS = ("Classes\nsubject_name,class\ncat,cat\n\nPrompts\nObject Prompts\n'a {0} {1} in the jungle'\n"
           "Live Subject Prompts\n'a {0} {1} in the snow'\n")


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def dreambooth_tar(path: Path, bad: tarfile.TarInfo | None = None) -> Path:
    """A valid one-subject DreamBooth archive, with one `bad` member after the good ones."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in (("db/cat/01.jpg", _jpeg()), ("db/prompts_and_classes.txt", PROMPTS.encode()),
                           ("db/LICENSE.md", b"CC-BY")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if bad is not None:
            tf.addfile(bad, io.BytesIO(b"pwn"[: bad.size]) if bad.isfile() else None)
    return path


@pytest.mark.parametrize("kind", BAD_MEMBERS)
def test_iter_tar_refuses_escaping_members(tmp_path, kind):
    name, typ, why = BAD_MEMBERS[kind]
    archive = dreambooth_tar(tmp_path / "a.tar.gz", _member(name, typ))
    with pytest.raises(DiffsecError, match="unsafe archive member") as e:
        list(iter_tar(archive, lambda n: True))
    assert why in str(e.value) and "\n" not in str(e.value)
    assert len(list(iter_tar(dreambooth_tar(tmp_path / "ok.tar.gz"), lambda n: True))) == 3


@pytest.mark.parametrize("kind", BAD_MEMBERS)
def test_prepare_dreambooth_refuses_escaping_members(tmp_path, capsys, kind):
    argv = ["prepare-dreambooth", "--resolution", "8", "--images-per-concept", "1", "--threads", "1"]
    good = dreambooth_tar(tmp_path / "ok.tar.gz")
    assert main([*argv, "--source", str(good), "--out", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "LICENSE.md").read_text() == "CC-BY"
    name, typ, why = BAD_MEMBERS[kind]
    bad = dreambooth_tar(tmp_path / "bad.tar.gz", _member(name, typ))
    assert why in refused(capsys, [*argv, "--source", str(bad), "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()


def test_prepare_cifar10_refuses_dotdot_member(tmp_path, capsys):
    # a `..` member that would replace the test batch with one record of label 120
    _binary_cifar_tar(tmp_path / "c.tar.gz", extra=(_member("../cifar-10-batches-bin/test_batch.bin", "file", 3073),))
    out = tmp_path / "out"
    assert main(["prepare-cifar10", "--source", str(tmp_path / "c.tar.gz"), "--out", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # progress bars share stderr
    assert last.startswith("diffsec prepare-cifar10: error: unsafe archive member") and not out.exists()


@pytest.mark.parametrize("name,attr", [("../000001.jpg", 0), ("/000001.jpg", 0), ("img/000001.jpg", 0o120777)])
def test_zip_names_refuses_escaping_members(tmp_path, name, attr):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("img/000002.jpg", b"ok")
        info = zipfile.ZipInfo(name)
        info.external_attr = attr << 16
        z.writestr(info, b"/etc/passwd")
    with zipfile.ZipFile(path) as z, pytest.raises(DiffsecError, match="unsafe archive member"):
        zip_names(path, z)


# --- litter of killed runs --------------------------------------------------------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_temp_dir_of_a_killed_run_is_swept_by_the_next_run(tmp_path):
    out = tmp_path / "x"
    code = ("import os, signal, sys\nfrom diffsec.artifact import artifact_dir\n"
            "with artifact_dir(sys.argv[1], 's', {}) as art:\n"
            "    art.file('half.txt').write_text('1')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", code, str(out)]).returncode == -signal.SIGKILL
    assert [p.name.startswith(".x.tmp-") for p in tmp_path.iterdir()] == [True]
    with artifact_dir(out, "s", {}) as art:
        art.file("done.txt").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_sweep_keeps_live_runs_and_other_outputs(tmp_path):
    live = subprocess.Popen(["sleep", "60"])
    try:
        names = {".x.tmp-123": "stale", f".x.tmp-{_dead_pid()}-abcd_123": "stale", ".x.tmp-ab12cd34": "stale",
                 f".x.tmp-{live.pid}-abcd1234": "kept", ".y.tmp-123": "kept", ".x.tmp-5.tmp-123": "kept"}
        for n in names:
            (tmp_path / n).mkdir()
        with artifact_dir(tmp_path / "x", "s", {}):
            pass
        kept = [n for n, v in names.items() if v == "kept"]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x", *kept])
    finally:
        live.kill()
        live.wait()


def test_atomic_file_sweeps_stale_temp_files(tmp_path):
    stale = tmp_path / f".t.npz.tmp-{_dead_pid()}-abcd1234.npz"
    stale.write_bytes(b"half")
    with atomic_file(tmp_path / "t.npz") as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz"]


# --- one error path ---------------------------------------------------------------------------------------------

def test_os_error_on_a_stage_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    line = refused(capsys, ["fetch-source", "--name", "mnist_test_labels", "--mirror", "none",
                            "--out", str(tmp_path / "file" / "out")])
    assert str(tmp_path / "file") in line


@pytest.mark.parametrize("exc", [RuntimeError("a bug"), OSError("no file named")])
def test_bugs_keep_their_traceback(monkeypatch, exc):
    def boom(args):
        raise exc

    monkeypatch.setattr("diffsec.cli.fetch.fetch_source", boom)
    with pytest.raises(type(exc)):
        main(["fetch-source", "--name", "x", "--out", "y"])


def test_imageset_written_after_a_killed_write_loads(tmp_path):
    """A stale temp next to an image set does not stop the next save, and the set loads."""
    from diffsec.imageset import save_imageset

    (tmp_path / ".s.npz.tmp-ab12cd34.npz").write_bytes(b"half")
    save_imageset(tmp_path / "s.npz", np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([0, 1]))
    assert load_imageset(tmp_path / "s.npz")["labels"].tolist() == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]
