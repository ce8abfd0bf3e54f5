"""`diffsec cost-plan` (diffsec.costs): the estimates against hand computations from README
*Benchmarks*' H100 rows, the dry-run parser against a real dry run, and the CLI's one-line errors."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from conftest import REPO
from diffsec.cli.main import main
from diffsec.costs import (
    DDPM_H100,
    TI_H100,
    Job,
    by_rule,
    estimate,
    estimate_gpu,
    parse_dry_run,
    parse_flags,
    per_step,
    totals,
)
from diffsec.errors import DiffsecError

DRY = """\
Building DAG of jobs...
rule train_ti:
    input: results/models/t2i
    output: results/personalize/ti/nominal
    benchmark: benchmarks/train_ti/nominal.tsv
    wildcards: defense=nominal
    resources: tmpdir=/tmp, gpu=0
Shell command: diffsec train-ti --model m --sets clean=a.npz adm+=b.npz ea=c.npz --concepts dog cat --steps 100 \
--out o --seed 0 > logs/x.log 2>&1

rule backdoor_sample:
    benchmark: benchmarks/backdoor_sample/a.tsv
    resources: tmpdir=/tmp, gpu=0
Shell command: diffsec backdoor-sample --model results/models/ddpm-cifar10 --sampler ddpm --n 1000 --batch-size 100 \
--out o > logs/y.log 2>&1

rule backdoor_sample:
    benchmark: benchmarks/backdoor_sample/b.tsv
    resources: tmpdir=/tmp, gpu=0
Shell command: diffsec backdoor-sample --model results/models/ddpm-celeba --sampler ddim --steps 100 --n 500 \
--batch-size 1024 --out o > logs/z.log 2>&1

rule backdoor_train:
    benchmark: benchmarks/backdoor_train/a.tsv
    resources: tmpdir=/tmp, gpu=0
Shell command: diffsec backdoor-train --model results/models/ddpm-cifar10 --steps 2000 --batch-size 64 \
--snapshots '[500, 1000]' --out o > logs/t.log 2>&1

rule table_szt:
    benchmark: benchmarks/table_szt/szt.tsv
    resources: tmpdir=/tmp
Shell command: diffsec table-szt --out results/tables/szt.csv > logs/s.log 2>&1

localrule all:
    input: results/tables/szt.csv
"""


def test_dry_run_text_becomes_jobs_with_their_flags():
    jobs = parse_dry_run(DRY)
    assert [j.rule for j in jobs] == ["train_ti", "backdoor_sample", "backdoor_sample", "backdoor_train", "table_szt"]
    assert [j.gpu for j in jobs] == [True, True, True, True, False]
    assert jobs[0].benchmark == "benchmarks/train_ti/nominal.tsv"
    assert jobs[0].flags["sets"] == ["clean=a.npz", "adm+=b.npz", "ea=c.npz"] and jobs[0].flags["concepts"] == ["dog",
                                                                                                                  "cat"]
    assert parse_flags("diffsec x --a 1 2 --b --c '[1, 2]' > log 2>&1 --d 3") == {"a": ["1", "2"], "b": [],
                                                                                  "c": ["[1, 2]"]}


def test_per_step_interpolates_and_extrapolates_the_measured_rows():
    assert per_step(DDPM_H100, 64) == 0.0172 and per_step(DDPM_H100, 1) == 0.0126
    assert per_step(DDPM_H100, 0.5) == 0.0126                       # below the smallest batch: its cost
    assert per_step(DDPM_H100, 160) == pytest.approx(0.0172 + (0.0596 - 0.0172) * 96 / 192)
    assert per_step(DDPM_H100, 2048) == pytest.approx(0.2280 + (0.2280 - 0.0596) * 1024 / 768)


def test_ti_estimate_is_steps_times_the_batched_step():
    job = parse_dry_run(DRY)[0]                    # 3 sets x 2 concepts = 6 runs, 100 steps
    e = estimate_gpu(job, "float32")
    t6 = 0.202 + (0.336 - 0.202) * 2 / 4           # R=6 between the float32 rows R=4 and R=8
    assert e.gpu_s == pytest.approx(100 * t6)
    assert e.gpu_s_single == pytest.approx(6 * 100 * 0.090)
    assert e.gpu_gib == pytest.approx(11.6 + (15.8 - 11.6) * 2 / 4)
    f16 = estimate_gpu(job, "float16")
    assert f16.gpu_s == pytest.approx(100 * (0.099 + (0.109 - 0.099) * 2 / 4)) and f16.gpu_s < e.gpu_s
    # all ten concepts when none are named; R=70 past the last float32 row (R=16)
    job.flags.pop("concepts")
    big = estimate_gpu(job, "float32")
    assert big.gpu_s == pytest.approx(100 * (0.638 + (0.638 - 0.336) * (30 - 16) / 8))
    assert big.gpu_gib == pytest.approx(27.6 + (27.6 - 15.8) * (30 - 16) / 8)


def test_ti_estimate_follows_the_jobs_own_dtype_unless_overridden():
    job = parse_dry_run(DRY)[0]                    # 6 runs, 100 steps, no --dtype: float32
    assert estimate_gpu(job).gpu_s == pytest.approx(estimate_gpu(job, "float32").gpu_s)
    job.flags["dtype"] = ["float16"]               # as the paper profile's szt.ti.dtype writes it
    own = estimate_gpu(job)
    assert own.gpu_s == pytest.approx(100 * (0.099 + (0.109 - 0.099) * 2 / 4)) and "float16" in own.basis
    assert estimate_gpu(job, "float32").gpu_gib == pytest.approx(11.6 + (15.8 - 11.6) * 2 / 4)
    job.flags["dtype"] = ["int8"]
    with pytest.raises(DiffsecError, match="int8"):
        estimate_gpu(job)


def test_sampling_and_training_estimates():
    _, ddpm, ddim_celeba, train, _ = parse_dry_run(DRY)
    e = estimate_gpu(ddpm)
    t100 = 0.0172 + (0.0596 - 0.0172) * 36 / 192
    assert e.gpu_s == pytest.approx(10 * 1000 * t100)           # ceil(1000/100) batches x 1000 DDPM steps
    assert e.gpu_s_single == pytest.approx(1000 * 1000 * 0.0126)
    assert e.storage_b == 1000 * 32 * 32 * 3
    e = estimate_gpu(ddim_celeba)                                   # a 64 px model: 4x, one batch of 500
    assert e.gpu_s == pytest.approx(1 * 100 * 0.2280 * 4) and e.storage_b == 500 * 64 * 64 * 3
    e = estimate_gpu(train)
    assert e.gpu_s == e.gpu_s_single == pytest.approx(2000 * 3 * 0.0172)
    assert e.storage_b == pytest.approx(3 * 35.75e6 * 4)           # final weights + two snapshots
    assert estimate_gpu(Job("spd_fit", gpu=True)).gpu_s is None


def test_rule_sums_totals_and_cpu_hours_from_benchmark_files(tmp_path):
    bench = tmp_path / "benchmarks"
    (bench / "table_szt").mkdir(parents=True)
    (bench / "table_szt" / "szt.tsv").write_text("s\th:m:s\tmax_rss\tmean_load\tcpu_time\n"
                                                 "10.0\t0:00:10\t300.5\t50\t7.2\n")
    (bench / "backdoor_sample").mkdir()
    (bench / "backdoor_sample" / "a.tsv").write_text("s\tmax_rss\tmean_load\tcpu_time\n99\t2048\t100\t-\n")
    rows = by_rule(estimate(parse_dry_run(DRY), bench, "float32"),
                   {"train_ti": "SZT", "table_szt": "shared", "backdoor_sample": "Inv", "backdoor_train": "Inv"})
    r = {x.rule: x for x in rows}
    assert r["backdoor_sample"].jobs == 2 and r["backdoor_sample"].rss_mib == 2048
    assert r["backdoor_sample"].cpu_h == 0          # a GPU job's host CPU is not counted
    assert r["table_szt"].cpu_h == pytest.approx(7.2 / 3600) and r["table_szt"].rss_mib == 300.5
    inv = estimate_gpu(parse_dry_run(DRY)[1]).gpu_s + estimate_gpu(parse_dry_run(DRY)[2]).gpu_s + \
        estimate_gpu(parse_dry_run(DRY)[3]).gpu_s
    tot = totals(rows)
    assert tot["Inv"]["gpu_h"] == pytest.approx(inv / 3600)
    assert tot["all"]["gpu_h"] == pytest.approx(tot["Inv"]["gpu_h"] + tot["SZT"]["gpu_h"])
    assert tot["all"]["jobs"] == 5 and tot["all"]["gpu_jobs_unestimated"] == 0
    assert math.isclose(tot["all"]["cpu_h"], 7.2 / 3600)


def test_cost_plan_on_a_real_dry_run(tmp_path, capsys, monkeypatch):
    """The smoke config's DAG: every job of the dry run's stats is planned, and the SZT TI jobs are priced."""
    monkeypatch.chdir(REPO)
    smoke = str(REPO / "workflow/configs/smoke.yaml")
    assert main(["cost-plan", "--configfile", smoke, "--benchmarks", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    p = subprocess.run([sys.executable, "-m", "snakemake", "-s", "Snakefile", "-n", "--forceall", "--cores", "1",
                        "--workflow-profile", "none", "--configfile", smoke, "--quiet", "rules"],
                       capture_output=True, text=True, cwd=REPO)
    total = int(next(ln.split()[1] for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("total ")))
    assert out.startswith(f"{total - 1} jobs;")   # all but the `all` target
    assert "| train_ti | SZT |" in out and "| all |" in out


def test_paper_profile_trains_ti_in_float16_that_fits_an_80gb_card(tmp_path, capsys, monkeypatch):
    """The paper profile's szt.ti.dtype reaches train-ti's flags, and cost-plan prices it: a batch of 80
    SD 1.5 runs fits 80 GB in float16 and not in float32 (--ti-dtype overrides the jobs' own)."""
    monkeypatch.chdir(REPO)
    paper = str(REPO / "workflow/configs/paper.yaml")
    row = {}
    for dtype in (None, "float32"):
        argv = ["cost-plan", "--configfile", paper, "--benchmarks", str(tmp_path / "none")]
        assert main(argv + (["--ti-dtype", dtype] if dtype else [])) == 0
        row[dtype] = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| train_ti |"))
    assert "float16" in row[None] and "(> 80)" not in row[None]
    assert "float32" in row["float32"] and "(> 80)" in row["float32"]


def test_cost_plan_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["cost-plan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffsec cost-plan: error: no workflow at Snakefile"), err
    monkeypatch.chdir(REPO)
    assert main(["cost-plan", "--configfile", "nope.yaml"]) == 2
    assert capsys.readouterr().err.strip() == "diffsec cost-plan: error: --configfile nope.yaml: no such file"
    assert main(["cost-plan", "--dry-run-output", str(REPO / "README.md"), "--ti-dtype", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("no jobs" in err[0] or "int8" in err[0]), err
    assert set(TI_H100) == {"float16", "bfloat16", "float32"}


def test_manifest_rows_sum_wall_and_cpu_and_take_the_largest_peak(tmp_path, capsys):
    """`diffsec benchmarks --manifests`: per stage, job count, largest peak RSS, summed CPU seconds;
    a manifest without `resources` (older stages) counts as a job with unknown memory and CPU."""
    import json

    def write(path, stage, wall, rss=None, cpu=None):
        (tmp_path / path).mkdir(parents=True)
        m = {"stage": stage, "wall_time_s": wall}
        if rss is not None:
            m["resources"] = {"peak_rss_mib": rss, "cpu_s": cpu, "warm_start": True}
        (tmp_path / path / "manifest.json").write_text(json.dumps(m))

    write("personalize/ti/a", "train-ti", 100.0, 900.5, 95.0)
    write("personalize/ti/b", "train-ti", 50.0, 1200.0, 48.5)
    write("personalize/gen/a", "generate-ti", 30.0)
    (tmp_path / "personalize/gen/a/sub").mkdir()
    (tmp_path / "personalize/gen/a/sub/manifest.json").write_text("[1, 2]")   # not a stage's: skipped
    assert main(["benchmarks", "--manifests", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "| train-ti | 2 | 1200 | 143.5 |"                   # most CPU first
    assert out[3] == "| generate-ti | 1 | nan | nan |"                  # unknown, not 0
    assert out[-1] == "| **total** | 3 | 1200 | nan |"
    assert main(["benchmarks", "--manifests", str(tmp_path / "personalize/ti/a/none")]) == 2
    assert "error: no artifact manifests under" in capsys.readouterr().err


def test_benchmarks_by_rule_sums_each_rules_jobs(tmp_path, capsys):
    """`diffsec benchmarks --by-rule`: jobs, summed and longest wall time per rule, from nested
    (`<rule>/<wildcards>.tsv`) and flat (`<rule>.tsv`) benchmark files."""
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    files = {"train_ti/a.tsv": 100.0, "train_ti/b.tsv": 50.5, "eval_ti/token/a.tsv": 3.0, "table_szt.tsv": 1.25}
    for rel, sec in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(head + f"{sec}\t0:00:01\t16.0\t1\t1\t1\t0\t0\t90.0\t1.0\n")
    assert main(["benchmarks", str(tmp_path), "--by-rule"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "| train_ti | 2 | 150.5 | 100.0 |"
    assert out[3:5] == ["| eval_ti | 1 | 3.0 | 3.0 |", "| table_szt | 1 | 1.2 | 1.2 |"]
    assert out[-1] == "| **total** | 4 | 154.8 | |"
