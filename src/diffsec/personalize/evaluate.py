"""SZT Sec. 5.1.3 metrics of textual-inversion samples, per run and averaged over concepts.

For a run (one concept, one training set, one defense) the reference is the concept's CLEAN
training images, whatever set the token was learned from: a poison that succeeds makes the
samples drift away from the real object. Per run:

  dino        mean cosine similarity of every (generated, clean reference) feature pair
  fid         Fréchet distance between the generated and the clean reference features (the
              paper does the same with ~120 vs ~5 images, hence its values in the hundreds)
  clip_score  mean max(cos(image, text), 0) with the prompt's token removed ("a dog in the snow"),
              on the [0, 1] scale of the paper's tables (torchmetrics' CLIPScore is 100 x this)
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from diffsec.errors import DiffsecError
from diffsec.metrics.fid import fid
from diffsec.metrics.similarity import clip_score_from_features, mean_pairwise_cosine
from diffsec.personalize.generate import format_prompt

METRICS = ("dino", "fid", "clip_score")


def load_inputs(runs_file: Path, generated_file: Path, clean_file: Path) -> tuple[list[dict], dict, dict]:
    """(train-ti runs.json entries, generate-ti arrays, clean concept set), each checked."""
    import json

    from diffsec.imageset import load_images, load_imageset

    for f in (runs_file, generated_file, clean_file):
        if not Path(f).is_file():
            raise DiffsecError(f"{f} is missing: is it a finished artifact?")
    try:
        runs = json.loads(Path(runs_file).read_text())
    except json.JSONDecodeError:
        runs = None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and {"name", "indices"} <= set(r) for r in runs):
        raise DiffsecError(f"{runs_file}: not a train-ti runs.json (a JSON list of runs)")
    generated, clean = load_imageset(generated_file), load_images(clean_file, "clean set")
    missing = {"images", "run", "template", "class_name"} - set(generated)
    if missing:
        raise DiffsecError(f"{generated_file}: no arrays {sorted(missing)} (not a generate-ti output?)")
    return runs, generated, clean


def clip_texts(templates: list[str], template_index: np.ndarray, class_names: np.ndarray) -> list[str]:
    """The caption CLIP sees for each image: its prompt with the class noun in the token's place."""
    out = []
    for j, cls in zip(template_index, class_names, strict=True):
        t = templates[int(j)]
        out.append(format_prompt(t, "", cls) if "{1}" in t else format_prompt(t, cls, ""))
    return out


def evaluate_runs(generated: dict, runs: list[dict], clean: dict, templates: list[str],
                  sim_backbone, fid_backbone, clip_backbone, progress=None) -> dict[str, dict]:
    """Metrics of every run. `generated`: generate-ti arrays (images, run, template, class_name);
    `runs`: train-ti's runs.json entries (name, indices, tags); `clean`: the clean concept set the
    runs' `indices` point into (all sets keep its rows)."""
    by_run = defaultdict(list)
    for i, r in enumerate(generated["run"].astype(str)):
        by_run[r].append(i)
    texts = clip_texts(templates, generated["template"], generated["class_name"].astype(str))
    uniq = sorted(set(texts))
    text_feats = dict(zip(uniq, clip_backbone.text_features(uniq), strict=True))
    out = {}
    for run in runs:
        name = run["name"]
        idx = by_run.get(name)
        if not idx:
            raise DiffsecError(f"run {name!r} has no generated images")
        gen = generated["images"][idx]
        ref = clean["images"][np.asarray(run["indices"])]
        if len(ref) < 2:
            raise DiffsecError(f"run {name!r}: FID needs at least 2 reference images")
        g_sim, r_sim = sim_backbone.features(gen), sim_backbone.features(ref)
        g_fid, r_fid = (g_sim, r_sim) if fid_backbone is sim_backbone else \
            (fid_backbone.features(gen), fid_backbone.features(ref))
        cs = clip_score_from_features(clip_backbone.features(gen), np.stack([text_feats[texts[i]] for i in idx]))
        out[name] = {"dino": mean_pairwise_cosine(g_sim, r_sim), "fid": fid(g_fid, r_fid),
                     "clip_score": float(cs.mean()) / 100, "n_generated": len(idx), "n_reference": len(ref),
                     **{k: str(v) for k, v in run.get("tags", {}).items()}}
        if progress is not None:
            progress(1)
    return out


def average_over_concepts(per_run: dict[str, dict]) -> dict[str, dict]:
    """Per training set: each metric's mean over the concepts (the paper's per-cell number)."""
    groups = defaultdict(list)
    for m in per_run.values():
        if "set" not in m:
            raise DiffsecError("runs need a 'set' tag to be averaged per training set")
        groups[m["set"]].append(m)
    return {s: {**{k: float(np.mean([m[k] for m in ms])) for k in METRICS},
                "n_concepts": len(ms), "n_generated": int(sum(m["n_generated"] for m in ms))}
            for s, ms in groups.items()}
