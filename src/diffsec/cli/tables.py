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
    p.add_argument("--t2i-vae", type=Path, default=None,
                   help="eval-class --vae-roundtrip artifact: the T2I VAE's ceiling on test images")
    _table_args(p)
    p.set_defaults(func=run_worlds)

    p = sub.add_parser("table-szt", help="one SZT table (szt, szt_timestep, szt_masking, szt_dilation)",
                       description="Fill one of the SZT paper's tables from eval-ti artifacts, one per "
                       "defense column, with the paper's number beside each cell.")
    p.add_argument("--table", required=True, choices=list(SZT_TABLES))
    p.add_argument("--metrics", type=Path, nargs="+", required=True,
                   help="eval-ti artifacts; each one's label names its defense")
    _table_args(p)
    p.set_defaults(func=run_szt)
    register_invisible(sub)


def _table_args(p) -> None:
    """What every table stage records beside its cells, and where it writes."""
    p.add_argument("--profile", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="CSV path (a .md is written beside it)")


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
    if args.t2i_vae:
        m = _load(args.t2i_vae, "metrics.json")
        row = "CIFAR-10 test images through the t2i VAE"
        cells += [Cell(row=row, column="true class", metric="accuracy", backbone=m["classifier"],
                       value=m["accuracy"], n_samples=m["n"], **common),
                  Cell(row=row, column="vs originals", metric="psnr", backbone="",
                       value=m["vae_psnr"], n_samples=m["n"], **common)]
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


def register_invisible(sub) -> None:
    p = sub.add_parser("table-invisible", help="InvisibleDiffusion Tables I and II (invisible_diffusion.csv)",
                       description="Fill InvisibleDiffusion's Tables I (DDPM) and II (DDIM) from backdoor-eval "
                       "artifacts labelled <attack>/<sampler>, with the paper's number beside each cell. "
                       "Datasets not in --datasets (CelebA on these machines) are listed as not run, with the reason.")
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="backdoor-eval artifacts")
    p.add_argument("--datasets", nargs="+", default=["cifar10"], choices=["cifar10", "celeba"],
                   help="datasets whose rows were run (default: cifar10)")
    _table_args(p)
    p.set_defaults(func=run_invisible)

    p = sub.add_parser("table-invisible-ablation", help="InvisibleDiffusion ablations (invisible_ablation.csv)",
                       description="Lambda sweep (Fig. 4, DDPM and DDIM), training-steps sweep (Fig. 5, DDIM) "
                       "and the one-image target (Table III) from backdoor-eval artifacts.")
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="backdoor-eval artifacts")
    p.add_argument("--lambdas", type=float, nargs="+", required=True, help="lambda values of the sweep")
    p.add_argument("--base-lam", type=float, default=0.5, help="lambda of the base attack's own model")
    p.add_argument("--snapshots", type=int, nargs="+", required=True,
                   help="training steps of the base attack's snapshots, the final step last")
    _table_args(p)
    p.set_defaults(func=run_invisible_ablation)


def _by_label(paths: list[Path]) -> dict[str, dict]:
    out = {}
    for d in paths:
        m = _load(d, "metrics.json")
        out[m["label"]] = m
    return out


def _invisible_cells(table: str, row: str, column: str, m: dict, metrics, common: dict) -> list:
    from diffsec.errors import DiffsecError
    from diffsec.paper import paper_values
    from diffsec.tables import Cell

    paper = paper_values("invisible")
    cells = []
    for metric in metrics:
        if metric not in m:
            raise DiffsecError(f"{m['label']}: metrics.json has no {metric!r}")
        backbone = m["backbone"] if metric in ("fid", "precision", "recall", "a_prec") else \
            m.get("classifier", "") if metric == "asr" else ""
        n = m["n_clean"] if metric in ("fid", "precision", "recall") else m.get("n_trigger", "")
        cells.append(Cell(table=table, row=row, column=column, metric=metric, backbone=backbone, value=m[metric],
                          paper_value=paper.get((table, row, column, metric), ""), n_samples=n, **common))
    return cells


def _need(by_label: dict, label: str) -> dict:
    from diffsec.errors import DiffsecError

    if label not in by_label:
        raise DiffsecError(f"no backdoor-eval artifact labelled {label!r}; got {sorted(by_label)}")
    return by_label[label]


def run_invisible(args: argparse.Namespace) -> None:
    from diffsec.paper import invisible as shape
    from diffsec.paper import paper_values
    from diffsec.tables import Cell, write_table

    by_label, common = _by_label(args.metrics), {"profile": args.profile, "seed": args.seed}
    table, cells = "invisible_diffusion", []
    for dataset in shape.DATASETS:
        if dataset not in args.datasets:
            continue
        for column, sampler in shape.COLUMNS.items():
            for row in shape.rows_of(dataset, sampler):
                attack = shape.dataset_attack(dataset, shape.ROWS[row])
                m = _need(by_label, f"{attack}/{sampler}")
                cells += _invisible_cells(table, f"{shape.DATASETS[dataset]} · {row}", column, m,
                                          shape.metrics_for(shape.ROWS[row], "mse" in m), common)
    paper = paper_values("invisible")
    skipped = tuple(f"{name} · " for d, name in shape.DATASETS.items() if d not in args.datasets)
    for (t, row, column, metric), value in paper.items():   # paper only, with the reason
        if t == table and skipped and row.startswith(skipped):
            cells.append(Cell(table=table, row=row, column=column, metric=metric, backbone="",
                              value=shape.NOT_RUN, paper_value=value, n_samples=0, **common))
    write_table(cells, args.out)


def run_invisible_ablation(args: argparse.Namespace) -> None:
    from diffsec.paper import invisible as shape
    from diffsec.tables import write_table

    by_label, common = _by_label(args.metrics), {"profile": args.profile, "seed": args.seed}
    cells = []
    sweep = ("fid", "precision", "recall", "a_prec", "asr")
    for lam in sorted(args.lambdas):
        attack = shape.LAMBDA_BASE if lam == args.base_lam else shape.lambda_attack(lam)
        for column, sampler in (("DDPM", "ddpm"), ("DDIM", "ddim")):
            cells += _invisible_cells("invisible_lambda", f"lambda {lam:g}", column,
                                      _need(by_label, f"{attack}/{sampler}"), sweep, common)
    final = args.snapshots[-1]
    for step in args.snapshots:
        label = f"{shape.LAMBDA_BASE}/ddim" + ("" if step == final else f"/step-{step}")
        cells += _invisible_cells("invisible_steps", f"{round(100 * step / final)}% of steps", "DDIM",
                                  _need(by_label, label), sweep, common)
    for column, sampler in (("DDIM", "ddim"), ("DDPM", "ddpm")):
        cells += _invisible_cells("invisible_one_image", shape.ONE_IMAGE_ROW, column,
                                  _need(by_label, f"{shape.ONE_IMAGE_ATTACK}/{sampler}"),
                                  ("fid", "precision", "recall", "mse"), common)
    write_table(cells, args.out)
