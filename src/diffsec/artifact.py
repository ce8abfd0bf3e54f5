"""Atomic artifact directories with provenance manifests.

Every stage writes into a temporary sibling directory and renames it into place only
when it finished, so a killed job never leaves something that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from diffsec import __version__

MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's sorted (relative name, file hash) list."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _code_version() -> str:
    """The git commit of the source tree (with a -dirty mark), or the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"diffsec-{__version__}"


def _packages() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "numpy", "scikit-learn", "piq", "clean-fid"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


class Artifact:
    """A directory being written; `path` is the temporary location, `final` the destination."""

    def __init__(self, final: Path, tmp: Path, stage: str, params: dict[str, Any]):
        self.final, self.path, self.stage, self.params = final, tmp, stage, params
        self.inputs: dict[str, str] = {}
        self.extra: dict[str, Any] = {}
        self.device = "cpu"
        self.seed: int | None = params.get("seed")
        self._t0 = time.time()

    def file(self, name: str) -> Path:
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add_input(self, name: str, path: str | os.PathLike) -> None:
        self.inputs[name] = hash_path(path)

    def manifest(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "params": self.params,
            "seed": self.seed,
            "inputs": self.inputs,
            "diffsec": __version__,
            "code_version": _code_version(),
            "packages": _packages(),
            "device": self.device,
            "host": platform.node(),
            "command": " ".join(sys.argv),
            "wall_time_s": round(time.time() - self._t0, 3),
            **self.extra,
        }


@contextlib.contextmanager
def artifact_dir(out: str | os.PathLike, stage: str, params: dict[str, Any]) -> Iterator[Artifact]:
    """Yield an Artifact writing to a temp dir next to `out`; rename into place on success."""
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    art = Artifact(final, tmp, stage, params)
    try:
        yield art
        (tmp / MANIFEST).write_text(json.dumps(art.manifest(), indent=2, sort_keys=True, default=str))
        _share(tmp)
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `out`; it replaces `out` only if the block finishes."""
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent, suffix=final.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _share(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _share(path: Path) -> None:
    """mkdtemp/mkstemp create private (0700/0600) paths: open them up like any normal output,
    so cluster nodes, DVC caches and colleagues can read what a stage wrote."""
    umask = os.umask(0)
    os.umask(umask)
    items = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in items:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(path) / MANIFEST).read_text())
