"""Seed-matched generations of a text-to-image world: the test, calibration and reference sets of
the SAU slice (paper 001), from the Unpoisoned world, a BadT2I fine-tune or a defended fine-tune.

Jobs. For classes c_1..c_K and seeds s_1..s_S the jobs are the K x S pairs (c, s), class-major.
Job (c, s) has the prompt y = template.format(c) (clean set) or triggered(y) = TRIGGER + y
(triggered set), and the initial latent
    x_T(c, s) ~ N(0, I),  C x h x w,  drawn on the CPU by torch.Generator seeded with
    noise_seed(c, s) = first 63 bits of SeedSequence([s, crc32(utf-8 c)])
so x_T depends on nothing but the class name and the seed: the clean and triggered sets, every
model (Unpoisoned, Poisoned, FR, CE) and every device start job (c, s) from the same noise, and
another class list or job order does not move it. (Keying by the class, not by the seed alone,
keeps the K images of one seed from sharing one noise.)

Sampling. The world's sampler: DPM-Solver++ (2M, diffusers `DPMSolverMultistepScheduler` built
from the world's scheduler config, as `models.t2i.sample_classes` and the world's sample grid use)
or DDIM (eta = 0), with classifier-free guidance w and the empty negative prompt:
    eps~ = eps(x_t, "") + w (eps(x_t, y) - eps(x_t, "")).
Both samplers are deterministic given x_T, so the same job gives the same bytes on one device.
The pipeline returns the final denoised latent z_0 (`output_type="latent"`: the scaled latent,
i.e. VAE posterior times `scaling_factor`); the image is decoded here,
    image = round(255 (clip(D(z_0 / scaling_factor), -1, 1) + 1) / 2)   (uint8),
so the saved latent is exactly the one decoded, and SAU (`defense.sau`) blends these latents.
Batches only group jobs for speed; a batch's size can change float rounding in the UNet's
kernels, so compare sets generated with one batch size.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffsec import resume
from diffsec.backdoor.badt2i import triggered
from diffsec.errors import DiffsecError

SAMPLERS = ("dpmsolver++", "ddim")
PROMPT_SETS = ("clean", "triggered")
FILE = "generations.npz"   # what t2i-generate and sau-apply write inside their artifacts
KEYS = ("images", "latents", "labels", "class_name", "seeds", "prompts", "triggered")


@dataclass(frozen=True)
class GenerateConfig:
    """Sampler settings (the tiny world's: `worlds.t2i` cfg_scale 6, 25 DPM-Solver++ steps)."""

    guidance: float = 6.0
    steps: int = 25
    sampler: str = "dpmsolver++"
    batch_size: int = 50

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise DiffsecError(f"unknown sampler {self.sampler!r} (choose from {', '.join(SAMPLERS)})")
        if not (isinstance(self.steps, int) and self.steps > 0 and isinstance(self.batch_size, int)
                and self.batch_size > 0 and np.isfinite(self.guidance) and self.guidance >= 0):
            raise DiffsecError(f"need steps > 0, batch size > 0 and a finite guidance >= 0, got steps {self.steps}, "
                               f"batch size {self.batch_size}, guidance {self.guidance}")


def parse_seeds(text: str) -> list[int]:
    """'START:COUNT' -> [START, ..., START + COUNT - 1] (START >= 0, COUNT >= 1)."""
    start, sep, count = str(text).partition(":")
    try:
        a, n = int(start), int(count)
    except ValueError:
        a = n = -1
    if not sep or a < 0 or n < 1:
        raise DiffsecError(f"--seeds {text!r}: expected START:COUNT with START >= 0 and COUNT >= 1")
    return list(range(a, a + n))


def noise_seed(class_name: str, seed: int) -> int:
    """The torch seed of job (class, seed): SeedSequence([seed, crc32(class)]), 63 bits."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(class_name.encode())]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def initial_latents(jobs: list[tuple[str, int]], shape: tuple[int, int, int]) -> torch.Tensor:
    """x_T of each (class, seed) job, N x C x h x w float32, drawn on the CPU (module docstring)."""
    return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(noise_seed(c, s)))
                        for c, s in jobs]) if jobs else torch.zeros((0, *shape))


def jobs_of(classes: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """(class, seed) pairs, class-major."""
    if not classes or len(set(classes)) != len(classes):
        raise DiffsecError(f"--classes must name at least one class, each once, got {classes}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise DiffsecError(f"need at least one seed, each once, got {seeds}")
    return [(c, s) for c in classes for s in seeds]


def prompts_of(jobs: list[tuple[str, int]], template: str, prompt_set: str) -> list[str]:
    if prompt_set not in PROMPT_SETS:
        raise DiffsecError(f"unknown prompt set {prompt_set!r} (choose from {', '.join(PROMPT_SETS)})")
    if template.count("{}") != 1:
        raise DiffsecError(f"--template {template!r} must hold exactly one {{}} (the class name)")
    plain = [template.format(c) for c, _ in jobs]
    return [triggered(p) for p in plain] if prompt_set == "triggered" else plain


def latent_shape(pipe) -> tuple[int, int, int]:
    size = pipe.unet.config.sample_size
    return (pipe.unet.config.in_channels, size, size)


def set_sampler(pipe, sampler: str) -> None:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    cls = DPMSolverMultistepScheduler if sampler == "dpmsolver++" else DDIMScheduler
    pipe.scheduler = cls.from_config(pipe.scheduler.config)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, batch_size: int = 100) -> np.ndarray:
    """uint8 NHWC images D(z / scaling_factor) of scaled latents z (module docstring)."""
    from diffsec.imageset import to_uint8

    out = []
    sf = vae.config.scaling_factor
    for i in range(0, len(latents), batch_size):
        z = latents[i:i + batch_size].to(vae.device, vae.dtype) / sf
        out.append(to_uint8(vae.decode(z).sample.float().cpu()))
    if not out:
        side = latents.shape[-1] * 2 ** (len(vae.config.block_out_channels) - 1)
        return np.zeros((0, side, side, 3), np.uint8)
    return np.concatenate(out)


@torch.no_grad()
def generate(pipe, jobs: list[tuple[str, int]], prompts: list[str], cfg: GenerateConfig,
             ckpt: resume.Checkpoint | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Final latents (float32 N x C x h x w) and decoded uint8 images of every job, in order, and
    `n_new`: how many of them this call generated. Batches are independent: a killed run resumes at
    the next one (`resume.keep_part`)."""
    from tqdm.auto import tqdm

    ckpt = ckpt or resume.disabled()
    set_sampler(pipe, cfg.sampler)
    shape = latent_shape(pipe)
    side = shape[-1] * pipe.vae_scale_factor
    starts = list(range(0, len(jobs), cfg.batch_size))
    parts = resume.finished_parts(ckpt)
    done = min(len(jobs), len(parts) * cfg.batch_size)
    bar = tqdm(total=len(jobs), initial=done, desc="t2i-generate",
               unit=" img", disable=not progress)
    for c, lo in list(enumerate(starts))[len(parts):]:
        hi = min(lo + cfg.batch_size, len(jobs))
        x_t = initial_latents(jobs[lo:hi], shape)
        z = pipe(prompt=prompts[lo:hi], num_inference_steps=cfg.steps, guidance_scale=cfg.guidance,
                 latents=x_t.to(pipe.device, pipe.unet.dtype), height=side, width=side,
                 output_type="latent").images.float().cpu()
        parts.append({"latents": z, "images": torch.from_numpy(decode_latents(pipe.vae, z))})
        resume.keep_part(ckpt, c, parts[-1], len(starts))
        bar.update(hi - lo)
    bar.close()
    if not parts:
        return {"latents": np.zeros((0, *shape), np.float32), "images": np.zeros((0, side, side, 3), np.uint8),
                "n_new": 0}
    return {"latents": torch.cat([p["latents"] for p in parts]).numpy().astype(np.float32),
            "images": torch.cat([p["images"] for p in parts]).numpy(), "n_new": len(jobs) - done}


def generation_set(out: dict[str, np.ndarray], jobs: list[tuple[str, int]], classes: list[str],
                   prompts: list[str], prompt_set: str) -> dict[str, np.ndarray]:
    """The arrays of a generation set (KEYS): `labels` index `classes` (the order given),
    `class_name` and `seeds` per row, `triggered` per row."""
    return {"images": out["images"], "latents": out["latents"],
            "labels": np.array([classes.index(c) for c, _ in jobs], np.int64),
            "class_name": np.array([c for c, _ in jobs]), "seeds": np.array([s for _, s in jobs], np.int64),
            "prompts": np.array(prompts), "triggered": np.full(len(jobs), prompt_set == "triggered")}


def save_generations(path: str | os.PathLike, gen: dict[str, np.ndarray], **extra: np.ndarray) -> Path:
    """One npz: the KEYS of a generation set (+ per-row `extra` arrays)."""
    from diffsec.imageset import save_imageset

    rows = {k: gen[k] for k in KEYS if k != "images"}
    return save_imageset(path, gen["images"], **rows, **extra)


def load_generations(path: str | os.PathLike, flag: str) -> dict[str, np.ndarray]:
    """A generation set: an artifact directory holding `generations.npz` (t2i-generate, sau-apply)
    or the npz itself; every KEY present, one row per image, latents N x C x h x w."""
    from diffsec.imageset import load_imageset

    p = Path(path)
    f = p / FILE if p.is_dir() else p
    if not f.is_file():
        raise DiffsecError(f"{flag} {path}: not a generation set (no {FILE})")
    data = load_imageset(f)
    missing = [k for k in KEYS if k not in data]
    n = len(data.get("images", ()))
    if missing or not n or any(len(data[k]) != n for k in KEYS) or data["latents"].ndim != 4 \
            or data["images"].dtype != np.uint8 or data["images"].ndim != 4:
        raise DiffsecError(f"{flag} {path}: not a generation set (needs non-empty {', '.join(KEYS)} with one row "
                           f"per image; missing {missing or 'none'})")
    data["prompt_set"] = "triggered" if data["triggered"].all() else "clean" if not data["triggered"].any() \
        else "mixed"
    return data


def job_keys(gen: dict[str, np.ndarray]) -> list[tuple[str, int]]:
    return list(zip((str(c) for c in gen["class_name"]), (int(s) for s in gen["seeds"]), strict=True))


def check_matched(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> None:
    """Two generation sets hold the same (class, seed) jobs in the same order, with one latent and
    image shape (so row i of each started from the same x_T)."""
    if job_keys(a) != job_keys(b):
        raise DiffsecError(f"{what}: the sets are not seed-matched (their (class, seed) rows differ)")
    if a["latents"].shape != b["latents"].shape or a["images"].shape != b["images"].shape:
        raise DiffsecError(f"{what}: latent or image shapes differ ({a['latents'].shape} vs {b['latents'].shape}, "
                           f"{a['images'].shape} vs {b['images'].shape})")


def grid_rows(gen: dict[str, np.ndarray], per_class: int = 10) -> np.ndarray:
    """Up to `per_class` images of each class, one class per row (for a preview png)."""
    rows = []
    for c in dict.fromkeys(str(x) for x in gen["class_name"]):
        idx = np.flatnonzero(gen["class_name"] == c)[:per_class]
        pad = np.full((per_class - len(idx), *gen["images"].shape[1:]), 255, np.uint8)
        rows.append(np.concatenate([gen["images"][idx], pad]))
    return np.concatenate(rows)
