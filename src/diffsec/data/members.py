"""A membership-inference split of a labelled image set: members to train on, held-out non-members.

    members = stratified_subset(labels, m, seed)
    heldout = the complement of members, then stratified_subset(labels[complement], h, seed + 1)

Both parts are class-stratified (largest-remainder counts), disjoint by construction, and stored
with their indices into the source set, so a reader can check that no held-out image was trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from diffsec.data import stratified_subset
from diffsec.errors import DiffsecError

if TYPE_CHECKING:
    from diffsec.artifact import Artifact


def member_split(labels: np.ndarray, members: int, heldout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(member indices, held-out indices) into `labels`; both non-empty and disjoint."""
    labels = np.asarray(labels)
    if members < 1 or heldout < 1:
        raise DiffsecError(f"--members {members} and --heldout {heldout} must both be at least 1")
    if members + heldout > len(labels):
        raise DiffsecError(f"--members {members} + --heldout {heldout} exceed the set's {len(labels)} images")
    mem = stratified_subset(labels, members, seed)
    rest = np.setdiff1d(np.arange(len(labels)), mem)
    held = rest[stratified_subset(labels[rest], heldout, seed + 1)]
    return mem, held


def write_members(art: Artifact, data: dict[str, np.ndarray], mem: np.ndarray, held: np.ndarray) -> None:
    """members.npz and heldout.npz (images, labels, index into the source set) into the artifact."""
    from diffsec.imageset import save_imageset

    for name, idx in (("members", mem), ("heldout", held)):
        save_imageset(art.file(f"{name}.npz"), data["images"][idx], labels=data["labels"][idx], index=idx)
    art.extra.update(n_members=int(len(mem)), n_heldout=int(len(held)), n_source=int(len(data["labels"])))
