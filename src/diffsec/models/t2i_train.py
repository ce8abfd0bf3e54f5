"""Training the text-to-image world: stage 1 the KL autoencoder, stage 2 text encoder + UNet.

Stage 1 minimises MSE(x, D(z)) + kl_weight * KL(q(z|x) || N(0, I)) / pixels on random (cropped,
flipped) batches, z = mu + sigma * eps; the latents are then scaled to unit variance (SD's
`scaling_factor` = 1 / std(z)). Stage 2 trains text encoder + UNet on the epsilon loss

    L = E || eps - eps_theta(sqrt(abar_t) z + sqrt(1 - abar_t) eps, t, tau(c)) ||^2 * min(SNR_t, gamma) / SNR_t

(min-SNR-gamma weights, gamma = 5), with captions dropped to '' at rate `cond_drop` so that
classifier-free guidance works, and keeps the EMA of its weights (decay warmed up as
min(d, (1 + step) / (10 + step))). Both stages warm the lr up over 100 steps, then decay it along a
cosine to 10%.

Both stages draw every random number (batch indices, flips, posterior noise, timesteps, caption
choice) from one CPU generator whose state is checkpointed (`diffsec.resume`, phase + step in
the state), so a resumed run continues the same random stream, and the same seed gives the same
weights on the same device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffsec import resume
from diffsec.errors import DiffsecError
from diffsec.models import checks
from diffsec.models.captions import TEMPLATES
from diffsec.training import ema_update, warmup_decay, write_curves

SNR_GAMMA = 5.0  # min-SNR-gamma loss weights (Hang et al. 2023)
WARMUP = 100  # lr warm-up steps of both stages


@dataclass
class WorldConfig:
    """The architecture: VAE widths per level (downsampling 2**(levels-1)), text transformer,
    UNet widths and cross-attention flags per level, whether a pooled text vector joins the time
    embedding."""

    vae_channels: list[int]
    vae_layers: int
    latent_channels: int
    text_hidden: int
    text_layers: int
    text_heads: int
    unet_channels: list[int]
    unet_cross_attn: list[bool]
    unet_layers: int
    text_time: bool

    def __post_init__(self):
        checks.positive_ints(self, "vae_channels", "unet_channels")
        checks.positive(self, "vae_layers", "latent_channels", "text_hidden", "text_layers", "text_heads",
                        "unet_layers")
        checks.flags(self, "unet_cross_attn", "unet_channels")
        if self.text_hidden % self.text_heads:
            raise DiffsecError(f"text_hidden {self.text_hidden} is not a multiple of text_heads {self.text_heads}")


@dataclass
class TrainConfig:
    vae_steps: int
    vae_batch: int
    vae_lr: float
    vae_crop: int
    kl_weight: float
    unet_steps: int
    unet_batch: int
    unet_lr: float
    ema_decay: float
    cond_drop: float
    seed: int

    def __post_init__(self):
        checks.positive(self, "vae_steps", "vae_batch", "vae_lr", "unet_steps", "unet_batch", "unet_lr")
        checks.non_negative(self, "vae_crop", "kl_weight")
        checks.fraction(self, "ema_decay", "cond_drop")


@dataclass
class SampleConfig:
    """The class grid: `per_class` images per class prompt, DPM-Solver++ `steps`, CFG `scale`."""

    per_class: int
    steps: int
    scale: float
    seed: int

    def __post_init__(self):
        checks.positive(self, "per_class", "steps")
        checks.non_negative(self, "scale")


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


def build_world(cfg: WorldConfig, size: int) -> World:
    """Randomly initialised VAE, text encoder and UNet (built in that order) for `size` px images."""
    from diffsec.models.t2i import build_text_encoder, build_unet, build_vae

    down, unet_down = 2 ** (len(cfg.vae_channels) - 1), 2 ** (len(cfg.unet_channels) - 1)
    if size % down or (size // down) % unet_down:
        raise DiffsecError(f"{size} px images do not fit {len(cfg.vae_channels)} VAE levels (/{down}) "
                           f"and {len(cfg.unet_channels)} UNet levels (/{unet_down})")
    return World(vae=build_vae(cfg.vae_channels, cfg.vae_layers, cfg.latent_channels, size),
                 text=build_text_encoder(cfg.text_hidden, cfg.text_layers, cfg.text_heads),
                 unet=build_unet(cfg.unet_channels, cfg.unet_cross_attn, cfg.unet_layers, cfg.latent_channels,
                                 size // down, cfg.text_hidden, text_time=cfg.text_time))


def _lr(base: float, step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then cosine down to 10%: short runs end on small, averaging steps."""
    return base * min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * step / max(1, steps)))


@dataclass
class Phase:
    """One stage of training: its modules, loss, length, lr, EMA decay (0: none) and the global
    step its step 0 has in the checkpoint (the VAE's steps come first)."""

    name: str
    trainable: list
    loss_fn: Callable
    steps: int
    lr: float
    ema_decay: float = 0.0
    offset: int = 0


def run_phase(world: World, ph: Phase, seed: int, ckpt: resume.Checkpoint, state: dict | None) -> None:
    """Optimise `ph.trainable` for `ph.steps`, resuming from `state` if it is this phase's."""
    params = [p for m in ph.trainable for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=ph.lr, weight_decay=0.0, fused=True)
    gen = torch.Generator().manual_seed(seed + {"vae": 0, "unet": 1}[ph.name])
    ema = [p.detach().clone() for p in params] if ph.ema_decay else None
    start = 0
    if state is not None and state["phase"] == ph.name and state["step"] > 0:
        opt.load_state_dict(state["opt"]), gen.set_state(state["gen"])
        ema = [e.to(p.device) for e, p in zip(state["ema"], params, strict=False)] or ema
        start = state["step"]
    for m in ph.trainable:
        m.train()
    bar = tqdm(range(start, ph.steps), initial=start, total=ph.steps, desc=f"train {ph.name}", mininterval=5)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr(ph.lr, step, ph.steps, WARMUP)
        loss = ph.loss_fn(gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            ema_update(ema, params, warmup_decay(ph.ema_decay, step))
        world.curves[ph.name].append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(world.curves[ph.name][-50:]):.4f}")
        if ckpt.due(step + 1, ph.steps):
            ckpt.save(world.state(ph.name, step + 1, opt, gen, ema), ph.offset + step + 1)
    if ema is not None:
        with torch.no_grad():
            torch._foreach_copy_(params, ema)
    for m in ph.trainable:
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
    weight = (snr.clamp(max=SNR_GAMMA) / snr).float()
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
                class_names, cfg: TrainConfig, ckpt: resume.Checkpoint, device) -> None:
    """Both stages, resuming from `ckpt` wherever a killed run stopped."""
    images = torch.from_numpy(np.ascontiguousarray(images))
    state = ckpt.load()
    if state is not None:
        world.restore(state)
    for m in world.modules().values():
        m.to(device)
    if state is None or state["phase"] == "vae":
        run_phase(world, Phase("vae", [world.vae], vae_loss_fn(world.vae, images, cfg, device), cfg.vae_steps,
                               cfg.vae_lr), cfg.seed, ckpt, state)
        # SD's convention: scale latents to unit variance and keep the factor in the VAE config.
        world.vae.requires_grad_(False)
        world.vae.register_to_config(scaling_factor=latent_scale(world.vae, images, device, cfg.seed))
        ckpt.save(world.state("unet"), cfg.vae_steps)  # a run killed from here on skips stage 1
        state = None
    world.vae.eval().requires_grad_(False)
    # Token embeddings stay at their random init (as SD keeps CLIP's frozen): the few caption
    # words are distinct anyway, and a dense 49408-row Adam update would cost a lot each step.
    world.text.get_input_embeddings().requires_grad_(False)
    ids, n_templates = caption_table(tokenizer, class_names, TEMPLATES)
    loss = unet_loss_fn(world, scheduler, images, labels, ids, n_templates, cfg, device)
    run_phase(world, Phase("unet", [world.text, world.unet], loss, cfg.unet_steps, cfg.unet_lr, cfg.ema_decay,
                           offset=cfg.vae_steps), cfg.seed, ckpt, state)


@dataclass
class Result:
    """A trained or loaded world as a pipeline, its loss curves and its manifest notes."""

    pipe: object
    curves: dict
    info: dict


def train_t2i(images: np.ndarray, labels: np.ndarray, class_names: list[str], model: WorldConfig,
              cfg: TrainConfig, ckpt: resume.Checkpoint, device) -> Result:
    """Build the world for these images and train it (resuming from `ckpt`)."""
    import tempfile

    from diffsec.models import t2i
    from diffsec.models.tokenizer import clip_tokenizer

    if cfg.vae_crop > images.shape[1]:
        raise DiffsecError(f"vae_crop {cfg.vae_crop} exceeds the {images.shape[1]} px images")
    world = build_world(model, images.shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = clip_tokenizer(tmp)
    scheduler = t2i.build_scheduler()
    train_world(world, tokenizer, scheduler, images, labels, class_names, cfg, ckpt, device)
    pipe = t2i.make_pipeline(world.vae, world.text, tokenizer, world.unet, scheduler)
    return Result(pipe, world.curves, {
        "scaling_factor": world.vae.config.scaling_factor,
        "n_params": {k: sum(p.numel() for p in m.parameters()) for k, m in world.modules().items()}})


def load_t2i(pretrained: str) -> Result:
    """A pretrained SD-shaped pipeline (hub id or local directory); nothing trained here."""
    from diffsec.models.t2i import open_pipeline

    return Result(open_pipeline(pretrained, "--pretrained"), {"vae": [], "unet": []}, {"source": pretrained})


def write_world(result: Result, class_names: list[str], sample: SampleConfig, directory: str | os.PathLike,
                device) -> dict:
    """pipeline/ (safetensors), the class-prompted samples (npz + png) drawn from the pipeline as
    loaded back from disk (so the artifact itself is what ran), and the curves; returns notes."""
    from diffsec.imageset import grid, save_imageset, save_png
    from diffsec.models import t2i

    d = Path(directory)
    t2i.save_pipeline(result.pipe, d / "pipeline")
    pipe = t2i.load_pipeline(str(d / "pipeline"), device)
    images, labels, prompts = t2i.sample_classes(pipe, class_names, sample.per_class, sample.scale, sample.steps,
                                                 sample.seed)
    save_png(d / "samples.png", grid(images, nrow=sample.per_class), scale=max(1, 64 // images.shape[1]))
    save_imageset(d / "samples.npz", images, labels=labels, class_name=np.array(class_names)[labels],
                  prompt=np.array(prompts)[labels])
    write_curves(d / "curve.csv", d / "curve.png", result.curves, title="text-to-image world",
                 note_empty="not trained here (pretrained)")
    return {**result.info, "prompts": prompts}
