"""The SeDID slice of a config as plain data: the image sets scored and the generated sets evaluated.

Sets scored (`sedid-score`), each against the DDPM world:

- `real`: `sedid.real.n` training images of the world, drawn at random (seeded);
- `ddpm`: `sedid.generated.n` DDPM-1000 (ancestral) samples of the world, the paper's sampler;
- `jpeg`: the same samples re-encoded as JPEG at `sedid.jpeg_control` (the mirror's real CIFAR-10
  images are JPEG q75 re-encodings: a detector that only finds JPEG would fail this control);
- `ddim`: the first `sedid.generated.n` DDIM samples the worlds table draws (`sample_ddpm`), or
  all `metrics.fid_samples` of them where that is fewer (`ddim_n`).

Only `real` and `ddpm` enter the step-size sweep (Fig. 2). Each generated set is evaluated
against `real` (`sedid-eval`, labelled by the set's name).

The membership-inference table (`sedid_mia`): a DDPM of the world's architecture trained from
scratch on `mia.members` training images for `max(mia.epochs)` epochs, its EMA kept at every
listed epoch (step = round(epoch * members / batch_size)); each kept model scores the members and
`mia.heldout` disjoint non-members. One epoch is members / batch_size steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffsec.detect.grid import check_grid, check_timesteps
from diffsec.errors import DiffsecError
from diffsec.paper.sedid import VARIANTS

T = 1000   # the DDPM worlds' training timesteps
GENERATED = tuple(VARIANTS)   # the generated sets the controls table names: ddpm, jpeg, ddim


@dataclass(frozen=True)
class MiaPlan:
    steps: int                   # training steps of the target model
    snapshots: tuple[int, ...]   # steps whose EMA weights are kept, the final step excluded
    variants: tuple[str, ...]    # step-<n> for each snapshot, then final (the artifacts' names)
    epochs: tuple[float, ...]    # training epochs of each variant, in the same order


def mia_plan(mia: dict[str, Any]) -> MiaPlan:
    """Plan of the `sedid.mia` section; DiffsecError for epochs that give no distinct steps or a
    SecMI (t, k) off the grid."""
    try:
        check_grid(mia["secmi"]["k"], [mia["secmi"]["t"]], T)
    except ValueError as e:
        raise DiffsecError(f"config error: sedid.mia.secmi: {e}") from None
    per_epoch = mia["members"] / mia["world"]["batch_size"]
    epochs = sorted(set(mia["epochs"]))
    steps = [max(1, round(e * per_epoch)) for e in epochs]
    if len(set(steps)) != len(steps):
        raise DiffsecError(f"config error: sedid.mia.epochs {mia['epochs']}: two epochs fall on the same step "
                           f"({per_epoch:g} steps an epoch)")
    snaps = tuple(steps[:-1])
    return MiaPlan(steps=steps[-1], snapshots=snaps, variants=(*[f"step-{n}" for n in snaps], "final"),
                   epochs=tuple(n / per_epoch for n in steps))


@dataclass(frozen=True)
class SedidPlan:
    sets: tuple[str, ...]        # every scored set: real, then the generated ones
    generated: tuple[str, ...]   # the sets evaluated against real
    ddim_n: int                  # images of the ddim control


def sedid_plan(sedid: dict[str, Any], fid_samples: int) -> SedidPlan:
    """Plan of the `sedid` section; DiffsecError for a grid the stages would refuse.
    `fid_samples`: how many DDIM samples the worlds table draws (the ddim set takes its first n)."""
    checks = [("t_secs", lambda: check_grid(sedid["k"], sedid["t_secs"], T)),
              ("sweep", lambda: [check_grid(k, [sedid["sweep"]["t"]], T) for k in sedid["sweep"]["ks"]]),
              ("loss_ts", lambda: check_timesteps(sedid["loss_ts"], T))]
    for key, check in checks:
        try:
            check()
        except ValueError as e:
            raise DiffsecError(f"config error: sedid.{key}: {e}") from None
    return SedidPlan(sets=("real", *GENERATED), generated=GENERATED, ddim_n=min(sedid["generated"]["n"], fid_samples))
