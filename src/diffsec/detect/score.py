"""Every per-image quantity SeDID's tables and figures need, for one image set, in one pass.

For each image x (uint8 -> [-1, 1]) and the world's noise predictor:

    maps[t]     E_t(x) per pixel at every t_SEC of the grid of step k     (`detect.terror`)
    stat[:, j]  -sum E_t_j(x)                                              (SeDID_Stat)
    loss[:, j]  -l_s_j(x), the loss attack at timestep s_j                 (`detect.loss`)
    sweep[:, i] -sum E_{t_sweep}(x) on the grid of step k_i, first `sweep_n` images only (Fig. 2)

Batches are independent, so a killed run resumes at the next unfinished batch
(`resume.keep_part`), and the loss attack's noise is seeded per image index, not per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffsec import resume
from diffsec.detect.grid import check_grid, check_timesteps
from diffsec.detect.loss import loss_scores
from diffsec.detect.terror import error_maps, stat_scores
from diffsec.diffusion.inversion import EpsModel


@dataclass(frozen=True)
class ScoreConfig:
    k: int                # step of the main grid (paper: 165)
    t_secs: list[int]     # its t_SEC rows (paper: 165, 330, ..., 990)
    loss_ts: list[int]    # timesteps of the loss attack's sweep
    sweep_ks: list[int]   # steps of the Fig. 2 sweep, each dividing sweep_t
    sweep_t: int
    sweep_n: int          # images that enter the k sweep (it costs sweep_t / k model calls per k)
    batch_size: int
    seed: int

    def check(self, T: int) -> None:
        check_grid(self.k, self.t_secs, T)
        for k in self.sweep_ks:
            check_grid(k, [self.sweep_t], T)
        check_timesteps(self.loss_ts, T)
        if self.batch_size < 1 or self.sweep_n < 0:
            raise ValueError("batch size must be >= 1 and the sweep's image count >= 0")


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x C -> float32 N x C x H x W in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def _batch(eps_model, abar, x, idx: list[int], cfg: ScoreConfig, device) -> dict[str, torch.Tensor]:
    x = x.to(device)
    maps = error_maps(eps_model, abar, x, cfg.k, cfg.t_secs)
    stat = stat_scores(maps)
    part = {"maps": torch.stack([maps[t].cpu() for t in cfg.t_secs], 1),
            "stat": torch.stack([stat[t].cpu() for t in cfg.t_secs], 1),
            "loss": torch.stack([loss_scores(eps_model, abar, x, t, idx, cfg.seed).cpu() for t in cfg.loss_ts], 1)
            if cfg.loss_ts else torch.zeros(len(idx), 0)}
    keep = [i for i, j in enumerate(idx) if j < cfg.sweep_n]
    sweep = torch.zeros(len(keep), len(cfg.sweep_ks))
    for i, k in enumerate(cfg.sweep_ks):
        if keep:
            sweep[:, i] = stat_scores(error_maps(eps_model, abar, x[keep], k, [cfg.sweep_t]))[cfg.sweep_t].cpu()
    part["sweep"] = sweep
    return part


def score_images(eps_model: EpsModel, abar: torch.Tensor, images: np.ndarray, cfg: ScoreConfig,
                 device: str | torch.device = "cpu", ckpt: resume.Checkpoint | None = None) -> dict[str, np.ndarray]:
    """maps (N x len(t_secs) x C x H x W), stat (N x len(t_secs)), loss (N x len(loss_ts)),
    sweep (min(N, sweep_n) x len(sweep_ks)); float32 arrays."""
    from tqdm import tqdm

    cfg.check(len(abar))
    ckpt = ckpt or resume.disabled()
    abar = abar.to(device)
    starts = list(range(0, len(images), cfg.batch_size))
    parts = resume.finished_parts(ckpt)
    bar = tqdm(total=len(images), initial=sum(len(p["stat"]) for p in parts), desc="t-error", unit=" img")
    for c, s in list(enumerate(starts))[len(parts):]:
        idx = list(range(s, min(s + cfg.batch_size, len(images))))
        parts.append(_batch(eps_model, abar, to_model_range(images[s:idx[-1] + 1]), idx, cfg, device))
        resume.keep_part(ckpt, c, parts[-1], len(starts))
        bar.update(len(idx))
    bar.close()
    return {key: torch.cat([p[key] for p in parts]).float().numpy() for key in ("maps", "stat", "loss", "sweep")}
