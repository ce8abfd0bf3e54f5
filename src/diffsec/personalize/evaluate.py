"""SZT Sec. 5.1.3 metrics of textual-inversion samples, per run and averaged over concepts.

For a run (one concept, one training set, one defense) the reference is the concept's CLEAN
training images, whatever set the token was learned from: a poison that succeeds makes the
samples drift away from the real object. Per run:

  dino        mean cosine similarity of every (generated, clean reference) feature pair
  dino_centred  the same after subtracting mu, the mean feature of a class-balanced sample of
              natural images (CIFAR-10 test, eval-ti-reference's centre.npy): post-ReLU features
              (ResNet-56's penultimate layer) are non-negative, so every raw cosine is large;
              centring removes the offset all images share and keeps what tells objects apart.
              (Centring on the concepts' own photos would not do: on a run's references it zeroes
              a perfect sample's feature, and on a few concepts the mean is itself a concept mix.)
  fid         Fréchet distance between the generated and the clean reference features (the
              paper does the same with ~120 vs ~5 images, hence its values in the hundreds)
  clip_score  mean max(cos(image, text), 0) with the prompt's token removed ("a dog in the snow"),
              on the [0, 1] scale of the paper's tables (torchmetrics' CLIPScore is 100 x this)

Standard errors (`dino_se`, `dino_centred_se`): a run's DINO is the mean over its n generated
images of s_i = mean_j cos(g_i, r_j), so se = sd(s_i) / sqrt(n) (sd with n - 1); a training set's
mean over C concepts has se = sqrt(sum_c se_c^2) / C. This is the sampling noise of generation from
the learned tokens; the noise of training them (one seed per run) is not in it.

What a DINO value means depends on the backbone, so `reference_levels` measures, per concept,
the same statistic on two sets that bracket it (both with and without centring):

  floor       n CIFAR-10 test images of the concept's class (class-balanced over all ten when
              the class is not a CIFAR class, e.g. teapot) vs the concept's references: what
              "some object of that class" scores
  ceiling     each reference photo held out against the concept's other photos (the mean
              over ordered pairs i != j): what a new photo of the same object scores
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from diffsec.errors import DiffsecError
from diffsec.metrics.fid import fid
from diffsec.metrics.similarity import clip_score_from_features, mean_pairwise_cosine
from diffsec.personalize.generate import format_prompt
from diffsec.tables import mean_se

METRICS = ("dino", "dino_centred", "fid", "clip_score")
WITH_SE = ("dino", "dino_centred")   # means over generated images: each has a `<metric>_se`


def per_image_cosine(gen_feats, ref_feats) -> np.ndarray:
    """s_i = mean_j cos(g_i, r_j): each generated image's mean similarity to the references (their
    mean is mean_pairwise_cosine)."""
    from diffsec.metrics.similarity import cosine_matrix

    return np.asarray(cosine_matrix(gen_feats, ref_feats), np.float64).mean(axis=1)


def mean_and_se(scores: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error sd / sqrt(n) (NaN for one score)."""
    n = len(scores)
    se = float(np.std(scores, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(np.mean(scores)), se


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
                  sim_backbone, fid_backbone, clip_backbone, centre: np.ndarray, progress=None) -> dict[str, dict]:
    """Metrics of every run. `generated`: generate-ti arrays (images, run, template, class_name);
    `runs`: train-ti's runs.json entries (name, indices, tags); `clean`: the clean concept set the
    runs' `indices` point into (all sets keep its rows); `centre`: mu of dino_centred."""
    by_run = defaultdict(list)
    for i, r in enumerate(generated["run"].astype(str)):
        by_run[r].append(i)
    texts = clip_texts(templates, generated["template"], generated["class_name"].astype(str))
    mu = np.asarray(centre, np.float64)
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
        dino, dino_se = mean_and_se(per_image_cosine(g_sim, r_sim))
        centred, centred_se = mean_and_se(per_image_cosine(g_sim - mu, r_sim - mu))
        out[name] = {"dino": dino, "dino_se": dino_se, "dino_centred": centred, "dino_centred_se": centred_se,
                     "fid": fid(g_fid, r_fid), "clip_score": float(cs.mean()) / 100, "n_generated": len(idx),
                     "n_reference": len(ref), **{k: str(v) for k, v in run.get("tags", {}).items()}}
        if progress is not None:
            progress(1)
    return out


def average_over_concepts(per_run: dict[str, dict]) -> dict[str, dict]:
    """Per training set: each metric's mean over the concepts (the paper's per-cell number), and
    the standard error of that mean for the metrics that have one (module docstring)."""
    groups = defaultdict(list)
    for m in per_run.values():
        if "set" not in m:
            raise DiffsecError("runs need a 'set' tag to be averaged per training set")
        groups[m["set"]].append(m)
    return {s: {**{k: float(np.mean([m[k] for m in ms])) for k in METRICS},
                **{f"{k}_se": mean_se([m[f"{k}_se"] for m in ms]) for k in WITH_SE if all(f"{k}_se" in m for m in ms)},
                "n_concepts": len(ms), "n_generated": int(sum(m["n_generated"] for m in ms))}
            for s, ms in groups.items()}



def held_out_cosine(feats) -> float:
    """Mean cosine over ordered pairs (i, j), i != j, of one set: each row held out against the rest."""
    from diffsec.metrics.similarity import cosine_matrix

    k = len(feats)
    if k < 2:
        raise DiffsecError("a ceiling needs at least 2 reference photos of the concept")
    c = cosine_matrix(feats, feats)
    return float((c.sum() - np.trace(c)) / (k * (k - 1)))


def balanced_indices(labels: np.ndarray, k: int, n: int, seed: int) -> np.ndarray:
    """n rows spread evenly over classes 0..k-1 (the first n % k classes one more), a seeded draw
    without replacement, in index order."""
    rng = np.random.default_rng(seed)
    per = [np.flatnonzero(labels == c) for c in range(k)]
    take = [n // k + (c < n % k) for c in range(k)]
    if any(len(p) < t for p, t in zip(per, take, strict=True)):
        raise DiffsecError(f"floor: too few images per class for {n} class-balanced draws")
    return np.sort(np.concatenate([rng.choice(p, t, replace=False) for p, t in zip(per, take, strict=True)]))


def floor_indices(labels: np.ndarray, names: list[str], class_name: str, n: int, seed: int) -> np.ndarray:
    """n rows of a labelled set: of `class_name` if it is one of `names`, else class-balanced
    over all of them; a seeded draw without replacement, in index order."""
    if class_name not in names:
        return balanced_indices(labels, len(names), n, seed)
    pool = np.flatnonzero(labels == names.index(class_name))
    if len(pool) < n:
        raise DiffsecError(f"floor: {len(pool)} images of class {class_name!r}, need {n}")
    return np.sort(np.random.default_rng(seed).choice(pool, n, replace=False))


def centre_of(others: dict, other_names: list[str], backbone, n: int, seed: int) -> np.ndarray:
    """mu: the mean feature of n class-balanced images of a labelled set (every class if n is
    not smaller than the set)."""
    labels = np.asarray(others["labels"])
    idx = np.arange(len(labels)) if n >= len(labels) else balanced_indices(labels, len(other_names), n, seed)
    return backbone.features(others["images"][idx]).mean(0)


def reference_levels(clean: dict, others: dict, other_names: list[str], backbone, centre: np.ndarray,
                     n: int = 100, seed: int = 0) -> dict:
    """Floor and ceiling of the DINO similarity (raw and centred on `centre`) per concept and
    their means. `clean`: the concept set (images, concept, class_name); `others`: a labelled set
    (images, labels) whose classes are `other_names` (CIFAR-10 test)."""
    feats = backbone.features(clean["images"])
    mu = np.asarray(centre, np.float64)
    concepts = clean["concept"].astype(str)
    classes = clean["class_name"].astype(str)
    per = {}
    for c in dict.fromkeys(concepts):
        rows = concepts == c
        ref, cls = feats[rows], str(classes[rows][0])
        idx = floor_indices(np.asarray(others["labels"]), other_names, cls, n, seed)
        f = backbone.features(others["images"][idx])
        per[c] = {"class": cls, "floor_source": cls if cls in other_names else "all classes",
                  "n_floor": int(len(idx)), "n_reference": int(rows.sum()),
                  "floor": mean_pairwise_cosine(f, ref), "floor_centred": mean_pairwise_cosine(f - mu, ref - mu),
                  "ceiling": held_out_cosine(ref), "ceiling_centred": held_out_cosine(ref - mu)}
    keys = ("floor", "floor_centred", "ceiling", "ceiling_centred")
    return {"per_concept": per, "mean": {k: float(np.mean([m[k] for m in per.values()])) for k in keys},
            "n_concepts": len(per), "n_floor": int(sum(m["n_floor"] for m in per.values())),
            "n_reference": int(sum(m["n_reference"] for m in per.values()))}
