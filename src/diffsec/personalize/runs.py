"""The run-spec format of batched textual inversion: one JSON list, one object per run.

    [{"name": "backpack-adm-szt",            required, unique (case-insensitive), no spaces
      "images": "poison/adm/images.npz",     required: image set (uint8 NHWC `images`)
      "concept": "backpack",                 optional: rows whose `concept` equals this, or
      "indices": [0, 1, 2, 3, 4],            optional: these rows (neither: every row)
      "class": "backpack",                   class noun; default: the rows' `class_name`
      "sampler": "high:500",                 timestep sampler spec (default "uniform")
      "objective": "lm",                     nominal | lm | im | lim | zm (default "nominal")
      "dilation": 16,                        mask dilation in px at 512 (default 0)
      "seed": 0,                             default: the CLI's --seed
      "norm": "all",                         masked-loss normalisation (default "all")
      "masks_from": "data/concepts.npz",     where `masks` are, same rows (default: "images")
      "flip_p": 0.5,                         horizontal-flip probability (default 0.5)
      "token": "<backpack-adm-szt>",         default "<name>"
      "tags": {"concept": "backpack", "set": "adm+"}}]   free labels kept in runs.json

Relative paths are read from the current directory, like every other CLI path. Runs with the
same seed make the same random draws (image order, flips, templates, timesteps, noise): common
random numbers for paired comparisons (clean vs poisoned, defense vs none); give different seeds
for independent repeats.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from diffsec.errors import DiffsecError

FIELDS = {"name", "images", "concept", "indices", "class", "sampler", "objective", "dilation",
          "seed", "norm", "masks_from", "flip_p", "token", "tags"}
# The spec's defaults (the one place they are written; TIRun itself takes every setting).
SPEC_DEFAULTS = {"sampler": "uniform", "objective": "nominal", "dilation": 0, "norm": "all", "flip_p": 0.5}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


@dataclass
class TIRun:
    """One textual-inversion run: its data (already selected) and its defense settings."""

    name: str
    images: np.ndarray  # uint8 N x H x W x 3
    class_noun: str
    masks: np.ndarray | None  # N x H x W, 1 = concept (needed unless objective nominal)
    sampler: str
    objective: str
    dilation: int
    seed: int
    norm: str
    flip_p: float
    token: str = ""  # default "<name>"
    tags: dict = field(default_factory=dict)  # labels for the evaluation (concept, set), untouched
    source: dict = field(default_factory=dict)  # where the data came from, for the manifest

    def __post_init__(self):
        self.token = self.token or f"<{self.name}>"

    def check(self, T: int = 1000) -> None:
        from diffsec.defense.masking import NORMS, OBJECTIVES
        from diffsec.defense.timesteps import make_sampler

        where = f"run {self.name!r}"
        if not NAME.match(self.name):
            raise DiffsecError(f"{where}: names are letters, digits and _.+=- (no spaces)")
        if self.objective not in OBJECTIVES:
            raise DiffsecError(f"{where}: unknown objective {self.objective!r} ({' | '.join(OBJECTIVES)})")
        if self.norm not in NORMS:
            raise DiffsecError(f"{where}: unknown norm {self.norm!r} ({' | '.join(NORMS)})")
        try:
            make_sampler(self.sampler, T)
        except ValueError as e:
            raise DiffsecError(f"{where}: {e}") from None
        im = self.images
        if im.dtype != np.uint8 or im.ndim != 4 or im.shape[-1] != 3 or not len(im):
            raise DiffsecError(f"{where}: images must be a non-empty uint8 N x H x W x 3 array")
        if self.objective != "nominal":
            if self.masks is None:
                raise DiffsecError(f"{where}: objective {self.objective!r} needs masks")
            if self.masks.shape != im.shape[:3]:
                raise DiffsecError(f"{where}: masks {self.masks.shape} do not match images {im.shape}")
        if int(self.dilation) < 0 or not 0 <= float(self.flip_p) <= 1:
            raise DiffsecError(f"{where}: dilation must be >= 0 and flip_p in [0, 1]")
        if not self.class_noun.strip() or any(c.isspace() for c in self.token):
            raise DiffsecError(f"{where}: needs a class noun and a token without spaces")

    def describe(self) -> dict:
        """The run's settings and data provenance (JSON-able), without the pixels."""
        d = {k: v for k, v in asdict(self).items() if k not in ("images", "masks", "source")}
        return {**d, "n_images": int(len(self.images)), **self.source}


def _select(data: dict, spec: dict, where: str, path: str) -> np.ndarray:
    n = len(data["images"])
    if "indices" in spec and "concept" in spec:
        raise DiffsecError(f"{where}: give 'indices' or 'concept', not both")
    if "concept" in spec:
        if "concept" not in data:
            raise DiffsecError(f"{where}: {path} has no 'concept' array to select {spec['concept']!r}")
        idx = np.flatnonzero(data["concept"].astype(str) == str(spec["concept"]))
        if not len(idx):
            raise DiffsecError(f"{where}: {path} has no images of concept {spec['concept']!r}")
        return idx
    if "indices" in spec:
        try:
            idx = np.asarray(spec["indices"], dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise DiffsecError(f"{where}: 'indices' must be a list of integers") from None
        if not len(idx) or idx.min() < 0 or idx.max() >= n:
            raise DiffsecError(f"{where}: indices must be non-empty and in 0..{n - 1}")
        return idx
    return np.arange(n)


def parse_runs(specs, default_seed: int = 0) -> tuple[list[TIRun], dict[str, str]]:
    """Validated TIRuns from a list of spec dicts, and the image files they read (for hashing)."""
    from diffsec.imageset import load_imageset

    if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
        raise DiffsecError("the run spec must be a non-empty JSON list of objects")
    cache: dict[str, dict] = {}

    def load(path) -> dict:
        key = os.fspath(path)
        if key not in cache:
            cache[key] = load_imageset(key)
            if "images" not in cache[key]:
                raise DiffsecError(f"{key}: no 'images' array")
        return cache[key]

    runs, seen = [], set()
    for i, spec in enumerate(specs):
        where = f"run {spec.get('name', i)!r}"
        unknown = sorted(set(spec) - FIELDS)
        if unknown:
            raise DiffsecError(f"{where}: unknown fields {unknown} (known: {sorted(FIELDS)})")
        if "name" not in spec or "images" not in spec:
            raise DiffsecError(f"{where}: 'name' and 'images' are required")
        name = str(spec["name"])
        if name.lower() in seen:
            raise DiffsecError(f"duplicate run name {name!r}")
        seen.add(name.lower())
        data = load(spec["images"])
        idx = _select(data, spec, where, spec["images"])
        masks = None
        mdata = load(spec.get("masks_from", spec["images"]))
        if "masks" in mdata:
            if len(mdata["masks"]) != len(data["images"]):
                raise DiffsecError(f"{where}: masks_from has {len(mdata['masks'])} rows, images "
                                   f"{len(data['images'])}")
            masks = mdata["masks"][idx].astype(bool)
        noun = spec.get("class")
        if noun is None:
            names = sorted({str(c) for c in data["class_name"][idx]}) if "class_name" in data else []
            if len(names) != 1:
                raise DiffsecError(f"{where}: give 'class' (the rows have class names {names})")
            noun = names[0]
        opt = {**SPEC_DEFAULTS, **spec}
        try:
            run = TIRun(name=name, images=data["images"][idx], class_noun=str(noun), masks=masks,
                        sampler=str(opt["sampler"]), objective=str(opt["objective"]),
                        dilation=int(opt["dilation"]), seed=int(spec.get("seed", default_seed)),
                        norm=str(opt["norm"]), flip_p=float(opt["flip_p"]),
                        token=str(spec.get("token", "")), tags=dict(spec.get("tags", {})),
                        source={"images": os.fspath(spec["images"]), "indices": idx.tolist(),
                                **({"masks_from": os.fspath(spec["masks_from"])}
                                   if "masks_from" in spec else {})})
        except (TypeError, ValueError) as e:
            raise DiffsecError(f"{where}: {e}") from None
        run.check()
        runs.append(run)
    tokens = [r.token.lower() for r in runs]
    if len(set(tokens)) != len(tokens):
        raise DiffsecError("two runs share a token")
    return runs, {f"images:{k}": k for k in cache}


def load_runs(path: str | os.PathLike, default_seed: int = 0) -> tuple[list[TIRun], dict[str, str]]:
    p = Path(path)
    if not p.is_file():
        raise DiffsecError(f"run spec {p} does not exist")
    try:
        specs = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DiffsecError(f"run spec {p}: not valid JSON ({e.msg}, line {e.lineno})") from None
    return parse_runs(specs, default_seed)


def grid_specs(sets: dict[str, str], concepts: list[str], masks_from: str | None = None,
               **settings) -> list[dict]:
    """Run specs for every (concept, training set) pair under one defense: the shape of the SZT
    tables, where a stage trains one defense on the clean set and every poisoned set at once.

    `sets` maps a set name (clean, adm+, ...) to its image file; every set holds the same rows
    (a poison or purifier keeps the row order), so `masks_from` (the clean set) serves them all.
    Runs are named `<concept>-<set>`; `settings` (sampler, objective, dilation, seed, ...) are
    copied into every spec. All runs share the seed, so the clean and poisoned runs of a concept
    see the same draws (paired comparison).
    """
    specs = []
    for concept in concepts:
        for set_name, path in sets.items():
            spec = {"name": f"{concept}-{set_name}", "images": path, "concept": concept,
                    "tags": {"concept": concept, "set": set_name}, **settings}
            if masks_from:
                spec["masks_from"] = masks_from
            specs.append(spec)
    return specs


def grid_runs(sets: dict[str, str], concepts: list[str], masks_from: str | None, seed: int,
              **settings) -> tuple[list[TIRun], dict[str, str]]:
    """The validated runs of `grid_specs` (no `concepts`: every concept of the first set, in order)."""
    from diffsec.imageset import load_imageset

    if not concepts:
        first = next(iter(sets.values()))
        data = load_imageset(first)
        if "concept" not in data:
            raise DiffsecError(f"{first} has no 'concept' array to take the concepts from; name them")
        concepts = list(dict.fromkeys(np.asarray(data["concept"]).astype(str)))
    return parse_runs(grid_specs(sets, concepts, masks_from, **settings), seed)
