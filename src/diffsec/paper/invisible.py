"""The shape of InvisibleDiffusion's tables (paper 000): rows are attacks, columns are samplers.

Each CIFAR-10 row names the attack (a key of `invisible.attacks` in the config) that fills it;
"benign" is the pretrained world itself. Precision, recall, A-Prec and ASR are fractions here
(the paper prints percentages; `invisible.csv` holds them divided by 100). The paper's FID is on
Inception features; ours names its backbone. CelebA rows run when `invisible.datasets` names
celeba (the paper profile; its files must be placed in the mirror); otherwise they are listed as
not run, with the reason.
"""

from __future__ import annotations

from diffsec.errors import DiffsecError
from diffsec.paper import paper_values
from diffsec.tables import Cell

DATASET = "CIFAR-10"
# dataset key in the config -> its name in the tables; attacks on a further dataset are named
# "<key>-<attack>" (celeba-id_ind_free), their In-D target moved to that dataset's
DATASETS = {"cifar10": "CIFAR-10", "celeba": "CelebA"}
# CelebA's publishers give no download the pipeline may fetch, and it is not in the mirror.
NOT_RUN = "not run: CelebA is not in the offline mirror (place its files, add celeba to invisible.datasets)"

ROWS = {"Benign": "benign", "TrojDiff In-D": "trojdiff_ind", "BadDiffusion One Image": "baddiffusion_img",
        "InvisibleDiffusion In-D (Fixed Image)": "id_ind_fixed",
        "InvisibleDiffusion In-D (W/o Fixed Image)": "id_ind_free",
        "InvisibleDiffusion Out-D (Fixed Image)": "id_outd_fixed",
        "InvisibleDiffusion Out-D (W/o Fixed Image)": "id_outd_free"}
CELEBA_ROWS = [r for r in ROWS if r != "BadDiffusion One Image"]
# Table I is DDPM (ancestral, T steps), Table II DDIM; BadDiffusion is in Table I only.
COLUMNS = {"DDPM (Table I)": "ddpm", "DDIM (Table II)": "ddim"}
ROWS_OF = {"ddpm": list(ROWS), "ddim": [r for r in ROWS if r != "BadDiffusion One Image"]}
BENIGN_METRICS = ("fid", "precision", "recall")
ATTACK_METRICS = ("a_prec", "asr")
ONE_IMAGE_METRICS = ("mse",)
STEALTH_METRICS = ("l2", "linf")

ONE_IMAGE_ATTACK = "id_img_free"   # Table III: W/o Fixed Image, one target picture
ONE_IMAGE_ROW = "CIFAR-10 · InvisibleDiffusion one image (W/o Fixed Image)"
LAMBDA_BASE = "id_ind_free"        # Figs. 4 and 5: In-D, W/o Fixed Image

# Fig. 2 rows (DDPM trajectories) and Fig. 3 blocks (DDIM targets): figure label -> attack. Fig. 3
# shows CIFAR-10 and CelebA: its blocks repeat for every further dataset that runs.
FIG_TRAJECTORIES = {"benign": "benign", "InvisibleDiffusion (fixed image)": "id_ind_fixed",
                    "InvisibleDiffusion (w/o fixed image)": "id_ind_free", "TrojDiff": "trojdiff_ind",
                    "BadDiffusion": "baddiffusion_img"}
FIG_TARGETS = {"In-D, fixed image": "id_ind_fixed", "In-D, w/o fixed image": "id_ind_free",
               "Out-D, fixed image": "id_outd_fixed", "Out-D, w/o fixed image": "id_outd_free"}


def dataset_attack(dataset: str, attack: str) -> str:
    """The attack name of `attack` on `dataset` (CIFAR-10's keep their plain names)."""
    return attack if dataset == "cifar10" else f"{dataset}-{attack}"


def split_attack(name: str) -> tuple[str, str]:
    """(dataset, attack) of an attack name; the inverse of `dataset_attack`."""
    head, _, rest = name.partition("-")
    return (head, rest) if rest and head in DATASETS else ("cifar10", name)


def rows_of(dataset: str, sampler: str) -> list[str]:
    """Table rows a dataset fills for a sampler (CelebA has no BadDiffusion row)."""
    return [r for r in ROWS_OF[sampler] if dataset == "cifar10" or r in CELEBA_ROWS]


def attacks_in_tables() -> list[str]:
    """The attack names the main table and Table III need (benign excluded)."""
    return [a for a in ROWS.values() if a != "benign"] + [ONE_IMAGE_ATTACK]


def lambda_attack(lam: float) -> str:
    """Attack name of the lambda ablation's model at `lam` (the base attack with lam changed)."""
    return f"{LAMBDA_BASE}_lam{lam:g}"


def metrics_for(row_attack: str, one_image: bool) -> tuple[str, ...]:
    if row_attack == "benign":
        return BENIGN_METRICS
    return BENIGN_METRICS + (ONE_IMAGE_METRICS if one_image else ATTACK_METRICS) + STEALTH_METRICS


def _need(by_label: dict[str, dict], label: str) -> dict:
    if label not in by_label:
        raise DiffsecError(f"no backdoor-eval artifact labelled {label!r}; got {sorted(by_label)}")
    return by_label[label]


def _cells(table: str, row: str, column: str, m: dict, metrics, common: dict) -> list[Cell]:
    """One row's cells from one measurement; FID/precision/recall count the clean samples, the
    rest the triggered ones, and each names the network it rests on."""
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


def table_cells(by_label: dict[str, dict], datasets: list[str], profile: str, seed: int) -> list[Cell]:
    """Tables I (DDPM) and II (DDIM) from backdoor-eval measurements labelled `<attack>/<sampler>`;
    the rows of a dataset not in `datasets` keep the paper's numbers, with NOT_RUN as the value."""
    table, cells, common = "invisible_diffusion", [], {"profile": profile, "seed": seed}
    for dataset in (d for d in DATASETS if d in datasets):
        for column, sampler in COLUMNS.items():
            for row in rows_of(dataset, sampler):
                m = _need(by_label, f"{dataset_attack(dataset, ROWS[row])}/{sampler}")
                cells += _cells(table, f"{DATASETS[dataset]} · {row}", column, m,
                                metrics_for(ROWS[row], "mse" in m), common)
    skipped = tuple(f"{name} · " for d, name in DATASETS.items() if d not in datasets)
    for (t, row, column, metric), value in paper_values("invisible").items():
        if t == table and skipped and row.startswith(skipped):
            cells.append(Cell(table=table, row=row, column=column, metric=metric, backbone="", value="",
                              paper_value=value, n_samples=0, note=NOT_RUN, **common))
    return cells


def ablation_cells(by_label: dict[str, dict], lambdas: list[float], base_lam: float, snapshots: list[int],
                   profile: str, seed: int) -> list[Cell]:
    """Fig. 4 (each lambda, both samplers), Fig. 5 (each snapshot step, the final one last, as a
    share of the training steps; DDIM) and Table III (the one-image target) as table cells."""
    common, sweep, cells = {"profile": profile, "seed": seed}, ("fid", "precision", "recall", "a_prec", "asr"), []
    for lam in sorted(lambdas):
        attack = LAMBDA_BASE if lam == base_lam else lambda_attack(lam)
        for column, sampler in (("DDPM", "ddpm"), ("DDIM", "ddim")):
            cells += _cells("invisible_lambda", f"lambda {lam:g}", column, _need(by_label, f"{attack}/{sampler}"),
                            sweep, common)
    final = snapshots[-1]
    for step in snapshots:
        label = f"{LAMBDA_BASE}/ddim" + ("" if step == final else f"/step-{step}")
        cells += _cells("invisible_steps", f"{round(100 * step / final)}% of steps", "DDIM",
                        _need(by_label, label), sweep, common)
    for column, sampler in (("DDIM", "ddim"), ("DDPM", "ddpm")):
        cells += _cells("invisible_one_image", ONE_IMAGE_ROW, column, _need(by_label, f"{ONE_IMAGE_ATTACK}/{sampler}"),
                        ("fid", "precision", "recall", "mse"), common)
    return cells
