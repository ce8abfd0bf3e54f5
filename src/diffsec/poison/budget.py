"""The L-inf budget with an explicit pixel scale, 8-bit quantization, and measured distances.

Papers mix /255 and /256 and [0, 1] vs [-1, 1] pixels; here a budget is always (value, scale)
read as value/scale in [0, 1] pixel units, and nothing else in the package divides by 255/256.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from diffsec.errors import DiffsecError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Budget:
    eps: float    # L-inf radius, in units of 1/scale of the [0, 1] pixel range (paper: 16)
    step: float   # PGD step, same units (paper: 1)
    scale: float  # the paper writes kappa = 16/256, step 1/256

    def __post_init__(self):
        if not (self.scale > 0 and 0 < self.eps <= self.scale and self.step > 0):
            raise DiffsecError(f"budget: need 0 < eps <= scale and step > 0 (got eps {self.eps:g}, "
                               f"step {self.step:g}, scale {self.scale:g})")

    @property
    def eps01(self) -> float:
        return self.eps / self.scale

    @property
    def step01(self) -> float:
        return self.step / self.scale

    @property
    def max_levels(self) -> int:
        """The largest uint8 change allowed after rounding to nearest: eps*255 + 0.5, floored."""
        return int(np.floor(self.eps01 * 255 + 0.5))

    def describe(self) -> dict:
        return {"eps": self.eps, "step": self.step, "scale": self.scale,
                "eps_unit01": self.eps01, "step_unit01": self.step01,
                "eps_unit255": self.eps01 * 255, "max_change_unit255": self.max_levels}


def quantize(x01: torch.Tensor, clean: np.ndarray, budget: Budget) -> np.ndarray:
    """float NCHW in [0, 1] -> uint8 NHWC, rounded to nearest and held within the budget.

    Rounding alone keeps |adv - clean| <= eps*255 + 0.5 levels; the final clip only guards the
    float error at an exact .5 so the bound holds by construction, not by luck.
    """
    q = np.rint(x01.detach().float().clamp(0, 1).mul(255).permute(0, 2, 3, 1).cpu().numpy())
    c = clean.astype(np.int16)
    q = np.clip(q.astype(np.int16), c - budget.max_levels, c + budget.max_levels)
    return np.clip(q, 0, 255).astype(np.uint8)


def distances(clean: np.ndarray, adv: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image L-inf and L2 (over all pixels and channels) in [0, 1] units and uint8 levels."""
    d = adv.astype(np.float64) - clean.astype(np.float64)
    flat = d.reshape(len(d), -1)
    linf, l2 = np.abs(flat).max(1), np.sqrt((flat ** 2).sum(1))
    return {"linf_unit01": linf / 255, "linf_unit255": linf, "l2_unit01": l2 / 255, "l2_unit255": l2}
