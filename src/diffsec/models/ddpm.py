"""The pixel-space DDPM world: a diffusers UNet2DModel + DDPMScheduler (T=1000, linear betas).

Training minimises the DDPM simple loss (Ho et al. 2020)

    L = E_{x0, t ~ U{0..T-1}, eps ~ N(0, I)} || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2

with AdamW (lr warmed up linearly over `warmup` steps, gradient norm clipped at 1) on random,
horizontally flipped batches. The weights kept are the EMA theta_ema <- d theta_ema + (1 - d) theta
with d = 0 during the warm-up (the average follows the model) and d = `ema_decay` after it.
The EMA weights at chosen steps (`TrainConfig.snapshots`) are kept as well, in `snapshots/step-<n>/`
of the artifact, the layout `backdoor-train` writes, so one loader (`open_artifact`) serves both.
Every random number of training comes from one seeded CPU generator whose state is checkpointed
with the weights, so a killed run resumes to the bytes an uninterrupted one writes.

Samples start from x_T ~ N(0, I) drawn on the CPU from one seeded generator (same seed, same
samples on any device) and run DDIM (eta 0) or ancestral DDPM through `diffusion.sampling`.

`tiny` trains the world on CIFAR-10 in the DAG; `paper` loads google/ddpm-cifar10-32 (hub id or a
local directory) through the same `load_ddpm`.
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffsec import resume
from diffsec.errors import DiffsecError, first_line
from diffsec.models import checks
from diffsec.models.rng import rng_state, set_rng_state
from diffsec.training import ema_update, write_curves

# The world's noise schedule: T = 1000, betas linear from 1e-4 to 0.02 (Ho et al.).
SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                clip_sample=True, variance_type="fixed_large")


def _groups(channels: list[int]) -> int:
    return min(32, min(channels) // 2)


@dataclass
class DDPMConfig:
    """The UNet: image side, widths and self-attention flags per level, resnets per level."""

    resolution: int
    channels: list[int]
    attention: list[bool]
    layers_per_block: int

    def __post_init__(self):
        checks.positive(self, "resolution", "layers_per_block")
        checks.positive_ints(self, "channels")
        checks.flags(self, "attention", "channels")
        g = _groups(self.channels)
        if g < 1 or any(c % g for c in self.channels):
            raise DiffsecError(f"channels {self.channels}: each must be divisible by the GroupNorm group "
                               f"count min(32, min(channels) // 2) = {g}")
        if self.resolution % 2 ** (len(self.channels) - 1):
            raise DiffsecError(f"resolution {self.resolution} is not divisible by 2**(levels - 1) = "
                               f"{2 ** (len(self.channels) - 1)}")


@dataclass
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    warmup: int
    ema_decay: float
    log_every: int
    seed: int
    snapshots: tuple[int, ...] = ()   # steps whose EMA weights are kept beside the final ones

    def __post_init__(self):
        checks.positive(self, "steps", "batch_size", "lr", "log_every")
        checks.non_negative(self, "warmup")
        checks.fraction(self, "ema_decay")
        if any(type(s) is not int or not 0 < s <= self.steps for s in self.snapshots):
            raise DiffsecError(f"snapshots {list(self.snapshots)}: must be steps in 1..{self.steps}")


@dataclass
class SampleConfig:
    """`n` samples in batches of `batch_size`; `steps` DDIM steps (ddpm always runs all T)."""

    n: int
    sampler: str
    steps: int
    batch_size: int
    seed: int

    def __post_init__(self):
        checks.positive(self, "n", "steps", "batch_size")
        checks.one_of(self, "sampler", ("ddim", "ddpm"))


def build_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE)


def build_ddpm(cfg: DDPMConfig):
    from diffusers import UNet2DModel

    down = ["AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention]
    up = ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention)]
    unet = UNet2DModel(sample_size=cfg.resolution, in_channels=3, out_channels=3,
                       block_out_channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
                       down_block_types=tuple(down), up_block_types=tuple(up),
                       norm_num_groups=_groups(cfg.channels), attention_head_dim=None)
    return unet, build_scheduler()


def save_ddpm(unet, scheduler, path: str | os.PathLike) -> None:
    """Save as a diffusers DDPMPipeline directory (safetensors weights)."""
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path, safe_serialization=True)


def load_ddpm(name_or_path: str | os.PathLike, device: str | torch.device = "cpu", flag: str = "--model"):
    """(unet, scheduler) from a DDPMPipeline directory, an artifact holding one under `pipeline/`,
    or a hub id (e.g. google/ddpm-cifar10-32); anything else is one DiffsecError naming `flag`."""
    from diffusers import DDPMPipeline

    from diffsec.models.pipelines import resolve_pipeline

    where = resolve_pipeline(str(name_or_path), flag)
    try:
        pipe = DDPMPipeline.from_pretrained(where)
    except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad directory or id
        why = first_line(e)
        raise DiffsecError(f"{flag} {name_or_path}: cannot load a DDPMPipeline ({why})") from None
    return pipe.unet.to(device).eval(), pipe.scheduler


def snapshot_dir(model: Path, snapshot: int) -> Path:
    """The weights a train-ddpm / backdoor-train artifact holds for a step (0 = the final EMA)."""
    return model / "snapshots" / f"step-{snapshot}" if snapshot else model / "pipeline"


def open_artifact(model: Path, device, snapshot: int = 0, flag: str = "--model"):
    """(unet, scheduler) of a train-ddpm / backdoor-train artifact (its EMA snapshot of a step, if
    not 0); a directory that holds no loadable DDPMPipeline is one DiffsecError."""
    from diffusers import UNet2DModel

    if not (model / "pipeline" / "model_index.json").is_file():
        raise DiffsecError(f"{flag} {model}: not a train-ddpm or backdoor-train artifact "
                           "(no pipeline/model_index.json)")
    snap = snapshot_dir(model, snapshot)
    if not snap.is_dir():
        raise DiffsecError(f"{model} has no snapshot of step {snapshot}")
    with quiet_loading():   # no progress bar: a later bad-input error stays the log's one line
        unet, sched = load_ddpm(model / "pipeline", device, flag)
    if snapshot:
        try:
            unet = UNet2DModel.from_pretrained(str(snap)).to(device).eval()
        except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad directory
            raise DiffsecError(f"{snap}: cannot load the snapshot's UNet ({first_line(e)})") from None
    return unet, sched


@contextlib.contextmanager
def quiet_loading():
    """diffusers' loading progress bars off for the block."""
    from diffusers.utils import logging as dlog

    was = dlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            dlog.enable_progress_bar()


def save_snapshots(unet, snapshots: dict[int, dict], directory: Path) -> None:
    """Each EMA state dict as a UNet2DModel of `unet`'s config under directory/snapshots/step-<n>/."""
    snap = copy.deepcopy(unet)
    for step, state in snapshots.items():
        snap.load_state_dict(state)
        snap.save_pretrained(directory / "snapshots" / f"step-{step}", safe_serialization=True)


def diffusion_loss(unet, scheduler, x0: torch.Tensor, generator: torch.Generator | None = None):
    """The DDPM simple loss ||eps - eps_theta(x_t, t)||^2 with t ~ U{0..T-1}."""
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device,
                      generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, generator=generator)
    xt = scheduler.add_noise(x0, noise, t)
    return F.mse_loss(unet(xt, t).sample, noise)


@dataclass
class _Run:
    """What a checkpoint carries besides the weights: the curve so far and the open log window."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    running: list[float] = field(default_factory=list)


def _step(unet, scheduler, images, opt, gen, cfg: TrainConfig, step: int, device, hflip: bool) -> float:
    idx = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=gen)
    x0 = images[idx]
    if hflip:
        flip = torch.rand(cfg.batch_size, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    for g in opt.param_groups:
        g["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))
    loss = diffusion_loss(unet, scheduler, x0.to(device), gen if device.type == "cpu" else None)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step()
    return loss.item()


def train_ddpm(unet, scheduler, images: torch.Tensor, cfg: TrainConfig, ckpt: resume.Checkpoint | None = None,
               device: torch.device | None = None, hflip: bool = True):
    """Train on images in [-1,1] (N,3,H,W). Returns (ema_unet, (curve steps, mean losses),
    {step: EMA state dict} at `cfg.snapshots`).

    Resumes from `ckpt` when it holds this run's state: a killed job loses at most `ckpt.every` steps.
    """
    ckpt, device = ckpt or resume.disabled(), device or torch.device("cpu")
    unet.to(device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    run, start, snaps = _Run(), 0, {}
    if (state := ckpt.load()) is not None:
        unet.load_state_dict(state["unet"]), ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"]), gen.set_state(state["gen"]), set_rng_state(state["rng"], device)
        run, start = _Run(*state["run"]), ckpt.start_step
        snaps = {int(s): sd for s, sd in state.get("snapshots", {}).items()}
    bar = tqdm(range(start, cfg.steps), desc="train ddpm", initial=start, total=cfg.steps)
    for step in bar:
        run.running.append(_step(unet, scheduler, images, opt, gen, cfg, step, device, hflip))
        ema_update(ema, unet, cfg.ema_decay if step >= cfg.warmup else 0.0)
        if step + 1 in cfg.snapshots:
            snaps[step + 1] = copy.deepcopy(ema.state_dict())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            run.steps.append(step + 1), run.losses.append(float(np.mean(run.running)))
            bar.set_postfix(loss=f"{run.losses[-1]:.4f}")
            run.running = []
        if ckpt.due(step + 1, cfg.steps):
            ckpt.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                       "gen": gen.get_state(), "rng": rng_state(device),
                       "run": [run.steps, run.losses, run.running],
                       "snapshots": {str(s): sd for s, sd in snaps.items()}}, step + 1)
    return ema, (run.steps, run.losses), snaps


def sample_images(unet, scheduler, cfg: SampleConfig, device: torch.device,
                  ckpt: resume.Checkpoint | None = None) -> np.ndarray:
    """`cfg.n` uint8 NHWC samples, batch by batch; finished batches are checkpointed."""
    from diffsec.diffusion.sampling import sample
    from diffsec.imageset import to_uint8

    ckpt = ckpt or resume.disabled()
    gen = torch.Generator().manual_seed(cfg.seed)
    res = unet.config.sample_size
    done: list[np.ndarray] = []
    if (state := ckpt.load()) is not None:
        gen.set_state(state["gen"]), set_rng_state(state["rng"], device)
        done = [state["images"].numpy()]
    starts = list(range(0, cfg.n, cfg.batch_size))
    for k in tqdm(range(ckpt.start_step if state else 0, len(starts)), desc="batches", disable=len(starts) < 2):
        b = min(cfg.batch_size, cfg.n - starts[k])
        x_T = torch.randn(b, 3, res, res, generator=gen).to(device)
        x0, _ = sample(unet_eps(unet), dict(scheduler.config), x_T, cfg.sampler, cfg.steps, generator=gen)
        done.append(to_uint8(x0))
        if ckpt.due(k + 1, len(starts)):
            ckpt.save({"images": torch.from_numpy(np.concatenate(done)), "gen": gen.get_state(),
                       "rng": rng_state(device)}, k + 1)
    return np.concatenate(done)


@dataclass
class World:
    """A trained or loaded world, the sample grid drawn from it, its curve and manifest notes."""

    unet: torch.nn.Module
    scheduler: object
    samples: np.ndarray
    curve: dict | None
    info: dict
    snapshots: dict[int, dict] = field(default_factory=dict)   # step -> EMA state dict


def train_world(images: np.ndarray, model: DDPMConfig, cfg: TrainConfig, grid: SampleConfig,
                ckpt: resume.Checkpoint | None, device: torch.device) -> World:
    """Build, train (resuming from `ckpt`) and sample the grid of a world on uint8 NHWC images."""
    from diffsec.imageset import to_float

    if images.shape[1:3] != (model.resolution, model.resolution):
        raise DiffsecError(f"training images are {images.shape[1]}x{images.shape[2]} px but the model's "
                           f"resolution is {model.resolution}")
    unet, sched = build_ddpm(model)
    n = n_params(unet)
    ema, (steps, losses), snaps = train_ddpm(unet, sched, to_float(images), cfg, ckpt, device)
    info = {"n_params": n, "final_loss": losses[-1], "n_train_images": int(len(images))}
    if snaps:
        info["snapshots"] = sorted(snaps)
    return World(ema, sched, sample_images(ema.eval(), sched, grid, device), {"loss": (steps, losses)}, info, snaps)


def load_world(pretrained: str, grid: SampleConfig, device: torch.device) -> World:
    """A pretrained world (hub id or local directory) and its sample grid."""
    unet, sched = load_ddpm(pretrained, device, flag="--pretrained")
    return World(unet, sched, sample_images(unet, sched, grid, device), None, {"source": pretrained})


def save_world(world: World, directory: str | os.PathLike, title: str = "pixel DDPM") -> dict:
    """pipeline/ (safetensors), samples.png and, for a trained world, curve.csv/png; returns its notes."""
    d = Path(directory)
    save_ddpm(world.unet, world.scheduler, d / "pipeline")
    save_snapshots(world.unet, world.snapshots, d)
    save_grid(d / "samples.png", world.samples)
    if world.curve:
        write_curves(d / "curve.csv", d / "curve.png", world.curve, title=title)
    return world.info


def save_grid(path: str | os.PathLike, images: np.ndarray) -> None:
    """Eight samples a row, each pixel drawn 3x3."""
    from diffsec.imageset import grid, save_png

    save_png(path, grid(images, nrow=8), scale=3)


def unet_eps(unet):
    """Adapter: UNet2DModel -> eps_model(x_t, t) for diffsec.diffusion.sampling."""
    return lambda x, t: unet(x, t).sample


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
