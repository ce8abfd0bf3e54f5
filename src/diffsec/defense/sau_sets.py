"""SAU (`defense.sau`) over seed-matched generation sets (`backdoor.t2i_generate`): the calibration
shift from one pair of sets, the defended latent of every row of another pair, decoded.

Inputs are four generation sets of the model being defended: triggered and clean generations
of the test jobs (row i of each from the same initial latent x_T), and triggered and clean
generations of calibration jobs (other seeds, same rule). With z_p^i, z_c^i the final latents of
test row i and (z_p^j, z_c^j) the calibration pairs:
    Delta = mean_j z_p^j - mean_j z_c^j                         (`sau.mean_shift`)
    z_f^i, maps^i = SAU(z_p^i, z_c^i, Delta; tau, tau_s, k, alpha, sigma, sigma_f, source)
    image^i = D(z_f^i / scaling_factor)                         (`t2i_generate.decode_latents`)
Blending is done once, on the final latents (see `defense.sau`). The defended set keeps the test
rows' labels, seeds and (triggered) prompts, so it evaluates like any generation set.
"""

from __future__ import annotations

import numpy as np
import torch

from diffsec.backdoor.t2i_generate import check_matched, decode_latents
from diffsec.defense.sau import SAUConfig, activation_map, mean_shift, sau_latent
from diffsec.errors import DiffsecError

MAPS = ("similarity", "activation", "primary", "secondary", "primary_soft", "secondary_soft", "region", "weight")


def check_pairs(triggered: dict, clean: dict, calib_triggered: dict, calib_clean: dict) -> None:
    """Test and calibration pairs are seed-matched, triggered vs clean, and share one latent shape."""
    for (t, c), what in (((triggered, clean), "--triggered / --clean"),
                         ((calib_triggered, calib_clean), "--calib-triggered / --calib-clean")):
        check_matched(t, c, what)
        if t["prompt_set"] != "triggered" or c["prompt_set"] != "clean":
            raise DiffsecError(f"{what}: expected a triggered and a clean generation set, got {t['prompt_set']} and "
                               f"{c['prompt_set']}")
    if triggered["latents"].shape[1:] != calib_triggered["latents"].shape[1:]:
        raise DiffsecError(f"calibration latents are {calib_triggered['latents'].shape[1:]}, test latents "
                           f"{triggered['latents'].shape[1:]}")


def calibration_shift(calib_triggered: dict, calib_clean: dict) -> torch.Tensor:
    """Delta (C x h x w) of the calibration pairs."""
    return mean_shift(torch.from_numpy(calib_triggered["latents"]), torch.from_numpy(calib_clean["latents"]))


def defend(vae, triggered: dict, clean: dict, delta: torch.Tensor, cfg: SAUConfig,
           batch_size: int = 100) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the defended generation set, its maps): SAU on every test row, decoded by `vae`.
    Maps: each of MAPS as float32 N x h x w, plus `delta` (C x h x w) and `delta_activation`
    (|Delta| per position, h x w)."""
    z, maps = sau_latent(torch.from_numpy(triggered["latents"]), torch.from_numpy(clean["latents"]), delta, cfg)
    out = {k: v for k, v in triggered.items() if k not in ("images", "latents", "prompt_set")}
    out.update(latents=z.numpy().astype(np.float32), images=decode_latents(vae, z, batch_size))
    saved = {k: maps[k].numpy().astype(np.float32) for k in MAPS}
    saved.update(delta=delta.numpy().astype(np.float32), delta_activation=activation_map(delta).numpy())
    return out, saved
