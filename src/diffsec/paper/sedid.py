"""The shape of SeDID's tables (paper 002): Table 1 (Stat per t_SEC), Table 2 (three methods), and
the controls the paper lacks.

Columns are datasets; this DAG runs CIFAR-10 (the DDPM world), and the Tiny-ImageNet and CelebA
columns are listed as not run, with their paper values. Table 2's Average is the mean over the
datasets that ran, so with one dataset it is not comparable to the paper's three-dataset
average; its cells say so. The controls (`sedid_controls`) swap the generated set: the paper's
DDPM-1000 samples re-encoded as JPEG q75 like the mirror's real CIFAR-10 images (does the detector
find only JPEG?), and DDIM samples (their inversion is near exact, so the score is optimistic).
"""

from __future__ import annotations

from diffsec.paper import paper_values
from diffsec.tables import Cell

DATASETS = {"cifar10": "CIFAR-10"}
NOT_RUN = {"Tiny-ImageNet": "not run (not in the mirror)",
           "CelebA": "not run (no CelebA DDPM world here)"}
METHODS = {"Existing method": "loss", "SeDID_Stat": "stat", "SeDID_NNs": "nn"}
METRICS = ("auc", "acc", "tpr@1%fpr", "tpr@0.1%fpr")
# generated-set variant (the sedid-eval artifact's label) -> controls-table row
VARIANTS = {"ddpm": "DDPM-1000 samples (the paper's)", "jpeg": "DDPM-1000 samples, JPEG q75 like the real images",
            "ddim": "DDIM samples (optimistic: near-exact inversion)"}
MAIN = "ddpm"
BACKBONE = "ddpm-cifar10"   # the model whose inversion errors and loss are measured


def _cells(table: str, row: str, column: str, m: dict, paper: dict, profile: str, seed: int, note: str = ""):
    n = int(m["n_generated"] + m["n_real"])
    out = []
    for metric in METRICS:
        pv = paper.get((table, row, column, metric), "")
        out.append(Cell(table, row, column, metric, BACKBONE, f"{m[metric]:.4f}{note}" if note else m[metric],
                        pv, profile, n, seed))
    return out


def table_cells(evals: dict[str, dict], profile: str, seed: int) -> list[Cell]:
    """Cells of sedid_stat, sedid and sedid_controls from sedid-eval metrics by variant label
    (`MAIN` is required: it fills Tables 1 and 2)."""
    paper = paper_values("sedid")
    main = evals[MAIN]
    cells: list[Cell] = []
    column = DATASETS["cifar10"]
    for t, m in sorted(main["table1"].items(), key=lambda kv: int(kv[0])):
        cells += _cells("sedid_stat", f"t_SEC {int(t)}", column, m, paper, profile, seed)
    for row, key in METHODS.items():
        m = main["table2"][key]
        cells += _cells("sedid", row, column, m, paper, profile, seed)
        cells += _cells("sedid", row, "Average", m, paper, profile, seed, note=" (CIFAR-10 only)")
    for row_table, rows in (("sedid_stat", [f"t_SEC {int(t)}" for t in sorted(map(int, main["table1"]))]),
                            ("sedid", list(METHODS))):
        for row in rows:
            for col, why in NOT_RUN.items():
                for metric in ("auc", "acc"):
                    pv = paper.get((row_table, row, col, metric), "")
                    cells.append(Cell(row_table, row, col, metric, BACKBONE, why, pv, profile, 0, seed))
    for variant, label in VARIANTS.items():
        if variant in evals:
            for method, key in METHODS.items():
                m = evals[variant]["table2"][key]
                cells += _cells("sedid_controls", label, f"{method} (t {m['t']})", m, {}, profile, seed)
    return cells
