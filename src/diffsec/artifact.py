"""Atomic artifact directories with provenance manifests.

Every stage writes into a temporary sibling directory (`.NAME.tmp-<pid>-<random>`) and renames
it into place only when it finished, so a killed job never leaves something that looks complete;
the next run of the same output sweeps such leftovers. `--out` is checked before anything runs
(`check_out`): it may only name a new path or an earlier artifact of the same stage, never the
working directory, an ancestor of it, a symlink, or one of the stage's inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from diffsec import __version__
from diffsec.errors import DiffsecError

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
        """A path inside the artifact (parents made); a name that would leave it is a bug."""
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"artifact file name {name!r} leaves the artifact")
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
            "resources": _resources(),
            **self.extra,
        }


def _resources() -> dict[str, float]:
    """This process's peak resident memory and CPU seconds so far (Linux ru_maxrss is in KiB), and
    whether it was a warm-start child (diffsec.warm). Written by the stage itself, since
    Snakemake's benchmark file sees only the thin client of a warm-start child; such a child does
    not count the server's pages it never touched, so its peak is below a cold run's."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss_mib": round(ru.ru_maxrss / 1024, 1), "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "warm_start": bool(os.environ.get("DIFFSEC_WARM_CHILD"))}


def check_out(out: str | os.PathLike, stage: str, protect: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse an --out that replacing would destroy something; return it as a Path.

    --out may name a path that does not exist yet, an empty directory, or an earlier artifact
    of the same stage (its manifest says so). Never the working directory or one of its
    parents, never a symlink, never an input (`protect`), a path inside one, or a folder
    holding one. Runs before anything is computed, and again just before the rename.
    """
    final = Path(out)
    where = Path(os.path.abspath(final))
    if final.is_symlink():
        raise DiffsecError(f"--out is a symbolic link, refusing to replace it ({where})")
    real = final.resolve()
    if Path.cwd().resolve().is_relative_to(real):
        raise DiffsecError(f"--out is the working directory or one of its parents ({where})")
    for p in protect:
        if p is None or str(p) == "":
            continue
        inp = Path(p).resolve()
        if real == inp or real.is_relative_to(inp) or inp.is_relative_to(real):
            how = "is" if real == inp else "lies inside" if real.is_relative_to(inp) else "contains"
            raise DiffsecError(f"--out {how} the stage's input {p}, refusing to replace it ({where})")
    if final.exists():
        _check_replaceable(final, stage, where)
    return final


def _check_replaceable(final: Path, stage: str, where: Path) -> None:
    """An existing --out must be an empty directory or an earlier artifact of `stage`."""
    if not final.is_dir():
        raise DiffsecError(f"--out exists and is a file, not a {stage} artifact ({where})")
    if not any(final.iterdir()):
        return
    try:
        found = json.loads((final / MANIFEST).read_text()).get("stage")
    except (OSError, ValueError, AttributeError):
        found = None
    if found != stage:
        what = f"a {found} artifact" if found else "a directory without an artifact manifest"
        raise DiffsecError(f"--out exists and is {what}, not an earlier {stage} artifact ({where})")


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.tmp-"


def sweep_temps(final: Path) -> None:
    """Remove the temporary siblings (`.NAME.tmp-*`) that killed runs of `final` left behind.

    Temporaries are named `.NAME.tmp-<pid>-<random>`; one whose process still runs on this
    host is left alone. Names without a pid (older runs) count as stale.
    """
    prefix = _temp_prefix(final)
    if not final.parent.is_dir():
        return
    for p in final.parent.iterdir():
        rest = p.name[len(prefix):] if p.name.startswith(prefix) else ""
        if final.suffix and rest.endswith(final.suffix):
            rest = rest[: -len(final.suffix)]
        m = re.fullmatch(r"(?:(\d+)-)?[a-z0-9_]+", rest)
        if m is None or (m.group(1) and _alive(int(m.group(1)))):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def artifact_dir(out: str | os.PathLike, stage: str, params: dict[str, Any], *,
                 protect: Iterable[str | os.PathLike | None] = ()) -> Iterator[Artifact]:
    """Yield an Artifact writing to a temp dir next to `out`; rename into place on success.

    `out` is checked first (`check_out`, with `protect` = the stage's inputs) and again before
    the rename; temporaries of earlier killed runs of `out` are swept.
    """
    protect = tuple(protect)
    final = check_out(out, stage, protect)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(final)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(final)}{os.getpid()}-", dir=final.parent))
    art = Artifact(final, tmp, stage, params)
    try:
        yield art
        (tmp / MANIFEST).write_text(json.dumps(art.manifest(), indent=2, sort_keys=True, default=str))
        _share(tmp)
        check_out(final, stage, protect)
        _replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _replace(tmp: Path, final: Path) -> None:
    """Move an earlier artifact aside (a swept temp name), put `tmp` in its place, drop the old one."""
    old = final.parent / f"{_temp_prefix(final)}{os.getpid()}-old"
    if old.exists():  # left by an earlier process that had the same pid
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


@contextlib.contextmanager
def atomic_file(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `out`; it replaces `out` only if the block finishes.

    Temporaries of earlier killed writes of `out` are swept first.
    """
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(final)
    fd, name = tempfile.mkstemp(prefix=f"{_temp_prefix(final)}{os.getpid()}-", dir=final.parent,
                                suffix=final.suffix)
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
