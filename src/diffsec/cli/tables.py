"""Table stages: gather measured metrics.json files into results/tables/<name>.csv (+ .md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("table-worlds", help="the world-model sanity table (worlds.csv)",
                       description="Collect the foundation's measurements (classifier accuracies, DDPM "
                       "FID against the reference FID of real train images, text-to-image class "
                       "fidelity) into one long-format table.")
    p.add_argument("--resnet", type=Path, nargs="+", required=True, help="classifier-resnet artifacts")
    p.add_argument("--mnist", type=Path, required=True, help="train-mnist-classifier artifact")
    p.add_argument("--ddpm-fid", type=Path, required=True, help="eval-fid artifact: DDPM samples vs test")
    p.add_argument("--train-fid", type=Path, required=True, help="eval-fid artifact: train images vs test")
    p.add_argument("--t2i-class", type=Path, required=True, help="eval-class artifact on the T2I samples")
    p.add_argument("--profile", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="CSV path (a .md is written beside it)")
    p.set_defaults(func=run_worlds)


def _load(path: Path, name: str) -> dict:
    from diffsec.errors import DiffsecError

    f = path / name
    if not f.is_file():
        raise DiffsecError(f"{f} is missing: is {path} a finished artifact?")
    return json.loads(f.read_text())


def run_worlds(args: argparse.Namespace) -> None:
    from diffsec.tables import Cell, write_table

    common = {"table": "worlds", "profile": args.profile, "seed": args.seed}
    cells = []
    data_note = "CIFAR-10 test (mirror JPEG q75)"
    for d in args.resnet:
        ev = _load(d, "eval.json")
        cells.append(Cell(row=ev["arch"], column=data_note, metric="accuracy", backbone="",
                          value=ev["accuracy"], paper_value=_top1(ev),
                          n_samples=ev["n"], **common))
    ev = _load(args.mnist, "eval.json")
    cells.append(Cell(row="mnist-cnn", column="MNIST held-out", metric="accuracy", backbone="",
                      value=ev["heldout_accuracy"], n_samples=ev["n_heldout"], **common))
    for row, d in (("ddpm samples", args.ddpm_fid), ("CIFAR-10 train images", args.train_fid)):
        m = _load(d, "metrics.json")
        for metric in ("fid", "precision", "recall"):
            cells.append(Cell(row=row, column="vs CIFAR-10 test", metric=metric, backbone=m["backbone"],
                              value=m[metric], n_samples=m["n_fake"], **common))
    m = _load(args.t2i_class, "metrics.json")
    cells.append(Cell(row="t2i 'a photo of a <class>' samples", column="prompted class",
                      metric="accuracy", backbone=m["classifier"], value=m["accuracy"],
                      n_samples=m["n"], **common))
    write_table(cells, args.out)


def _top1(ev: dict):
    """akamaster reports top-1 in percent on the original (PNG) CIFAR-10 test set."""
    return ev["reported_top1"] / 100 if ev.get("reported_top1") else ""
