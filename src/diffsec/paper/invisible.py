"""The shape of InvisibleDiffusion's tables (paper 000): rows are attacks, columns are samplers.

Each CIFAR-10 row names the attack (a key of `invisible.attacks` in the config) that fills it;
"benign" is the pretrained world itself. Precision, recall, A-Prec and ASR are fractions here
(the paper prints percentages; `invisible.csv` holds them divided by 100). The paper's FID is on
Inception features; ours names its backbone. CelebA rows are paper-only on these machines.
"""

from __future__ import annotations

DATASET = "CIFAR-10"
PAPER_ONLY = "CelebA"
# CelebA is not in the mirror and cannot be downloaded here. Its adapter (3 attributes -> 8
# classes, `prepare-celeba`) exists; the backdoor DAG does not take a dataset yet.
NOT_RUN = "not run: no CelebA offline"

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
