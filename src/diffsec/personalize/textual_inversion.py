"""Batched textual inversion (Gal et al.; SZT Sec. 3.2, 5.1.2): many runs, one base model, one step.

Each run learns one new token, initialised from its class noun's embedding, with batch 1, a
constant lr (5e-4 in the paper, no warm-up or decay) and AdamW as in the diffusers example
(betas 0.9/0.999, eps 1e-8, weight decay 1e-2 on the new row). R runs train together: per step
one text-encoder call on R prompts (run k's prompt holds run k's token, whose embedding is row k
of a small trainable table), one UNet call with batch R, and R separate losses summed, so run k's
gradient is d loss_k / d e_k alone. Every run draws its own image, flip, template, timestep,
VAE posterior sample and noise from its own generator in a fixed order, and has its own AdamW
state (RowAdamW): a run's result does not depend on which runs share its batch.

The loss is the defense module's `training_loss` (objective, dilation, timestep sampler per run),
so different defenses can share a batch. The VAE posterior (mean, std) of every training image
and its mirror image is computed once up front; each step samples z0 = (mean + std * n) * scaling
from it, which is what encoding the image at every step would give, at no VAE cost per step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from diffsec.errors import DiffsecError
from diffsec.personalize.optim import RowAdamW
from diffsec.personalize.runs import TIRun
from diffsec.personalize.tokens import install_tokens, token_vector

# The object templates of the diffusers textual_inversion example ("imagenet_templates_small").
OBJECT_TEMPLATES = (
    "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
    "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}",
    "a cropped photo of a {}", "a photo of the {}", "a good photo of the {}", "a photo of one {}",
    "a close-up photo of the {}", "a rendition of the {}", "a photo of the clean {}",
    "a rendition of a {}", "a photo of a nice {}", "a good photo of a {}", "a photo of the nice {}",
    "a photo of the small {}", "a photo of the weird {}", "a photo of the large {}",
    "a photo of a cool {}", "a photo of a small {}",
)


@dataclass
class TIConfig:
    steps: int = 5000
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    templates: tuple[str, ...] = OBJECT_TEMPLATES
    encode_batch: int = 16  # images per VAE call when caching posteriors

    def key(self) -> dict:  # what a checkpoint must agree on (steps may grow between attempts)
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "templates": list(self.templates)}


class _Record:
    """eps_model stand-in for the first pass: keeps the UNet input an objective builds."""

    def __call__(self, zt, t, cond):
        self.zt = zt
        return torch.zeros_like(zt)


class BatchedTextualInversion:
    """R runs on one frozen pipeline; `step()` advances them all by one optimizer step."""

    def __init__(self, pipe, runs: list[TIRun], cfg: TIConfig, device: torch.device | str = "cpu"):
        from diffusers import DDPMScheduler

        from diffsec.defense.timesteps import make_sampler

        if not runs:
            raise DiffsecError("no runs to train")
        self.runs, self.cfg, self.device = runs, cfg, torch.device(device)
        self.vae, self.unet, self.text = (m.to(self.device).eval().requires_grad_(False)
                                          for m in (pipe.vae, pipe.unet, pipe.text_encoder))
        self.tokenizer = pipe.tokenizer
        # The training noise schedule, whatever sampler the pipeline ships with (as the example).
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        T = int(self.scheduler.config.num_train_timesteps)
        for r in runs:
            r.check(T)
        self.init = torch.stack([token_vector(self.text, self.tokenizer, r.class_noun) for r in runs])
        self.table = install_tokens(self.text, self.tokenizer, [r.token for r in runs], self.init)
        self.opt = RowAdamW(self.table.extra, cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay)
        self.samplers = [make_sampler(r.sampler, T) for r in runs]
        self.gens = [torch.Generator().manual_seed(int(r.seed)) for r in runs]
        self.prompt_ids = [self._tokenize([t.format(r.token) for t in cfg.templates]) for r in runs]
        self.scaling = float(self.vae.config.scaling_factor)
        self.data = [self._prepare(r) for r in runs]
        self.step_count = 0
        self.losses: list[list[float]] = [[] for _ in runs]

    def _tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt",
                              max_length=self.tokenizer.model_max_length).input_ids

    @torch.no_grad()
    def _prepare(self, run: TIRun) -> dict:
        """Pixels, dilated masks and VAE posteriors of each image and its mirror (N x 2 x ...)."""
        from diffsec.defense.masking import dilate_mask
        from diffsec.imageset import to_float

        x = to_float(run.images)
        x = torch.stack([x, x.flip(-1)], 1)
        m = None
        if run.objective != "nominal":
            d = torch.from_numpy(dilate_mask(run.masks, run.dilation, run.images.shape[2])).float()
            m = torch.stack([d, d.flip(-1)], 1).unsqueeze(2)  # the mask flips with its image
        # IM/LIM encode the masked image E(x * M_x); the rest encode the image itself.
        enc = (x * m if run.objective in ("im", "lim") else x).flatten(0, 1)
        means, stds = [], []
        for i in range(0, len(enc), self.cfg.encode_batch):
            post = self.vae.encode(enc[i:i + self.cfg.encode_batch].to(self.device, self.vae.dtype)).latent_dist
            means.append(post.mean.float()), stds.append(post.std.float())
        shape = (len(run.images), 2, *means[0].shape[1:])
        return {"x": x, "m": None if m is None else m.to(self.device),
                "mean": torch.cat(means).view(shape), "std": torch.cat(stds).view(shape)}

    def _draw(self, k: int) -> dict:
        """Run k's randomness for one step, always in this order from its own generator."""
        run, g, d = self.runs[k], self.gens[k], self.data[k]
        i = int(torch.randint(len(run.images), (1,), generator=g))
        f = int(torch.rand(1, generator=g) < run.flip_p)  # paired_hflip's rule, image and mask alike
        tpl = int(torch.randint(len(self.cfg.templates), (1,), generator=g))
        t = self.samplers[k].sample(1, g)
        shape = d["mean"].shape[2:]
        post, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        dev = self.device
        z0 = (d["mean"][i, f] + d["std"][i, f] * post.to(dev)).unsqueeze(0) * self.scaling
        return {"ids": self.prompt_ids[k][tpl], "t": t.to(dev), "noise": noise.unsqueeze(0).to(dev),
                "z0": z0, "x": d["x"][i, f].unsqueeze(0).to(dev),
                "m": None if d["m"] is None else d["m"][i, f].unsqueeze(0)}

    def _loss(self, k: int, dr: dict, eps_model: Callable) -> torch.Tensor:
        from diffsec.defense.masking import training_loss

        run = self.runs[k]
        masked_input = run.objective in ("im", "lim")
        # For IM/LIM, training_loss encodes x * M_x itself; `encode` hands back that encoding
        # from the cache (posterior of exactly x * M_x, sampled with this step's draw).
        return training_loss(run.objective, eps_model=eps_model, scheduler=self.scheduler,
                             noise=dr["noise"], t=dr["t"], cond=None,
                             z0=None if masked_input else dr["z0"],
                             x=dr["x"] if masked_input else None,
                             encode=(lambda _xm: dr["z0"]) if masked_input else None,
                             mask_x=dr["m"], norm=run.norm)

    def step(self) -> np.ndarray:
        """One optimizer step of every run; returns the R losses."""
        draws = [self._draw(k) for k in range(len(self.runs))]
        cond = self.text(torch.stack([d["ids"] for d in draws]).to(self.device))[0]
        # Pass 1: each run's objective builds its UNet input (z_t, masked or not) ...
        recs = [_Record() for _ in draws]
        with torch.no_grad():
            for k, (dr, rec) in enumerate(zip(draws, recs)):
                self._loss(k, dr, rec)
        # ... one UNet call for all runs ...
        pred = self.unet(torch.cat([r.zt for r in recs]).to(self.unet.dtype),
                         torch.cat([d["t"] for d in draws]),
                         encoder_hidden_states=cond.to(self.unet.dtype)).sample.float()
        # ... pass 2: each objective scores its own row of the prediction.
        losses = torch.stack([self._loss(k, dr, lambda zt, t, c, k=k: pred[k:k + 1])
                              for k, dr in enumerate(draws)])
        self.opt.zero_grad()
        losses.sum().backward()  # a sum, so run k's gradient is that of its own loss
        self.opt.step()
        self.step_count += 1
        out = losses.detach().cpu().numpy()
        for k, v in enumerate(out):
            self.losses[k].append(float(v))
        return out

    def embeddings(self) -> dict[str, torch.Tensor]:
        return {r.name: v for r, v in zip(self.runs, self.table.extra.detach().cpu().clone())}

    def state_dict(self) -> dict:
        return {"step": self.step_count, "names": [r.name for r in self.runs],
                "extra": self.table.extra.detach().cpu().clone(), "opt": self.opt.state_dict(),
                "gens": [g.get_state() for g in self.gens],
                "losses": torch.tensor(self.losses, dtype=torch.float64).reshape(len(self.runs), -1)}

    def load_state_dict(self, state: dict) -> None:
        if state["names"] != [r.name for r in self.runs]:
            raise ValueError("checkpoint is for other runs")
        with torch.no_grad():
            self.table.extra.copy_(state["extra"])
        self.opt.load_state_dict(state["opt"])
        for g, s in zip(self.gens, state["gens"]):
            g.set_state(s)
        self.step_count = int(state["step"])
        self.losses = [row.tolist() for row in state["losses"]]


def run_key(runs: list[TIRun], cfg: TIConfig, extra: str = "") -> str:
    """What must match for a checkpoint to be resumed: runs, their pixels and masks, optimizer."""
    h = hashlib.sha256(json.dumps([[r.describe() for r in runs], cfg.key(), extra],
                                  sort_keys=True, default=str).encode())
    for r in runs:
        h.update(r.images.tobytes())
        if r.masks is not None:
            h.update(np.ascontiguousarray(r.masks, dtype=bool).tobytes())
    return h.hexdigest()


@dataclass
class TIResult:
    embeddings: dict[str, torch.Tensor]
    init: dict[str, torch.Tensor]
    losses: np.ndarray  # R x steps
    resumed_from: int = 0
    meta: dict = field(default_factory=dict)


def train_textual_inversion(pipe, runs: list[TIRun], cfg: TIConfig, device="cpu", checkpoint=None,
                            key: str = "", on_step: Callable[[int, np.ndarray], None] | None = None
                            ) -> TIResult:
    """Train all `runs` together for cfg.steps steps.

    checkpoint: a `diffsec.models.t2i_train.Checkpoint` (path, every): its state is loaded when its
    key matches (same runs, data, optimizer settings and `key`) and saved every `every` steps.
    on_step(step, losses) is called after each step (progress bars; tests simulate kills in it).
    """
    trainer = BatchedTextualInversion(pipe, runs, cfg, device)
    full_key = run_key(runs, cfg, key)
    start = 0
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None and state.get("key") == full_key and int(state["step"]) <= cfg.steps:
        trainer.load_state_dict(state)
        start = trainer.step_count
    while trainer.step_count < cfg.steps:
        losses = trainer.step()
        if checkpoint is not None and checkpoint.due(trainer.step_count):
            checkpoint.save({"key": full_key, **trainer.state_dict()})
        if on_step is not None:
            on_step(trainer.step_count, losses)
    init = {r.name: v for r, v in zip(runs, trainer.init.cpu())}
    meta = {r.name: {"token": r.token, "class": r.class_noun} for r in runs}
    return TIResult(trainer.embeddings(), init, np.asarray(trainer.losses).reshape(len(runs), -1),
                    start, meta)


def write_loss_curves(losses: np.ndarray, names: list[str], csv_path, png_path) -> None:
    """Long CSV (run, step, loss) and one small panel per run (raw and moving average)."""
    import csv
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "step", "loss"])
        for name, row in zip(names, losses):
            w.writerows((name, i + 1, f"{v:.6g}") for i, v in enumerate(row))
    cols = math.ceil(math.sqrt(len(names)))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name, y in zip(axes.flat, names, losses):
        k = max(1, len(y) // 25)  # the trend under batch-1 noise
        ax.plot(np.arange(1, len(y) + 1), y, alpha=0.3, lw=0.5)
        if len(y) >= k:
            ax.plot(np.arange(k, len(y) + 1), np.convolve(y, np.ones(k) / k, "valid"))
        ax.set_title(name, fontsize=8), ax.tick_params(labelsize=6)
    fig.supxlabel("step"), fig.supylabel("TI loss")
    fig.tight_layout(), fig.savefig(png_path, dpi=100), plt.close(fig)
