"""The InvisibleDiffusion slice of a config as plain data: which attacks are fine-tuned, which
models are sampled, and which measurements each table and figure reads.

Attacks (name -> spec, each spec's `lam` filled from `invisible.lam` where it names none):

- the configured ones (`invisible.attacks`), which must include every attack the tables name;
- for each further dataset D (CelebA): every table-row attack again as `D-<attack>`, on D's
  world, its In-D target moved to D's (`invisible.in_d_targets[D]`; Out-D MNIST targets stay);
- Fig. 4: the base attack (`LAMBDA_BASE`) again at each swept lambda != `invisible.lam`, as
  `<base>_lam<lambda>` (the configured lambda is the base attack itself);

Fig. 5's EMA snapshots of the base attack sit at round(f * steps) (at least 1) for each share f
of `ablation.step_fractions`, the final step excluded (that is the final model).

A measurement is named `<attack>/<sampler>/<variant>`, variant `final` or `step-<n>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffsec.errors import DiffsecError
from diffsec.paper import invisible as shape

SAMPLERS = ("ddpm", "ddim")


@dataclass(frozen=True)
class InvisiblePlan:
    datasets: list[str]
    attacks: dict[str, dict]      # every attack fine-tuned: name -> {method, trigger, target, lam}
    benign: list[str]             # the benign row of each dataset (its world, sampled as is)
    lam: float                    # the base attack's own lambda
    lambdas: list[float]          # Fig. 4 sweep, ascending
    snapshots: list[int]          # Fig. 5 snapshot steps of the base attack, final step excluded
    final_step: int
    trajectories: dict[str, str]  # Fig. 2 row label -> attack
    targets: dict[str, str]       # Fig. 3 block label -> attack

    def lambda_label(self, lam: float) -> str:
        """The attack whose model has mixing ratio `lam` in the sweep."""
        return shape.LAMBDA_BASE if lam == self.lam else shape.lambda_attack(lam)

    def snapshots_of(self, attack: str) -> list[int]:
        return self.snapshots if attack == shape.LAMBDA_BASE else []

    def evals(self, table: str) -> list[str]:
        """The measurements (`<attack>/<sampler>/<variant>`) one of the two tables reads."""
        if table == "invisible_diffusion":
            return [f"{shape.dataset_attack(ds, shape.ROWS[r])}/{s}/final" for ds in self.datasets
                    for s in shape.COLUMNS.values() for r in shape.rows_of(ds, s)]
        if table != "invisible_ablation":
            raise DiffsecError(f"no InvisibleDiffusion table {table!r}")
        return ([f"{self.lambda_label(lam)}/{s}/final" for lam in self.lambdas for s in SAMPLERS]
                + [f"{shape.LAMBDA_BASE}/ddim/step-{n}" for n in self.snapshots]
                + [f"{shape.ONE_IMAGE_ATTACK}/{s}/final" for s in SAMPLERS])


def _attacks(inv: dict[str, Any]) -> dict[str, dict]:
    configured = {a: {"lam": inv["lam"], **spec} for a, spec in inv["attacks"].items()}
    missing = sorted(set(shape.attacks_in_tables()) - set(configured))
    if missing:
        raise DiffsecError(f"config error: invisible.attacks: the tables need attacks {missing}")
    attacks = dict(configured)
    for ds in inv["datasets"]:
        if ds == "cifar10":
            continue
        if ds not in inv.get("in_d_targets", {}):
            raise DiffsecError(f"config error: invisible.in_d_targets.{ds}: needed when invisible.datasets names {ds}")
        for sampler in shape.COLUMNS.values():
            for row in shape.rows_of(ds, sampler):
                a = shape.ROWS[row]
                if a != "benign":
                    spec = configured[a]
                    target = inv["in_d_targets"][ds] if spec["target"].startswith("cifar10:") else spec["target"]
                    attacks[shape.dataset_attack(ds, a)] = {**spec, "target": target}
    for lam in sorted(inv["ablation"]["lambdas"]):
        if lam != inv["lam"]:
            attacks[shape.lambda_attack(lam)] = {**configured[shape.LAMBDA_BASE], "lam": lam}
    return attacks


def invisible_plan(inv: dict[str, Any]) -> InvisiblePlan:
    """Plan of the `invisible` config section; DiffsecError naming the key when it cannot fill the tables."""
    steps, datasets = inv["finetune"]["steps"], list(inv["datasets"])
    targets = dict(shape.FIG_TARGETS)
    targets.update({f"{shape.DATASETS[d]} {n}": shape.dataset_attack(d, a)
                    for d in datasets if d != "cifar10" for n, a in shape.FIG_TARGETS.items()})
    return InvisiblePlan(
        datasets=datasets, attacks=_attacks(inv), benign=[shape.dataset_attack(d, "benign") for d in datasets],
        lam=inv["lam"], lambdas=sorted(inv["ablation"]["lambdas"]),
        snapshots=sorted({max(1, round(f * steps)) for f in inv["ablation"].get("step_fractions", [])} - {steps}),
        final_step=steps, trajectories=dict(shape.FIG_TRAJECTORIES), targets=targets)
