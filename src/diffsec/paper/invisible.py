"""The shape of InvisibleDiffusion's tables (paper 000): rows are attacks, columns are samplers.

Each CIFAR-10 row names the attack (a key of `invisible.attacks` in the config) that fills it;
"benign" is the pretrained world itself. Precision, recall, A-Prec and ASR are fractions here
(the paper prints percentages; `invisible.csv` holds them divided by 100). The paper's FID is on
Inception features; ours names its backbone. CelebA rows run when `invisible.datasets` names
celeba (the paper profile; its files must be placed in the mirror); otherwise they are listed as
not run, with the reason.
"""

from __future__ import annotations

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
