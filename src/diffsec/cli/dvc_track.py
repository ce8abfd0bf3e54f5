"""`diffsec dvc-track`: put every finished artifact under results/ into the DVC cache.

Snakemake calls it once after a successful run (onsuccess), so DVC sees only finished
artifacts (they carry a manifest.json); tables stay in git.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("dvc-track", help="track finished artifacts in the DVC cache",
                       description="Find artifact directories (with a manifest.json) under RESULTS and "
                       "`dvc add` them, writing .dvc pointers for git. Does nothing outside a DVC repo.")
    p.add_argument("results", type=Path, nargs="?", default=Path("results"))
    p.add_argument("--remote", default="", help="also set this URL/path as the default DVC remote "
                   "(written to .dvc/config.local, so it stays out of git)")
    p.set_defaults(func=run)


def finished_artifacts(results: Path) -> list[Path]:
    """Outermost directories holding a manifest.json (nested pipeline dirs are inside them)."""
    found = sorted(p.parent for p in results.rglob("manifest.json"))
    top = [d for d in found if not any(o != d and o in d.parents for o in found)]
    return [d for d in top if not d.name.startswith(".")]


def run(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError

    if not Path(".dvc").is_dir():
        print("dvc-track: not a DVC repository (no .dvc/ here); nothing tracked")
        return
    arts = finished_artifacts(args.results)
    if args.remote:
        subprocess.run(["dvc", "remote", "add", "--local", "-d", "-f", "diffsec", args.remote], check=True)
    if not arts:
        return
    p = subprocess.run(["dvc", "add", "-q", *map(str, arts)], capture_output=True, text=True)
    if p.returncode != 0:
        raise DiffsecError(f"dvc add failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
    print(f"dvc-track: {len(arts)} artifacts tracked")
