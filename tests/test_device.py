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


def test_gpu_jobs_config_and_cluster_executor_decide(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert gpu_jobs("auto", cluster=True) == 1      # Slurm: the job runs on a GPU node, not here
    assert gpu_jobs("cpu", cluster=True) == 0
    assert gpu_jobs("auto", override=1) == 1 and gpu_jobs("cuda", override=0) == 0


def test_placement_line_names_the_assigned_gpu():
    import torch

    from diffsec.device import placement

    env = {"SLURM_JOB_ID": "12", "CUDA_VISIBLE_DEVICES": "3,5"}
    assert placement(torch.device("cuda:1"), "auto", env) == (
        "device: cuda:1 (requested auto; SLURM job 12; CUDA_VISIBLE_DEVICES=3,5; cuda:1 is assigned GPU 5)")
    assert placement(torch.device("cpu"), "auto", env).endswith("CUDA_VISIBLE_DEVICES=3,5; CUDA not available: CPU "
                                                                "fallback)")
    assert placement(torch.device("cpu"), "cpu", {"SLURM_JOB_ID": "7"}) == (
        "device: cpu (requested cpu; SLURM job 7; CUDA_VISIBLE_DEVICES=unset; no GPU assigned)")


def test_pick_device_logs_its_choice_only_inside_a_slurm_job(monkeypatch, capsys):
    from diffsec.device import pick_device

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    pick_device("cpu")
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    pick_device("cpu")
    assert capsys.readouterr().err.startswith("device: cpu (requested cpu; SLURM job 9; CUDA_VISIBLE_DEVICES=1;")
