"""Backdoor fine-tuning of a pretrained pixel DDPM: all layers, on a clean/poisoned mix.

Every batch holds round(batch_size x poison_rate) poisoned samples (a target image under the
attack's noising) and clean CIFAR-10 samples under the plain DDPM loss (Algorithm 1 of
InvisibleDiffusion; TrojDiff and BadDiffusion train the same way with their own objectives).
A fixed count per batch, rather than a coin per sample, keeps the poisoned share exact at small
batch sizes. The run checkpoints and resumes, and hands EMA snapshots at chosen steps to a
callback (the training-steps ablation samples from them).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffsec.backdoor.attacks import Attack
from diffsec.models.ddpm import _ema_update  # the world's EMA step, shared


def poisoned_count(batch_size: int, poison_rate: float) -> int:
    if not 0 < poison_rate < 1:
        raise ValueError(f"poison rate must lie in (0, 1), got {poison_rate}")
    return min(batch_size - 1, max(1, round(batch_size * poison_rate)))


def finetune(unet, scheduler, clean: torch.Tensor, targets: torch.Tensor, attack: Attack, *, steps: int,
             batch_size: int, lr: float, poison_rate: float, ema_decay: float, seed: int,
             ckpt_dir: Path | None = None, ckpt_every: int = 250, log_every: int = 25,
             snapshots: tuple[int, ...] = (), on_snapshot: Callable[[int, torch.nn.Module], None] | None = None,
             device: torch.device = torch.device("cpu")):
    """Fine-tune `unet` on clean images and poisoned target images (both N x C x H x W in [-1, 1]).

    Returns (ema_unet, curve rows with step, loss, loss_clean, loss_poison).
    """
    unet.to(device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    abar, betas = scheduler.alphas_cumprod, scheduler.betas
    T = scheduler.config.num_train_timesteps
    k = poisoned_count(batch_size, poison_rate)
    start, curve = 0, []
    ckpt = ckpt_dir / "state.pt" if ckpt_dir else None
    if ckpt and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)  # our own file, still no pickle
        unet.load_state_dict(state["unet"]), ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"]), gen.set_state(state["gen"])
        start = int(state["step"])
        curve = [{"step": int(r[0]), **dict(zip(("loss", "loss_clean", "loss_poison"), r[1:]))}
                 for r in state["curve"].tolist()]
    running: list[tuple[float, float]] = []
    for step in tqdm(range(start, steps), desc=f"backdoor {attack.method}", initial=start, total=steps):
        x0 = clean[torch.randint(0, len(clean), (batch_size - k,), generator=gen)]
        flip = torch.rand(len(x0), generator=gen) < 0.5   # the world was trained with flips too
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0).to(device)
        y = targets[torch.randint(0, len(targets), (k,), generator=gen)].to(device)
        t_c = torch.randint(0, T, (len(x0),), generator=gen)
        t_p = torch.randint(0, T, (k,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen).to(device)
        x_c = scheduler.add_noise(x0, eps, t_c.to(device))
        x_p, target_p = attack.poisoned(y, t_p.to(device), abar, betas, gen)
        out = unet(torch.cat([x_c, x_p]), torch.cat([t_c, t_p]).to(device)).sample
        l_c = F.mse_loss(out[:len(x0)], eps, reduction="sum") / out[0].numel()
        l_p = F.mse_loss(out[len(x0):], target_p, reduction="sum") / out[0].numel()
        loss = (l_c + l_p) / batch_size   # the per-sample mean over the mixed batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        _ema_update(ema, unet, ema_decay)
        running.append((l_c.item() / len(x0), l_p.item() / k))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            c, p = np.mean(running, 0)
            curve.append({"step": step + 1, "loss": float((c * len(x0) + p * k) / batch_size),
                          "loss_clean": float(c), "loss_poison": float(p)})
            running = []
        if on_snapshot and step + 1 in snapshots:
            on_snapshot(step + 1, ema)
        if ckpt and (step + 1) % ckpt_every == 0 and step + 1 < steps:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "gen": gen.get_state(), "step": step + 1,
                        "curve": torch.tensor([[r[c] for c in ("step", "loss", "loss_clean", "loss_poison")]
                                               for r in curve], dtype=torch.float64)}, tmp)
            os.replace(tmp, ckpt)
    return ema, curve
