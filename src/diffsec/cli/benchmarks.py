"""`diffsec benchmarks`: summarize Snakemake benchmark files (one per rule) for the README."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("benchmarks", help="per-stage wall time and peak memory as a Markdown table",
                       description="Read every benchmarks/**/*.tsv that Snakemake wrote (one per job) and "
                       "print a Markdown table: job, wall seconds, peak RSS (MiB), mean CPU load.")
    p.add_argument("dir", type=Path, nargs="?", default=Path("benchmarks"))
    p.set_defaults(func=run)


def rows(directory: Path) -> list[tuple[str, float, float, float]]:
    out = []
    for f in sorted(directory.rglob("*.tsv")):
        with open(f, newline="") as fh:
            recs = list(csv.DictReader(fh, delimiter="\t"))
        if not recs:
            continue
        r = recs[-1]  # the latest run of this job

        def num(key: str) -> float:
            try:
                return float(r.get(key, "nan"))
            except ValueError:  # Snakemake writes "-" where it could not measure
                return float("nan")

        out.append((str(f.relative_to(directory).with_suffix("")), num("s"), num("max_rss"), num("mean_load")))
    return out


def run(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError

    table = rows(args.dir)
    if not table:
        raise DiffsecError(f"no benchmark files under {args.dir}")
    print("| job | wall (s) | peak RSS (MiB) | mean CPU load (%) |\n|---|---:|---:|---:|")
    for name, s, rss, load in sorted(table, key=lambda t: -t[1]):
        print(f"| {name} | {s:.1f} | {rss:.0f} | {load:.0f} |")
    print(f"| **total (sequential)** | {sum(t[1] for t in table):.1f} | | |")
