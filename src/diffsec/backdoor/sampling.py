"""Sampling a (backdoored) pixel DDPM from clean and from triggered noise, in batches that resume.

Benign functionality is measured on samples from x_T ~ N(0, I) with the benign chain; the attack
on samples from the trigger's x_T (`Attack.x_T`) with one of two reverse chains, both by
`diffusion.sampling.sample` (DDPM: all T ancestral steps; DDIM: eta = 0):

* `attacker`: the attack's own chain (`Attack.chain`: TrojDiff's shifted chain, our kappa-corrected
  chain for InvisibleDiffusion without a fixed image);
* `ordinary`: the benign DDPM / DDIM sampler, unchanged, started from the triggered noise (the
  InvisibleDiffusion paper's threat model: the user's sampler, the attacker's noise).

The triggered noise comes from the sampled model's own attack, or from another artifact's
(`trigger`: the unbackdoored world sampled from an attack's noise, the benign baseline). The
clean set may be left out (`clean=False`) where another run already sampled it.

All noise comes from one CPU generator, drawn batch by batch in a fixed order (the clean set, then
the triggered one), reseeded at the start of each set (seed for the clean set, seed + 1 for the
triggered one) so that every run of a model family starts its triggered set from the same x_T
whatever the chain, model or the clean set's presence; a run is the same bytes on any device and
batch size of work done before a kill. After every `ckpt.every` finished batches the images so
far, the recorded trajectories and the generator state are checkpointed; a resumed run continues
with the next batch and ends with the uninterrupted run's bytes.

A trajectory is x_T and then x after every `max(1, steps // frames)`-th reverse step of the
first `trajectory` samples of a set's first batch (Fig. 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffsec import resume
from diffsec.backdoor.attacks import Attack, load_attack
from diffsec.diffusion.sampling import sample


@dataclass
class SampleConfig:
    sampler: str      # ddpm | ddim
    steps: int        # DDIM steps (DDPM always runs all T)
    n: int            # samples per set
    batch_size: int
    trajectory: int   # samples whose trajectories are kept (0: none)
    frames: int       # trajectory snapshots
    seed: int
    chain: str = "attacker"   # attacker | ordinary: the reverse chain of the triggered set
    clean: bool = True        # sample the clean set too


CHAINS = ("attacker", "ordinary")
SET_SEED = {"clean": 0, "trigger": 1}   # offset of each set's seed from the run's


@dataclass
class SampleSet:
    images: np.ndarray              # uint8 N x H x W x C
    trajectory: torch.Tensor | None  # frames x trajectory x C x H x W in [-1, 1] (noisy states leave it)


def read_attack(model: Path) -> Attack | None:
    """The attack of a backdoor-train artifact; None for a clean world."""
    return load_attack(model)[0] if (model / "attack.json").exists() else None


def chain_of(attack: Attack, chain: str):
    """The reverse chain a triggered set is sampled with (module docstring)."""
    if chain not in CHAINS:
        raise ValueError(f"unknown chain {chain!r} ({', '.join(CHAINS)})")
    return attack.chain() if chain == "attacker" else None


def trigger_grid(unet, scheduler, attack: Attack, seed: int, device) -> np.ndarray:
    """Row pairs: 16 DDIM-50 samples from clean noise above 16 from triggered noise."""
    from diffsec.imageset import grid, to_uint8
    from diffsec.models.ddpm import unet_eps

    gen = torch.Generator().manual_seed(seed + 1)
    cfg = dict(scheduler.config)
    clean = torch.randn(16, *attack.shape, generator=gen)
    x_c, _ = sample(unet_eps(unet), cfg, clean.to(device), "ddim", 50, generator=gen)
    x_t, _ = sample(unet_eps(unet), cfg, attack.x_T(16, gen).to(device), "ddim", 50, generator=gen,
                    chain=attack.chain())
    return grid(np.concatenate([to_uint8(x_c), to_uint8(x_t)]), nrow=8)


class _Progress:
    """Finished batches of every set so far, and the generator: what a checkpoint holds."""

    def __init__(self, names: list[str], seed: int):
        self.gen = torch.Generator().manual_seed(seed)
        self.images: dict[str, list[torch.Tensor]] = {k: [] for k in names}
        self.traj: dict[str, torch.Tensor] = {}

    def state(self) -> dict:
        return {"gen": self.gen.get_state(), "images": {k: torch.cat(v) if v else torch.zeros(0, dtype=torch.uint8)
                                                        for k, v in self.images.items()}, "traj": self.traj}

    def restore(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.images = {k: [v] if len(v) else [] for k, v in state["images"].items()}
        self.traj = dict(state["traj"])


def _batch(eps_model, cfg: dict, attack: Attack | None, c: SampleConfig, b: int, first: bool, p: _Progress,
           device, res: int):
    if first:
        p.gen.manual_seed(c.seed + SET_SEED["clean" if attack is None else "trigger"])
    from diffsec.imageset import to_uint8

    x_T = (torch.randn(b, 3, res, res, generator=p.gen) if attack is None else attack.x_T(b, p.gen))
    T = cfg["num_train_timesteps"]
    keep = max(1, (T if c.sampler == "ddpm" else c.steps) // c.frames) if first and c.trajectory else 0
    x0, frames = sample(eps_model, cfg, x_T.to(device), c.sampler, c.steps, generator=p.gen, progress=False,
                        trajectory_every=keep, chain=chain_of(attack, c.chain) if attack else None)
    traj = torch.stack([x_T[:c.trajectory]] + [f[:c.trajectory] for f in frames]) if keep else None
    return torch.from_numpy(to_uint8(x0)), traj


def sample_sets(unet, scheduler, attack: Attack | None, c: SampleConfig, *, ckpt: resume.Checkpoint | None = None,
                device: torch.device | str = "cpu") -> dict[str, SampleSet]:
    """'clean' (unless `c.clean` is off) and, given an attack (the model's or another's trigger),
    'trigger' samples, batch by batch, resuming from `ckpt`."""
    from tqdm.auto import tqdm

    from diffsec.models.ddpm import unet_eps

    ckpt = ckpt or resume.disabled()
    sets = ({"clean": None} if c.clean else {}) | ({"trigger": attack} if attack is not None else {})
    if not sets:
        raise ValueError("nothing to sample: no clean set and no trigger")
    batches = [(name, i) for name in sets for i in range(0, c.n, c.batch_size)]
    p = _Progress(list(sets), c.seed)
    if (state := ckpt.load()) is not None:
        p.restore(state)
    cfg, res = dict(scheduler.config), unet.config.sample_size
    for done, (name, i) in enumerate(tqdm(batches[ckpt.start_step:], desc=f"{c.sampler} batches"),
                                     start=ckpt.start_step + 1):
        images, traj = _batch(unet_eps(unet), cfg, sets[name], c, min(c.batch_size, c.n - i), i == 0, p, device, res)
        p.images[name].append(images)
        if traj is not None:
            p.traj[name] = traj
        if ckpt.due(done, len(batches)):
            ckpt.save(p.state(), done)
    return {k: SampleSet(torch.cat(v).numpy(), p.traj.get(k)) for k, v in p.images.items()}


def write_samples(sets: dict[str, SampleSet], directory: Path) -> None:
    """<set>.npz, trajectory_<set>.npz (float16 frames) and a grid of each set's first 32."""
    from diffsec.imageset import grid, save_imageset, save_png

    for name, s in sets.items():
        save_imageset(directory / f"{name}.npz", s.images)
        if s.trajectory is not None:
            np.savez_compressed(directory / f"trajectory_{name}.npz", frames=s.trajectory.numpy().astype(np.float16))
    save_png(directory / "samples.png", grid(np.concatenate([s.images[:32] for s in sets.values()]), nrow=8), scale=3)
