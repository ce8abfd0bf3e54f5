"""The shape of the SZT paper's tables: rows are training sets, columns are defenses.

Each column names the defense (a key of `szt.defenses` in the config) whose runs fill it. The
paper values are CustomConcept101 numbers for the main table (Tables 1, 15, 16) and
NovelConcepts10 numbers for the ablations (Tables 6-14); we run the 10 DreamBooth subjects
(neither set is available offline), so they are references for trends, not targets.
"""

from __future__ import annotations

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
