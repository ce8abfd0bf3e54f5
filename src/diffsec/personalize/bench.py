"""Throughput of batched textual inversion: run-steps per second at R runs per batch.

One run at a time (R = 1) is what the diffusers example does; R runs in one batch share each
text-encoder and UNet call. Steps are timed after a warm-up, with the same runs' data for every R.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from diffsec.personalize.runs import SPEC_DEFAULTS, TIRun
from diffsec.personalize.textual_inversion import BatchedTextualInversion, TIConfig


def _runs(data: dict, r: int) -> list[TIRun]:
    """r runs cycling over the set's concepts with LM (the heaviest objective) and distinct seeds."""
    concepts = list(dict.fromkeys(data["concept"].astype(str)))
    out = []
    for i in range(r):
        c = concepts[i % len(concepts)]
        idx = np.flatnonzero(data["concept"].astype(str) == c)
        out.append(TIRun(f"bench{i}", data["images"][idx], str(data["class_name"][idx[0]]),
                         data["masks"][idx].astype(bool), "uniform", "lm", 16, seed=i,
                         norm=SPEC_DEFAULTS["norm"], flip_p=SPEC_DEFAULTS["flip_p"]))
    return out


def resize_concepts(data: dict, size: int) -> dict:
    """The concept set at size x size (bicubic images, nearest masks): a benchmark at the paper's
    512 px from a set prepared at the profile's resolution; speed does not depend on the content."""
    import torch.nn.functional as F

    if data["images"].shape[1] == size:
        return data
    x = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 255)
    m = F.interpolate(torch.from_numpy(data["masks"].astype(np.float32))[:, None], size=(size, size), mode="nearest")
    return {**data, "images": x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), "masks": m[:, 0].numpy() > 0.5}


def ti_throughput(load_pipe, data: dict, sizes: list[int], steps: int = 20, warmup: int = 3,
                  device: str = "cpu", dtype: torch.dtype = torch.float32) -> list[dict]:
    """[{runs, seconds_per_step, run_steps_per_s}] for each batch size R in `sizes`;
    `load_pipe()` returns a fresh pipeline (training installs tokens into it). `dtype` is that of
    the frozen VAE and UNet (as the diffusers example's mixed precision); the text encoder, through
    which the new embeddings are trained, stays float32. On CUDA each row has its peak memory."""
    cuda = str(device).startswith("cuda")
    out = []
    for r in sizes:
        try:
            out.append(_time_runs(load_pipe, data, r, steps, warmup, device, dtype))
        except torch.OutOfMemoryError:
            # A larger R needs more still: say so in the table and stop here.
            out.append({"runs": r, "out_of_memory": True})
            break
        finally:
            if cuda:
                torch.cuda.empty_cache()
    timed = [row for row in out if "run_steps_per_s" in row]
    base = timed[0]["run_steps_per_s"] / timed[0]["runs"] if timed else 1.0
    for row in timed:
        row["speedup_vs_one_at_a_time"] = row["run_steps_per_s"] / base
    return out


def _time_runs(load_pipe, data: dict, r: int, steps: int, warmup: int, device, dtype) -> dict:
    cuda = str(device).startswith("cuda")
    pipe = load_pipe()
    pipe.vae.to(dtype), pipe.unet.to(dtype)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    cfg = TIConfig(steps + warmup, lr=5e-4, weight_decay=1e-2)  # the paper's; speed does not depend on them
    tr = BatchedTextualInversion(pipe, _runs(data, r), cfg, device)
    for _ in range(warmup):
        tr.step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.step()
    if cuda:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    row = {"runs": r, "seconds_per_step": dt, "run_steps_per_s": r / dt}
    if cuda:
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row
