"""The pixel-space DDPM world: a diffusers UNet2DModel + DDPMScheduler (T=1000, linear betas).

`tiny` trains one on CIFAR-10 in the DAG; `paper` loads google/ddpm-cifar10-32 (hub id or a
local directory) through the same `load_ddpm`.
"""

from __future__ import annotations

import copy
import csv
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class DDPMConfig:
    resolution: int = 32
    channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    attention: list[bool] = field(default_factory=lambda: [False, True, False])
    layers_per_block: int = 1
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02


def build_ddpm(cfg: DDPMConfig):
    from diffusers import DDPMScheduler, UNet2DModel

    if len(cfg.channels) != len(cfg.attention):
        raise ValueError("channels and attention must have the same length")
    down = ["AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention]
    up = ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention)]
    unet = UNet2DModel(sample_size=cfg.resolution, in_channels=3, out_channels=3,
                       block_out_channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
                       down_block_types=tuple(down), up_block_types=tuple(up),
                       norm_num_groups=min(32, min(cfg.channels) // 2), attention_head_dim=None)
    sched = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule="linear",
                          beta_start=cfg.beta_start, beta_end=cfg.beta_end, clip_sample=True,
                          variance_type="fixed_large")
    return unet, sched


def save_ddpm(unet, scheduler, path: str | os.PathLike) -> None:
    """Save as a diffusers DDPMPipeline directory (safetensors weights)."""
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path, safe_serialization=True)


def load_ddpm(name_or_path: str, device: str | torch.device = "cpu"):
    """(unet, scheduler) from a DDPMPipeline directory or hub id (e.g. google/ddpm-cifar10-32)."""
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(name_or_path)
    return pipe.unet.to(device).eval(), pipe.scheduler


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - decay)


def diffusion_loss(unet, scheduler, x0: torch.Tensor, generator: torch.Generator | None = None):
    """The DDPM simple loss ||eps - eps_theta(x_t, t)||^2 with t ~ U{0..T-1}."""
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device,
                      generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, generator=generator)
    xt = scheduler.add_noise(x0, noise, t)
    return F.mse_loss(unet(xt, t).sample, noise)


def train_ddpm(unet, scheduler, images: torch.Tensor, *, steps: int, batch_size: int, lr: float,
               ema_decay: float, warmup: int, seed: int, ckpt_dir: Path | None = None,
               ckpt_every: int = 500, log_every: int = 50, hflip: bool = True,
               device: torch.device = torch.device("cpu")):
    """Train on images in [-1,1] (N,3,H,W). Returns (ema_unet, curve rows).

    Resumes from ckpt_dir when it holds a checkpoint: a killed job loses at most ckpt_every steps.
    """
    unet.to(device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    lr_at = lambda s: lr * min(1.0, (s + 1) / max(1, warmup))  # noqa: E731
    gen = torch.Generator().manual_seed(seed)
    start, curve = 0, []
    ckpt = ckpt_dir / "state.pt" if ckpt_dir else None
    if ckpt and ckpt.exists():
        # Our own checkpoint, still loaded without unpickling arbitrary objects.
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        unet.load_state_dict(state["unet"]), ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"]), gen.set_state(state["gen"])
        # float64 on save keeps the losses exact; steps come back as ints, as a fresh run writes them
        start, curve = int(state["step"]), [{"step": int(s), "loss": loss}
                                            for s, loss in state["curve"].tolist()]
    n = images.shape[0]
    running = []
    bar = tqdm(range(start, steps), desc="train ddpm", initial=start, total=steps)
    for step in bar:
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        x0 = images[idx]
        if hflip:
            flip = torch.rand(batch_size, generator=gen) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = diffusion_loss(unet, scheduler, x0.to(device), gen if device.type == "cpu" else None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        _ema_update(ema, unet, ema_decay if step >= warmup else 0.0)
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": float(np.mean(running))})
            bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}")
            running = []
        if ckpt and ((step + 1) % ckpt_every == 0) and step + 1 < steps:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "gen": gen.get_state(), "step": step + 1,
                        "curve": torch.tensor([[r["step"], r["loss"]] for r in curve],
                                              dtype=torch.float64)}, tmp)
            os.replace(tmp, ckpt)
    return ema, curve


def write_curve(rows: list[dict], csv_path: Path, png_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    keys = [k for k in rows[0] if k != "step"]
    for k in keys:
        ax.plot([r["step"] for r in rows], [r[k] for r in rows], label=k)
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_title(title)
    if all(r[k] > 0 for r in rows for k in keys):
        ax.set_yscale("log")
    ax.legend(), fig.tight_layout(), fig.savefig(png_path, dpi=120), plt.close(fig)


def clear_checkpoint(ckpt_dir: Path | None) -> None:
    if ckpt_dir and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)


def unet_eps(unet):
    """Adapter: UNet2DModel -> eps_model(x_t, t) for diffsec.diffusion.sampling."""
    return lambda x, t: unet(x, t).sample


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

