"""The pixel DDPM world: training writes a loadable DDPMPipeline, a killed run resumes to the
same weights, the paper path loads a pretrained directory, and samplers start from given noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsec import resume
from diffsec.cli.main import main
from diffsec.imageset import save_imageset, to_float
from diffsec.models import ddpm

TINY = ddpm.DDPMConfig(resolution=8, channels=[8, 16], attention=[False, True], layers_per_block=1)


@pytest.fixture()
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)


def _train(images, steps, ckpt=None, fail_at=None, monkeypatch=None):
    torch.manual_seed(0)
    unet, sched = ddpm.build_ddpm(TINY)
    if fail_at is not None:
        calls = {"n": 0}
        real = ddpm.ema_update

        def dying(ema, model, decay):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise KeyboardInterrupt  # the job is killed mid-training
            real(ema, model, decay)

        monkeypatch.setattr(ddpm, "ema_update", dying)
    # log_every 2 with checkpoints every 3 steps: a checkpoint falls inside an open log window
    cfg = ddpm.TrainConfig(steps=steps, batch_size=4, lr=1e-3, warmup=1, ema_decay=0.9, log_every=2, seed=0)
    ema, curve, _ = ddpm.train_ddpm(unet, sched, to_float(images), cfg, ckpt)
    return ema, curve


def test_killed_training_resumes_to_identical_weights(images, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    ref, ref_curve = _train(images, steps=7)
    def ckpt():
        return resume.Checkpoint(tmp_path / "ckpt", key="k", every=3)

    with pytest.raises(KeyboardInterrupt):
        _train(images, steps=7, ckpt=ckpt(), fail_at=5, monkeypatch=monkeypatch)
    assert (tmp_path / "ckpt/state.pt").exists()
    monkeypatch.undo()
    resumed, curve = _train(images, steps=7, ckpt=(c := ckpt()))
    assert c.start_step == 3
    # the resumed curve is the uninterrupted one: int steps, the same float64 window means
    assert curve == ref_curve and curve[0] == [2, 4, 6, 7] and all(type(s) is int for s in curve[0])
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_cli_trains_saves_and_loads_pretrained(images, tmp_path):
    save_imageset(tmp_path / "train.npz", images)
    out = tmp_path / "ddpm"
    args = ["train-ddpm", "--data", str(tmp_path / "train.npz"), "--out", str(out), "--resolution", "8",
            "--channels", "[8,16]", "--attention", "[false,true]", "--steps", "3", "--batch-size", "4",
            "--grid-samples", "4", "--grid-steps", "2", "--threads", "1"]
    assert main(args) == 0
    assert {"pipeline", "samples.png", "curve.png", "curve.csv", "manifest.json"} <= {p.name for p in out.iterdir()}
    assert not out.with_name("ddpm.ckpt").exists()  # checkpoints are cleared on success
    # The paper profile passes a hub id or local dir: the same loader takes this directory.
    loaded = tmp_path / "loaded"
    assert main(["train-ddpm", "--pretrained", str(out / "pipeline"), "--out", str(loaded),
                 "--grid-samples", "4", "--grid-steps", "2", "--threads", "1"]) == 0
    a, _ = ddpm.load_ddpm(str(out / "pipeline"))
    b, _ = ddpm.load_ddpm(str(loaded / "pipeline"))
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_bad_input_writes_nothing(tmp_path, capsys):
    out = tmp_path / "ddpm"
    assert main(["train-ddpm", "--out", str(out)]) == 2
    assert main(["train-ddpm", "--data", str(tmp_path / "missing.npz"), "--out", str(out)]) == 2
    assert main(["train-ddpm", "--data", "x.npz", "--channels", "[8,16]", "--attention", "[true]",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("diffsec train-ddpm: error:") for line in err)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_sampling_starts_from_the_given_noise():
    """An oracle eps-model that knows x0 = 0 must map any x_T to ~0 with DDIM and DDPM."""
    from diffsec.diffusion.sampling import sample

    _, sched = ddpm.build_ddpm(TINY)
    abar = sched.alphas_cumprod

    def oracle(x, t):  # x_t = sqrt(1 - abar) eps when x0 = 0
        return x / torch.sqrt(1 - abar[t]).view(-1, 1, 1, 1)

    x_T = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for method, steps in (("ddim", 20), ("ddpm", 0)):
        x0, traj = sample(oracle, dict(sched.config), x_T, method, steps, progress=False,
                          generator=torch.Generator().manual_seed(1), trajectory_every=5)
        assert x0.abs().max() < 1e-3, method
        assert len(traj) >= 2
