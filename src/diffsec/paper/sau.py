"""The shape of SAU's tables (paper 001): Table 3 (poison removal accuracy) and Table 4 (CLIP-IQA),
rows the defenses, one column: the pixel backdoor.

Both tables are the pixel backdoor's: the paper discusses them under 5.2.1 (Pixel Backdoor), and
Concept Erasure, a row of both, appears only in the pixel figure (the style figure, Table 2, has
no numbers). Removal accuracy is the fraction of triggered test prompts whose generation no longer
shows the target after the defense (stored as a fraction; the paper prints percent), over "more
than 100" images; CLIP-IQA (Wang et al. 2023, `diffsec.metrics.clip_iqa`) the mean image-quality
score of the defended generations. Table 3 has no "Poisoned Unet" row. The paper names neither
its data set nor its model (sections 5.1.1-5.1.2 are empty); the figure prompts are below.
"""

from __future__ import annotations

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
