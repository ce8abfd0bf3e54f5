"""Kill and resume of the long world stages: a run SIGKILLed right after a checkpoint write
(DIFFSEC_KILL_AT_SAVE) and rerun unchanged resumes and ends byte-identical to an uninterrupted run,
with the resume in its manifest; rerun with one changed hyperparameter instead, it says it starts
fresh and ends equal to a fresh run with that setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsec.imageset import save_imageset
from resume_harness import check_kill_resume

SAFETENSORS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A tiny captioned image set, a prepare-mnist-like directory and an untrained pixel DDPM."""
    from diffsec.models import ddpm

    d = tmp_path_factory.mktemp("worlds")
    rng = np.random.default_rng(0)
    labels = np.arange(16) % 2
    save_imageset(d / "img8.npz", rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8))
    save_imageset(d / "img32.npz", rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), labels=labels,
                  class_name=np.array(["cat", "dog"])[labels])
    for split, n in (("classifier_train", 24), ("heldout", 10)):
        save_imageset(d / "mnist" / f"{split}.npz", rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                      labels=np.arange(n) % 10)
    torch.manual_seed(0)
    ddpm.save_ddpm(*ddpm.build_ddpm(ddpm.DDPMConfig(8, [8, 16], [False, False], 1)), d / "ddpm" / "pipeline")
    return d


T2I = ["train-t2i", "--data", "{d}/img32.npz", "--vae-channels", "[8,8]", "--unet-channels", "[16,16]",
       "--unet-cross-attn", "[false,true]", "--text-hidden", "16", "--text-layers", "1", "--text-heads", "2",
       "--vae-batch", "4", "--unet-batch", "4", "--vae-crop", "0", "--vae-steps", "3", "--unet-steps", "4",
       "--ckpt-every", "2", "--samples-per-class", "1", "--sample-steps", "2"]
T2I_FILES = [f"pipeline/unet/{SAFETENSORS}", "pipeline/text_encoder/model.safetensors", f"pipeline/vae/{SAFETENSORS}",
             "curve.csv", "samples.npz"]
# id: (argv, kill after this many checkpoint writes, step the rerun resumes from, files compared, changed flag)
STAGES = {
    "train-ddpm": (["train-ddpm", "--data", "{d}/img8.npz", "--resolution", "8", "--channels", "[8,16]",
                    "--attention", "[false,true]", "--steps", "6", "--batch-size", "4", "--warmup", "2",
                    "--log-every", "2", "--ckpt-every", "3", "--grid-samples", "2", "--grid-steps", "2"],
                   1, 3, [f"pipeline/unet/{SAFETENSORS}", "curve.csv", "samples.png"], ["--lr", "2e-3"]),
    "train-t2i-vae": (T2I, 1, 2, T2I_FILES, ["--vae-lr", "2e-3"]),  # the VAE phase's first checkpoint
    "train-t2i-unet": (T2I, 3, 3 + 2, T2I_FILES, ["--unet-lr", "1e-3"]),  # the UNet's: VAE steps come first
    "train-clip": (["train-clip", "--data", "{d}/img32.npz", "--test", "{d}/img32.npz", "--steps", "5", "--batch", "8",
                    "--ckpt-every", "2", "--embed-dim", "16", "--vision-layers", "1", "--patch-size", "8",
                    "--vision-width", "16", "--vision-head-width", "8", "--text-width", "16", "--text-heads", "2",
                    "--text-layers", "1"],
                   2, 4, ["model.safetensors", "curve.csv"], ["--lr", "2e-3"]),
    "train-mnist-classifier": (["train-mnist-classifier", "--data", "{d}/mnist", "--epochs", "2", "--batch-size", "8"],
                               1, 1, ["model.safetensors", "curve.csv"], ["--lr", "1e-3"]),
    "sample-ddpm": (["sample-ddpm", "--model", "{d}/ddpm", "--n", "5", "--batch-size", "2", "--steps", "3"],
                    1, 1, ["samples.npz", "samples.png"], ["--steps", "2"]),
}


SLOW = {"train-ddpm", "train-t2i-vae", "train-t2i-unet", "train-clip"}  # > 10 s each on 2 busy cores


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in STAGES])
def test_killed_stage_resumes_bytes_identical_and_changed_setting_starts_fresh(d, tmp_path, capsys, monkeypatch,
                                                                                name):
    monkeypatch.delenv("DIFFSEC_KILL_AT_SAVE", raising=False)
    argv, kill_at, start, files, changed = STAGES[name]
    check_kill_resume([a.format(d=d) for a in argv], tmp_path, capsys, kill_at, start, files, changed)
