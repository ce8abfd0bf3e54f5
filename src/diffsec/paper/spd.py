"""The shape of SPD's Table 1 (paper 003): rows are (edit prompt, split), columns are the
perturbation, metrics the img2img output's similarity to the un-immunized edit (higher = the
edit survived; lower = better immunization).

The paper edits with Stable Diffusion 1.5 img2img, 100 ImageNet images at 512 x 512 split 64
train (the universal perturbation is fit on these) : 36 test, eps in (4, 13, 22, 31, 40)/255 and
500 iterations per eps. "Baseline" is uniform random noise in the same eps ball, "Ours" the
universal perturbation. The paper does not say which eps (or which average over eps) Table 1
reports, nor which of PGD / Adam and which objective fills "Ours"; its Figs. 1-2 plot the metrics
against eps.

Decision (table-spd): the paper's Table 1 values sit beside our "mean over eps" cells of the
Baseline and Ours columns (the mean over the config's eps grid, the paper's five eps in the tiny
profile), and "Ours" is the encoder attack with sign-PGD (PhotoGuard's, Algorithm 1). Our VIFp
is `vif_p[up2]` at 32 px (piq needs >= 41 px); the paper's VIFp sits beside it all the same.
"""

from __future__ import annotations

from diffsec.paper import paper_values
from diffsec.tables import Cell

PROMPTS = {"P1": "make it like a watercolor painting", "P2": "apply sunset lighting",
           "P3": "add some snow", "P4": ""}
SPLITS = ("Train", "Test")
ROWS = [f"{p} · {s}" for p in PROMPTS for s in SPLITS]
COLUMNS = {"Baseline": "random", "Ours": "universal"}  # Table 1 column -> perturbation kind
METRICS = ("ssim", "psnr", "vif_p", "fsim")            # diffsec.metrics names, Table 1's order
EPS_255 = (4, 13, 22, 31, 40)                           # eps grid, in 1/255 of the [0, 1] range
ITERS = 500
N_TRAIN, N_TEST = 64, 36

BACKBONE = "t2i-cifar10"   # the world whose VAE is attacked and whose img2img edits are measured
MEAN = "mean over eps"


def _column_order(columns: set[str]) -> list[str]:
    first = ["Baseline", "Ours"]
    return [c for c in first if c in columns] + sorted(columns - {*first, "PhotoGuard"}) + \
        (["PhotoGuard"] if "PhotoGuard" in columns else [])


def table_cells(evals: list[dict], profile: str, seed: int) -> list[Cell]:
    """Cells of `spd` from spd-eval metrics (label, column, eps, metrics {split: {prompt: {metric}}}):
    rows <prompt> · <split>, columns "<column> · eps <e>/255" and "<column> · mean over eps", and
    the paper's values beside the Baseline / Ours mean cells (module docstring)."""
    paper = paper_values("spd")
    by: dict[tuple[str, int], dict] = {}
    for m in evals:
        key = (m["column"], int(m["eps"]))
        if key in by:
            raise ValueError(f"two evaluations of {m['column']} at eps {m['eps']}")
        by[key] = m
    columns = _column_order({c for c, _ in by})
    cells: list[Cell] = []
    first = next(iter(by.values()))
    for prompt in first["metrics"]["train"]:
        for split in SPLITS:
            s = split.lower()
            row = f"{prompt} · {split}"
            for column in columns:
                eps = sorted(e for c, e in by if c == column)
                for metric in first["metrics"][s][prompt]:
                    values = [by[(column, e)]["metrics"][s][prompt][metric] for e in eps]
                    n = int(by[(column, eps[0])]["n"][s])
                    for e, v in zip(eps, values, strict=True):
                        se = by[(column, e)].get("se", {}).get(s, {}).get(prompt, {}).get(metric, "")
                        cells.append(Cell("spd", row, f"{column} · eps {e}/255", metric, BACKBONE, v, "",
                                          profile, n, seed, se=se))
                    pv = paper.get(("spd", row, column, metric.split("[")[0]), "")
                    cells.append(Cell("spd", row, f"{column} · {MEAN}", metric, BACKBONE,
                                      float(sum(values) / len(values)), pv, profile, n, seed))
    return cells
