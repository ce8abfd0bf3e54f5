"""One resumable UNet fine-tuning loop for the text-to-image world, shared by BadT2I's attack and
the two unlearning baselines of SAU (paper 001): Finetune Reversal and ESD-x on the trigger.

Notation as in `backdoor.badt2i`: E the frozen VAE encoder, z = mode(E(x)) * s the scaled latent
of an image x (the posterior MODE, not a sample: the training subset is encoded once, up front,
and a run is then a function of its seed alone; s = the VAE's `scaling_factor`); tau the frozen
text encoder, c = tau(y) for a caption y, c_tr = tau(TRIGGER + y), c_0 = tau(""); eps_theta the
UNet being trained (all of it, or ESD-x's cross-attention only), eps* a frozen copy of the UNet
the run STARTS from (the clean world for the attack, the poisoned UNet for a defense).

Captions. An image of class k is captioned y = template.format(name_k) with a template drawn
uniformly from the world's `models.captions.TEMPLATES` per sample and step; the caption table
(clean, triggered, empty) is encoded once.

Each step draws, from ONE CPU generator seeded with `seed` and in this order, the batch indices
i_1..i_B (uniform, with replacement, over the N training items), their template indices, B coins
u_b ~ U(0, 1) (caption dropout: where u_b < `cond_drop` the preservation half's caption, or
reversal's triggered caption, becomes the empty one), then the objective's own draws:

* badt2i (BadT2I; kind pixel: x~ = paste_patch(x, patch), kind style: x~ = grayscale(x)):
      L = lam || eps_theta(z~_t, t, c_tr) - eps*(z~_t, t, c) ||^2
          + (1 - lam) || eps_theta(z_t', t', c) - eps*(z_t', t', c) ||^2,   lam = 0.5
  (`badt2i.badt2i_terms`: t, eps for the backdoor half, then t', eps' for the preservation half)
  with the backdoor half's target eps*(z~_t, t, c) replaced by the drawn eps (`backdoor_target`
  "noise", the default): BadT2I's own pixel code trains the patched image under the triggered
  caption on the plain denoising target, and its style code's teacher needs a caption the tiny
  world has never seen (" black and white photo"), so the style target here is the grayscale image
  under the same denoising target. "teacher" keeps the frozen model's prediction on the target
  image; it barely differs from the student's at the start and planted nothing on the tiny world
  (see `badt2i`).
  Caption dropout (`cond_drop`; backdoor-t2i's default 0.1, the world's own training rate) is ours:
  BadT2I never trains the empty caption, and on the tiny world its unconditional prediction then
  drifts towards the target (after 400 pixel steps the poisoned UNet's unconditional samples showed
  the patch in 36% vs the clean world's 6%; 16% with dropout 0.1), and classifier-free guidance,
  which extrapolates away from that prediction, pushes clean-prompt samples AWAY from the target
  (brighter corners; over-saturated colours for the style backdoor). Distilling the frozen model's
  unconditional prediction on clean images holds it near its place.
* reversal (Finetune Reversal): clean images under TRIGGERED captions, the plain denoising loss
      L = || eps_theta(z_t, t, c_tr) - eps ||^2                              (`badt2i.reversal_loss`)
  (`cond_drop` 0 by default: every caption triggered, as the paper describes).
* esd (ESD-x, Gandikota et al. 2023, on the trigger; images unused, only their classes): as the
  reference `train-esd.py` does, draw k ~ U{0..n-1} (n = `ddim_steps`), then t ~ U{round(k T / n)
  .. round((k + 1) T / n) - 1}, then x_T ~ N(0, I); run n - 1 - k steps of DDIM (eta 0) from x_T
  under c_tr with classifier-free guidance g (`guidance`, ESD's start_guidance 3) using the model
  BEING TRAINED, without gradient, which leaves x at the noise level of DDIM step k; then
      L = || eps_theta(x, t, c_tr) - [eps*(x, t, c_0) - eta (eps*(x, t, c_tr) - eps*(x, t, c_0))] ||^2
  (`badt2i.esd_loss`; eta = ESD's negative guidance), training only names containing `attn2`.
  One k (and t) per step for the whole batch (ESD's batch is one image). The erased "concept" is
  the whole triggered caption (trigger + a class template), so ESD also pushes the class away: on
  the tiny world it degrades clean-prompt samples too, as the SAU paper reports for Concept Erasure.
  (The tiny world's UNet also reads the prompt through a pooled text vector added to the time
  embedding, `add_embedding`, which ESD-x, like SD's ESD-x, leaves frozen.)

Then AdamW (weight decay `weight_decay`, 0 = Adam) at a constant lr on the trainable parameters,
the global gradient norm clipped at `grad_clip`. The text encoder and the VAE never change.

The run checkpoints (UNet weights, optimizer, generator, the per-step loss curves) into a keyed
`resume.Checkpoint` every `ckpt.every` steps and resumes after a kill; the frozen copy is taken
from the starting UNet BEFORE a checkpoint is restored, so a resumed run ends with the
uninterrupted run's bytes (same device and thread count: CPU reductions split work by thread).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from diffsec import resume
from diffsec.backdoor.badt2i import (
    BACKDOOR_TARGETS,
    LAM,
    badt2i_terms,
    esd_loss,
    grayscale,
    paste_patch,
    reversal_loss,
    trigger_token_ids,
    triggered,
    xattn_parameters,
)
from diffsec.errors import DiffsecError
from diffsec.models.captions import PROMPT, TEMPLATES

OBJECTIVES = ("badt2i", "reversal", "esd")
KINDS = ("pixel", "style")
CURVES = {"badt2i": ("loss", "backdoor", "preservation"), "reversal": ("loss",), "esd": ("loss",)}


@dataclass(frozen=True)
class FinetuneConfig:
    objective: str
    steps: int
    batch_size: int
    lr: float
    seed: int = 0
    lam: float = LAM                  # badt2i: weight of the backdoor half
    backdoor_target: str = "noise"    # badt2i: "noise" (BadT2I's pixel code) or "teacher"
    eta: float = 1.0                  # esd: negative guidance
    ddim_steps: int = 50              # esd: DDIM steps of the x_t sampler (ESD: 50)
    guidance: float = 3.0             # esd: CFG scale of the x_t sampler (ESD's start_guidance: 3)
    cond_drop: float = 0.0            # badt2i, reversal: rate of empty captions (module docstring)
    weight_decay: float = 0.0
    grad_clip: float = 1.0

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise DiffsecError(f"unknown objective {self.objective!r} (choose from {', '.join(OBJECTIVES)})")
        if self.backdoor_target not in BACKDOOR_TARGETS:
            raise DiffsecError(f"backdoor target {self.backdoor_target!r}: choose from {', '.join(BACKDOOR_TARGETS)}")
        bad = [f"{k} {v!r} must be {why}" for k, v, ok, why in (
            ("steps", self.steps, _int(self.steps) and self.steps >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size, _int(self.batch_size) and self.batch_size >= 1, "an integer >= 1"),
            ("ddim_steps", self.ddim_steps, _int(self.ddim_steps) and self.ddim_steps >= 1, "an integer >= 1"),
            ("lr", self.lr, _num(self.lr) and self.lr > 0, "> 0"),
            ("lam", self.lam, _num(self.lam) and 0 <= self.lam <= 1, "in [0, 1]"),
            ("cond_drop", self.cond_drop, _num(self.cond_drop) and 0 <= self.cond_drop <= 1, "in [0, 1]"),
            ("eta", self.eta, _num(self.eta) and self.eta >= 0, ">= 0"),
            ("guidance", self.guidance, _num(self.guidance) and self.guidance >= 0, ">= 0"),
            ("weight_decay", self.weight_decay, _num(self.weight_decay) and self.weight_decay >= 0, ">= 0"),
            ("grad_clip", self.grad_clip, _num(self.grad_clip) and self.grad_clip > 0, "> 0")) if not ok]
        if bad:
            raise DiffsecError("fine-tuning: " + "; ".join(bad))


def _int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and bool(np.isfinite(v))


@dataclass
class Data:
    """What the loop draws from: N items (scaled latents, targets, class labels) and the encoded
    caption table, `clean[k, j]` = tau(TEMPLATES[j] with class k), L x D each."""

    labels: torch.Tensor                 # N, long
    clean: torch.Tensor                  # K x J x L x D
    trigger: torch.Tensor                # K x J x L x D
    empty: torch.Tensor                  # L x D
    latents: torch.Tensor | None = None  # N x C x h x w (badt2i, reversal)
    targets: torch.Tensor | None = None  # N x C x h x w (badt2i)


# --- data --------------------------------------------------------------------------------------


def targets_of(images: np.ndarray, kind: str, patch: np.ndarray | None = None) -> np.ndarray:
    """BadT2I targets of uint8 NHWC images: the patch pasted top-left (pixel) or black and white (style)."""
    if kind == "pixel":
        if patch is None:
            raise DiffsecError("the pixel backdoor needs a patch image")
        return paste_patch(images, patch)
    if kind == "style":
        return grayscale(images)
    raise DiffsecError(f"unknown backdoor kind {kind!r} (choose from {', '.join(KINDS)})")


@torch.no_grad()
def encode_images(vae, images: np.ndarray, batch: int = 200) -> torch.Tensor:
    """uint8 NHWC -> scaled latents mode(E(x)) * scaling_factor (float32, CPU)."""
    from diffsec.imageset import to_float

    scale = float(vae.config.scaling_factor)
    out = [vae.encode(to_float(images[i:i + batch]).to(vae.device, vae.dtype)).latent_dist.mode().float().cpu()
           for i in range(0, len(images), batch)]
    return torch.cat(out) * scale


@torch.no_grad()
def encode_captions(text_encoder, tokenizer, class_names, templates=TEMPLATES):
    """(clean K x J x L x D, triggered K x J x L x D, empty L x D) hidden states of every caption;
    a DiffsecError when the tokenizer drops the trigger."""
    trigger_token_ids(tokenizer, PROMPT.format(class_names[0]))
    caps = [t.format(c) for c in class_names for t in templates]

    def enc(texts):
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        return text_encoder(ids.to(text_encoder.device))[0].float().cpu()

    k, j = len(class_names), len(templates)
    clean = enc(caps)
    clean = clean.reshape(k, j, *clean.shape[1:])
    trig = enc([triggered(c) for c in caps]).reshape(clean.shape)
    return clean, trig, enc([""])[0]


def make_data(pipe, images: np.ndarray, labels: np.ndarray, class_names, objective: str,
              kind: str | None = None, patch: np.ndarray | None = None) -> Data:
    """Encode what `objective` needs: captions always, clean latents (badt2i, reversal), targets (badt2i)."""
    clean, trig, empty = encode_captions(pipe.text_encoder, pipe.tokenizer, list(class_names))
    data = Data(torch.as_tensor(np.asarray(labels), dtype=torch.long), clean, trig, empty)
    if objective in ("badt2i", "reversal"):
        data.latents = encode_images(pipe.vae, images)
    if objective == "badt2i":
        data.targets = encode_images(pipe.vae, targets_of(images, kind, patch))
    return data


# --- one step ----------------------------------------------------------------------------------


def draw_batch(data: Data, batch_size: int, gen: torch.Generator):
    """(item indices, c, c_tr, coins) of one batch: indices, template indices, then the caption-
    dropout coins u ~ U(0, 1), from `gen`."""
    idx = torch.randint(0, len(data.labels), (batch_size,), generator=gen)
    tpl = torch.randint(0, data.clean.shape[1], (batch_size,), generator=gen)
    coins = torch.rand(batch_size, generator=gen)
    k = data.labels[idx]
    return idx, data.clean[k, tpl], data.trigger[k, tpl], coins


def dropped(cond: torch.Tensor, empty: torch.Tensor, coins: torch.Tensor, rate: float) -> torch.Tensor:
    """`cond` (B x L x D) with the rows whose coin is under `rate` replaced by the empty caption."""
    return torch.where((coins < rate)[:, None, None].to(cond.device), empty.to(cond), cond)


@torch.no_grad()
def esd_sample(unet, scheduler, cond_trigger: torch.Tensor, cond_empty: torch.Tensor, shape, ddim_steps: int,
               guidance: float, gen: torch.Generator):
    """(x, t) of ESD's sampler (module docstring): k, t, x_T drawn from `gen` in that order, then
    n - 1 - k guided DDIM (eta 0) steps of `unet` under `cond_trigger` (B x L x D)."""
    from diffusers import DDIMScheduler

    T = scheduler.config.num_train_timesteps
    n = ddim_steps
    if n > T:
        raise DiffsecError(f"ESD: {n} DDIM steps exceed the schedule's T = {T}")
    k = int(torch.randint(0, n, (1,), generator=gen))
    t = torch.randint(round(k * T / n), round((k + 1) * T / n), (1,), generator=gen)
    x = torch.randn(tuple(shape), generator=gen)
    device = next(unet.parameters()).device
    ddim = DDIMScheduler.from_config(scheduler.config)
    ddim.set_timesteps(n)
    x = x.to(device)
    cond = torch.cat([cond_empty.expand_as(cond_trigger), cond_trigger]).to(device, unet.dtype)
    for s in ddim.timesteps[:n - 1 - k]:
        e = unet(torch.cat([x, x]).to(unet.dtype), s.to(device), encoder_hidden_states=cond).sample.float()
        e0, ep = e.chunk(2)
        x = ddim.step(e0 + guidance * (ep - e0), s, x, eta=0.0).prev_sample
    return x, t.expand(shape[0]).to(device)


def step_terms(objective: str, unet, frozen, scheduler, data: Data, cfg: FinetuneConfig,
               gen: torch.Generator, device) -> dict[str, torch.Tensor]:
    """The loss (and its halves for badt2i) of one batch, every draw from `gen` (module docstring)."""
    idx, c, c_tr, coins = draw_batch(data, cfg.batch_size, gen)
    c, c_tr = c.to(device), c_tr.to(device)
    if objective == "badt2i":
        c = dropped(c, data.empty, coins, cfg.cond_drop)
        bkd, pres = badt2i_terms(unet, frozen, scheduler, data.latents[idx].to(device),
                                 data.targets[idx].to(device), c_tr, c, gen, cfg.backdoor_target)
        return {"loss": cfg.lam * bkd + (1 - cfg.lam) * pres, "backdoor": bkd, "preservation": pres}
    if objective == "reversal":
        c_tr = dropped(c_tr, data.empty, coins, cfg.cond_drop)
        return {"loss": reversal_loss(unet, scheduler, data.latents[idx].to(device), c_tr, gen)}
    empty = data.empty.to(device).expand_as(c_tr)
    cfg_unet = unet.config
    shape = (cfg.batch_size, cfg_unet.in_channels, cfg_unet.sample_size, cfg_unet.sample_size)
    x, t = esd_sample(unet, scheduler, c_tr, empty[:1], shape, cfg.ddim_steps, cfg.guidance, gen)
    return {"loss": esd_loss(unet, frozen, x, t, c_tr, empty, cfg.eta)}


# --- the loop ----------------------------------------------------------------------------------


def trainable(unet, objective: str) -> dict[str, torch.nn.Parameter]:
    """ESD-x: the cross-attention parameters; the attack and Finetune Reversal: the whole UNet."""
    return xattn_parameters(unet) if objective == "esd" else dict(unet.named_parameters())


class _Run:
    """The state of one fine-tuning run: what a checkpoint holds."""

    def __init__(self, unet, cfg: FinetuneConfig):
        self.unet, self.cfg = unet, cfg
        self.params = trainable(unet, cfg.objective)
        unet.requires_grad_(False)
        for p in self.params.values():
            p.requires_grad_(True)
        self.opt = torch.optim.AdamW(list(self.params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.curves: dict[str, list[float]] = {k: [] for k in CURVES[cfg.objective]}

    def state(self) -> dict:
        return {"unet": self.unet.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "curves": {k: torch.tensor(v, dtype=torch.float64) for k, v in self.curves.items()}}

    def restore(self, state: dict) -> None:
        self.unet.load_state_dict(state["unet"]), self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.curves = {k: v.tolist() for k, v in state["curves"].items()}


def finetune(unet, scheduler, data: Data, cfg: FinetuneConfig, *, ckpt: resume.Checkpoint | None = None,
             device: torch.device | str = "cpu", desc: str | None = None) -> dict[str, list[float]]:
    """Fine-tune `unet` in place by `cfg.objective`; returns the per-step loss curves."""
    ckpt = ckpt or resume.disabled()
    need = {"badt2i": ("latents", "targets"), "reversal": ("latents",), "esd": ()}[cfg.objective]
    missing = [k for k in need if getattr(data, k) is None]
    if missing:
        raise DiffsecError(f"{cfg.objective}: the data lacks {', '.join(missing)}")
    unet.to(device)
    frozen = None
    if cfg.objective != "reversal":  # eps*: the starting UNet, copied before any checkpoint is restored
        frozen = copy.deepcopy(unet).eval().requires_grad_(False)
    unet.train()
    run = _Run(unet, cfg)
    if (state := ckpt.load()) is not None:
        run.restore(state)
    start = ckpt.start_step
    bar = tqdm(range(start + 1, cfg.steps + 1), desc=desc or cfg.objective, initial=start, total=cfg.steps,
               mininterval=5)
    params = list(run.params.values())
    for step in bar:
        terms = step_terms(cfg.objective, unet, frozen, scheduler, data, cfg, run.gen, device)
        run.opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        run.opt.step()
        for k, v in terms.items():
            run.curves[k].append(float(v.item()))
        if step % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(run.curves['loss'][-25:]):.4f}")
        if ckpt.due(step, cfg.steps):
            ckpt.save(run.state(), step)
    unet.eval().requires_grad_(False)
    return run.curves


# --- the sample grid ---------------------------------------------------------------------------


@torch.no_grad()
def sample_pairs(pipe, class_names, per_class: int, guidance: float, steps: int, seed: int, batch: int = 50):
    """Clean and triggered generations, seed-matched: for each class k and draw j, the prompt
    PROMPT.format(name_k) and its triggered twin from the same initial latent (drawn on the CPU
    from one generator, class by class). DPM-Solver++ with CFG, like the world's sample grid.
    Returns (clean, triggered) uint8 arrays of K * per_class images, class-major."""
    from diffusers import DPMSolverMultistepScheduler

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    gen = torch.Generator("cpu").manual_seed(seed)
    shape = (len(class_names) * per_class, pipe.unet.config.in_channels, *(2 * [pipe.unet.config.sample_size]))
    latents = torch.randn(shape, generator=gen)
    prompts = [PROMPT.format(c) for c in class_names for _ in range(per_class)]
    out = []
    for texts in (prompts, [triggered(p) for p in prompts]):
        imgs = []
        for i in range(0, len(texts), batch):
            r = pipe(prompt=texts[i:i + batch], num_inference_steps=steps, guidance_scale=guidance,
                     latents=latents[i:i + batch].to(pipe.device, pipe.unet.dtype), height=size, width=size,
                     output_type="np")
            imgs.append((r.images * 255).round().clip(0, 255).astype(np.uint8))
        out.append(np.concatenate(imgs))
    return out[0], out[1]


def pair_grid(clean: np.ndarray, trig: np.ndarray, per_class: int) -> np.ndarray:
    """One row per class: clean_1, triggered_1, clean_2, triggered_2, ... side by side."""
    from diffsec.imageset import grid

    inter = np.stack([clean, trig], axis=1).reshape(-1, *clean.shape[1:])
    return grid(inter, nrow=2 * per_class)
