"""Published worlds: installed by checksum and safe unpacking, loadable, and built with the settings
config.yaml states; `published: ""` still trains them in the DAG."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from diffsec.cli.main import main
from diffsec.errors import DiffsecError
from diffsec.worlds import unpack_world

WORLDS = {"ddpm-cifar10": "ddpm", "t2i-cifar10": "t2i", "clip-cifar10": "clip", "mnist-classifier": "mnist_classifier"}


def _archive(mirror: Path, world: str) -> Path:
    return mirror / "worlds" / f"{world}.tar.gz"


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err.strip()


@pytest.fixture(scope="module")
def t2i_world(tmp_path_factory, mirror) -> Path:
    out = tmp_path_factory.mktemp("w") / "t2i-cifar10"
    assert main(["install-world", "--source", str(_archive(mirror, "t2i-cifar10")), "--world", "t2i-cifar10",
                 "--out", str(out)]) == 0
    return out


def test_installed_world_is_the_archive_byte_for_byte(t2i_world, mirror):
    with tarfile.open(_archive(mirror, "t2i-cifar10")) as tf:
        files = {m.name.split("/", 1)[1]: tf.extractfile(m).read() for m in tf if m.isfile()}
    built_by = json.loads(files.pop("manifest.json"))
    got = {str(p.relative_to(t2i_world)): p.read_bytes() for p in t2i_world.rglob("*") if p.is_file()}
    manifest = json.loads(got.pop("manifest.json"))
    assert got == files
    assert manifest["stage"] == "install-world" and manifest["built_by"] == built_by
    assert manifest["source"]["source"] == "world_t2i-cifar10" and manifest["source"]["verified"] is True


def test_installed_t2i_world_runs_in_stable_diffusion_pipeline(t2i_world):
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(t2i_world / "pipeline", safety_checker=None)
    g = torch.Generator().manual_seed(0)
    out = pipe(["a photo of a horse"], num_inference_steps=3, guidance_scale=6.0, height=32, width=32,
               generator=g, output_type="np").images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all() and out.std() > 0.01


def test_tampered_world_archive_is_refused_with_nothing_written(tmp_path, mirror, capsys):
    bad = tmp_path / "ddpm-cifar10.tar.gz"
    data = bytearray(_archive(mirror, "ddpm-cifar10").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    out = tmp_path / "world"
    rc, err = _run(capsys, "install-world", "--source", str(bad), "--world", "ddpm-cifar10", "--out", str(out))
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("diffsec install-world: error:")
    assert "not the catalog's" in err
    assert not out.exists() and not list(tmp_path.glob(".world.tmp-*"))


def test_swapped_file_in_a_fetched_world_is_refused(tmp_path, mirror, capsys):
    src = tmp_path / "src"
    assert main(["fetch-source", "--name", "world_mnist-classifier", "--mirror", str(mirror), "--out", str(src)]) == 0
    shutil.copyfile(_archive(mirror, "ddpm-cifar10"), src / "mnist-classifier.tar.gz")
    rc, err = _run(capsys, "install-world", "--source", str(src), "--world", "mnist-classifier",
                   "--out", str(tmp_path / "w"))
    assert rc == 2 and len(err.splitlines()) == 1 and "checksum" in err
    assert not (tmp_path / "w").exists()


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return path


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


MANIFEST = ("w/manifest.json", b'{"stage": "train-ddpm"}')


@pytest.mark.parametrize("member, why", [
    (("w/../evil.txt", b"x"), "'..'"),
    (("/etc/evil.txt", b"x"), "absolute"),
    (_link("w/link", "/etc/passwd", tarfile.SYMTYPE), "symbolic link"),
    (_link("w/hard", "w/manifest.json", tarfile.LNKTYPE), "hard link"),
    (("other/file.txt", b"x"), "not inside the world folder"),
])
def test_unsafe_world_members_are_refused(tmp_path, member, why):
    archive = _tar(tmp_path / "w.tar.gz", [MANIFEST, member])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DiffsecError, match=why):
        unpack_world(archive, "w", dest)
    assert not (tmp_path / "evil.txt").exists()


def test_published_worlds_were_built_with_the_settings_config_states(mirror):
    """config.yaml's world blocks are what `published: ""` trains: they must be the published builds'."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for world, key in WORLDS.items():
        cfg = config["worlds"][key]
        assert cfg["published"] == f"world_{world}"
        with tarfile.open(_archive(mirror, world)) as tf:
            built = json.loads(tf.extractfile(f"{world}/manifest.json").read())["params"]
        for k, v in cfg.items():
            if k != "published":
                assert built[k] == v, f"worlds.{key}.{k}: config {v!r}, published build {built[k]!r}"


def _dry_run(tmp_path: Path, *configs: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "results/tables/szt.csv",
           *(["--configfile", *configs] if configs else []), "--directory", str(tmp_path)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_tiny_installs_published_worlds_and_tiny_train_trains_them(tmp_path):
    tiny = _dry_run(tmp_path)
    assert "install_world" in tiny and "rule train_t2i" not in tiny and "rule train_ddpm" not in tiny
    trained = _dry_run(tmp_path, str(REPO / "workflow/configs/tiny-train.yaml"))
    assert "install_world" not in trained
    for rule in ("train_t2i", "train_ddpm", "train_clip"):
        assert f"rule {rule}:" in trained
