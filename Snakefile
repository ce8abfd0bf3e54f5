# diffsec: one DAG reproducing five papers on the security of diffusion models.
# Run: snakemake --cores 2 [target]    (profile workflow/profiles/default is picked up automatically)
import os
import subprocess
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The embedded default profile, found beside this file even when --directory points elsewhere;
# --configfile / --config values are merged on top of it.
configfile: Path(workflow.basedir) / "config.yaml"


# Validate before any job runs: a bad value (a duplicate key in a config file, a value the schema
# or a cross-key check refuses, a config the tables cannot be filled from) ends here with one
# line naming the key. --config values are typed as the schema wants them (dvc_track=false).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from diffsec.config import validate_config
from diffsec import warm
from diffsec.errors import DiffsecError
from diffsec.plan import (
    invisible_plan,
    mia_plan,
    sau_plan,
    sedid_plan,
    spd_plan,
    szt_plan,
)

try:
    validate_config(
        config,
        Path(workflow.basedir) / "workflow/schemas/config.schema.yaml",
        configfiles=workflow.configfiles,
    )
    SZT_PLAN = szt_plan(config["szt"])
    INV_PLAN = invisible_plan(config["invisible"])
    SEDID_PLAN = sedid_plan(config["sedid"], config["metrics"]["fid_samples"])
    MIA_PLAN = mia_plan(config["sedid"]["mia"])
    SPD_PLAN = spd_plan(config["spd"])
    SAU_PLAN = sau_plan(config["sau"])
except DiffsecError as e:
    print(e, file=sys.stderr)
    sys.exit(1)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/poison.smk"
include: "workflow/rules/personalize.smk"
include: "workflow/rules/backdoor.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/detection.smk"
include: "workflow/rules/immunize.smk"
include: "workflow/rules/unlearn.smk"
include: "workflow/rules/tables.smk"


report: "workflow/report/workflow.rst"


onstart:
    # Warm start on a machine without a GPU: `diffsec` calls fork from one process that has torch,
    # diffusers and transformers imported (diffsec.warm), instead of importing them again (~4 s a job).
    # Never under a cluster executor: a job's stage must run inside its allocation, not on this host.
    if config["warm_start"] and gpu_per_job() == 0 and workflow.local_exec:
        os.environ[warm.ENV] = warm.start(os.getpid()) or ""


onsuccess:
    warm.stop(os.environ.pop(warm.ENV, None))
    # Finished artifacts go into the DVC cache (only inside a DVC repo; tests run elsewhere).
    # An argument list, never a shell string: the remote reaches dvc as one argument.
    if Path(".dvc").is_dir() and config["dvc_track"]:
        remote = ["--remote", config["dvc_remote"]] if config["dvc_remote"] else []
        subprocess.run(["diffsec", "dvc-track", "results", *remote], check=True)


onerror:
    warm.stop(os.environ.pop(warm.ENV, None))


rule all:
    default_target: True
    input:
        "results/tables/worlds.csv",
        PAPER_TABLE_FILES,
        ["results/tables/invisible_take.csv"] if INV_PLAN.take else [],
        "results/figures/invisible/ablation",  # Figs. 4 and 5, drawn from invisible_ablation.csv
        "results/tables/sedid_mia.csv",
        "results/tables/claims.csv",
        "results/tables/agreement.csv",
        "results/data/dreambooth",
