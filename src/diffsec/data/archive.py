"""Reading source archives member by member, refusing members that could escape.

Nothing is ever extracted to disk: a stage reads the bytes of the members it wants. A member
whose name climbs out with `..`, is absolute (`/x`, `C:\\x`), or that is a link (symlink or
hard link, whose target is another path) or a device/FIFO is refused with a one-line
DiffsecError, before its bytes are used, so an archive can never feed a file from outside
itself, or two names for one file, into an artifact.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator

from diffsec.errors import DiffsecError


def unsafe_name(name: str) -> str | None:
    """Why a member name is unsafe (`..` component, absolute path), or None."""
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in parts:
        return "climbs out with '..'"
    return None


def _refuse(archive: str | os.PathLike, name: str, why: str) -> DiffsecError:
    return DiffsecError(f"unsafe archive member {name!r}: {why}; refusing the archive ({archive})")


def check_tar_member(archive: str | os.PathLike, m: tarfile.TarInfo) -> None:
    if why := unsafe_name(m.name):
        raise _refuse(archive, m.name, why)
    if m.issym() or m.islnk():
        kind = "symbolic" if m.issym() else "hard"
        raise _refuse(archive, m.name, f"is a {kind} link to {m.linkname!r}")
    if not (m.isfile() or m.isdir()):
        raise _refuse(archive, m.name, "is not a regular file or directory")


def iter_tar(archive: str | os.PathLike, want: Callable[[str], bool],
             progress: Callable[[Iterable], Iterable] = iter) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every regular member whose name `want`s, in archive order.

    One sequential pass (`r|*`, any compression: seeking back in a .gz would re-inflate it);
    every member, wanted or not, is checked first. `progress` wraps the member iteration
    (e.g. a tqdm bar).
    """
    try:
        with tarfile.open(archive, "r|*") as tf:
            for m in progress(tf):
                check_tar_member(archive, m)
                if m.isfile() and want(m.name):
                    yield m.name, tf.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DiffsecError(f"not a readable tar archive: {e} ({archive})") from None


def zip_names(archive: str | os.PathLike, zf: zipfile.ZipFile) -> list[str]:
    """The file names of an open zip, after checking every member (no `..`, absolute or link)."""
    names = []
    for info in zf.infolist():
        if why := unsafe_name(info.filename):
            raise _refuse(archive, info.filename, why)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _refuse(archive, info.filename, "is a symbolic link")
        if not info.is_dir():
            names.append(info.filename)
    return names
