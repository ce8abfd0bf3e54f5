"""A poison run over an image set: its prompts and target, the attack, PGD in resumable batches.

Resume: after every finished batch but the last, the stage's checkpoint holds the poisoned
images and loss curves of images [0, end); a rerun with the same settings and inputs continues
at image `end`. An image's poison depends only on (seed, image index) (see `pgd.py`), so the
resumed result equals the uninterrupted one byte for byte. A checkpoint of other settings is
discarded by `diffsec.resume.Checkpoint` and the run starts fresh.

Loss curves: per PGD step k, the mean, min and max over images (and the std) of the method's
reported loss, measured at the iterate step k starts from.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from diffsec.errors import DiffsecError
from diffsec.poison.budget import Budget
from diffsec.poison.ldm import LatentDiffusion
from diffsec.poison.objectives import TARGETED, DAConfig, make_objective
from diffsec.poison.pgd import poison_images
from diffsec.resume import Checkpoint


def prompts_for(data: dict, mode: str, where: str) -> list[str]:
    """One prompt per image: 'a photo of a <class_name>' (mode 'class') or '' (mode 'empty')."""
    from diffsec.models.captions import PROMPT

    n = len(data["images"])
    if mode == "empty":
        return [""] * n
    names = data.get("class_name")
    if names is None or names.ndim != 1 or len(names) != n:
        raise DiffsecError(f"{where}: prompt mode 'class' needs a per-image 'class_name' array; "
                           "use the empty prompt otherwise")
    return [PROMPT.format(str(c)) for c in names]


def load_target(target: str, h: int, w: int) -> np.ndarray:
    """Target uint8 H x W x 3: an image file resized bicubically (as Mist does), or 'gray' (128)."""
    if target == "gray":
        return np.full((h, w, 3), 128, np.uint8)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(target) as im:
            return np.asarray(im.convert("RGB").resize((w, h), Image.BICUBIC)).copy()
    except (OSError, UnidentifiedImageError) as e:
        raise DiffsecError(f"target {target}: not a readable image ({e})") from None


def attack(pipe, device, method: str, size: tuple[int, int], target: str | None, da: DAConfig):
    """(LatentDiffusion, objective, target uint8 or None) of `method` on `pipe` for images of `size`."""
    ldm = LatentDiffusion(pipe, device)
    h, w = size
    if h % ldm.down or w % ldm.down:
        raise DiffsecError(f"images are {h}x{w}; the VAE needs sides divisible by {ldm.down}")
    target_u8 = load_target(target, h, w) if method in TARGETED else None
    target01 = None if target_u8 is None else torch.from_numpy(target_u8).permute(2, 0, 1).float() / 255
    return ldm, make_objective(method, ldm, target01, da), target_u8


@dataclass
class PoisonResult:
    adv: np.ndarray     # uint8 NHWC, every image
    losses: np.ndarray  # N x steps: the reported loss per image and PGD step
    resumed_from: int   # images already poisoned when this attempt started
    seconds: float      # PGD wall time of this attempt

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per PGD step (0-based): mean, min, max and std over images."""
        steps = np.arange(self.losses.shape[1])
        return {k: (steps, f(self.losses, 0)) for k, f in
                (("mean", np.mean), ("min", np.min), ("max", np.max), ("std", np.std))}

    def summary(self) -> dict:
        done = (len(self.adv) - self.resumed_from) * self.losses.shape[1]
        return {"loss_first_step": float(self.losses[:, 0].mean()),
                "loss_last_step": float(self.losses[:, -1].mean()), "pgd_seconds": round(self.seconds, 3),
                "resumed_from": self.resumed_from,
                "seconds_per_image_step": round(self.seconds / max(1, done), 5)}


def run_poison(ldm: LatentDiffusion, images: np.ndarray, prompts: list[str], objective, budget: Budget,
               steps: int, batch_size: int, seed: int, ckpt: Checkpoint, uncond: bool = False,
               desc: str = "poison") -> PoisonResult:
    """Poison every image (uint8 NHWC) in batches, checkpointing after each finished batch."""
    from tqdm import tqdm

    state = ckpt.load()
    start = int(state["end"]) if state else 0
    advs = [state["adv"].numpy()] if state else []
    curves = [state["losses"].numpy()] if state else []
    n_batches = math.ceil(len(images) / batch_size)
    bar = tqdm(total=(len(images) - start) * steps, desc=desc, unit=" img-step")

    def on_batch(end: int, adv: np.ndarray, losses: np.ndarray) -> None:
        advs.append(adv), curves.append(losses)
        done = math.ceil(end / batch_size)
        if ckpt.due(done, n_batches):
            ckpt.save({"end": end, "adv": torch.from_numpy(np.concatenate(advs)),
                       "losses": torch.from_numpy(np.concatenate(curves))}, done)

    def on_step(loss: torch.Tensor) -> None:
        bar.update(len(loss))
        bar.set_postfix(loss=f"{loss.mean().item():.4g}")

    t0 = time.perf_counter()
    poison_images(ldm, images, prompts, objective, budget, steps, batch_size, seed, start=start,
                  on_batch=on_batch, on_step=on_step, uncond=uncond)
    bar.close()
    return PoisonResult(np.concatenate(advs), np.concatenate(curves), start, time.perf_counter() - t0)
