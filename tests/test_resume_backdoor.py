"""Kill and resume of the backdoor stages through their CLIs, on a tiny world built here.

A run SIGKILLed right after a checkpoint (DIFFSEC_KILL_AT_SAVE) and rerun unchanged ends with the
bytes of an uninterrupted run, and its manifest records the resume; a rerun with one changed
hyperparameter discards the checkpoint (the log says so) and equals a fresh run with that value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffsec.cli.main import main


def _files(d: Path) -> dict[str, bytes]:
    """Every file of an artifact but its manifest (wall times, command line)."""
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*"))
            if f.is_file() and f.name != "manifest.json"}


def _run(*argv) -> None:
    assert main([str(a) for a in argv]) == 0, argv


def _killed(*argv) -> None:
    """Run a stage in a subprocess that SIGKILLs itself right after its first checkpoint."""
    env = {**os.environ, "DIFFSEC_KILL_AT_SAVE": "1"}
    r = subprocess.run([sys.executable, "-m", "diffsec.cli.main", *map(str, argv)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == -9, r.stderr[-2000:]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny DDPM world (8 px) and a prepare-cifar10-shaped artifact of random images."""
    from diffsec.artifact import artifact_dir
    from diffsec.imageset import save_imageset
    from diffsec.models.ddpm import DDPMConfig, build_ddpm, save_ddpm

    root = tmp_path_factory.mktemp("backdoor-world")
    torch.manual_seed(0)
    unet, sched = build_ddpm(DDPMConfig(resolution=8, channels=[8, 16], attention=[False, False], layers_per_block=1))
    save_ddpm(unet, sched, root / "world" / "pipeline")
    rng = np.random.default_rng(0)
    with artifact_dir(root / "cifar10", "prepare-cifar10", {}) as art:
        for split, n in (("train", 30), ("test", 20)):
            save_imageset(art.file(f"{split}.npz"), rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
                          labels=np.arange(n) % 10)
    return root / "world", root / "cifar10"


def _train_args(world, out: Path, lr: str, threads: int = 1) -> list:
    model, data = world
    return ["backdoor-train", "--model", model, "--data", data, "--method", "invisible", "--trigger", "gaussian",
            "--target", "cifar10:7", "--steps", 6, "--batch-size", 4, "--lr", lr, "--poison-rate", 0.25,
            "--ema-decay", 0.9, "--snapshots", "[1, 5]", "--ckpt-every", 2, "--threads", threads, "--device", "cpu",
            "--out", out]


@pytest.fixture(scope="module")
def backdoored(world, tmp_path_factory) -> Path:
    """An uninterrupted backdoor-train run (lr 2e-3)."""
    out = tmp_path_factory.mktemp("backdoored") / "model"
    _run(*_train_args(world, out, "2e-3"))
    return out


def test_backdoor_train_resumes_to_the_uninterrupted_bytes(world, backdoored, tmp_path):
    out = tmp_path / "model"
    _killed(*_train_args(world, out, "2e-3"))
    assert not out.exists() and (tmp_path / "model.ckpt" / "state.pt").exists()
    _run(*_train_args(world, out, "2e-3"))
    assert _files(out) == _files(backdoored)
    assert {"snapshots/step-1/diffusion_pytorch_model.safetensors",   # taken before the kill
            "snapshots/step-5/diffusion_pytorch_model.safetensors"} <= set(_files(out))
    resumed = json.loads((out / "manifest.json").read_text())["resume"]
    assert resumed["resumed"] and [a["start_step"] for a in resumed["attempts"]] == [0, 2]
    assert not (tmp_path / "model.ckpt").exists()


def test_backdoor_train_with_a_changed_lr_starts_fresh(world, backdoored, tmp_path, capsys):
    out = tmp_path / "model"
    _killed(*_train_args(world, out, "1e-3"))
    _run(*_train_args(world, out, "2e-3"))
    assert "other settings or inputs; starting fresh" in capsys.readouterr().err
    assert _files(out) == _files(backdoored)
    assert not json.loads((out / "manifest.json").read_text())["resume"]["resumed"]


def test_backdoor_train_is_the_same_bytes_on_every_run(world, backdoored, tmp_path):
    """Same inputs, seed and thread count: the same bytes (with 1 thread, as the fixture ran, and 2)."""
    _run(*_train_args(world, tmp_path / "again", "2e-3"))
    assert _files(tmp_path / "again") == _files(backdoored)
    for name in ("a", "b"):
        _run(*_train_args(world, tmp_path / name, "2e-3", threads=2))
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def _sample_args(model: Path, out: Path, steps: int) -> list:
    return ["backdoor-sample", "--model", model, "--sampler", "ddim", "--steps", steps, "--n", 5, "--batch-size", 2,
            "--trajectory", 2, "--frames", 2, "--threads", 1, "--device", "cpu", "--out", out]


def test_backdoor_sample_resumes_to_the_uninterrupted_bytes(backdoored, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "samples"
    _run(*_sample_args(backdoored, ref, 4))
    _killed(*_sample_args(backdoored, out, 4))   # killed after the first of 3 clean + 3 triggered batches
    assert not out.exists()
    _run(*_sample_args(backdoored, out, 4))
    assert _files(out) == _files(ref)
    assert set(_files(out)) >= {"clean.npz", "trigger.npz", "trajectory_clean.npz", "trajectory_trigger.npz"}
    resumed = json.loads((out / "manifest.json").read_text())["resume"]
    assert resumed["resumed"] and [a["start_step"] for a in resumed["attempts"]] == [0, 1]


def test_backdoor_sample_with_changed_steps_starts_fresh(backdoored, tmp_path, capsys):
    ref, out = tmp_path / "ref", tmp_path / "samples"
    _run(*_sample_args(backdoored, ref, 3))
    _killed(*_sample_args(backdoored, out, 4))
    capsys.readouterr()
    _run(*_sample_args(backdoored, out, 3))
    assert "other settings or inputs; starting fresh" in capsys.readouterr().err
    assert _files(out) == _files(ref)


def test_ordinary_and_baseline_runs_start_from_the_attack_runs_triggered_noise(world, backdoored, tmp_path):
    """The ordinary-sampler run of a backdoored model and the clean world's run on its trigger
    (the benign baseline) sample the triggered set only, from the same x_T as the attacker run;
    the ordinary run differs from the attacker chain (Gaussian trigger: shifted mean), the clean
    world from the backdoored model."""
    base = ["--sampler", "ddim", "--steps", 3, "--n", 3, "--batch-size", 2, "--trajectory", 2, "--frames", 1,
            "--threads", 1, "--device", "cpu"]
    runs = {"attacker": [backdoored], "ordinary": [backdoored, "--chain", "ordinary", "--no-clean"],
            "baseline": [world[0], "--trigger", backdoored, "--no-clean"]}
    for name, (model, *extra) in runs.items():
        _run("backdoor-sample", "--model", model, *extra, *base, "--out", tmp_path / name)
    files = {name: _files(tmp_path / name) for name in runs}
    assert "clean.npz" in files["attacker"] and "clean.npz" not in files["ordinary"]
    assert set(files["baseline"]) == {"trigger.npz", "trajectory_trigger.npz", "samples.png"}
    x_T = {name: np.load(tmp_path / name / "trajectory_trigger.npz")["frames"][0] for name in runs}
    assert np.array_equal(x_T["attacker"], x_T["ordinary"]) and np.array_equal(x_T["attacker"], x_T["baseline"])
    images = {name: np.load(tmp_path / name / "trigger.npz")["images"] for name in runs}
    assert not np.array_equal(images["attacker"], images["ordinary"])
    assert not np.array_equal(images["ordinary"], images["baseline"])
    manifest = json.loads((tmp_path / "baseline" / "manifest.json").read_text())
    assert manifest["chain"] == "attacker" and manifest["sets"] == ["trigger"]
    assert main(["backdoor-sample", "--model", str(world[0]), "--no-clean", *map(str, base), "--out",
                 str(tmp_path / "none")]) == 2   # a clean world without --trigger: nothing left to sample
