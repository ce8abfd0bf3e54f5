"""Which jobs claim a GPU from Snakemake: only where one can be had."""

from __future__ import annotations

import shutil
from pathlib import Path

from diffsec.device import gpu_jobs


def test_gpu_jobs_follow_the_device_and_the_machine(monkeypatch):
    assert gpu_jobs("cpu") == 0
    assert gpu_jobs("cuda") == 1 and gpu_jobs("cuda:1") == 1
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert gpu_jobs("auto") == 0   # a CPU machine: GPU-capable jobs run side by side
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert gpu_jobs("auto") == 1
