"""`diffsec dvc-track`: put every finished artifact (a directory with a manifest.json) under results/
into the DVC cache; Snakemake calls it after a successful run. dvc gets argument lists, never a shell."""

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
    return [d for d in found if not d.name.startswith(".") and not any(o in d.parents for o in found)]


def run(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError

    if not Path(".dvc").is_dir():
        print("dvc-track: not a DVC repository (no .dvc/ here); nothing tracked")
        return
    if args.remote:
        subprocess.run(["dvc", "remote", "add", "--local", "-d", "-f", "diffsec", args.remote], check=True)
    arts = finished_artifacts(args.results)
    p = subprocess.run(["dvc", "add", "-q", *map(str, arts)], capture_output=True, text=True) if arts else None
    if p is not None and p.returncode != 0:
        raise DiffsecError(f"dvc add failed: {(p.stderr.strip().splitlines() or [p.returncode])[-1]}")
    print(f"dvc-track: {len(arts)} artifacts tracked")
