"""The SPD slice of a config as plain data: the universal perturbations fitted, the conditions
immunized, edited and measured.

- `methods`: one universal delta_u per (objective, optimizer) and eps, each a table column (its
  `column` name; the one named "Ours" carries the paper's values), fitted on the train split;
- `random` (the paper's "Baseline": uniform noise in the eps ball) and, when `photoguard` is on,
  PhotoGuard's per-image encoder attack at the same eps (an upper bound, not in the paper's table);
- every condition at every eps is applied to the train and test images, edited with every prompt
  (img2img, one seed per image shared by all conditions) and compared with the clean edit.

A fit is one job per (method, eps), so changing one eps reruns only that eps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffsec.errors import DiffsecError

BASELINE, OURS, PHOTOGUARD = "random", "Ours", "photoguard"


def method_name(objective: str, optimizer: str) -> str:
    """A method's path name: pca+ / pca- become pcaplus / pcaminus (no signs in paths)."""
    return f"{objective.replace('+', 'plus').replace('-', 'minus')}-{optimizer}"


@dataclass(frozen=True)
class SpdPlan:
    eps: tuple[int, ...]                # eps grid in 1/255
    methods: dict[str, dict[str, str]]  # path name -> {column, objective, optimizer}
    conditions: tuple[str, ...]         # random, the methods, then photoguard when on
    immunized: tuple[str, ...]          # <condition>/eps-<e>: every edited and measured set
    train: int
    test: int

    def column(self, condition: str) -> str:
        return {BASELINE: "Baseline", PHOTOGUARD: "PhotoGuard"}.get(condition) or self.methods[condition]["column"]


def spd_plan(spd: dict[str, Any]) -> SpdPlan:
    """Plan of the `spd` section; DiffsecError for a split, eps grid or method list the stages
    or the table would refuse."""
    n, train = spd["images"]["n"], spd["images"]["train"]
    if not 0 < train < n:
        raise DiffsecError(f"config error: spd.images.train: {train} must lie between 1 and n - 1 = {n - 1}")
    eps = tuple(sorted(set(spd["eps"])))
    if not all(0 < e <= 255 for e in eps):
        raise DiffsecError(f"config error: spd.eps: {list(spd['eps'])} must lie in 1..255 (units of 1/255)")
    methods: dict[str, dict[str, str]] = {}
    for m in spd["methods"]:
        name = method_name(m["objective"], m["optimizer"])
        if name in methods:
            raise DiffsecError(f"config error: spd.methods: {m['objective']} + {m['optimizer']} listed twice")
        methods[name] = dict(m)
    columns = [m["column"] for m in methods.values()]
    if len(set(columns)) != len(columns) or {"Baseline", "PhotoGuard"} & set(columns):
        raise DiffsecError(f"config error: spd.methods: columns {columns} must be distinct and not Baseline "
                           "or PhotoGuard")
    if OURS not in columns:
        raise DiffsecError(f"config error: spd.methods: no method has column {OURS!r} (the paper's values sit "
                           "beside it)")
    conditions = (BASELINE, *methods, *((PHOTOGUARD,) if spd["photoguard"]["enabled"] else ()))
    return SpdPlan(eps=eps, methods=methods, conditions=conditions,
                   immunized=tuple(f"{c}/eps-{e}" for c in conditions for e in eps), train=train, test=n - train)
