"""The whole DAG on the smoke profile, in a temp dir: it completes, a second dry run has nothing
to do, and changing one world hyperparameter reruns only the stages downstream of it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
             "--configfile", str(REPO / "workflow/configs/smoke.yaml"), "--cores", "2"]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run: rule -> count."""
    jobs, in_table = {}, False
    for line in dry_run_output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m and m.group(1) != "total":
                jobs[m.group(1)] = int(m.group(2))
            elif line.strip() == "" and jobs:
                break
    return jobs


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory, mirror) -> Path:
    work = tmp_path_factory.mktemp("smoke")
    snakemake(work, "--config", f"mirror={mirror}")
    return work


def test_smoke_dag_completes(smoke_dir):
    rows = (smoke_dir / "results/tables/worlds.csv").read_text().splitlines()
    assert rows[0] == "table,row,column,metric,backbone,value,paper_value,profile,n_samples,seed"
    assert len(rows) > 5
    for art in ["results/models/ddpm-cifar10", "results/models/t2i-cifar10", "results/data/dreambooth"]:
        manifest = json.loads((smoke_dir / art / "manifest.json").read_text())
        assert manifest["params"]["seed"] == 0 and manifest["wall_time_s"] >= 0
    # Every rule wrote its benchmark file.
    assert len(list((smoke_dir / "benchmarks").rglob("*.tsv"))) >= 10


def test_second_dry_run_has_nothing_to_do(smoke_dir, mirror):
    p = snakemake(smoke_dir, "-n", "--config", f"mirror={mirror}")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]


def test_world_hyperparameter_reruns_only_dependents(smoke_dir, mirror):
    p = snakemake(smoke_dir, "-n", "--config", f"mirror={mirror}", 'worlds={"ddpm": {"lr": 0.002}}')
    jobs = planned_jobs(p.stdout)
    jobs.pop("all", None)
    assert set(jobs) == {"train_ddpm", "sample_ddpm", "fid_ddpm_vs_test", "table_worlds"}, jobs
