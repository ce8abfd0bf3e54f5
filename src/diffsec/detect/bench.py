"""Throughput of SeDID's scoring: t-error maps per second at several batch sizes.

One image's maps on a grid of step k up to t_max cost t_max / k inversion steps plus one
denoising step per t_SEC: 12 noise predictions on the paper's grid (k = 165, six t_SEC). The
table times `detect.terror.error_maps` directly (after one warm-up batch) and reports images
per second and the model calls behind each image.
"""

from __future__ import annotations

import time

import torch

from diffsec.detect.terror import error_maps
from diffsec.diffusion.inversion import EpsModel


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def terror_throughput(eps_model: EpsModel, abar: torch.Tensor, shape: tuple[int, int, int], batch_sizes,
                      k: int, t_secs: list[int], repeats: int = 2, device: str = "cpu") -> list[dict]:
    calls = max(t_secs) // k + len(t_secs)
    rows = []
    for b in batch_sizes:
        x = torch.rand(b, *shape, device=device) * 2 - 1
        error_maps(eps_model, abar, x, k, t_secs)   # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            error_maps(eps_model, abar, x, k, t_secs)
        _sync(device)
        seconds = (time.perf_counter() - t0) / repeats
        rows.append({"batch": b, "s_per_batch": seconds, "images_per_s": b / seconds, "model_calls_per_image": calls})
    return rows
