"""The timestep grids SeDID's stages accept (no torch: the config check runs them at DAG build).

A t_SEC is a positive multiple of the grid step k below T (the inversion reaches it in t_SEC / k
steps and one denoising step returns to t_SEC - k); a loss-attack timestep is any of 0..T-1.
"""

from __future__ import annotations


def check_grid(k: int, t_secs: list[int], T: int) -> None:
    """Every t_SEC is a positive multiple of k below T (ValueError naming the first that is not)."""
    if k < 1:
        raise ValueError(f"step k must be >= 1, got {k}")
    for t in t_secs:
        if t < k or t % k or t > T - 1:
            raise ValueError(f"t_SEC {t} is not a multiple of k = {k} in {k}..{T - 1}")


def check_timesteps(ts: list[int], T: int) -> None:
    """Loss-attack timesteps lie in 0..T-1."""
    if any(not 0 <= t < T for t in ts):
        raise ValueError(f"loss-attack timesteps must be in 0..{T - 1}, got {ts}")
