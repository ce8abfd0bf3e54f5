"""The one reverse process (`diffusion.sampling.sample`): diffusers' schedulers to the bit on the
benign chain, the attacker's chain options, and refusals of what it does not implement."""

from __future__ import annotations

import pytest
import torch

from diffsec.diffusion.chain import NoiseChain
from diffsec.diffusion.sampling import sample

SHAPE = (3, 8, 8)


def _config(variance_type="fixed_large", clip=True) -> dict:
    from diffusers import DDPMScheduler

    return dict(DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip,
                              variance_type=variance_type).config)


def _eps_model(x, t):  # any deterministic function of (x, t) will do
    return torch.tanh(x) * 0.7 + 0.1 * (t.float() / 1000).view(-1, 1, 1, 1)


def _diffusers(cfg: dict, x_T, method: str, steps: int, eta: float, seed: int) -> torch.Tensor:
    """The reference: diffusers' own scheduler loop."""
    from diffusers import DDIMScheduler, DDPMScheduler

    sched = (DDPMScheduler.from_config(cfg) if method == "ddpm"
             else DDIMScheduler.from_config(cfg, set_alpha_to_one=True))
    sched.set_timesteps(1000 if method == "ddpm" else steps)
    gen, x = torch.Generator().manual_seed(seed), x_T.clone()
    for t in sched.timesteps:
        kw = {"eta": eta} if method == "ddim" else {}
        x = sched.step(_eps_model(x, t.expand(x.shape[0])), t, x, generator=gen, **kw).prev_sample
    return x


@pytest.mark.parametrize("method,steps,eta,variance,clip", [
    ("ddim", 20, 0.0, "fixed_large", True), ("ddim", 3, 0.0, "fixed_large", False),
    ("ddim", 7, 0.6, "fixed_large", True), ("ddpm", 0, 0.0, "fixed_large", True),
    ("ddpm", 0, 0.0, "fixed_small", True), ("ddpm", 0, 0.0, "fixed_large", False)])
def test_benign_chain_is_diffusers_bit_for_bit(method, steps, eta, variance, clip):
    cfg = _config(variance, clip)
    x_T = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(0)) * 1.2
    ours, _ = sample(_eps_model, cfg, x_T, method, steps, eta, generator=torch.Generator().manual_seed(1),
                     progress=False)
    ref = _diffusers(cfg, x_T, method, steps, eta, seed=1)
    assert ours.numpy().tobytes() == ref.numpy().tobytes()


def test_an_identity_chain_is_the_benign_sampler_and_a_chain_changes_the_result():
    cfg = _config()
    x_T = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    runs = {name: sample(_eps_model, cfg, x_T, "ddpm", generator=torch.Generator().manual_seed(1), progress=False,
                         chain=chain)[0]
            for name, chain in {"none": None, "identity": NoiseChain(),
                                "shifted": NoiseChain(torch.full(SHAPE, 0.3), 0.7, 1.0)}.items()}
    assert torch.equal(runs["none"], runs["identity"])
    assert not torch.allclose(runs["none"], runs["shifted"], atol=1e-3)


def test_trajectory_holds_every_kth_state_and_the_last():
    cfg = _config()
    x_T = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    x0, traj = sample(_eps_model, cfg, x_T, "ddim", 10, progress=False, trajectory_every=4)
    assert len(traj) == 4                     # after steps 1, 5, 9 and the last (10)
    assert torch.equal(traj[-1], x0) and all(f.shape == x_T.shape for f in traj)
    assert sample(_eps_model, cfg, x_T, "ddim", 10, progress=False)[1] == []


@pytest.mark.parametrize("change,method,steps,msg", [
    ({}, "euler", 10, "unknown sampler"), ({}, "ddim", 0, "DDIM steps"), ({}, "ddim", 1001, "DDIM steps"),
    ({"prediction_type": "v_prediction"}, "ddim", 10, "prediction_type"),
    ({"variance_type": "learned_range"}, "ddpm", 0, "variance_type"),
    ({"timestep_spacing": "trailing"}, "ddim", 10, "timestep_spacing")])
def test_what_the_sampler_does_not_implement_is_refused(change, method, steps, msg):
    cfg = {**{k: v for k, v in _config().items() if k != "_use_default_values"}, **change}  # else defaults win
    with pytest.raises(ValueError, match=msg):
        sample(_eps_model, cfg, torch.zeros(1, *SHAPE), method, steps, progress=False)
