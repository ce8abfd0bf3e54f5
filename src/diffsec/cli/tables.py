"""Table stages: gather measured metrics.json files into results/tables/<name>.csv (+ .md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffsec.paper.szt import TABLES as SZT_TABLES  # table shapes only: no heavy imports


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

    p = sub.add_parser("table-szt", help="one SZT table (szt, szt_timestep, szt_masking, szt_dilation)",
                       description="Fill one of the SZT paper's tables from eval-ti artifacts, one per "
                       "defense column, with the paper's number beside each cell.")
    p.add_argument("--table", required=True, choices=list(SZT_TABLES))
    p.add_argument("--metrics", type=Path, nargs="+", required=True,
                   help="eval-ti artifacts; each one's label names its defense")
    p.add_argument("--profile", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="CSV path (a .md is written beside it)")
    p.set_defaults(func=run_szt)


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


def run_szt(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.errors import DiffsecError
    from diffsec.paper import paper_values
    from diffsec.paper.szt import METRICS, POISON_AVG, ROWS, TABLES
    from diffsec.tables import Cell, write_table

    shape, paper = TABLES[args.table], paper_values("szt")
    by_defense = {}
    for d in args.metrics:
        m = _load(d, "metrics.json")
        by_defense[m["label"]] = m
    cells = []
    for col, defense in shape["columns"].items():
        if defense not in by_defense:
            raise DiffsecError(f"table {args.table}: no eval-ti artifact for defense {defense!r} "
                               f"(column {col}); got {sorted(by_defense)}")
        m = by_defense[defense]
        for metric in METRICS:
            poisons = []
            for row in shape["rows"]:
                per = m["per_set"].get(ROWS[row])
                if per is None:
                    raise DiffsecError(f"defense {defense!r} has no runs on set {ROWS[row]!r}")
                if row != "Clean":
                    poisons.append(per)
                cells.append(Cell(table=args.table, row=row, column=col, metric=metric,
                                  backbone=m["backbones"][metric], value=per[metric],
                                  paper_value=paper.get((args.table, row, col, metric), ""),
                                  profile=args.profile, n_samples=per["n_generated"], seed=args.seed))
            if len(poisons) == 6:  # the paper averages the six poisons
                cells.append(Cell(table=args.table, row=POISON_AVG, column=col, metric=metric,
                                  backbone=m["backbones"][metric],
                                  value=float(np.mean([p[metric] for p in poisons])),
                                  paper_value=paper.get((args.table, POISON_AVG, col, metric), ""),
                                  profile=args.profile, n_samples=sum(p["n_generated"] for p in poisons),
                                  seed=args.seed))
    write_table(cells, args.out)
