"""`diffsec fetch-source`: copy (mirror) or download one checksummed source into an artifact.

Its own module, so that its code inputs (the import closure) are the sources layer alone and
editing a dataset module does not rerun every fetch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_stage, params_of


def register(sub: argparse._SubParsersAction) -> None:
    p = add_stage(
        sub, "fetch-source", fetch_source, "copy or download one checksummed source", "Copy a declared source from "
        "the mirror (or download it), verify its checksum, and store it as an artifact.")
    p.add_argument("--name", required=True, help="source name, e.g. cifar10, mnist_test_images")
    p.add_argument("--mirror", default="auto", help="mirror directory, 'auto' (../shared/mirror beside the "
                   "current directory) or 'none' (download only) (default: auto)")


def fetch_source(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir, sha256_file
    from diffsec.sources import fetch, resolve_mirror

    mirror = resolve_mirror(args.mirror, Path.cwd())
    with artifact_dir(args.out, "fetch-source", params_of(args), protect=[mirror]) as art:
        path, origin = fetch(args.name, art.path, mirror)
        art.extra.update(file=path.name, origin=origin, mirror=str(mirror) if mirror else None,
                         sha256=sha256_file(path))
