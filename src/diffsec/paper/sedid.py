"""The shape of SeDID's tables (paper 002): Table 1 (Stat per t_SEC), Table 2 (three methods), and
the controls the paper lacks.

Columns are datasets; this DAG runs CIFAR-10 (the DDPM world), and the Tiny-ImageNet and CelebA
columns are listed as not run, with their paper values. Table 2's Average is the mean over the
datasets that ran, so with one dataset it is not comparable to the paper's three-dataset
average; its cells say so. The controls (`sedid_controls`) swap the generated set: the paper's
DDPM-1000 samples re-encoded as JPEG q75 like the mirror's real CIFAR-10 images (does the detector
find only JPEG?), and DDIM samples (their inversion is near exact, so the score is optimistic).

`sedid_mia` (no paper values) asks the membership question of the same scores: members (the
positives) against held-out non-members, for a DDPM trained on the members, one column per kept
epoch. Rows: the loss attack and SeDID_Stat at the t picked on the NN split, SecMI's stat at its
fixed (t, k) (fits nothing, so on every image), and SeDID_NNs.
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
MIA_BACKBONE = "ddpm-mia"   # sedid_mia's target: a DDPM trained here on the member subset


def _cells(table: str, row: str, column: str, m: dict, paper: dict, profile: str, seed: int, note: str = ""):
    n = int(m["n_generated"] + m["n_real"])
    out = []
    for metric in METRICS:
        pv = paper.get((table, row, column, metric), "")
        out.append(Cell(table, row, column, metric, BACKBONE, m[metric], pv, profile, n, seed, note))
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
        cells += _cells("sedid", row, "Average", m, paper, profile, seed, note="CIFAR-10 only")
    for row_table, rows in (("sedid_stat", [f"t_SEC {int(t)}" for t in sorted(map(int, main["table1"]))]),
                            ("sedid", list(METHODS))):
        for row in rows:
            for col, why in NOT_RUN.items():
                for metric in ("auc", "acc"):
                    pv = paper.get((row_table, row, col, metric), "")
                    cells.append(Cell(row_table, row, col, metric, BACKBONE, "", pv, profile, 0, seed, why))
    for variant, label in VARIANTS.items():
        if variant in evals:
            for method, key in METHODS.items():
                m = evals[variant]["table2"][key]
                cells += _cells("sedid_controls", label, f"{method} (t {m['t']})", m, {}, profile, seed)
    return cells


def _mia_entries(m: dict) -> dict[str, tuple[dict, int]]:
    """Row -> (metrics, the timestep it used) of one sedid-eval of members vs held-out images."""
    t2, sweep = m["table2"], m["sweep"]
    if len(sweep) != 1:
        raise ValueError(f"a sedid_mia evaluation holds SecMI's stat as a one-step sweep, got steps {list(sweep)}")
    (k, secmi), = sweep.items()
    return {"Loss attack": (t2["loss"], t2["loss"]["t"]),
            f"SecMI_stat (k {k})": (secmi, m["sweep_t"]),
            "SeDID_Stat": (t2["stat"], t2["stat"]["t"]),
            "SeDID_NNs": (t2["nn"], t2["nn"]["t"])}


def read_mia_evals(artifacts: list, epochs: list[float]) -> list[dict]:
    """The metrics.json of each sedid-eval artifact of members vs held-out images, checked to hold
    every sedid_mia row; one DiffsecError naming the flag otherwise."""
    from diffsec.errors import DiffsecError
    from diffsec.tables import read_measurement

    if len(epochs) != len(artifacts):
        raise DiffsecError(f"--epochs gives {len(epochs)} values for {len(artifacts)} --metrics artifacts")
    evals = [read_measurement(d) for d in artifacts]
    try:
        for m in evals:
            _mia_entries(m)
    except (KeyError, ValueError) as e:
        raise DiffsecError(f"--metrics: not sedid-eval artifacts of a membership split ({e})") from None
    return evals


def mia_rows(evals: list[dict]) -> dict[str, list[dict]]:
    """Row -> its ROC report in each evaluation (the figure's curves)."""
    entries = [_mia_entries(m) for m in evals]
    return {row.split(" (")[0]: [e[row][0] for e in entries] for row in entries[0]}


def mia_cells(evals: list[dict], epochs: list[float], profile: str, seed: int) -> list[Cell]:
    """Cells of sedid_mia: one column per (evaluation, epochs) pair; beside the ROC figures, the
    timestep each row used (metric `t`: picked on the NN split, or SecMI's fixed one)."""
    cells: list[Cell] = []
    for m, e in sorted(zip(evals, epochs, strict=True), key=lambda p: p[1]):
        column = f"{e:g} epochs"
        for row, (r, t) in _mia_entries(m).items():
            n = int(r["n_generated"] + r["n_real"])
            cells += [Cell("sedid_mia", row, column, metric, MIA_BACKBONE, r[metric], "", profile, n, seed)
                      for metric in METRICS]
            cells.append(Cell("sedid_mia", row, column, "t", MIA_BACKBONE, int(t), "", profile, n, seed))
    return cells
