"""Device choice and reproducibility settings shared by every stage."""

from __future__ import annotations

import os
import random
import sys
from typing import TYPE_CHECKING

import numpy as np

from diffsec.errors import DiffsecError

if TYPE_CHECKING:
    import torch


KINDS = ("cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")   # model dtypes a stage may be asked for (--dtype)


def pick_device(requested: str = "auto") -> torch.device:
    """'auto' -> the visible GPU with the most free memory, else CPU; else the named device.

    Snakemake only counts GPUs (resources: gpu=1), so the job itself picks a free one. A device
    string torch cannot parse, of another kind, or naming a GPU that is not visible is a
    DiffsecError (one line), before anything runs. Inside a Slurm job (SLURM_JOB_ID set) the
    choice goes to stderr, the job's log, as one `placement` line.
    """
    dev = _pick(requested)
    if os.environ.get("SLURM_JOB_ID"):
        print(placement(dev, requested), file=sys.stderr, flush=True)
    return dev


def _pick(requested: str) -> torch.device:
    import torch

    if requested == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
        return torch.device(f"cuda:{int(np.argmax(free))}")
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in KINDS:
        raise DiffsecError(f"--device {requested!r}: expected auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise DiffsecError(f"--device {requested!r}: no such CUDA device is visible "
                           f"({torch.cuda.device_count()} visible)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DiffsecError(f"--device {requested!r}: MPS is not available here")
    return dev


def placement(dev: torch.device, requested: str, env: dict[str, str] | None = None) -> str:
    """One line: the device a job picked and the GPUs the scheduler assigned it, e.g.
    `device: cuda:0 (requested auto; SLURM job 12; CUDA_VISIBLE_DEVICES=1; cuda:0 is assigned GPU 1)` or
    `device: cpu (requested auto; SLURM job 12; CUDA_VISIBLE_DEVICES=1; CUDA not available: CPU fallback)`.
    torch numbers the visible GPUs from 0, so cuda:i is the i-th entry of CUDA_VISIBLE_DEVICES."""
    env = os.environ if env is None else env
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    assigned = [d for d in (cvd or "").split(",") if d]
    if dev.type == "cuda":
        i = dev.index or 0
        what = f"{dev} is assigned GPU {assigned[i]}" if i < len(assigned) else f"{dev} (no assignment listed)"
    elif assigned:
        what = "CUDA not available: CPU fallback"
    else:
        what = "no GPU assigned"
    return (f"device: {dev} (requested {requested}; SLURM job {env.get('SLURM_JOB_ID', '-')}; "
            f"CUDA_VISIBLE_DEVICES={cvd if cvd is not None else 'unset'}; {what})")


def seed_everything(seed: int, threads: int | None = None) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads is not None and threads < 0:
        raise DiffsecError(f"--threads {threads}: must be 0 (library default) or a positive count")
    if threads:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def gpu_jobs(device: str, override: str | int = "auto", cluster: bool = False) -> int:
    """The `resources: gpu` a GPU-capable job declares: 1 where it may get a GPU (device cuda, auto
    on a machine with an NVIDIA device, or auto under a cluster executor, whose jobs run on other
    hosts), 0 where none can be had. Checked without importing torch (the workflow calls it at
    every start). `override` 0 or 1 (config `gpu_jobs`) decides instead."""
    import shutil
    from pathlib import Path

    if override != "auto":
        return int(override)
    if device == "cpu":
        return 0
    if device.startswith("cuda") or cluster:
        return 1
    return int(bool(shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists()))
