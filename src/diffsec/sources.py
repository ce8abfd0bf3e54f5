"""Checksummed external inputs.

Every file the pipeline reads from outside is declared in `diffsec.catalog` with its checksum
and canonical URL. A source is read from the mirror directory when one is configured (or
found), else downloaded; the bytes must match the checksum before anything is written.
A stage that reads a fetched source checks it again (`verify_source`): what it reads is the
file the catalog declares, inside the artifact it was given, with the catalog's digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
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


def _digests(path: Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file, every algorithm in one pass."""
    hs = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            for h in hs.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hs.items()}


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
            where, origin, (algorithm, expected) = _copy_from_mirror(src, mirror, tmp), "mirror", digest(src)
        else:
            where = origin = _download(src, tmp, timeout)
            algorithm, expected = ("sha256", src.url_sha256) if src.url_sha256 else digest(src)
        got = _digests(tmp, (algorithm,))[algorithm]
        if got != expected:
            raise DiffsecError(f"source {name}: {algorithm} mismatch for {where} "
                               f"(expected {expected[:16]}..., got {got[:16]}...)")
        final = dest_dir / (src.filename if origin == "mirror" else Path(src.url).name)
        os.replace(tmp, final)
        return final, origin
    finally:
        if tmp.exists():
            tmp.unlink()


def _copy_from_mirror(src: Source, mirror: Path, tmp: Path) -> Path:
    path = mirror / src.mirror_path
    if not path.is_file():
        raise DiffsecError(f"source {src.name}: {path} is missing from the mirror")
    shutil.copyfile(path, tmp)
    return path


def _download(src: Source, tmp: Path, timeout: float) -> str:
    if src.name in NOT_DOWNLOADABLE:
        raise DiffsecError(f"source {src.name}: no mirror configured and {src.url} cannot be "
                           "downloaded automatically; set `mirror:` to a directory holding "
                           f"{src.mirror_path}")
    try:
        with urllib.request.urlopen(src.url, timeout=timeout) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise DiffsecError(f"source {src.name}: no mirror configured and download of {src.url} "
                           f"failed ({reason})") from None
    return src.url


@dataclass(frozen=True)
class SourceFile:
    """A source file a stage is about to read, with its sha256 and how it was checked."""

    name: str  # catalog name
    path: Path
    sha256: str
    in_catalog: bool  # its digest is one the catalog declares for `name`

    def record(self) -> dict[str, str | bool]:
        return {"source": self.name, "file": self.path.name, "sha256": self.sha256,
                "verified": self.in_catalog}


def verify_source(path: str | os.PathLike, name: str) -> SourceFile:
    """The data file of source `name` that a stage reads, checked against the catalog now.

    `path` is a fetch-source artifact of `name`: its manifest's `file` must be a bare name of
    this source, a regular file directly inside `path` (no absolute path, `..` or link leaving
    it), whose bytes have a digest the catalog declares for `name` (mirror or upstream
    packaging); anything else is a DiffsecError, so a file swapped after the fetch is never
    read. A file named directly (a local copy, a test archive) is read as given: its digest is
    still compared and the answer recorded (`in_catalog`).
    """
    if name not in SOURCES:
        raise DiffsecError(f"unknown source {name!r} ({path})")
    p = Path(path)
    if p.is_dir():
        f = _artifact_file(p, SOURCES[name])
    elif p.is_file():
        f = p
    else:
        raise DiffsecError(f"no such source file or fetch-source artifact ({p})")
    ok, sha = _matches_catalog(f, SOURCES[name])
    if p.is_dir() and not ok:
        raise DiffsecError(f"source {name}: {f.name} does not match the catalog checksum "
                           f"(changed since it was fetched?) ({f})")
    return SourceFile(name, f, sha, ok)


def _artifact_file(d: Path, src: Source) -> Path:
    """The file a fetch-source artifact of `src` names in its manifest, confined to `d`."""
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        stage, fetched, file = manifest["stage"], manifest["params"]["name"], manifest["file"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DiffsecError(f"not a fetch-source artifact (no readable manifest.json) ({d})") from None
    if stage != "fetch-source" or fetched != src.name:
        raise DiffsecError(f"expected a fetch-source artifact of {src.name}, found {stage} of {fetched} ({d})")
    f = d / str(file)
    if str(file) not in (src.filename, Path(src.url).name) or f.resolve().parent != d.resolve():
        raise DiffsecError(f"manifest names {file!r}, not the {src.name} file inside the artifact ({d})")
    if not f.is_file():
        raise DiffsecError(f"source {src.name}: the fetched file is missing ({f})")
    return f


def _matches_catalog(f: Path, src: Source) -> tuple[bool, str]:
    """(the file's digest is one the catalog declares for `src`, its sha256)."""
    got = _digests(f, ("sha256", "md5") if src.md5 else ("sha256",))
    ok = got["sha256"] in {src.sha256, src.url_sha256} - {None, ""} or bool(src.md5 and got["md5"] == src.md5)
    return ok, got["sha256"]
