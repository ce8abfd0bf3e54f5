"""Throughput of batched textual inversion: run-steps per second at R runs per batch.

One run at a time (R = 1) is what the diffusers example does; R runs in one batch share each
text-encoder and UNet call. Steps are timed after a warm-up, with the same runs' data for every R.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from diffsec.personalize.runs import TIRun
from diffsec.personalize.textual_inversion import BatchedTextualInversion, TIConfig


def _runs(data: dict, r: int) -> list[TIRun]:
    """r runs cycling over the set's concepts with LM (the heaviest objective) and distinct seeds."""
    concepts = list(dict.fromkeys(data["concept"].astype(str)))
    out = []
    for i in range(r):
        c = concepts[i % len(concepts)]
        idx = np.flatnonzero(data["concept"].astype(str) == c)
        out.append(TIRun(f"bench{i}", data["images"][idx], str(data["class_name"][idx[0]]),
                         data["masks"][idx].astype(bool), "uniform", "lm", 16, seed=i))
    return out


def ti_throughput(load_pipe, data: dict, sizes: list[int], steps: int = 20, warmup: int = 3,
                  device: str = "cpu") -> list[dict]:
    """[{runs, seconds_per_step, run_steps_per_s}] for each batch size R in `sizes`;
    `load_pipe()` returns a fresh pipeline (training installs tokens into it)."""
    out = []
    for r in sizes:
        tr = BatchedTextualInversion(load_pipe(), _runs(data, r), TIConfig(steps=steps + warmup), device)
        for _ in range(warmup):
            tr.step()
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.step()
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / steps
        out.append({"runs": r, "seconds_per_step": dt, "run_steps_per_s": r / dt})
    base = out[0]["run_steps_per_s"] / out[0]["runs"] if out else 1.0
    for row in out:
        row["speedup_vs_one_at_a_time"] = row["run_steps_per_s"] / base
    return out
