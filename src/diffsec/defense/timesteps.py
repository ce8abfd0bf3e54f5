"""Training timestep samplers for textual inversion (SZT Sec. 4.5, Appendix H).

u in [0, 1] has density pdf(u); the training timestep is t = floor(u * T) in {0 .. T-1}.

  uniform    nominal TI, t ~ U{0 .. T-1}
  high:600   t ~ U{600 .. T-1}  (T600; SZT uses high:500)   "high:0.6" = the same as a fraction
  low:500    t ~ U{0 .. 499}    (the control that should hurt)
  power:2    p(u) ∝ u^rho, rho > -1
  tanh:5     p(u) ∝ tanh(rho (u - 1/2)) / 2 + 1/2   (= (1 + tanh(rho (u - 1/2))) after normalising,
             since tanh is odd about 1/2)

Every sampler turns its CDF into the probabilities of the T integer timesteps
(P(t) = F((t+1)/T) - F(t/T)) and samples by inverse CDF on that T-point grid (searchsorted of a
uniform draw), which is exact for the discretised distribution; thresholds put exactly zero mass
below / above t_th, so a sampled timestep never crosses them.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class TimestepSampler:
    name = "base"

    def __init__(self, T: int = 1000):
        if T < 1:
            raise ValueError(f"T must be positive, got {T}")
        self.T = int(T)
        self._cum: torch.Tensor | None = None

    def cdf(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def pdf(self, u) -> np.ndarray:
        """Density of u = t / T on [0, 1] (for plotting; integrates to 1)."""
        raise NotImplementedError

    def probs(self) -> np.ndarray:
        """P(t) for t = 0 .. T-1."""
        F = np.clip(self.cdf(np.arange(self.T + 1) / self.T), 0.0, 1.0)
        p = np.diff(F)
        return p / p.sum()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n timesteps (int64, CPU) by inverse CDF; `generator` makes it reproducible."""
        if self._cum is None:
            self._cum = torch.from_numpy(np.cumsum(self.probs()))
            self._cum[-1] = 1.0
        v = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.searchsorted(self._cum, v, right=True).clamp_(max=self.T - 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, T={self.T})"

    @property
    def spec(self) -> str:
        return self.name


class Uniform(TimestepSampler):
    name = "uniform"

    def cdf(self, u):
        return np.asarray(u, np.float64)

    def pdf(self, u):
        return np.ones_like(np.asarray(u, np.float64))


class _Threshold(TimestepSampler):
    def __init__(self, t_th: int, T: int = 1000):
        super().__init__(T)
        if not 0 < int(t_th) < T:
            raise ValueError(f"threshold must be in 1..{T - 1}, got {t_th}")
        self.t_th = int(t_th)

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.t_th}"

    def _support(self) -> tuple[int, int]:
        raise NotImplementedError

    def probs(self):  # exact integer support, no floating-point edge at t_th
        lo, hi = self._support()
        p = np.zeros(self.T)
        p[lo:hi] = 1.0 / (hi - lo)
        return p

    def pdf(self, u):
        lo, hi = self._support()
        u = np.asarray(u, np.float64)
        return np.where((u >= lo / self.T) & (u < hi / self.T), self.T / (hi - lo), 0.0)

    def cdf(self, u):
        lo, hi = self._support()
        return np.clip((np.asarray(u, np.float64) * self.T - lo) / (hi - lo), 0.0, 1.0)


class High(_Threshold):
    """t ~ U{t_th .. T-1}: the paper's "T600" / "T500"."""
    name = "high"

    def _support(self):
        return self.t_th, self.T


class Low(_Threshold):
    """t ~ U{0 .. t_th-1}."""
    name = "low"

    def _support(self):
        return 0, self.t_th


class Power(TimestepSampler):
    """p(u) ∝ u^rho (rho > -1); F(u) = u^(rho+1)."""
    name = "power"

    def __init__(self, rho: float, T: int = 1000):
        super().__init__(T)
        if not rho > -1:
            raise ValueError(f"power needs rho > -1 (a normalisable density), got {rho}")
        self.rho = float(rho)

    @property
    def spec(self) -> str:
        return f"power:{self.rho:g}"

    def cdf(self, u):
        return np.asarray(u, np.float64) ** (self.rho + 1)

    def pdf(self, u):
        return (self.rho + 1) * np.asarray(u, np.float64) ** self.rho


def _logcosh(x):
    x = np.abs(x)
    return x + np.log1p(np.exp(-2 * x)) - math.log(2.0)


class Tanh(TimestepSampler):
    """p(u) ∝ tanh(rho (u - 1/2)) / 2 + 1/2, i.e. p(u) = 1 + tanh(rho (u - 1/2)) on [0, 1];
    F(u) = u + (logcosh(rho (u - 1/2)) - logcosh(rho / 2)) / rho. rho = 0 is uniform."""
    name = "tanh"

    def __init__(self, rho: float, T: int = 1000):
        super().__init__(T)
        self.rho = float(rho)

    @property
    def spec(self) -> str:
        return f"tanh:{self.rho:g}"

    def cdf(self, u):
        u = np.asarray(u, np.float64)
        if self.rho == 0:
            return u
        return u + (_logcosh(self.rho * (u - 0.5)) - _logcosh(self.rho / 2)) / self.rho

    def pdf(self, u):
        return 1.0 + np.tanh(self.rho * (np.asarray(u, np.float64) - 0.5))


def make_sampler(spec: str, T: int = 1000) -> TimestepSampler:
    """Parse "uniform", "high:600", "high:0.6", "low:500", "power:2", "tanh:5"."""
    name, _, arg = str(spec).strip().lower().partition(":")
    try:
        if name in ("uniform", "nominal") and not arg:
            return Uniform(T)
        if name in ("high", "low") and arg:
            v = float(arg)
            # "0.6" is a fraction of T (the paper's tables), "600" an index
            t_th = round(v * T) if ("." in arg or "e" in arg) and v < 1 else int(arg)
            return (High if name == "high" else Low)(t_th, T)
        if name == "power" and arg:
            return Power(float(arg), T)
        if name == "tanh" and arg:
            return Tanh(float(arg), T)
    except ValueError as e:
        raise ValueError(f"bad timestep sampler {spec!r}: {e}") from None
    raise ValueError(f"unknown timestep sampler {spec!r}; use uniform, high:<t>, low:<t>, "
                     "power:<rho> or tanh:<rho>")


def check_timesteps(ts, T: int = 1000) -> list[int]:
    """A non-empty list of integer timesteps in 0..T-1 (as a figure's JSON list), or a DiffsecError."""
    from diffsec.errors import DiffsecError

    if not isinstance(ts, list) or not ts or not all(isinstance(t, int) and 0 <= t < T for t in ts):
        raise DiffsecError(f"timesteps must be a non-empty JSON list of integers in 0..{T - 1}, got {ts!r}")
    return ts
