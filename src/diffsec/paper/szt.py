"""The shape of the SZT paper's tables: rows are training sets, columns are defenses.

Each column names the defense (a key of `szt.defenses` in the config) whose runs fill it. The
paper values are CustomConcept101 numbers for the main table (Tables 1, 15, 16) and
NovelConcepts10 numbers for the ablations (Tables 6-14); we run the 10 DreamBooth subjects
(neither set is available offline), so they are references for trends, not targets.
"""

from __future__ import annotations

from diffsec.errors import DiffsecError
from diffsec.paper import paper_values
from diffsec.tables import Cell

ROWS = {"Clean": "clean", "ADM+": "adm+", "ADM-": "adm-", "SDS+": "sds+", "SDS-": "sds-",
        "EA": "ea", "DA": "da"}
POISON_AVG = "Psn Avg"  # mean over the six poison rows (not Clean)
METRICS = {"dino": "Table 1 / 6 / 9 / 12", "fid": "Table 15 / 7 / 10 / 13",
           "clip_score": "Table 16 / 8 / 11 / 14"}

TABLES: dict[str, dict] = {
    "szt": {
        "rows": list(ROWS), "source": "CustomConcept101, Tables 1 (DINOv2), 15 (FID), 16 (CLIP)",
        "columns": {"Nominal": "nominal", "Regen": "regen", "PDMPure": "pdmpure", "AdvClean": "advclean",
                    "JPEG": "jpeg", "T600": "t600", "LM": "lm", "JPEG+T600": "jpeg_t600",
                    "JPEG+LM": "jpeg_lm", "SZT": "szt"}},
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


def defenses_of(table: str) -> list[str]:
    return list(dict.fromkeys(TABLES[table]["columns"].values()))


def sets_of(table: str) -> list[str]:
    return [ROWS[r] for r in TABLES[table]["rows"]]


def table_cells(table: str, by_defense: dict[str, dict], profile: str, seed: int) -> list[Cell]:
    """The cells of one SZT table from eval-ti measurements ({defense label: metrics.json}).

    Cell (row, column, metric) is the column's defense's value on the row's training set (its
    mean over concepts, `per_set`); where a table has all six poison rows, `Psn Avg` is the
    plain mean of those six values (and counts their generated images together)."""
    shape, paper = TABLES[table], paper_values("szt")
    cells = []
    for column, defense in shape["columns"].items():
        if defense not in by_defense:
            raise DiffsecError(f"table {table}: no eval-ti artifact for defense {defense!r} "
                               f"(column {column}); got {sorted(by_defense)}")
        cells += _column_cells(table, column, defense, by_defense[defense], paper, profile, seed)
    return cells


def _column_cells(table, column, defense, m, paper, profile, seed) -> list[Cell]:
    import numpy as np

    def cell(row, metric, value, n):
        return Cell(table=table, row=row, column=column, metric=metric, backbone=m["backbones"][metric],
                    value=value, paper_value=paper.get((table, row, column, metric), ""), profile=profile,
                    n_samples=n, seed=seed)

    cells = []
    for metric in METRICS:
        poisons = []
        for row in TABLES[table]["rows"]:
            per = m["per_set"].get(ROWS[row])
            if per is None:
                raise DiffsecError(f"defense {defense!r} has no runs on set {ROWS[row]!r}")
            if row != "Clean":
                poisons.append(per)
            cells.append(cell(row, metric, per[metric], per["n_generated"]))
        if len(poisons) == 6:  # the paper averages the six poisons
            cells.append(cell(POISON_AVG, metric, float(np.mean([p[metric] for p in poisons])),
                              sum(p["n_generated"] for p in poisons)))
    return cells
