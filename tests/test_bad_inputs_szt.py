"""Bad input to the SZT stages (poison, purify, train-ti, generate-ti, ssm-ti, eval-ti): exit
status 2, ONE stderr line `diffsec <stage>: error: ...` naming the cause, and nothing written
(no --out, no checkpoint, no temporary directory beside it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.imageset import save_imageset
from test_poison import model_dir  # noqa: F401  (fixture: the tiny SD pipeline, 32 px images)


@pytest.fixture(scope="module")
def d(tmp_path_factory, model_dir):  # noqa: F811
    """Good inputs (concepts, prompts, a train-ti artifact's files, the SD pipeline) and bad ones."""
    from diffsec.personalize.tokens import save_embeddings

    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    names = np.array(["dog", "dog", "cat", "cat"])
    save_imageset(d / "concepts.npz", images, masks=np.ones((4, 32, 32), np.uint8), concept=names, class_name=names)
    save_imageset(d / "bare.npz", images)  # no class names
    np.save(d / "centre.npy", np.zeros(64))
    save_imageset(d / "labelled.npz", images, labels=np.array([0, 1, 0, 1]))
    np.savez(d / "float.npz", images=images.astype(np.float32), concept=names, class_name=names)
    np.savez(d / "misaligned.npz", images=images, class_name=names[:3])
    (d / "prompts.json").write_text(json.dumps({"object_prompts": ["a {0} {1}"]}))
    (d / "notokens.json").write_text(json.dumps(["a photo of a dog"]))
    (d / "runs.json").write_text("[{not json")
    (d / "ti").mkdir()
    meta = {"dog-clean": {"token": "<dog-clean>", "class": "dog"}}
    save_embeddings(d / "ti" / "embeddings.safetensors", {"dog-clean": torch.zeros(32)}, meta)
    runs = [{"name": "dog-clean", "indices": [0, 1], "tags": {"set": "clean"}}]
    (d / "ti" / "runs.json").write_text(json.dumps(runs))
    (d / "gen").mkdir()
    save_imageset(d / "gen" / "images.npz", images)  # not a generate-ti output: no run/template arrays
    (d / "nomodel").mkdir()
    (d / "sd").symlink_to(model_dir)
    return d


POISON = ["poison", "--images", "{d}/concepts.npz", "--model", "{d}/sd", "--method", "adm+"]
PURIFY = ["purify", "--images", "{d}/concepts.npz"]
TRAIN = ["train-ti", "--model", "{d}/sd", "--sets", "clean={d}/concepts.npz", "--steps", "2"]
GENERATE = ["generate-ti", "--model", "{d}/sd", "--embeddings", "{d}/ti", "--prompts", "{d}/prompts.json"]
SSM = ["ssm-ti", "--model", "{d}/sd", "--embeddings", "{d}/ti", "--run", "dog-clean", "--clean", "{d}/concepts.npz"]
EVAL = ["eval-ti", "--generated", "{d}/gen", "--embeddings", "{d}/ti", "--clean", "{d}/concepts.npz",
        "--prompts", "{d}/prompts.json", "--centre", "{d}/centre.npy"]
REFERENCE = ["eval-ti-reference", "--clean", "{d}/concepts.npz", "--others", "{d}/labelled.npz"]
# id: (argv, a word the error line must contain)
CASES = {
    "poison_eps_above_scale": ([*POISON, "--eps", "300"], "eps <= scale"),
    "poison_zero_steps": ([*POISON, "--steps", "0"], "--steps"),
    "poison_ea_without_target": ([*POISON, "--method", "ea"], "--target"),
    "poison_float_images": ([*POISON, "--images", "{d}/float.npz"], "uint8"),
    "poison_no_class_names": ([*POISON, "--images", "{d}/bare.npz"], "class_name"),
    "poison_da_strength_one": ([*POISON, "--method", "da", "--target", "gray", "--da-strength", "1"], "strength"),
    "poison_not_a_model": ([*POISON, "--model", "{d}/nomodel"], "not a diffusers pipeline"),
    "purify_advclean_negative_iterations": ([*PURIFY, "--method", "advclean", "--bilateral-iters", "-3"],
                                            "iterations"),
    "purify_regen_without_model": ([*PURIFY, "--method", "regen"], "needs --model"),
    "purify_pdmpure_given_sd": ([*PURIFY, "--method", "pdmpure", "--model", "{d}/sd"], "needs a DDPMPipeline"),
    "purify_misaligned_arrays": ([*PURIFY, "--method", "jpeg", "--images", "{d}/misaligned.npz"], "aligned"),
    "purify_jpeg_quality": ([*PURIFY, "--method", "jpeg", "--quality", "101"], "--quality"),
    "purify_zero_batch": ([*PURIFY, "--method", "regen", "--model", "{d}/sd", "--batch-size", "0"], "batch"),
    "train_zero_steps": ([*TRAIN, "--steps", "0"], "steps >= 1"),
    "train_negative_lr": ([*TRAIN, "--lr", "-1"], "lr > 0"),
    "train_negative_ckpt_every": ([*TRAIN, "--ckpt-every", "-1"], "--ckpt-every"),
    "train_sets_spec_without_path": ([*TRAIN, "--sets", "clean"], "NAME=PATH"),
    "train_float_images": ([*TRAIN, "--sets", "clean={d}/float.npz"], "uint8"),
    "train_neither_runs_nor_sets": (["train-ti", "--model", "{d}/sd"], "--runs or --sets"),
    "train_runs_not_json": (["train-ti", "--model", "{d}/sd", "--runs", "{d}/runs.json"], "not valid JSON"),
    "generate_zero_per_prompt": ([*GENERATE, "--per-prompt", "0"], "per-prompt"),
    "generate_zero_batch": ([*GENERATE, "--batch", "0"], "batch"),
    "generate_missing_run": ([*GENERATE, "--only", "ghost"], "ghost"),
    "generate_template_without_token": ([*GENERATE, "--prompts", "{d}/notokens.json"], "{0}"),
    "generate_not_a_model": ([*GENERATE, "--model", "{d}/nomodel"], "not a diffusers pipeline"),
    "ssm_zero_draws": ([*SSM, "--draws", "0"], "--draws"),
    "ssm_missing_run": ([*SSM, "--run", "ghost"], "ghost"),
    "ssm_timestep_out_of_range": ([*SSM, "--timesteps", "[1000]"], "0..999"),
    "ssm_missing_concept": ([*SSM, "--concept", "ghost"], "ghost"),
    "ssm_float_images": ([*SSM, "--clean", "{d}/float.npz"], "uint8"),
    "eval_not_a_train_ti_artifact": ([*EVAL, "--embeddings", "{d}/gen"], "runs.json"),
    "eval_not_a_generate_ti_output": (EVAL, "not a generate-ti output"),
    "eval_float_clean_images": ([*EVAL, "--clean", "{d}/float.npz"], "uint8"),
    "eval_centre_not_npy": ([*EVAL, "--centre", "{d}/prompts.json"], "--centre"),
    "reference_zero_floor": ([*REFERENCE, "--n", "0"], "--n"),
    "reference_clean_without_concepts": ([*REFERENCE, "--clean", "{d}/bare.npz"], "concept"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_writes_nothing(d, tmp_path, capsys, case):
    argv, word = CASES[case]
    out = tmp_path / "out"
    capsys.readouterr()
    assert main([*(a.format(d=d) for a in argv), "--threads", "1", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"diffsec {argv[0]}: error: "), err
    assert word in err[0], err[0]
    assert list(tmp_path.iterdir()) == [], "nothing is written: no artifact, checkpoint or temporary directory"
