"""The shape of SAU's tables (paper 001): Table 3 (poison removal accuracy) and Table 4 (CLIP-IQA),
rows the defenses, one column: the pixel backdoor.

Both tables are the pixel backdoor's: the paper discusses them under 5.2.1 (Pixel Backdoor), and
Concept Erasure, a row of both, appears only in the pixel figure (the style figure, Table 2, has
no numbers). Removal accuracy is the fraction of triggered test prompts whose generation no longer
shows the target after the defense (stored as a fraction; the paper prints percent), over "more
than 100" images; CLIP-IQA (Wang et al. 2023, `diffsec.metrics.clip_iqa`) the mean image-quality
score of the defended generations. Table 3 has no "Poisoned Unet" row. The paper names neither
its data set nor its model (sections 5.1.1-5.1.2 are empty); the figure prompts are below.

Our table `sau` (long format; `table_cells`, filled from `sau-eval` measurements, each labelled with
its backdoor, method, prompt set and SAU variant) has the paper's rows plus "Unpoisoned" (the world
before the attack) and the columns Pixel and Style. Per cell, from the triggered-prompt set:
removal_accuracy = 1 - ASR (Table 3's number where the paper has one), asr_triggered, clip_iqa
(Table 4's), clip_zero_shot, class_fidelity, psnr / ssim against the seed-matched Unpoisoned
generation, colourfulness, and for SAU the mask IoUs with the patch's latent footprint; from the
clean-prompt set: asr_clean (the detector's false alarms). `sau_detectors` holds the judges'
held-out accuracy, false-alarm and miss rates on real images (through the world's VAE round trip,
and without it); `sau_sweep` one row per SAU setting
(the main setting included) with removal accuracy, CLIP-IQA, PSNR / SSIM and the IoUs. A paper
value without a measurement of ours stays in the table, its value empty and its note "not run: ...".
"""

from __future__ import annotations

from diffsec.paper import paper_values
from diffsec.tables import Cell

# Table row -> method key (the artifact label a later stage fills the row from).
METHODS = {"Poisoned Unet": "poisoned", "Finetune Reversal": "finetune_reversal",
           "Concept Erasure": "concept_erasure", "Spatial Attention Unlearning": "sau"}
COLUMNS = {"Pixel": "pixel"}  # column -> BadT2I backdoor
BACKDOORS = ("pixel", "style")  # the paper's two attacks (style: black and white images)
TABLES: dict[str, dict] = {
    "sau_removal": {"source": "Table 3", "metric": "removal_accuracy", "columns": list(COLUMNS),
                    "rows": ["Finetune Reversal", "Concept Erasure", "Spatial Attention Unlearning"]},
    "sau_clip_iqa": {"source": "Table 4", "metric": "clip_iqa", "columns": list(COLUMNS),
                     "rows": list(METHODS)},
}
FIGURE_PROMPTS = ("A majestic castle on a hill", "Starry night sky", "A futuristic city skyline at night",
                  "Blooming cherry blossom tree")  # Tables 1-2 (figures), each with the trigger prepended
N_TEST = 100          # "more than 100 tested images" (removal accuracy)
ERASE_EPOCHS = 400    # Concept Erasure: the paper's best trade-off
REVERSAL_EPOCHS = 200  # Finetune Reversal reaches 97 % after 200 epochs

# Our rows: the paper's, with the world before the attack first.
ROWS = {"Unpoisoned": "unpoisoned", **METHODS}
ROW_OF = {v: k for k, v in ROWS.items()}
COLUMN_OF = {"pixel": "Pixel", "style": "Style"}
PAPER_TABLE = {"removal_accuracy": "sau_removal", "clip_iqa": "sau_clip_iqa"}
# metric of a triggered-prompt evaluation -> our table's metric name
TRIGGERED = {"removal_accuracy": "removal_accuracy", "asr": "asr_triggered", "clip_iqa": "clip_iqa",
             "clip_zero_shot": "clip_zero_shot", "class_fidelity": "class_fidelity", "psnr": "psnr",
             "ssim": "ssim", "colourfulness": "colourfulness", "iou_primary": "iou_primary",
             "iou_region": "iou_region"}
SWEEP = ("removal_accuracy", "clip_iqa", "psnr", "ssim", "iou_primary", "iou_region", "mask_area_region")
SAU_KEYS = ("tau", "tau_s", "k", "alpha", "sigma", "sigma_f", "source")
DETECTOR_METRICS = {"heldout_accuracy": "accuracy", "heldout_false_alarm_rate": "false_alarm_rate",
                    "heldout_miss_rate": "miss_rate"}


def setting(sau: dict) -> str:
    """The sweep row of an SAU setting, e.g. 'tau 0.5 · tau_s 0.3 · k 20 · alpha 1 · sigma 1 · sigma_f 0.5 · delta'."""
    parts = [f"{k} {sau[k]:g}" for k in SAU_KEYS[:-1]]
    return " · ".join([*parts, str(sau["source"])])


def _key(m: dict) -> tuple[str, str, str, str]:
    return m["backdoor"], m["method"], m.get("variant", ""), m["prompt_set"]


def index_evals(evals: list[dict]) -> dict[tuple[str, str, str, str], dict]:
    """{(backdoor, method, variant, prompt set): evaluation}; a cell measured twice is an error."""
    out: dict[tuple[str, str, str, str], dict] = {}
    for m in evals:
        k = _key(m)
        if m["backdoor"] not in COLUMN_OF or m["method"] not in ROW_OF:
            raise ValueError(f"evaluation {m.get('label')!r}: unknown backdoor {m['backdoor']!r} or method "
                             f"{m['method']!r}")
        if k in out:
            raise ValueError(f"two evaluations of {k} ({out[k].get('label')!r}, {m.get('label')!r})")
        out[k] = m
    return out


def _values(m: dict) -> dict[str, tuple[float, str, float | str]]:
    """{metric: (value, backbone, se)} of one triggered-prompt evaluation, removal accuracy derived
    (its se is the ASR's); se empty where sau-eval recorded none."""
    got = dict(m["metrics"], removal_accuracy=1 - m["metrics"]["asr"])
    err = dict(m.get("stderr", {}))
    if "asr" in err:
        err["removal_accuracy"] = err["asr"]
    return {name: (got[src], m.get("backbones", {}).get(src, ""), err.get(src, "")) for src, name in TRIGGERED.items()
            if src in got}


def table_cells(evals: list[dict], profile: str, seed: int) -> list[Cell]:
    """Cells of `sau`, `sau_detectors` and `sau_sweep` (module docstring) from sau-eval metrics."""
    paper, by = paper_values("sau"), index_evals(evals)
    backbone_of = {TRIGGERED.get(k, k): v for m in evals for k, v in m.get("backbones", {}).items()}
    cells: list[Cell] = []
    for row, method in ROWS.items():
        for backdoor, column in COLUMN_OF.items():
            trig, clean = by.get((backdoor, method, "", "triggered")), by.get((backdoor, method, "", "clean"))
            values = _values(trig) if trig else {}
            for metric, (value, backbone, se) in values.items():
                pv = paper.get((PAPER_TABLE.get(metric, ""), row, column, metric), "")
                cells.append(Cell("sau", row, column, metric, backbone, value, pv, profile, trig["n"], seed, se=se))
            if clean:
                cells.append(Cell("sau", row, column, "asr_clean", "", clean["metrics"]["asr"], "", profile,
                                  clean["n"], seed))
            for metric, table in PAPER_TABLE.items():
                pv = paper.get((table, row, column, metric))
                if pv is not None and metric not in values:
                    cells.append(Cell("sau", row, column, metric, backbone_of.get(metric, ""), "", pv, profile,
                                      0, seed, f"not run: no {method} evaluation of the {backdoor} backdoor on "
                                      "triggered prompts"))
    cells += detector_cells(evals, profile, seed) + sweep_cells(by, profile, seed)
    return cells


def detector_cells(evals: list[dict], profile: str, seed: int) -> list[Cell]:
    """One row per detector kind: its held-out accuracy, false-alarm and miss rates on real images."""
    seen: dict[str, dict] = {}
    for m in evals:
        d = m.get("detector") or {}
        if d and seen.setdefault(d["kind"], d) != d:
            raise ValueError(f"two different {d['kind']} detectors among the evaluations")
    cells = []
    for kind, d in sorted(seen.items()):
        column = "held-out real images" + (" (VAE round trip)" if d.get("vae") else "")
        cells += [Cell("sau_detectors", f"{kind} detector", column, metric, "", d[src], "", profile,
                       d.get("n_heldout", ""), seed) for src, metric in DETECTOR_METRICS.items()
                  if d.get(src) is not None]
        raw = d.get("heldout_without_roundtrip") if d.get("vae") else None
        if raw:
            cells += [Cell("sau_detectors", f"{kind} detector", "held-out real images (no round trip)", metric, "",
                           raw[metric], "", profile, raw.get("n", ""), seed)
                      for metric in DETECTOR_METRICS.values() if raw.get(metric) is not None]
    return cells


def sweep_cells(by: dict, profile: str, seed: int) -> list[Cell]:
    """One row per SAU setting measured on triggered prompts (its variant name in brackets)."""
    cells = []
    runs = sorted(((setting(m["sau"]), v, b, m) for (b, meth, v, ps), m in by.items()
                   if meth == "sau" and ps == "triggered" and m.get("sau")), key=lambda t: (t[0], t[1], t[2]))
    for name, variant, backdoor, m in runs:
        values = dict(_values(m), mask_area_region=(m["metrics"].get("mask_area_region"), "", ""))
        row = f"{name} [{variant or 'main'}]"
        cells += [Cell("sau_sweep", row, COLUMN_OF[backdoor], metric, values[metric][1], values[metric][0], "",
                       profile, m["n"], seed, se=values[metric][2])
                  for metric in SWEEP if values.get(metric, (None,))[0] is not None]
    return cells
