"""The SZT slice of a config as plain data: training sets, and the sets each defense trains on.

A defense trains on the union of the training sets (table rows) of every table that shows it
(a column naming it in `diffsec.paper.szt.TABLES`); a defense no table shows trains on every
set. So the timestep-ablation defenses (Tables 6-8: rows Clean, ADM+, ADM-, EA) skip SDS+,
SDS- and DA, as the paper does, while `nominal`, which every table shows, trains on all seven.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffsec.errors import DiffsecError
from diffsec.paper.szt import TABLES, defenses_of, sets_of


@dataclass(frozen=True)
class SztPlan:
    sets: list[str]                     # "clean", then the poisons, in config order
    defense_sets: dict[str, list[str]]  # defense -> the sets it trains on (in `sets` order)
    purifier: dict[str, str]            # defense -> training-set purifier ("none" = raw sets)


def szt_plan(szt: dict[str, Any]) -> SztPlan:
    """Plan of the `szt` config section; DiffsecError when a table's defense is not configured."""
    defenses = szt["defenses"]
    missing = sorted({d for t in TABLES for d in defenses_of(t)} - set(defenses))
    if missing:
        raise DiffsecError(f"config error: szt.defenses: the tables need defenses {missing}")
    sets = ["clean", *szt["poisons"]]
    unset = sorted({s for t in TABLES for s in sets_of(t)} - set(sets))
    if unset:
        raise DiffsecError(f"config error: szt.poisons: the tables need training sets {unset}")
    shown: dict[str, set[str]] = {}
    for table in TABLES:
        for d in defenses_of(table):
            shown.setdefault(d, set()).update(sets_of(table))
    defense_sets = {d: [s for s in sets if s in shown.get(d, sets)] for d in defenses}
    purifier = {d: spec.get("purify", "none") for d, spec in defenses.items()}
    return SztPlan(sets=sets, defense_sets=defense_sets, purifier=purifier)
