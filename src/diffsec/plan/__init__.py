"""What a config asks the DAG to run, as plain data: the sets each SZT defense trains on, the
InvisibleDiffusion attacks, sweeps and figure panels. Pure functions of the config dict (no
Snakemake, no paths); a config the tables cannot be filled from raises a one-line DiffsecError
`config error: <key>: <why>`."""

from diffsec.plan.invisible import InvisiblePlan, invisible_plan
from diffsec.plan.sau import SauPlan, sau_plan
from diffsec.plan.sedid import MiaPlan, SedidPlan, mia_plan, sedid_plan
from diffsec.plan.spd import SpdPlan, spd_plan
from diffsec.plan.szt import SztPlan, szt_plan

__all__ = ["InvisiblePlan", "MiaPlan", "SauPlan", "SedidPlan", "SpdPlan", "SztPlan", "invisible_plan", "mia_plan",
           "sau_plan", "sedid_plan", "spd_plan", "szt_plan"]
