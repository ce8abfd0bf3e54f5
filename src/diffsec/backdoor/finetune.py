"""Backdoor fine-tuning of a pretrained pixel DDPM: all layers, on a clean/poisoned mix.

Every batch of B holds k = round(B x poison_rate) poisoned samples (a target image under the
attack's noising, `Attack.poisoned`) and B - k clean samples under the plain DDPM loss
(Algorithm 1 of InvisibleDiffusion; TrojDiff and BadDiffusion train the same way with their own
objectives):

    L = (sum_clean ||eps - eps_theta(x_t, t)||^2 + sum_poisoned ||target - eps_theta(x_t, t)||^2) / (B d)

with d the pixels of one image, then Adam, gradient norm clipped at 1, and the EMA
theta_ema <- decay theta_ema + (1 - decay) theta. A fixed count per batch, rather than a coin per
sample, keeps the poisoned share exact at small batch sizes.

Every random draw (batch indices, flips, timesteps, noise) comes from one CPU generator seeded
with `seed`, in a fixed order, so a run is a function of its inputs and seed; on the CPU the
bytes also depend on the torch thread count (parallel reductions split work by thread).

The run checkpoints into a keyed `resume.Checkpoint` (weights, EMA, optimizer, generator, loss
curve, the losses since the last curve point, and the EMA snapshots taken so far) and resumes from
it after a kill: the resumed run ends with the uninterrupted run's bytes. EMA snapshots at chosen
steps (the training-steps ablation samples them) are returned with the result.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffsec import resume
from diffsec.backdoor.attacks import Attack
from diffsec.training import ema_update

CURVE = ("step", "loss", "loss_clean", "loss_poison")


@dataclass
class FinetuneConfig:
    steps: int
    batch_size: int
    lr: float
    poison_rate: float
    ema_decay: float
    seed: int
    snapshots: tuple[int, ...] = ()   # steps whose EMA weights are kept
    log_every: int = 25               # steps per loss-curve point


@dataclass
class Finetuned:
    ema: torch.nn.Module
    curve: list[dict] = field(default_factory=list)          # rows with CURVE's keys
    snapshots: dict[int, dict] = field(default_factory=dict)  # step -> EMA state dict


def poisoned_count(batch_size: int, poison_rate: float) -> int:
    if not 0 < poison_rate < 1:
        raise ValueError(f"poison rate must lie in (0, 1), got {poison_rate}")
    return min(batch_size - 1, max(1, round(batch_size * poison_rate)))


class _Run:
    """The state of one fine-tuning run: what a checkpoint holds."""

    def __init__(self, unet, cfg: FinetuneConfig):
        self.unet, self.cfg = unet, cfg
        self.ema = copy.deepcopy(unet).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(unet.parameters(), lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.curve: list[dict] = []
        self.running: list[tuple[float, float]] = []
        self.snapshots: dict[int, dict] = {}

    def state(self) -> dict:
        return {"unet": self.unet.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(),
                "curve": torch.tensor([[r[k] for k in CURVE] for r in self.curve], dtype=torch.float64),
                "running": torch.tensor(self.running, dtype=torch.float64),
                "snapshots": {str(s): sd for s, sd in self.snapshots.items()}}

    def restore(self, state: dict) -> None:
        self.unet.load_state_dict(state["unet"]), self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"]), self.gen.set_state(state["gen"])
        self.curve = [{"step": int(r[0]), **dict(zip(CURVE[1:], r[1:], strict=True))} for r in state["curve"].tolist()]
        self.running = [tuple(r) for r in state["running"].tolist()]
        self.snapshots = {int(s): sd for s, sd in state["snapshots"].items()}


def _loss(run: _Run, scheduler, clean, targets, attack: Attack, k: int, device):
    """One mixed batch: (loss, clean loss sum, poisoned loss sum, clean count), draws in a fixed order."""
    gen, b = run.gen, run.cfg.batch_size
    T = scheduler.config.num_train_timesteps
    x0 = clean[torch.randint(0, len(clean), (b - k,), generator=gen)]
    flip = torch.rand(len(x0), generator=gen) < 0.5   # the world was trained with flips too
    x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0).to(device)
    y = targets[torch.randint(0, len(targets), (k,), generator=gen)].to(device)
    t_c = torch.randint(0, T, (len(x0),), generator=gen)
    t_p = torch.randint(0, T, (k,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen).to(device)
    x_c = scheduler.add_noise(x0, eps, t_c.to(device))
    x_p, target_p = attack.poisoned(y, t_p.to(device), scheduler.alphas_cumprod, scheduler.betas, gen)
    out = run.unet(torch.cat([x_c, x_p]), torch.cat([t_c, t_p]).to(device)).sample
    l_c = F.mse_loss(out[:len(x0)], eps, reduction="sum") / out[0].numel()
    l_p = F.mse_loss(out[len(x0):], target_p, reduction="sum") / out[0].numel()
    return (l_c + l_p) / b, l_c, l_p, len(x0)   # the per-sample mean over the mixed batch


def _log(run: _Run, step: int, n_clean: int, k: int) -> None:
    if step % run.cfg.log_every and step != run.cfg.steps:
        return
    c, p = np.mean(run.running, 0)
    run.curve.append({"step": step, "loss": float((c * n_clean + p * k) / run.cfg.batch_size),
                      "loss_clean": float(c), "loss_poison": float(p)})
    run.running = []


def finetune(unet, scheduler, clean: torch.Tensor, targets: torch.Tensor, attack: Attack, cfg: FinetuneConfig, *,
             ckpt: resume.Checkpoint | None = None, device: torch.device | str = "cpu") -> Finetuned:
    """Fine-tune `unet` on clean images and poisoned target images (both N x C x H x W in [-1, 1])."""
    ckpt = ckpt or resume.disabled()
    unet.to(device).train()
    run, k = _Run(unet, cfg), poisoned_count(cfg.batch_size, cfg.poison_rate)
    if (state := ckpt.load()) is not None:
        run.restore(state)
    start = ckpt.start_step
    for step in tqdm(range(start + 1, cfg.steps + 1), desc=f"backdoor {attack.method}", initial=start,
                     total=cfg.steps):
        loss, l_c, l_p, n_clean = _loss(run, scheduler, clean, targets, attack, k, device)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        run.opt.step()
        ema_update(run.ema, unet, cfg.ema_decay)
        run.running.append((l_c.item() / n_clean, l_p.item() / k))
        _log(run, step, n_clean, k)
        if step in cfg.snapshots:
            run.snapshots[step] = {n: v.detach().clone() for n, v in run.ema.state_dict().items()}
        if ckpt.due(step, cfg.steps):
            ckpt.save(run.state(), step)
    return Finetuned(run.ema, run.curve, dict(sorted(run.snapshots.items())))
