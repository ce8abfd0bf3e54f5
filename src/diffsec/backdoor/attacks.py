"""The three backdoor objectives: what a poisoned training sample looks like, which noise
triggers the backdoor at sampling time, and which reverse chain the attacker samples with.

All three regress a noise target with the DDPM simple loss; they differ in x_t and the target:

* InvisibleDiffusion (Eq. 16 (ii)): x_t = sqrt(abar) y + sqrt(1-abar) (lambda phi + (1-lambda) eps),
  target eps. phi is a fixed noise image, or ("free") a fresh N(0, I) draw per sample.
* TrojDiff (blend, In-D): x_t = sqrt(abar) y + sqrt(1-abar) ((1-gamma) delta + gamma eps), target eps,
  sampled with its trojan chain mu = (1-gamma) delta, gamma (the attacker controls the sampler).
* BadDiffusion: x_t = sqrt(abar) y + (1 - sqrt(abar)) r + sqrt(1-abar) eps and target
  eps + rho_t r with rho_t = (1 - sqrt(alpha_t)) sqrt(1 - abar_t) / beta_t, which makes the
  *unchanged* DDPM sampler's posterior mean exact for the shifted chain (derivation: in z = x - r
  the poisoned chain is a plain DDPM, so mu_theta must equal r + mu_plain(z_t, eps); solving for
  eps_theta gives the correction). Sampled from x_T = eps + r with the benign sampler.

y is a target image; `poisoned` builds x_t and the target for a batch of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffsec.diffusion.chain import NoiseChain

METHODS = ("invisible", "trojdiff", "baddiffusion")


@dataclass
class Attack:
    method: str
    trigger: str               # a triggers.KINDS name
    phi: torch.Tensor | None   # the fixed trigger image (C x H x W, [-1, 1]); None for "free"
    lam: float                 # InvisibleDiffusion's mixing ratio lambda
    gamma: float               # TrojDiff's blend std (x_T ~ N((1-gamma) delta, gamma^2 I))
    shape: tuple[int, ...]     # C x H x W of the model's samples

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown attack method {self.method!r} ({', '.join(METHODS)})")
        if self.method == "invisible" and not 0 < self.lam < 1:
            raise ValueError(f"lambda must lie in (0, 1), got {self.lam}")
        if self.method == "trojdiff" and not 0 < self.gamma < 1:
            raise ValueError(f"TrojDiff gamma must lie in (0, 1), got {self.gamma}")
        if (self.phi is None) != (self.trigger == "free"):
            raise ValueError(f"trigger {self.trigger!r}: a fixed image is needed exactly when it is not 'free'")
        if self.phi is not None and tuple(self.phi.shape) != tuple(self.shape):
            raise ValueError(f"trigger image is {tuple(self.phi.shape)}, the model samples {tuple(self.shape)}")
        if self.trigger == "free" and self.method != "invisible":
            raise ValueError("only InvisibleDiffusion has a trigger without a fixed image")

    @property
    def free_std(self) -> float:
        """s = sqrt(2 lambda^2 - 2 lambda + 1): std of lambda phi + (1 - lambda) eps (Eq. 10)."""
        return math.sqrt(2 * self.lam ** 2 - 2 * self.lam + 1)

    def added(self) -> torch.Tensor | None:
        """The fixed pattern the trigger adds to x_T (what the stealth norms measure)."""
        if self.method == "invisible":
            return None if self.phi is None else self.lam * self.phi
        if self.method == "trojdiff":
            return (1 - self.gamma) * self.phi
        return self.phi

    def x_T(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Triggered initial noise for n samples (drawn on the CPU)."""
        shape = (n, *self.shape)
        eps = torch.randn(shape, generator=generator)
        if self.method == "invisible":
            phi = torch.randn(shape, generator=generator) if self.phi is None else self.phi
            return self.lam * phi + (1 - self.lam) * eps
        if self.method == "trojdiff":
            return (1 - self.gamma) * self.phi + self.gamma * eps
        return eps + self.phi

    def chain(self) -> NoiseChain:
        """The reverse chain the attacker samples triggered noise with (see diffusion/chain.py)."""
        if self.method == "invisible":
            if self.phi is None:
                return NoiseChain(None, self.free_std, self.free_std / (1 - self.lam))
            return NoiseChain(self.lam * self.phi, 1 - self.lam, 1.0)
        if self.method == "trojdiff":
            return NoiseChain((1 - self.gamma) * self.phi, self.gamma, 1.0)
        return NoiseChain()  # BadDiffusion keeps the benign sampler

    def poisoned(self, y: torch.Tensor, t: torch.Tensor, abar: torch.Tensor, betas: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, regression target) for target images y (N x C x H x W) at timesteps t."""
        dev = y.device
        a = abar.to(dev)[t].view(-1, 1, 1, 1).float()
        eps = torch.randn(y.shape, generator=generator).to(dev)
        if self.method == "baddiffusion":
            r = self.phi.to(dev)
            b = betas.to(dev)[t].view(-1, 1, 1, 1).float()
            rho = (1 - (1 - b).sqrt()) * (1 - a).sqrt() / b
            return a.sqrt() * y + (1 - a.sqrt()) * r + (1 - a).sqrt() * eps, eps + rho * r
        if self.method == "trojdiff":
            mix = (1 - self.gamma) * self.phi.to(dev) + self.gamma * eps
        else:
            phi = torch.randn(y.shape, generator=generator).to(dev) if self.phi is None else self.phi.to(dev)
            mix = self.lam * phi + (1 - self.lam) * eps
        return a.sqrt() * y + (1 - a).sqrt() * mix, eps


def save_attack(attack: Attack, directory, **extra) -> dict:
    """attack.json (+ trigger.safetensors for a fixed image) in `directory`; returns the json."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    d = Path(directory)
    meta = {"method": attack.method, "trigger": attack.trigger, "lam": attack.lam, "gamma": attack.gamma,
            "shape": list(attack.shape), **extra}
    if attack.phi is not None:
        save_file({"phi": attack.phi.contiguous()}, str(d / "trigger.safetensors"))
    (d / "attack.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta


def load_attack(directory) -> tuple[Attack, dict]:
    """(Attack, its attack.json) from a backdoor-train artifact."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    d = Path(directory)
    meta = json.loads((d / "attack.json").read_text())
    phi = load_file(str(d / "trigger.safetensors"))["phi"] if (d / "trigger.safetensors").exists() else None
    return Attack(meta["method"], meta["trigger"], phi, meta["lam"], meta["gamma"], tuple(meta["shape"])), meta
