"""The InvisibleDiffusion slice of a config as plain data: which attacks are fine-tuned, which
models are sampled, and which measurements each table and figure reads.

Attacks (name -> spec, each spec's `lam` filled from `invisible.lam` where it names none):

- the configured ones (`invisible.attacks`), which must include every attack the tables name;
- for each further dataset D (CelebA): every table-row attack again as `D-<attack>`, on D's
  world, its In-D target moved to D's (`invisible.in_d_targets[D]`; Out-D MNIST targets stay);
- Fig. 4: the base attack (`LAMBDA_BASE`) again at each swept lambda != `invisible.lam`, as
  `<base>_lam<lambda>` (the configured lambda is the base attack itself);

- the In-D take sweep (`invisible.take`): the base attack again per variant, as
  `<base>_take-<variant>`, fine-tuned `take.steps` steps with the variant's fine-tuning settings
  over `invisible.finetune` (its spec's `finetune`), with EMA snapshots at `take.step_fractions`.

Fig. 5's EMA snapshots of the base attack sit at round(f * steps) (at least 1) for each share f
of `ablation.step_fractions`, the final step excluded (that is the final model).

Benign baselines (not fine-tuned): for every table-row attack a, `benign_<a>` (dataset-qualified:
`celeba-benign_<a>`) is the dataset's clean world sampled from a's triggered noise and scored
against a's target. Attacks with the same trigger (dataset, method, trigger, lambda) give the
same noise, so their baselines read one set of samples, the first such attack's (`samples_of`).

Samplers: `ddpm`, `ddim` (the attacker chain) and, for each sampler in `sample.ordinary`,
`<sampler>_ordinary` (the ordinary sampler from the triggered noise; not for attacks whose chain is
the ordinary one, BadDiffusion). A measurement is named `<attack>/<sampler>/<variant>`, variant
`final` or `step-<n>`.
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
    ordinary: list[str] = ()      # samplers that also run the ordinary sampler from triggered noise
    baselines: dict[str, str] = None     # benign_<attack> -> attack (its trigger and target)
    baseline_samples: dict[str, str] = None  # benign_<attack> -> the baseline whose samples it reads
    take: dict[str, dict] = None  # take-sweep variant -> its fine-tuning settings
    take_snapshots: list[int] = ()   # its snapshot steps, the final step last

    def is_baseline(self, name: str) -> bool:
        return name in self.baselines

    def samples_of(self, name: str) -> str:
        """The attack (or baseline) whose samples a measurement of `name` reads."""
        return self.baseline_samples.get(name, name)

    def trigger_of(self, name: str) -> str | None:
        """The attack whose trigger a baseline samples (its samples' owner's) / scores (its own)."""
        return self.baselines.get(name)

    def chains(self, attack: str) -> list[str]:
        """Sampler labels an attack's model is sampled with in the main table."""
        same = self.attacks.get(attack, {}).get("method") in shape.SAME_CHAIN_METHODS
        return [*SAMPLERS, *([] if same else [shape.ordinary(s) for s in self.ordinary])]

    def lambda_label(self, lam: float) -> str:
        """The attack whose model has mixing ratio `lam` in the sweep."""
        return shape.LAMBDA_BASE if lam == self.lam else shape.lambda_attack(lam)

    def snapshots_of(self, attack: str) -> list[int]:
        if attack in {shape.take_attack(v) for v in self.take}:
            return self.take_snapshots[:-1]
        return self.snapshots if attack == shape.LAMBDA_BASE else []

    def evals(self, table: str) -> list[str]:
        """The measurements (`<attack>/<sampler>/<variant>`) one of the two tables reads."""
        if table == "invisible_diffusion":
            out = []
            for ds in self.datasets:
                for s in shape.COLUMNS.values():
                    for r in shape.rows_of(ds, s):
                        a = shape.dataset_attack(ds, shape.ROWS[r])
                        if shape.ROWS[r] == "benign":
                            out.append(f"{a}/{s}/final")
                            continue
                        labels = [c for c in self.chains(a) if c.removesuffix(shape.ORDINARY) == s]
                        out += [f"{x}/{c}/final" for c in labels for x in (a, shape.baseline(a))]
            return out
        if table == "invisible_take":
            if not self.take:
                raise DiffsecError("config error: invisible.take.variants: the take table needs at least one variant")
            return [f"{shape.baseline(shape.LAMBDA_BASE)}/ddim/final"] + [
                f"{shape.take_attack(v)}/ddim/" + ("final" if n == self.take_snapshots[-1] else f"step-{n}")
                for v in self.take for n in self.take_snapshots]
        if table != "invisible_ablation":
            raise DiffsecError(f"no InvisibleDiffusion table {table!r}")
        return ([f"{self.lambda_label(lam)}/{s}/final" for lam in self.lambdas
                 for s in [*SAMPLERS, *(shape.ordinary(o) for o in self.ordinary)]]
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
    take = inv.get("take") or {}
    for variant, settings in _variants(take).items():
        attacks[shape.take_attack(variant)] = {**configured[shape.LAMBDA_BASE],
                                               "finetune": {**settings, "steps": take["steps"]}}
    return attacks


def _variants(take: dict) -> dict[str, dict]:
    """The take sweep's variants: name -> fine-tuning settings."""
    out = {}
    for v in take.get("variants") or []:
        name = v["name"]
        if name in out:
            raise DiffsecError(f"config error: invisible.take.variants: {name!r} is named twice")
        out[name] = {k: x for k, x in v.items() if k != "name"}
    return out


def _baselines(attacks: dict[str, dict], datasets: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(benign_<a> -> a, benign_<a> -> the baseline whose samples it reads) for every table-row attack."""
    rows = [shape.dataset_attack(ds, shape.ROWS[r]) for ds in datasets for s in shape.COLUMNS.values()
            for r in shape.rows_of(ds, s) if shape.ROWS[r] != "benign"]
    owners, base, samples = {}, {}, {}
    for a in dict.fromkeys(rows):
        spec = attacks[a]
        key = (shape.split_attack(a)[0], spec["method"], spec["trigger"], spec["lam"])
        owner = owners.setdefault(key, a)
        base[shape.baseline(a)] = a
        samples[shape.baseline(a)] = shape.baseline(owner)
    return base, samples


def invisible_plan(inv: dict[str, Any]) -> InvisiblePlan:
    """Plan of the `invisible` config section; DiffsecError naming the key when it cannot fill the tables."""
    steps, datasets = inv["finetune"]["steps"], list(inv["datasets"])
    targets = dict(shape.FIG_TARGETS)
    targets.update({f"{shape.DATASETS[d]} {n}": shape.dataset_attack(d, a)
                    for d in datasets if d != "cifar10" for n, a in shape.FIG_TARGETS.items()})
    attacks = _attacks(inv)
    baselines, baseline_samples = _baselines(attacks, datasets)
    take = inv.get("take") or {}
    take_steps = take.get("steps", 0)
    ordinary = list(inv["sample"].get("ordinary", []))
    unknown = sorted(set(ordinary) - set(SAMPLERS))
    if unknown:
        raise DiffsecError(f"config error: invisible.sample.ordinary: unknown samplers {unknown} (ddpm | ddim)")
    return InvisiblePlan(
        datasets=datasets, attacks=attacks, benign=[shape.dataset_attack(d, "benign") for d in datasets],
        lam=inv["lam"], lambdas=sorted(inv["ablation"]["lambdas"]),
        snapshots=sorted({max(1, round(f * steps)) for f in inv["ablation"].get("step_fractions", [])} - {steps}),
        final_step=steps, trajectories=dict(shape.FIG_TRAJECTORIES), targets=targets,
        ordinary=ordinary, baselines=baselines, baseline_samples=baseline_samples,
        take=_variants(take),
        take_snapshots=sorted({max(1, round(f * take_steps)) for f in take.get("step_fractions", [])} - {take_steps})
        + ([take_steps] if take_steps else []))
