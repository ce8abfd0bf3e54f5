"""The shape of InvisibleDiffusion's tables (paper 000): rows are attacks, columns are samplers.

Each CIFAR-10 row names the attack (a key of `invisible.attacks` in the config) that fills it;
"benign" is the pretrained world itself. Precision, recall, A-Prec and ASR are fractions here
(the paper prints percentages; `invisible.csv` holds them divided by 100). The paper's FID is on
Inception features; ours names its backbone. CelebA rows run when `invisible.datasets` names
celeba (the paper profile; its files must be placed in the mirror); otherwise they are listed as
not run, with the reason.

Beside the paper's rows and columns (issue 19):

* benign baselines: for every attack row, "Benign world on <row> noise" is the unbackdoored world
  sampled from that row's triggered noise with the column's chain and scored against the row's
  target (A-Prec, ASR or MSE), so each ASR reads against what the world does without a backdoor;
* ordinary-sampler columns ("DDPM, ordinary sampler", ...; the samplers in
  `invisible.sample.ordinary`): the triggered noise sampled with the unchanged DDPM / DDIM sampler,
  the paper's threat model, where the paper's columns use our attacker chain (for InvisibleDiffusion
  without a fixed image, kappa-corrected). BadDiffusion's chain is the ordinary sampler, so its
  ordinary cells are its attacker cells;
* stealth: `l2` (Euclidean norm over all values, x 255 of [-1, 1]: the paper's convention for its
  own and TrojDiff's rows) and `l2_rms` (root mean square, x 255), the convention of the paper's
  BadDiffusion L2 of 228.39, which `invisible.csv` therefore files under `l2_rms`;
* `se`: FID's bootstrap standard error (backdoor-eval's `fid_se`); an ASR's binomial standard
  error over its n triggered samples, se = sqrt(p (1 - p) / n) (0 where p is 0 or 1: read it with n);
* `invisible_take`: ASR against fine-tuning steps of the In-D attack under other fine-tuning
  settings (`invisible.take`), to find the cheapest one that makes it take on `tiny`.
"""

from __future__ import annotations

from diffsec.errors import DiffsecError
from diffsec.paper import paper_values
from diffsec.tables import Cell, rate_se

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
STEALTH_METRICS = ("l2", "linf", "l2_rms")
STEALTH_NOTES = {
    "l2": "Euclidean norm of the pattern the trigger adds to x_T over all C x H x W values, x 255 of [-1, 1] "
          "(the paper's convention for its own and TrojDiff's rows)",
    "linf": "largest magnitude of the added pattern, x 255 of [-1, 1]",
    "l2_rms": "root mean square of the added pattern over all C x H x W values, x 255 of [-1, 1] (the convention "
              "of the paper's BadDiffusion L2: 228.39 lies below its L-inf of 255, so it is no sum; BadDiffusion's "
              "BOX_14 gives 229.30)",
}

# The ordinary sampler: the unchanged DDPM / DDIM step from the triggered noise (the paper's threat
# model). A sampler label `<sampler>_ordinary` names such a run; methods whose attacker chain is the
# ordinary sampler (BadDiffusion) are not sampled again.
ORDINARY = "_ordinary"
SAME_CHAIN_METHODS = ("baddiffusion",)
BASELINE = "benign_"               # baseline of attack a: the clean world on a's noise, named benign_<a>
TAKE = "_take-"                    # In-D take sweep: <LAMBDA_BASE>_take-<variant>


def ordinary(sampler: str) -> str:
    return sampler + ORDINARY


def ordinary_column(column: str) -> str:
    """'DDPM (Table I)' -> 'DDPM, ordinary sampler'; 'DDIM' -> 'DDIM, ordinary sampler'."""
    return column.split(" (")[0] + ", ordinary sampler"


def lambda_row(lam: float) -> str:
    """Fig. 4's row label of a lambda: 0.3 -> 'lambda 0.3' (`lambda_of` reads it back)."""
    return f"lambda {lam:g}"


def lambda_of(row: str) -> float:
    """'lambda 0.3' -> 0.3."""
    return float(row.removeprefix("lambda "))


def steps_row(step: int, final: int) -> str:
    """Fig. 5's row label of an EMA snapshot: its share of the training steps, 160 of 800 -> '20% of
    steps' (`share_of` reads it back)."""
    return f"{round(100 * step / final)}% of steps"


def share_of(row: str) -> float:
    """'20% of steps' -> 20."""
    return float(row.removesuffix("% of steps"))


def baseline(attack: str) -> str:
    """The benign-baseline name of a (dataset-qualified) attack: <dataset>-benign_<attack>."""
    dataset, a = split_attack(attack)
    return dataset_attack(dataset, BASELINE + a)


def baseline_row(row: str) -> str:
    return f"Benign world on {row} noise"


def take_attack(variant: str) -> str:
    return f"{LAMBDA_BASE}{TAKE}{variant}"

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


def _note(metric: str, m: dict) -> str:
    if metric in BENIGN_METRICS:
        return f"n = {m['n_clean']} samples from clean noise vs {m['n_reference']} reference images"
    return STEALTH_NOTES.get(metric, "")


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
        note = "; ".join(x for x in (_note(metric, m), common.get("note", "")) if x)
        se = m.get(f"{metric}_se", "")
        if metric == "asr" and se == "" and n:
            se = rate_se(m[metric], int(n))
        cells.append(Cell(table=table, row=row, column=column, metric=metric, backbone=backbone, value=m[metric],
                          paper_value=paper.get((table, row, column, metric), ""), n_samples=n,
                          profile=common["profile"], seed=common["seed"], note=note, se=se))
    return cells


def _ordinary_m(by_label: dict[str, dict], attack: str, sampler: str) -> tuple[dict, str]:
    """(the ordinary-sampler measurement of an attack, a note): its own, or the attacker chain's
    where that chain is the ordinary sampler."""
    own = by_label.get(f"{attack}/{ordinary(sampler)}")
    if own is not None:
        return own, "ordinary DDPM / DDIM sampler from the triggered noise"
    m = _need(by_label, f"{attack}/{sampler}")
    if m.get("method") not in SAME_CHAIN_METHODS:
        raise DiffsecError(f"no backdoor-eval artifact labelled {attack}/{ordinary(sampler)!r}")
    return m, f"{m['method']}'s own chain is the ordinary sampler: the attacker column's samples"


BASELINE_NOTE = "the unbackdoored world sampled from this row's triggered noise with the column's chain"


def _attack_rows(by_label, dataset: str, column: str, sampler: str, ordinary_chain: bool, common: dict) -> list[Cell]:
    """Each attack row's benign-baseline row in one column, preceded in an ordinary-sampler column
    by the row itself (A-Prec and ASR or MSE; its clean samples and stealth are the paper columns')."""
    table, cells = "invisible_diffusion", []
    for row in rows_of(dataset, sampler):
        attack = dataset_attack(dataset, ROWS[row])
        if ROWS[row] == "benign":
            continue
        m = _need(by_label, f"{attack}/{sampler}")
        metrics = ONE_IMAGE_METRICS if "mse" in m else ATTACK_METRICS
        chain = sampler
        if ordinary_chain:
            m, note = _ordinary_m(by_label, attack, sampler)
            chain = sampler if m["label"] == f"{attack}/{sampler}" else ordinary(sampler)
            cells += _cells(table, f"{DATASETS[dataset]} · {row}", column, m, metrics, {**common, "note": note})
        cells += _cells(table, f"{DATASETS[dataset]} · {baseline_row(row)}", column,
                        _need(by_label, f"{baseline(attack)}/{chain}"), metrics, {**common, "note": BASELINE_NOTE})
    return cells


def table_cells(by_label: dict[str, dict], datasets: list[str], profile: str, seed: int,
                ordinary_samplers: list[str] = ()) -> list[Cell]:
    """Tables I (DDPM) and II (DDIM) from backdoor-eval measurements labelled `<attack>/<sampler>`,
    each attack row with its benign baseline, and an ordinary-sampler column for each sampler in
    `ordinary_samplers`; the rows of a dataset not in `datasets` keep the paper's numbers, with
    NOT_RUN as the value."""
    table, cells, common = "invisible_diffusion", [], {"profile": profile, "seed": seed}
    for dataset in (d for d in DATASETS if d in datasets):
        for column, sampler in COLUMNS.items():
            for row in rows_of(dataset, sampler):
                m = _need(by_label, f"{dataset_attack(dataset, ROWS[row])}/{sampler}")
                cells += _cells(table, f"{DATASETS[dataset]} · {row}", column, m,
                                metrics_for(ROWS[row], "mse" in m), common)
            cells += _attack_rows(by_label, dataset, column, sampler, False, common)
        for column, sampler in COLUMNS.items():
            if sampler in ordinary_samplers:
                cells += _attack_rows(by_label, dataset, ordinary_column(column), sampler, True, common)
    skipped = tuple(f"{name} · " for d, name in DATASETS.items() if d not in datasets)
    for (t, row, column, metric), value in paper_values("invisible").items():
        if t == table and skipped and row.startswith(skipped):
            cells.append(Cell(table=table, row=row, column=column, metric=metric, backbone="", value="",
                              paper_value=value, n_samples=0, note=NOT_RUN, **common))
    return cells


def ablation_cells(by_label: dict[str, dict], lambdas: list[float], base_lam: float, snapshots: list[int],
                   profile: str, seed: int, ordinary_samplers: list[str] = ()) -> list[Cell]:
    """Fig. 4 (each lambda, both samplers with the attacker chain, and with the ordinary sampler for
    each of `ordinary_samplers`: A-Prec and ASR only, its clean samples are the attacker run's),
    Fig. 5 (each snapshot step, the final one last, as a share of the training steps; DDIM) and
    Table III (the one-image target) as table cells."""
    common, sweep, cells = {"profile": profile, "seed": seed}, ("fid", "precision", "recall", "a_prec", "asr"), []
    for lam in sorted(lambdas):
        attack = LAMBDA_BASE if lam == base_lam else lambda_attack(lam)
        for column, sampler in (("DDPM", "ddpm"), ("DDIM", "ddim")):
            cells += _cells("invisible_lambda", lambda_row(lam), column, _need(by_label, f"{attack}/{sampler}"),
                            sweep, {**common, "note": "attacker chain (kappa-corrected)"})
        for column, sampler in (("DDPM", "ddpm"), ("DDIM", "ddim")):
            if sampler in ordinary_samplers:
                cells += _cells("invisible_lambda", lambda_row(lam), ordinary_column(column),
                                _need(by_label, f"{attack}/{ordinary(sampler)}"), ATTACK_METRICS,
                                {**common, "note": "ordinary sampler from the triggered noise (no kappa)"})
    final = snapshots[-1]
    for step in snapshots:
        label = f"{LAMBDA_BASE}/ddim" + ("" if step == final else f"/step-{step}")
        cells += _cells("invisible_steps", steps_row(step, final), "DDIM",
                        _need(by_label, label), sweep, common)
    for column, sampler in (("DDIM", "ddim"), ("DDPM", "ddpm")):
        cells += _cells("invisible_one_image", ONE_IMAGE_ROW, column, _need(by_label, f"{ONE_IMAGE_ATTACK}/{sampler}"),
                        ("fid", "precision", "recall", "mse"), common)
    return cells


def take_cells(by_label: dict[str, dict], variants: dict[str, dict], snapshots: list[int], profile: str,
               seed: int) -> list[Cell]:
    """`invisible_take`: per fine-tuning variant of the In-D attack (row; its settings in the note),
    ASR, A-Prec and benign FID of DDIM samples at each snapshot step (columns, the final step last);
    column "0 steps" is the unbackdoored world on the same noise (the benign baseline)."""
    common, cells = {"profile": profile, "seed": seed}, []
    base = _need(by_label, f"{baseline(LAMBDA_BASE)}/ddim")
    final = snapshots[-1]
    for variant, settings in variants.items():
        note = ", ".join(f"{k} {v}" for k, v in sorted(settings.items())) or "the table's fine-tuning settings"
        cells += _cells("invisible_take", variant, "0 steps", base, ATTACK_METRICS,
                        {**common, "note": f"{note}; {BASELINE_NOTE}"})
        for step in snapshots:
            label = f"{take_attack(variant)}/ddim" + ("" if step == final else f"/step-{step}")
            cells += _cells("invisible_take", variant, f"{step} steps", _need(by_label, label),
                            ("fid",) + ATTACK_METRICS, {**common, "note": note})
    return cells
