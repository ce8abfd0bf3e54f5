"""Checksummed external inputs.

Every file the pipeline reads from outside is declared in `diffsec.catalog` with its checksum
and canonical URL. A source is read from the mirror directory when one is configured (or
found), else downloaded; the bytes must match the checksum before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from diffsec.catalog import NOT_DOWNLOADABLE, SOURCES, Source
from diffsec.errors import DiffsecError


def digest(src: Source) -> tuple[str, str]:
    """(algorithm, expected hex digest) of a source's mirrored bytes."""
    return ("sha256", src.sha256) if src.sha256 else ("md5", src.md5 or "")


def default_mirror(repo_root: str | os.PathLike) -> Path | None:
    """`../shared/mirror` beside the repository, when it exists."""
    p = Path(repo_root).resolve().parent / "shared" / "mirror"
    return p if p.is_dir() else None


def resolve_mirror(mirror: str | None, repo_root: str | os.PathLike = ".") -> Path | None:
    """Config value -> mirror dir: 'auto' finds the default, '' or None means download only."""
    if mirror in (None, "", "none"):
        return None
    if mirror == "auto":
        return default_mirror(repo_root)
    p = Path(mirror)
    if not p.is_dir():
        raise DiffsecError(f"mirror directory {mirror!r} does not exist")
    return p


def _digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, dest_dir: str | os.PathLike, mirror: Path | None,
          timeout: float = 30.0) -> tuple[Path, str]:
    """Copy (or download) source `name` into dest_dir after verifying its checksum.

    Returns (path, origin) where origin is 'mirror' or the URL. Raises DiffsecError with a
    single-line message and leaves nothing in dest_dir on any failure.
    """
    if name not in SOURCES:
        raise DiffsecError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    src = SOURCES[name]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{src.filename}.", dir=dest_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if mirror is not None:
            path = mirror / src.mirror_path
            if not path.is_file():
                raise DiffsecError(f"source {name}: {path} is missing from the mirror")
            shutil.copyfile(path, tmp)
            (algorithm, expected), origin = digest(src), "mirror"
        else:
            if name in NOT_DOWNLOADABLE:
                raise DiffsecError(f"source {name}: no mirror configured and {src.url} cannot be "
                                   "downloaded automatically; set `mirror:` to a directory holding "
                                   f"{src.mirror_path}")
            try:
                with urllib.request.urlopen(src.url, timeout=timeout) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                raise DiffsecError(f"source {name}: no mirror configured and download of {src.url} "
                                   f"failed ({reason})") from None
            (algorithm, expected), origin = digest(src), src.url
            if src.url_sha256:
                algorithm, expected = "sha256", src.url_sha256
        got = _digest(tmp, algorithm)
        if got != expected:
            raise DiffsecError(f"source {name}: {algorithm} mismatch for {origin if origin != 'mirror' else path} "
                               f"(expected {expected[:16]}..., got {got[:16]}...)")
        final = dest_dir / (src.filename if origin == "mirror" else Path(src.url).name)
        os.replace(tmp, final)
        return final, origin
    finally:
        if tmp.exists():
            tmp.unlink()
