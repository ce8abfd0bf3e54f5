"""Published worlds: world-model artifacts that this project's own DAG built, installed by name.

A published world is one artifact directory exactly as a training stage wrote it
(`results/models/<world>/`, its `manifest.json` inside), packed as `<world>.tar.gz` and declared
in the catalog as source `world_<world>` with its sha256 (read from the mirror; no canonical URL).
Users of this field download SD 1.5 by name rather than train it; the tiny profile does the same
with its own worlds, and `pretrained`/training stay one config switch away.

Installing (`install_world`) is fetch + verify + unpack:

1. the archive's sha256 must be the catalog's (`sources.verify_source`: a swapped or tampered
   archive is refused in one line and nothing is written);
2. every member is checked before its bytes are used (`data.archive.iter_tar`: no `..`, absolute
   path, link or device), and must lie under the single top folder `<world>/`;
3. the files are written byte for byte into the new artifact; the published `manifest.json` is not
   copied as a file but recorded whole under `built_by` in the new artifact's manifest, so the
   provenance chain reads: this install (source, sha256) <- the run that built the world (its
   params, inputs, code version, host, wall time).
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from diffsec.errors import DiffsecError

PREFIX = "world_"
MANIFEST = "manifest.json"


def source_name(world: str) -> str:
    """The catalog source that publishes `world` (e.g. ddpm-cifar10 -> world_ddpm-cifar10)."""
    return PREFIX + world


def _relative(member: str, world: str, archive: str | os.PathLike) -> PurePosixPath | None:
    """The member's path inside the world folder (None for the folder itself)."""
    parts = PurePosixPath(member).parts
    if not parts or parts[0] != world:
        raise DiffsecError(f"archive member {member!r} is not inside the world folder {world}/ ({archive})")
    return PurePosixPath(*parts[1:]) if len(parts) > 1 else None


def unpack_world(archive: str | os.PathLike, world: str, dest: str | os.PathLike) -> dict:
    """Write the world's files into `dest` (an empty artifact directory); return the published
    manifest. The archive must already be verified against the catalog."""
    from diffsec.data.archive import iter_tar

    dest = Path(dest)
    built_by, n = None, 0
    for name, data in iter_tar(archive, lambda _: True):
        rel = _relative(name, world, archive)
        if rel is None:
            continue
        if rel == PurePosixPath(MANIFEST):
            try:
                built_by = json.loads(data)
            except ValueError:
                raise DiffsecError(f"{world}/{MANIFEST} is not JSON ({archive})") from None
            continue
        out = dest.joinpath(*rel.parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        n += 1
    if built_by is None or not n:
        raise DiffsecError(f"not a published world: no {world}/{MANIFEST} or no files ({archive})")
    return built_by


def install_world(source: str | os.PathLike, world: str, dest: str | os.PathLike) -> dict:
    """Verify `source` (a fetch-source artifact of `world_<world>`, or the archive itself) against
    the catalog and unpack it into `dest`. Returns what the manifest records: the source (name,
    file, sha256) and the published world's own manifest (`built_by`)."""
    from diffsec.sources import verify_source

    src = verify_source(source, source_name(world))
    if not src.in_catalog:
        raise DiffsecError(f"{src.path.name}: sha256 {src.sha256[:12]}... is not the catalog's for "
                           f"{source_name(world)} (tampered or another build?) ({src.path})")
    built_by = unpack_world(src.path, world, dest)
    if built_by.get("stage") is None:
        raise DiffsecError(f"{world}/{MANIFEST} names no stage: not an artifact of this project ({src.path})")
    return {"source": src.record(), "built_by": built_by}
