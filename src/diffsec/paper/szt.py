"""The shape of the SZT paper's tables: rows are training sets, columns are defenses.

Each column names the defense (a key of `szt.defenses` in the config) whose runs fill it. The
paper values are CustomConcept101 numbers for the main table (Tables 1, 15, 16) and
NovelConcepts10 numbers for the ablations (Tables 6-14); we run the 10 DreamBooth subjects
(neither set is available offline), so they are references for trends, not targets.
"""

from __future__ import annotations

from diffsec.errors import DiffsecError
from diffsec.paper import paper_values
from diffsec.tables import Cell, mean_se

ROWS = {"Clean": "clean", "ADM+": "adm+", "ADM-": "adm-", "SDS+": "sds+", "SDS-": "sds-",
        "EA": "ea", "DA": "da"}
PAPER_POISONS = [r for r in ROWS if r != "Clean"]  # the paper's six: Psn Avg is their mean
# rows beyond the paper's (not in Psn Avg): DA as PhotoGuard's targeted attack, our earlier DA
EXTRA_ROWS = {"DA-targeted": "da-targeted"}
ALL_ROWS = {**ROWS, **EXTRA_ROWS}
POISON_AVG = "Psn Avg"  # mean over the six poison rows (not Clean)
METRICS = {"dino": "Table 1 / 6 / 9 / 12", "fid": "Table 15 / 7 / 10 / 13",
           "clip_score": "Table 16 / 8 / 11 / 14"}
# eval-ti's measurement -> the table's metric: the centred DINO is the same metric on a second
# backbone name (`<backbone>-centred`), written after the raw one; no paper values
MEASURED = {"dino": "dino", "fid": "fid", "clip_score": "clip_score", "dino_centred": "dino"}
# what the DINO values are read against (eval-ti-reference), in the main table's Reference column
REFERENCE_COLUMN = "Reference"
REFERENCE_ROWS = {"Floor (CIFAR class)": ("floor", "n_floor"), "Ceiling (held-out photo)": ("ceiling", "n_reference")}

TABLES: dict[str, dict] = {
    "szt": {
        "rows": [*ROWS, *EXTRA_ROWS], "source": "CustomConcept101, Tables 1 (DINOv2), 15 (FID), 16 (CLIP)",
        "columns": {"Nominal": "nominal", "Regen": "regen", "PDMPure": "pdmpure", "AdvClean": "advclean",
                    "JPEG": "jpeg", "T600": "t600", "LM": "lm", "JPEG+T600": "jpeg_t600",
                    "JPEG+LM": "jpeg_lm", "SZT": "szt"}},
    # our ablation (no paper values): the paper's token-only prompts vs prompts with the class noun
    # ("a <tok> dog in the jungle"), which anchor every sample to the class whatever the token learned
    "szt_prompts": {
        "rows": list(ROWS), "source": "ours (the paper's prompts carry the token only)",
        "columns": {f"{name}{suffix}": f"{d}{form}" for name, d in
                    (("Nominal", "nominal"), ("JPEG", "jpeg"), ("T600", "t600"), ("LM", "lm"), ("SZT", "szt"))
                    for suffix, form in (("", ""), (" +class", "/class"))}},
    # Table 2 (constant lr): TI at the paper's three learning rates, 300 steps (tiny's) and 1,000 (the
    # paper's shortest, whose DINO values sit beside ours). Every column is its own defense, so a
    # column's label holds whatever szt.ti (nominal's setting) a profile uses
    "szt_ti_hparams": {
        "rows": ["Clean", "ADM+", "ADM-", "EA"], "source": "NovelConcepts10, Table 2 (DINOv2 only)",
        "columns": {f"lr {lr} · {'1k' if steps == 1000 else steps}": f"ti_lr{lr}_s{steps}"
                    for steps in (300, 1000) for lr in ("5e-5", "5e-4", "5e-3")}},
    "szt_timestep": {
        "rows": ["Clean", "ADM+", "ADM-", "EA"], "source": "NovelConcepts10, Tables 6-8",
        "columns": {"Nominal": "nominal",
                    **{f"Tanh {r}": f"tanh{r}" for r in (1, 3, 5, 10)},
                    **{f"Power {r:g}": f"power{r:g}" for r in (0.25, 0.5, 1, 2, 4)},
                    **{f"Low {u:g}": f"low{u:g}" for u in (0.1, 0.2, 0.3, 0.4, 0.5)},
                    **{f"High {u:g}": f"t{round(u * 1000)}" for u in (0.5, 0.6, 0.7, 0.8, 0.9)}}},
    "szt_masking": {
        "rows": list(ROWS), "source": "NovelConcepts10, Tables 9-11",
        "columns": {"Nominal": "nominal", "LM": "lm", "IM": "im", "LIM": "lim", "ZM": "zm"}},
    "szt_dilation": {
        "rows": list(ROWS), "source": "NovelConcepts10, Tables 12-14",
        "columns": {"Nominal": "nominal", "LM": "lm", "LM-D08": "lm_d08", "LM-D16": "lm_d16",
                    "LM-D24": "lm_d24", "JPEG+LM": "jpeg_lm", "JPEG+LM-D16": "jpeg_lm_d16",
                    "T500+LM": "t500_lm", "T500+LM-D16": "t500_lm_d16", "T600+LM": "t600_lm",
                    "T600+LM-D16": "t600_lm_d16"}},
}


PROMPT_FORMS = ("token", "class")  # "a <tok> on the beach" (the paper's) | "a <tok> dog on the beach"


def column_source(spec: str) -> tuple[str, str]:
    """A column's (defense, prompt form): "lm" is lm's samples from the paper's token-only
    prompts, "lm/class" from prompts that also carry the class noun."""
    defense, _, form = spec.partition("/")
    form = form or "token"
    if form not in PROMPT_FORMS:
        raise DiffsecError(f"column {spec!r}: prompt form {form!r} is not one of {PROMPT_FORMS}")
    return defense, form


PAPER_TABLES = [t for t, shape in TABLES.items() if not shape["source"].startswith("ours")]


def column_spec(defense: str, form: str) -> str:
    """The inverse of `column_source`: how eval-ti labels (defense, prompt form)'s samples."""
    return defense if form == "token" else f"{defense}/{form}"


def defenses_of(table: str) -> list[str]:
    return list(dict.fromkeys(column_source(c)[0] for c in TABLES[table]["columns"].values()))


def columns_of(table: str) -> list[tuple[str, str]]:
    """(defense, prompt form) of every column, in order."""
    return [column_source(c) for c in TABLES[table]["columns"].values()]


def sets_of(table: str) -> list[str]:
    return [ALL_ROWS[r] for r in TABLES[table]["rows"]]


def table_cells(table: str, by_defense: dict[str, dict], profile: str, seed: int,
                reference: dict | None = None) -> list[Cell]:
    """The cells of one SZT table from eval-ti measurements ({column spec: metrics.json}), and
    with `reference` (eval-ti-reference's metrics.json) its floor and ceiling rows.

    Cell (row, column, metric) is the column's defense's value on the row's training set (its
    mean over concepts, `per_set`); where a table has all six of the paper's poison rows, `Psn Avg`
    is the plain mean of those six values (and counts their generated images together); extra
    rows (DA-targeted) are shown but not averaged."""
    shape, paper = TABLES[table], paper_values("szt")
    cells = []
    for column, defense in shape["columns"].items():
        if defense not in by_defense:
            raise DiffsecError(f"table {table}: no eval-ti artifact for defense {defense!r} "
                               f"(column {column}); got {sorted(by_defense)}")
        cells += _column_cells(table, column, defense, by_defense[defense], paper, profile, seed)
    if reference is not None:
        cells += reference_cells(table, reference, profile, seed)
    return cells


def reference_cells(table: str, reference: dict, profile: str, seed: int) -> list[Cell]:
    """Floor and ceiling of the DINO metric, raw and centred, in the Reference column."""
    cells = []
    for key in ("dino", "dino_centred"):
        suffix = "" if key == "dino" else "_centred"
        for row, (level, n) in REFERENCE_ROWS.items():
            cells.append(Cell(table=table, row=row, column=REFERENCE_COLUMN, metric="dino",
                              backbone=reference["backbones"][key], value=reference["mean"][level + suffix],
                              paper_value="", profile=profile, n_samples=reference[n], seed=seed))
    return cells


def _column_cells(table, column, defense, m, paper, profile, seed) -> list[Cell]:
    import numpy as np

    def cell(row, key, value, n, se):
        metric = MEASURED[key]
        own = key == metric  # the paper's numbers are the raw backbone's
        return Cell(table=table, row=row, column=column, metric=metric, backbone=m["backbones"][key],
                    value=value, paper_value=paper.get((table, row, column, metric), "") if own else "",
                    profile=profile, n_samples=n, seed=seed, se="" if se is None or np.isnan(se) else se)

    cells = []
    for metric in MEASURED:
        poisons = []
        for row in TABLES[table]["rows"]:
            per = m["per_set"].get(ALL_ROWS[row])
            if per is None:
                raise DiffsecError(f"defense {defense!r} has no runs on set {ALL_ROWS[row]!r}")
            if row in PAPER_POISONS:
                poisons.append(per)
            cells.append(cell(row, metric, per[metric], per["n_generated"], per.get(f"{metric}_se")))
        if len(poisons) == len(PAPER_POISONS):  # the paper averages the six poisons
            ses = [p.get(f"{metric}_se") for p in poisons]
            cells.append(cell(POISON_AVG, metric, float(np.mean([p[metric] for p in poisons])),
                              sum(p["n_generated"] for p in poisons), None if None in ses else mean_se(ses)))
    return cells
