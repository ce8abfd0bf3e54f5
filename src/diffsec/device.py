"""Device choice and reproducibility settings shared by every stage."""

from __future__ import annotations

import os
import random

import numpy as np


def pick_device(requested: str = "auto") -> "torch.device":  # noqa: F821
    """'auto' -> the visible GPU with the most free memory, else CPU.

    Snakemake only counts GPUs (resources: gpu=1), so the job itself picks a free one.
    """
    import torch

    if requested != "auto":
        return torch.device(requested)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
    return torch.device(f"cuda:{int(np.argmax(free))}")


def seed_everything(seed: int, threads: int | None = None) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
