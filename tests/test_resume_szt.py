"""Kill and resume of the long SZT stages (a PGD poison, textual inversion, generation from the
learned tokens): a run SIGKILLed right after a checkpoint write (DIFFSEC_KILL_AT_SAVE) and rerun
unchanged resumes and ends byte-identical to an uninterrupted run, with the resume in its
manifest; rerun with one changed hyperparameter instead, it says it starts fresh and ends equal
to a fresh run with that setting. The world is test_poison's tiny random SD-shaped pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffsec.cli.main import main
from diffsec.imageset import save_imageset
from resume_harness import RUN, check_kill_resume
from test_poison import model_dir  # noqa: F401  (fixture: the tiny SD pipeline, 32 px images)


@pytest.fixture(scope="module")
def d(tmp_path_factory, model_dir):  # noqa: F811
    """Four smooth 32 px images of two concepts (with masks), prompt templates, learned tokens."""
    d = tmp_path_factory.mktemp("szt")
    rng = np.random.default_rng(0)
    images = np.repeat(np.repeat(rng.uniform(40, 215, (4, 4, 4, 3)), 8, 1), 8, 2).round().astype(np.uint8)
    masks = np.zeros((4, 32, 32), np.uint8)
    masks[:, 8:24, 8:24] = 1
    names = np.array(["dog", "dog", "cat", "cat"])
    save_imageset(d / "concepts.npz", images, masks=masks, concept=names, class_name=names)
    (d / "prompts.json").write_text(json.dumps({"object_prompts": ["a {0} {1}", "a {0} {1} in the snow"]}))
    assert main([*(a.format(d=d, model=model_dir) for a in TI), "--steps", "1", *RUN, "--out", str(d / "ti")]) == 0
    return d


TI = ["train-ti", "--model", "{model}", "--sets", "clean={d}/concepts.npz", "--masks-from", "{d}/concepts.npz",
      "--objective", "lm", "--sampler", "high:500", "--dilation", "16", "--ckpt-every", "1"]
# id: (argv, kill after this many checkpoint writes, step the rerun resumes from, files compared, changed flag)
STAGES = {
    "poison": (["poison", "--method", "adm+", "--images", "{d}/concepts.npz", "--model", "{model}", "--steps", "2",
                "--step", "4", "--batch-size", "1"],
               2, 2, ["images.npz", "distances.json", "loss_curve.csv", "loss_curve.png"], ["--eps", "4"]),
    "train-ti": ([*TI, "--steps", "3"], 1, 1,
                 ["embeddings.safetensors", "init.safetensors", "runs.json", "loss.csv", "loss.png"], ["--lr", "1e-3"]),
    "generate-ti": (["generate-ti", "--model", "{model}", "--embeddings", "{d}/ti", "--prompts", "{d}/prompts.json",
                     "--per-prompt", "1", "--steps", "2", "--guidance", "2", "--batch", "1"],
                    2, 2, ["images.npz", "grid.png"], ["--guidance", "3"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", STAGES)
def test_killed_stage_resumes_bytes_identical_and_changed_setting_starts_fresh(d, model_dir, tmp_path, capsys,  # noqa: F811
                                                                                monkeypatch, name):
    monkeypatch.delenv("DIFFSEC_KILL_AT_SAVE", raising=False)
    argv, kill_at, start, files, changed = STAGES[name]
    argv = [a.format(d=d, model=model_dir) for a in argv]
    check_kill_resume(argv, tmp_path, capsys, kill_at, start, files, changed)
