"""Backdoor one pixel DDPM world: resolve the target, build the trigger, fine-tune, draw the grid.

A backdoor-train artifact holds the backdoored EMA weights (`pipeline/`, a DDPMPipeline), the
trigger (`attack.json`, `trigger.safetensors` for a fixed image), the target reference images
(`target.npz`), the training curve, the EMA snapshots (`snapshots/step-<n>/`, a UNet each) and a
grid of 16 DDIM-50 samples from clean noise above 16 from triggered noise (`samples.png`).
The maths of the objectives is in `attacks.py`, of the fine-tuning in `finetune.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffsec import resume
from diffsec.backdoor import triggers
from diffsec.backdoor.attacks import Attack, save_attack
from diffsec.backdoor.finetune import FinetuneConfig, Finetuned, finetune
from diffsec.backdoor.targets import Target, load_target
from diffsec.errors import DiffsecError


@dataclass
class BackdoorSpec:
    method: str         # attacks.METHODS
    trigger: str        # triggers.KINDS
    target: str         # a targets spec
    lam: float          # InvisibleDiffusion's mixing ratio
    gamma: float        # TrojDiff's blend std
    trigger_seed: int   # seed of a fixed noise trigger image
    box_size: int       # BadDiffusion's box side (px), grey_box or box_outline


@dataclass
class World:
    """What a backdoor is trained from: the world's model and data, and the optional MNIST / picture."""
    unet: torch.nn.Module
    scheduler: object
    train: dict            # image sets (images, labels) of the world's dataset
    test: dict
    dataset: str           # cifar10 | celeba
    mnist: dict | None     # held-out MNIST (Out-D and one-image targets)
    picture: np.ndarray | None  # RGB uint8 picture of the 'mist' blend trigger


@dataclass
class Backdoored:
    tuned: Finetuned
    scheduler: object
    attack: Attack
    target: Target
    grid: np.ndarray       # uint8: clean rows above triggered rows


def load_world(model: Path, data: Path, mnist: Path | None, mist: Path | None, device) -> World:
    """The World from a train-ddpm artifact, a prepare-cifar10 / prepare-celeba artifact, the
    prepare-mnist artifact and the mist_target artifact (the last two optional)."""
    from PIL import Image

    from diffsec.artifact import read_manifest
    from diffsec.imageset import load_imageset
    from diffsec.models.ddpm import open_artifact

    try:
        dataset = read_manifest(data)["stage"].removeprefix("prepare-")
    except (OSError, ValueError, KeyError, TypeError):
        raise DiffsecError(f"{data}: not a prepare-cifar10 / prepare-celeba artifact (no readable manifest)") from None
    picture = None
    if mist is not None:
        files = sorted(p for p in mist.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise DiffsecError(f"{mist} holds no image file")
        picture = np.asarray(Image.open(files[0]).convert("RGB"))
    unet, sched = open_artifact(model, device)
    return World(unet, sched, load_imageset(data / "train.npz"), load_imageset(data / "test.npz"), dataset,
                 load_imageset(mnist / "heldout.npz") if mnist else None, picture)


def trigger_image(spec: BackdoorSpec, res: int, picture: np.ndarray | None) -> torch.Tensor | None:
    """The fixed trigger image phi (C x res x res in [-1, 1]); None for the 'free' trigger."""
    if spec.trigger == "free":
        return None
    if spec.trigger in triggers.FIXED_NOISE:
        return triggers.noise_image(spec.trigger, (3, res, res), spec.trigger_seed)
    if spec.trigger == "grey_box":
        return triggers.grey_box_trigger(res, spec.box_size)
    if spec.trigger == "box_outline":
        return triggers.box_outline_trigger(res, spec.box_size)
    if picture is None:
        raise DiffsecError("the 'mist' trigger needs the MIST picture (the fetch-source mist_target artifact)")
    return triggers.image_trigger(picture, res)


def make_attack(spec: BackdoorSpec, res: int, picture: np.ndarray | None) -> Attack:
    try:
        return Attack(spec.method, spec.trigger, trigger_image(spec, res, picture), lam=spec.lam, gamma=spec.gamma,
                      shape=(3, res, res))
    except ValueError as e:
        raise DiffsecError(str(e)) from None


def prepare(world: World, spec: BackdoorSpec) -> tuple[Target, Attack]:
    """The target and the attack, checked against the world before any training."""
    res = world.unet.config.sample_size
    target = load_target(spec.target, data_train=world.train, data_test=world.test, data_name=world.dataset,
                         mnist_heldout=world.mnist, resolution=res)
    return target, make_attack(spec, res, world.picture)


def backdoor(world: World, spec: BackdoorSpec, cfg: FinetuneConfig, *, ckpt: resume.Checkpoint | None = None,
             device: torch.device | str = "cpu") -> Backdoored:
    from diffsec.backdoor.sampling import trigger_grid
    from diffsec.imageset import to_float

    target, attack = prepare(world, spec)
    tuned = finetune(world.unet, world.scheduler, to_float(world.train["images"]), to_float(target.train), attack,
                     cfg, ckpt=ckpt, device=device)
    grid = trigger_grid(tuned.ema, world.scheduler, attack, cfg.seed, device)
    return Backdoored(tuned, world.scheduler, attack, target, grid)


def write_backdoored(b: Backdoored, directory: Path, title: str) -> dict:
    """Write the artifact's files into `directory`; returns what the manifest adds."""
    from diffsec.imageset import save_imageset, save_png
    from diffsec.models.ddpm import save_ddpm, save_snapshots
    from diffsec.training import write_curves

    save_ddpm(b.tuned.ema, b.scheduler, directory / "pipeline")
    save_snapshots(b.tuned.ema, b.tuned.snapshots, directory)
    a, t, chain = b.attack, b.target, b.attack.chain()
    meta = save_attack(a, directory, target=t.spec, target_kind=t.kind, target_dataset=t.dataset,
                       target_label=t.label, one_image=t.one_image, chain_gamma=chain.gamma, chain_kappa=chain.kappa,
                       trigger_std=a.free_std if a.trigger == "free" else None,
                       stealth=triggers.stealth_norms(a.added()), snapshots=list(b.tuned.snapshots))
    save_imageset(directory / "target.npz", t.reference)
    steps = [r["step"] for r in b.tuned.curve]
    write_curves(directory / "curve.csv", directory / "curve.png",
                 {k: (steps, [r[k] for r in b.tuned.curve]) for k in ("loss", "loss_clean", "loss_poison")},
                 title=title)
    save_png(directory / "samples.png", b.grid, scale=3)
    return {"attack": meta, "final_loss": b.tuned.curve[-1], "n_target_train": int(len(t.train))}
