"""Training the text-to-image world: stage 1 the KL autoencoder, stage 2 text encoder + UNet.

Both stages draw every random number (batch indices, flips, posterior noise, timesteps, caption
choice) from one CPU generator whose state is checkpointed, so a resumed run continues the
same random stream, and the same seed gives the same weights on the same device.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffsec.models.t2i import TEMPLATES


@dataclass
class TrainConfig:
    vae_steps: int = 1500
    vae_batch: int = 64
    vae_lr: float = 1e-3
    vae_crop: int = 0
    kl_weight: float = 1e-3
    unet_steps: int = 3000
    unet_batch: int = 128
    unet_lr: float = 2e-3
    ema_decay: float = 0.999
    cond_drop: float = 0.1
    snr_gamma: float = 5.0
    warmup: int = 100
    seed: int = 0
    templates: tuple[str, ...] = TEMPLATES


class Checkpoint:
    """Training state in `<dir>/state.pt`, replaced atomically every `every` steps.

    Only tensors, numbers, strings and lists go in, so it loads with `weights_only=True`.
    """

    def __init__(self, path: str | os.PathLike | None, every: int):
        self.path = Path(path) if path else None
        self.every = every

    def load(self) -> dict | None:
        f = self.path / "state.pt" if self.path else None
        return torch.load(f, weights_only=True, map_location="cpu") if f and f.exists() else None

    def due(self, step: int) -> bool:
        return self.path is not None and self.every > 0 and step % self.every == 0

    def save(self, state: dict) -> None:
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / "state.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.path / "state.pt")

    def clear(self) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path)


@dataclass
class World:
    """The models being trained plus the bookkeeping a checkpoint must carry."""

    vae: torch.nn.Module
    text: torch.nn.Module
    unet: torch.nn.Module
    curves: dict = field(default_factory=lambda: {"vae": [], "unet": []})

    def modules(self) -> dict:
        return {"vae": self.vae, "text": self.text, "unet": self.unet}

    def state(self, phase: str, step: int = 0, opt=None, gen=None, ema=None) -> dict:
        """Everything needed to continue; step 0 means the phase has not started yet."""
        return {"phase": phase, "step": step, "gen": gen.get_state() if gen else torch.zeros(0),
                "opt": opt.state_dict() if opt else {}, "ema": ema or [], "curves": self.curves,
                "scaling_factor": float(self.vae.config.scaling_factor),
                "models": {k: m.state_dict() for k, m in self.modules().items()}}

    def restore(self, state: dict) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(state["models"][k])
        self.vae.register_to_config(scaling_factor=state["scaling_factor"])
        self.curves = state["curves"]


def _lr(base: float, step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then cosine down to 10%: short runs end on small, averaging steps."""
    return base * min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * step / max(1, steps)))


def run_phase(world: World, phase: str, trainable: list, loss_fn: Callable, steps: int, lr: float,
              cfg: TrainConfig, ckpt: Checkpoint, state: dict | None, ema_decay: float = 0.0) -> None:
    """Optimise `trainable` modules for `steps`, resuming from `state` if it is this phase's."""
    params = [p for m in trainable for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    gen = torch.Generator().manual_seed(cfg.seed + {"vae": 0, "unet": 1}[phase])
    ema = [p.detach().clone() for p in params] if ema_decay else None
    start = 0
    if state is not None and state["phase"] == phase and state["step"] > 0:
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        ema = [e.to(p.device) for e, p in zip(state["ema"], params)] or ema
        start = state["step"]
    for m in trainable:
        m.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"train {phase}", mininterval=5)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr(lr, step, steps, cfg.warmup)
        loss = loss_fn(gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            # Warm-up decay so early weights do not dominate a short run's average.
            d = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - d)
        world.curves[phase].append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(world.curves[phase][-50:]):.4f}")
        if ckpt.due(step + 1) and step + 1 < steps:
            ckpt.save(world.state(phase, step + 1, opt, gen, ema))
    if ema is not None:
        with torch.no_grad():
            for p, e in zip(params, ema):
                p.copy_(e)
    for m in trainable:
        m.eval()


def vae_loss_fn(vae, images: torch.Tensor, cfg: TrainConfig, device):
    """MSE reconstruction + kl_weight * KL per pixel, on random batches with horizontal flips.

    With `vae_crop` the batch is a random crop: the VAE is convolutional (no attention), so it
    learns the same local code from crops at a fraction of the cost of whole images.
    """
    n, size = len(images), images.shape[1]
    crop = cfg.vae_crop or size

    def loss(gen):
        idx = torch.randint(0, n, (cfg.vae_batch,), generator=gen)
        i, j = torch.randint(0, size - crop + 1, (2,), generator=gen).tolist()
        flip = torch.rand(cfg.vae_batch, generator=gen) < 0.5
        x = _batch(images[:, i:i + crop, j:j + crop], idx, flip, device)
        post = vae.encode(x).latent_dist
        eps = torch.randn(post.mean.shape, generator=gen).to(device)
        rec = vae.decode(post.mean + post.std * eps).sample
        kl = post.kl().mean() / x[0].numel()
        return F.mse_loss(rec, x) + cfg.kl_weight * kl

    return loss


def _batch(images: torch.Tensor, idx: torch.Tensor, flip: torch.Tensor, device) -> torch.Tensor:
    """uint8 NHWC rows -> float NCHW in [-1, 1], mirrored where `flip` (CIFAR's usual augmentation)."""
    x = images[idx].permute(0, 3, 1, 2).float().div(127.5).sub(1)
    return torch.where(flip[:, None, None, None], x.flip(-1), x).to(device)


@torch.no_grad()
def latent_scale(vae, images: torch.Tensor, device, seed: int, n: int = 2000) -> float:
    """1 / std of posterior samples of `n` images: SD's scaling_factor, for unit-variance latents."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[:n]
    z = torch.cat([vae.encode(_batch(images, i, torch.zeros(len(i), dtype=torch.bool), device))
                   .latent_dist.sample(g).cpu()
                   for i in idx.split(500)])
    return float(1.0 / z.std())


def caption_table(tokenizer, class_names, templates):
    """Token ids of every (template, class) caption plus the empty caption (last row)."""
    caps = [t.format(c) for c in class_names for t in templates] + [""]
    ids = tokenizer(caps, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return ids, len(templates)


def unet_loss_fn(world: World, scheduler, images, labels, ids, n_templates, cfg, device):
    """Epsilon MSE with min-SNR-gamma weights; captions dropped to '' at rate cond_drop (for CFG).

    Latents are encoded per batch (a posterior sample, like SD): a short run sees fewer images
    than the data set holds, so this costs less than encoding everything up front, and flips
    come for free.
    """
    ac = scheduler.alphas_cumprod
    snr = ac / (1 - ac)
    weight = (snr.clamp(max=cfg.snr_gamma) / snr).float() if cfg.snr_gamma else torch.ones_like(snr)
    labels = torch.as_tensor(labels)
    scale = world.vae.config.scaling_factor
    n = len(images)

    def loss(gen):
        b = cfg.unet_batch
        idx = torch.randint(0, n, (b,), generator=gen)
        with torch.no_grad():
            post = world.vae.encode(_batch(images, idx, torch.rand(b, generator=gen) < 0.5, device))
        eps = torch.randn(post.latent_dist.mean.shape, generator=gen)
        z = (post.latent_dist.mean.cpu() + post.latent_dist.std.cpu() * eps) * scale
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=gen)
        cap = labels[idx] * n_templates + torch.randint(0, n_templates, (b,), generator=gen)
        cap = torch.where(torch.rand(b, generator=gen) < cfg.cond_drop, len(ids) - 1, cap)
        # Encode each distinct caption once; the batch only holds a few dozen of them.
        uniq, inv = torch.unique(cap, return_inverse=True)
        hidden = world.text(ids[uniq].to(device)).last_hidden_state[inv.to(device)]
        zt = scheduler.add_noise(z, noise, t)
        pred = world.unet(zt.to(device), t.to(device), hidden).sample
        err = (pred - noise.to(device)).pow(2).mean(dim=(1, 2, 3))
        return (err * weight[t].to(device)).mean()

    return loss


def train_world(world: World, tokenizer, scheduler, images: np.ndarray, labels: np.ndarray,
                class_names, cfg: TrainConfig, ckpt: Checkpoint, device) -> None:
    """Both stages, resuming from `ckpt` wherever a killed run stopped."""
    images = torch.from_numpy(np.ascontiguousarray(images))
    state = ckpt.load()
    if state is not None:
        world.restore(state)
    for m in world.modules().values():
        m.to(device)
    phase = state["phase"] if state else "vae"
    if phase == "vae":
        run_phase(world, "vae", [world.vae], vae_loss_fn(world.vae, images, cfg, device),
                  cfg.vae_steps, cfg.vae_lr, cfg, ckpt, state=state)
    world.vae.eval().requires_grad_(False)
    if phase == "vae":
        # SD's convention: scale latents to unit variance and keep the factor in the VAE config.
        world.vae.register_to_config(scaling_factor=latent_scale(world.vae, images, device, cfg.seed))
        ckpt.save(world.state("unet"))  # a run killed from here on skips stage 1
        state = None
    # Token embeddings stay at their random init (as SD keeps CLIP's frozen): the few caption
    # words are distinct anyway, and a dense 49408-row Adam update would cost a lot each step.
    world.text.get_input_embeddings().requires_grad_(False)
    ids, n_templates = caption_table(tokenizer, class_names, cfg.templates)
    loss = unet_loss_fn(world, scheduler, images, labels, ids, n_templates, cfg, device)
    run_phase(world, "unet", [world.text, world.unet], loss, cfg.unet_steps, cfg.unet_lr, cfg,
              ckpt, state=state, ema_decay=cfg.ema_decay)
