"""Images from learned tokens (SZT Sec. 5.1.2: 5 images for each of DreamBooth's 24 object prompts).

All runs' tokens are loaded into the base pipeline at once and prompts of different runs share
a sampling batch. Each run's initial noise comes from its own generator (seeded from the seed and
the run name) in (prompt, image) order, so a run's images do not depend on the other runs.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from diffsec.errors import DiffsecError
from diffsec.personalize.tokens import install_tokens


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


@torch.no_grad()
def generate_ti(pipe, embeddings: dict[str, torch.Tensor], meta: dict[str, dict], templates: list[str],
                per_prompt: int = 5, steps: int = 25, guidance: float = 7.5, seed: int = 0,
                batch: int = 16, sampler: str = "dpm", with_class: bool = True, size: int | None = None,
                parts: str | os.PathLike | None = None,
                on_batch: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """`per_prompt` images per template for every run in `embeddings` (meta: run -> token, class).

    Returns aligned arrays: images (uint8 NHWC), run, prompt, template (index), in run, template,
    image order. `parts`: a directory where finished batches are kept, so a killed job resumes
    (the caller removes it when done and keys it to the settings).
    """
    names = list(embeddings)
    tokens = [meta[n]["token"] for n in names]
    install_tokens(pipe.text_encoder, pipe.tokenizer, tokens,
                   torch.stack([embeddings[n].float() for n in names]))
    pipe.scheduler = _scheduler(pipe, sampler)
    size = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    lat = size // pipe.vae_scale_factor
    n_img = len(templates) * per_prompt
    latents = torch.stack([torch.randn((n_img, pipe.unet.config.in_channels, lat, lat),
                                       generator=_run_generator(seed, n)) for n in names])
    jobs = [(r, j, i) for r in range(len(names)) for j in range(len(templates)) for i in range(per_prompt)]
    prompts = [format_prompt(templates[j], tokens[r], meta[names[r]]["class"], with_class)
               for r, j, _ in jobs]
    parts = Path(parts) if parts else None
    if parts:
        parts.mkdir(parents=True, exist_ok=True)
    out = []
    for c, s in enumerate(range(0, len(jobs), batch)):
        part = parts / f"part-{c:05d}.npy" if parts else None
        if part is not None and part.is_file():
            out.append(np.load(part, allow_pickle=False))
        else:
            chunk = jobs[s:s + batch]
            lat_b = torch.stack([latents[r, j * per_prompt + i] for r, j, i in chunk])
            res = pipe(prompt=prompts[s:s + batch], num_inference_steps=steps, guidance_scale=guidance,
                       latents=lat_b.to(pipe.device, pipe.unet.dtype), height=size, width=size,
                       output_type="np")
            out.append((res.images * 255).round().clip(0, 255).astype(np.uint8))
            if part is not None:
                tmp = part.with_suffix(".tmp.npy")
                np.save(tmp, out[-1])
                os.replace(tmp, part)
        if on_batch is not None:
            on_batch(len(out[-1]))
    return {"images": np.concatenate(out), "run": np.array([names[r] for r, _, _ in jobs]),
            "prompt": np.array(prompts), "template": np.array([j for _, j, _ in jobs])}
