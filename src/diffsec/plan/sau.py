"""The SAU slice of a config as plain data: the models fine-tuned, the sets generated, defended and
evaluated for `sau.csv` (paper 001).

Models (`model` names are path components):

- `unpoisoned`: the T2I world itself;
- `<b>-poisoned`: a BadT2I fine-tune of it for each backdoor b in `sau.backdoors` (pixel: the MIST
  patch in the top-left corner; style: grayscale);
- `<b>-finetune_reversal`, `<b>-concept_erasure`: the two unlearning baselines, each a fine-tune
  of `<b>-poisoned` (reversal: clean images with triggered captions; concept erasure: ESD-x on
  the trigger).

Generated sets, seed-matched (one initial latent per (class, seed), shared by every model and
prompt set): `triggered` and `clean` (`sau.generate.seeds`, every class) of every model, and the
calibration pairs `calib-triggered` / `calib-clean` (`sau.generate.calib_seeds`, disjoint seeds)
of each poisoned model, from which SAU's mean latent shift Delta is taken.

SAU (`sau-apply`) defends `<b>-poisoned`'s triggered set with its clean twin at the default
setting (`sau.sau`, named `default`) and at each sweep point (`sau.sweep`: one setting changed
at a time, named `<setting>-<value>`).

Evaluations (`sau-eval`), per backdoor b, each judged by b's target detector (patch or gray):
every model's triggered and clean sets (false alarms on clean prompts; the Unpoisoned model's
sets: the detector's false alarms on an unattacked model) and every SAU setting. SAU leaves a
clean prompt's generation untouched (its clean twin is itself), so its clean-prompt row is the
Poisoned model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffsec.errors import DiffsecError

BACKDOORS = ("pixel", "style")
DETECTOR = {"pixel": "patch", "style": "gray"}                # the detector that judges each backdoor
UNLEARN = {"finetune_reversal": "reversal", "concept_erasure": "esd"}   # method -> unlearn-t2i --method
METHODS = ("unpoisoned", "poisoned", *UNLEARN)               # the generating models' roles
PROMPT_SETS = ("triggered", "clean")
CALIB_SETS = ("calib-triggered", "calib-clean")
SAU_KEYS = ("tau", "tau_s", "k", "alpha", "sigma", "sigma_f")
DEFAULT = "default"


def model_name(backdoor: str, method: str) -> str:
    """The generating model of a (backdoor, method) row: `unpoisoned` is shared by both backdoors."""
    return "unpoisoned" if method == "unpoisoned" else f"{backdoor}-{method}"


def seeds(spec: str, where: str) -> tuple[int, int]:
    """(start, count) of a 'START:COUNT' seed range."""
    try:
        start, count = (int(x) for x in spec.split(":"))
    except ValueError:
        raise DiffsecError(f"config error: {where}: {spec!r} is not START:COUNT") from None
    if start < 0 or count < 1:
        raise DiffsecError(f"config error: {where}: {spec!r} needs START >= 0 and COUNT >= 1")
    return start, count


def _value_name(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class SauPlan:
    backdoors: tuple[str, ...]
    models: tuple[str, ...]                  # every generating model (unpoisoned first)
    gen_sets: tuple[str, ...]                # <model>/<prompt set>: every t2i-generate artifact
    settings: dict[str, dict[str, Any]]      # SAU setting name -> sau-apply flags (default first)
    evals: tuple[str, ...]                   # <backdoor>/<name>: every sau-eval artifact
    attack_steps: dict[str, int]             # backdoor -> BadT2I fine-tuning steps

    def eval_source(self, backdoor: str, name: str) -> tuple[str, str]:
        """(method, generated or defended set path tail) of an eval name: `<method>-<prompt set>`
        for a model's set, `sau-<setting>` for a defended one."""
        if name.startswith("sau-") and name[4:] in self.settings:
            return "sau", f"defended/{backdoor}/{name[4:]}"
        for method in METHODS:
            for ps in PROMPT_SETS:
                if name == f"{method}-{ps}":
                    return method, f"gen/{model_name(backdoor, method)}/{ps}"
        raise DiffsecError(f"unknown SAU evaluation {backdoor}/{name}")


def sau_plan(sau: dict[str, Any]) -> SauPlan:
    """Plan of the `sau` section; DiffsecError for a seed range, backdoor list or sweep the stages
    would refuse."""
    backdoors = tuple(sau["backdoors"])
    if not backdoors or len(set(backdoors)) != len(backdoors) or set(backdoors) - set(BACKDOORS):
        raise DiffsecError(f"config error: sau.backdoors: {list(backdoors)} must be distinct, from {list(BACKDOORS)}")
    test = seeds(sau["generate"]["seeds"], "sau.generate.seeds")
    calib = seeds(sau["generate"]["calib_seeds"], "sau.generate.calib_seeds")
    if max(test[0], calib[0]) < min(test[0] + test[1], calib[0] + calib[1]):
        raise DiffsecError(f"config error: sau.generate: calibration seeds {sau['generate']['calib_seeds']} overlap "
                           f"the test seeds {sau['generate']['seeds']}")
    settings = {DEFAULT: dict(sau["sau"])}
    for key, values in sau.get("sweep", {}).items():
        if key not in SAU_KEYS:
            raise DiffsecError(f"config error: sau.sweep: {key!r} is not an SAU setting ({', '.join(SAU_KEYS)})")
        for v in values:
            if v == sau["sau"][key]:
                raise DiffsecError(f"config error: sau.sweep.{key}: {v} is the default setting itself")
            settings[f"{key.replace('_', '-')}-{_value_name(v)}"] = {**sau["sau"], key: v}
    models = ("unpoisoned", *(model_name(b, m) for b in backdoors for m in METHODS[1:]))
    gen_sets = tuple(f"{m}/{ps}" for m in models for ps in PROMPT_SETS) + \
        tuple(f"{b}-poisoned/{c}" for b in backdoors for c in CALIB_SETS)
    evals = tuple(f"{b}/{m}-{ps}" for b in backdoors for m in METHODS for ps in PROMPT_SETS) + \
        tuple(f"{b}/sau-{s}" for b in backdoors for s in settings)
    return SauPlan(backdoors, models, gen_sets, settings, evals, attack_steps(sau["attack"]["steps"], backdoors))


def attack_steps(steps: int | dict[str, int], backdoors: tuple[str, ...]) -> dict[str, int]:
    """backdoor -> steps of `sau.attack.steps` (one number for all, or one per backdoor)."""
    if not isinstance(steps, dict):
        return dict.fromkeys(backdoors, steps)
    missing = [b for b in backdoors if b not in steps]
    if missing:
        raise DiffsecError(f"config error: sau.attack.steps: {steps} names no steps for {', '.join(missing)}")
    return {b: steps[b] for b in backdoors}
