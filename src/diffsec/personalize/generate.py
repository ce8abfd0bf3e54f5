"""Images from learned tokens (SZT Sec. 5.1.2: 5 images for each of DreamBooth's 24 object prompts).

All runs' tokens are loaded into the base pipeline at once and prompts of different runs share
a sampling batch. Each run's initial noise comes from its own generator (seeded from the seed and
the run name) in (prompt, image) order, so a run's images do not depend on the other runs, and
a batch's images depend only on its latents: a run resumed at batch c after a kill ends with the
bytes of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffsec.errors import DiffsecError
from diffsec.personalize.tokens import install_tokens
from diffsec.resume import Checkpoint, disabled, finished_parts, keep_part

SAMPLERS = ("dpm", "ddim")


def load_templates(path: str | os.PathLike) -> list[str]:
    """Prompt templates with DreamBooth's `{0}` (token) and optional `{1}` (class noun) from the
    prepare-dreambooth prompts.json (its object_prompts), a JSON list, or a text file (a line each).
    A bare `{}` is read as `{0}`."""
    p = Path(path)
    if not p.is_file():
        raise DiffsecError(f"prompt file {p} does not exist")
    text = p.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        data = data.get("object_prompts")
    if not isinstance(data, list) or not data or not all(isinstance(t, str) for t in data):
        raise DiffsecError(f"{p}: expected prompts.json with object_prompts, a JSON list of "
                           "templates, or one template per line")
    out = [t.replace("{}", "{0}") for t in data]
    bad = [t for t in out if "{0}" not in t]
    if bad:
        raise DiffsecError(f"{p}: templates without the token placeholder {{0}}: {bad[:3]}")
    return out


def format_prompt(template: str, token: str, class_noun: str, with_class: bool = True) -> str:
    """DreamBooth's `template.format(unique_token, class_noun)`; without the class noun the
    learned token alone names the object ("a <tok> in the jungle")."""
    text = template.format(token, class_noun if with_class else "")
    return re.sub(r"\s+", " ", text).strip()


def _run_generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (1 << 62))


def _scheduler(pipe, kind: str):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    if kind == "ddim":
        return DDIMScheduler.from_config(pipe.scheduler.config)
    raise DiffsecError(f"unknown sampler {kind!r} (dpm | ddim)")


@dataclass(frozen=True)
class GenerateConfig:
    """How each learned token is sampled (paper: 5 images per prompt). The stage's flags hold the defaults."""

    per_prompt: int    # images per template and run
    steps: int         # sampler steps
    guidance: float    # classifier-free guidance scale
    sampler: str       # dpm (DPM-Solver++ multistep) | ddim
    batch: int         # images per pipeline call (memory only; the batches are the resume unit)
    with_class: bool   # format templates with the class noun ({1}) or the token alone

    def __post_init__(self):
        if min(int(self.per_prompt), int(self.steps), int(self.batch)) < 1:
            raise DiffsecError(f"generation: per-prompt images, steps and batch must be >= 1 (got "
                               f"{self.per_prompt}, {self.steps}, {self.batch})")
        if self.sampler not in SAMPLERS:
            raise DiffsecError(f"unknown sampler {self.sampler!r} ({' | '.join(SAMPLERS)})")


@torch.no_grad()
def generate_ti(pipe, embeddings: dict[str, torch.Tensor], meta: dict[str, dict], templates: list[str],
                cfg: GenerateConfig, seed: int, ckpt: Checkpoint | None = None,
                size: int | None = None) -> dict[str, np.ndarray]:
    """`cfg.per_prompt` images per template for every run in `embeddings` (meta: run -> token, class).

    Returns aligned arrays: images (uint8 NHWC), run, prompt, template (index), class_name, in
    run, template, image order. `ckpt`: the stage's keyed checkpoint; every finished batch is kept
    in it, so a killed job resumes at the next batch.
    """
    from tqdm import tqdm

    ckpt = ckpt or disabled()
    names = list(embeddings)
    tokens = [meta[n]["token"] for n in names]
    install_tokens(pipe.text_encoder, pipe.tokenizer, tokens, torch.stack([embeddings[n].float() for n in names]))
    pipe.scheduler = _scheduler(pipe, cfg.sampler)
    size = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    lat = size // pipe.vae_scale_factor
    n_img = len(templates) * cfg.per_prompt
    latents = torch.stack([torch.randn((n_img, pipe.unet.config.in_channels, lat, lat),
                                       generator=_run_generator(seed, n)) for n in names])
    jobs = [(r, j, i) for r in range(len(names)) for j in range(len(templates)) for i in range(cfg.per_prompt)]
    prompts = [format_prompt(templates[j], tokens[r], meta[names[r]]["class"], cfg.with_class) for r, j, _ in jobs]
    starts = range(0, len(jobs), cfg.batch)
    out = [p["images"].numpy() for p in finished_parts(ckpt)]
    bar = tqdm(total=len(jobs), initial=sum(map(len, out)), desc=f"generate ({len(names)} runs)", unit=" img")
    for c, s in list(enumerate(starts))[len(out):]:
        lat_b = torch.stack([latents[r, j * cfg.per_prompt + i] for r, j, i in jobs[s:s + cfg.batch]])
        res = pipe(prompt=prompts[s:s + cfg.batch], num_inference_steps=cfg.steps, guidance_scale=cfg.guidance,
                   latents=lat_b.to(pipe.device, pipe.unet.dtype), height=size, width=size, output_type="np")
        out.append((res.images * 255).round().clip(0, 255).astype(np.uint8))
        keep_part(ckpt, c, {"images": torch.from_numpy(out[-1])}, len(starts))
        bar.update(len(out[-1]))
    bar.close()
    run = np.array([names[r] for r, _, _ in jobs])
    return {"images": np.concatenate(out), "run": run, "prompt": np.array(prompts),
            "template": np.array([j for _, j, _ in jobs]), "class_name": np.array([meta[r]["class"] for r in run])}


def grid_rows(out: dict[str, np.ndarray], runs: list[str], k: int) -> list[int]:
    """One row per run: the index of its first image for each of the first k templates."""
    return [int(np.flatnonzero((out["run"] == r) & (out["template"] == j))[0]) for r in runs for j in range(k)]


def first_images(path: str | os.PathLike, run: str, n: int) -> np.ndarray:
    """The first n images generate-ti made for `run` (its images.npz at `path`)."""
    from diffsec.imageset import load_imageset

    data = load_imageset(path)
    idx = np.flatnonzero(data["run"].astype(str) == run)[:n] if "run" in data else []
    if len(idx) < n:
        raise DiffsecError(f"{path}: only {len(idx)} images of run {run!r} (need {n})")
    return data["images"][idx]
