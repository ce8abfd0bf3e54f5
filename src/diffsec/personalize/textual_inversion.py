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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from diffsec.device import DTYPES
from diffsec.errors import DiffsecError
from diffsec.personalize.optim import RowAdamW
from diffsec.personalize.runs import TIRun
from diffsec.personalize.tokens import install_tokens, token_vector
from diffsec.resume import Checkpoint, disabled

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


ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # the diffusers example's AdamW
ENCODE_BATCH = 16  # images per VAE call when caching posteriors (memory only)


@dataclass(frozen=True)
class TIConfig:
    """What every run's optimisation shares (paper: 5000 steps, 2500 on CustomConcept101, lr 5e-4;
    the diffusers example: weight decay 1e-2). The stage's flags hold the defaults."""

    steps: int
    lr: float
    weight_decay: float
    dtype: str = "float32"   # the frozen VAE and UNet's (DTYPES)

    def __post_init__(self):
        if int(self.steps) < 1 or not self.lr > 0 or not self.weight_decay >= 0:
            raise DiffsecError(f"textual inversion: need steps >= 1, lr > 0 and weight decay >= 0 (got "
                               f"steps {self.steps}, lr {self.lr:g}, weight decay {self.weight_decay:g})")
        if self.dtype not in DTYPES:
            raise DiffsecError(f"textual inversion: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")

    def describe(self) -> dict:
        return {"kind": "AdamW, per run", "lr": self.lr, "betas": list(ADAM_BETAS), "eps": ADAM_EPS,
                "weight_decay": self.weight_decay, "schedule": "constant", "frozen_dtype": self.dtype}


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
        frozen = getattr(torch, cfg.dtype)
        self.vae, self.unet = (m.to(self.device, frozen).eval().requires_grad_(False) for m in (pipe.vae, pipe.unet))
        self.text = pipe.text_encoder.to(self.device).eval().requires_grad_(False)
        self.tokenizer = pipe.tokenizer
        # The training noise schedule, whatever sampler the pipeline ships with (as the example).
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        T = int(self.scheduler.config.num_train_timesteps)
        for r in runs:
            r.check(T)
        self.init = torch.stack([token_vector(self.text, self.tokenizer, r.class_noun) for r in runs])
        self.table = install_tokens(self.text, self.tokenizer, [r.token for r in runs], self.init)
        self.opt = RowAdamW(self.table.extra, cfg.lr, ADAM_BETAS, ADAM_EPS, cfg.weight_decay)
        self.samplers = [make_sampler(r.sampler, T) for r in runs]
        self.gens = [torch.Generator().manual_seed(int(r.seed)) for r in runs]
        self.prompt_ids = [self._tokenize([t.format(r.token) for t in OBJECT_TEMPLATES]) for r in runs]
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
        for i in range(0, len(enc), ENCODE_BATCH):
            post = self.vae.encode(enc[i:i + ENCODE_BATCH].to(self.device, self.vae.dtype)).latent_dist
            means.append(post.mean.float()), stds.append(post.std.float())
        shape = (len(run.images), 2, *means[0].shape[1:])
        return {"x": x, "m": None if m is None else m.to(self.device),
                "mean": torch.cat(means).view(shape), "std": torch.cat(stds).view(shape)}

    def _draw(self, k: int) -> dict:
        """Run k's randomness for one step, always in this order from its own generator."""
        run, g, d = self.runs[k], self.gens[k], self.data[k]
        i = int(torch.randint(len(run.images), (1,), generator=g))
        f = int(torch.rand(1, generator=g) < run.flip_p)  # paired_hflip's rule, image and mask alike
        tpl = int(torch.randint(len(OBJECT_TEMPLATES), (1,), generator=g))
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
            for k, (dr, rec) in enumerate(zip(draws, recs, strict=True)):
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
        return {r.name: v for r, v in zip(self.runs, self.table.extra.detach().cpu().clone(), strict=True)}

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
        for g, s in zip(self.gens, state["gens"], strict=True):
            g.set_state(s)
        self.step_count = int(state["step"])
        self.losses = [row.tolist() for row in state["losses"]]


@dataclass
class TIResult:
    embeddings: dict[str, torch.Tensor]  # run -> learned vector
    init: dict[str, torch.Tensor]        # run -> its class noun's embedding (the start)
    losses: np.ndarray                   # R x steps
    resumed_from: int                    # the step this attempt started from
    meta: dict[str, dict]                # run -> {token, class}
    seconds: float                       # training wall time of this attempt

    def curves(self) -> dict[str, np.ndarray]:
        return dict(zip(self.embeddings, self.losses, strict=True))

    def summary(self) -> dict:
        trained = len(self.losses) * (self.losses.shape[1] - self.resumed_from)
        return {"n_runs": len(self.losses), "resumed_from": self.resumed_from, "train_seconds": round(self.seconds, 3),
                "run_steps_per_second": round(trained / max(self.seconds, 1e-9), 3),
                "loss_first_100": float(self.losses[:, :100].mean()),
                "loss_last_100": float(self.losses[:, -100:].mean())}


def train_textual_inversion(pipe, runs: list[TIRun], cfg: TIConfig, device="cpu", ckpt: Checkpoint | None = None,
                            on_step: Callable[[int, np.ndarray], None] | None = None) -> TIResult:
    """Train all `runs` together for cfg.steps steps.

    ckpt: the stage's keyed checkpoint (its key covers the runs' settings and data and `cfg`): an
    earlier attempt's state is resumed, and the state is saved every `ckpt.every` steps.
    on_step(step, losses) is called after each step.
    """
    import time

    from tqdm import tqdm

    t0 = time.perf_counter()
    ckpt = ckpt or disabled()
    trainer = BatchedTextualInversion(pipe, runs, cfg, device)
    state = ckpt.load()
    if state is not None:
        trainer.load_state_dict(state)
    start = trainer.step_count
    with tqdm(total=cfg.steps, initial=start, desc=f"textual inversion ({len(runs)} runs)", unit=" step") as bar:
        while trainer.step_count < cfg.steps:
            losses = trainer.step()
            if ckpt.due(trainer.step_count, cfg.steps):
                ckpt.save(trainer.state_dict(), trainer.step_count)
            bar.set_postfix(loss=f"{losses.mean():.4g}", refresh=False)
            bar.update()
            if on_step is not None:
                on_step(trainer.step_count, losses)
    init = {r.name: v for r, v in zip(runs, trainer.init.cpu(), strict=True)}
    meta = {r.name: {"token": r.token, "class": r.class_noun} for r in runs}
    return TIResult(trainer.embeddings(), init, np.asarray(trainer.losses).reshape(len(runs), -1), start, meta,
                    time.perf_counter() - t0)
