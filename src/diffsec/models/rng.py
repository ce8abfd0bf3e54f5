"""The global torch random state, for checkpoints: dropout and GPU noise draw from it.

Training loops here draw batches and noise from their own seeded CPU generator, but dropout (the
classifiers) and anything drawn on a GPU without a generator use torch's global streams. A
checkpoint keeps both, so a resumed run continues the same random numbers as an uninterrupted one.
"""

from __future__ import annotations

import torch


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
