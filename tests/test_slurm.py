"""A slice of the smoke DAG through a real single-node Slurm (tests/slurm_harness.py) with the
Slurm profile as shipped, against the same slice run locally.

The slice: two sources, two datasets, the T2I world (trained: a GPU-tagged job), two poisons on it
(GPU-tagged, submitted together), and the membership table `sedid_mia` (its DDPM, scores, evaluations,
figure). While the world trains, the test `scancel`s its Slurm job right after its first checkpoint
write (the stage holds there: DIFFSEC_HOLD_AFTER_SAVE); Snakemake resubmits it (the profile's
`retries: 1`) and it resumes from the checkpoint. Checked: the run completes under a hard timeout;
every result file equals the local run's byte for byte (manifests aside: they hold times and hosts);
the world's manifest records the resumed attempt; a dry run through the profile has nothing to do;
each GPU-tagged job was given a GPU (CUDA_VISIBLE_DEVICES, written by the job's own log line), GPU jobs
that ran at the same time got different ones, and CPU jobs got none.

Marked `slurm` (deselected by the default `pytest -q`; `.ci/run` runs it as its own step:
`pytest -q -m slurm`). Needs root and apt (or the Debian packages installed); skipped with the reason
elsewhere. The daemons are stopped by pid when the module ends.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO
from slurm_harness import SlurmCluster, unavailable

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SMOKE = REPO / "workflow/configs/smoke.yaml"
PROFILE = REPO / "workflow/profiles/slurm"
TARGETS = ["results/poison/adm+", "results/poison/sds+", "results/tables/sedid_mia.csv"]
# the world checkpoints every 2 steps, so its first save comes mid-training (4 VAE + 4 UNet steps)
EXTRA = "worlds:\n  t2i:\n    ckpt_every: 2\n"
HELD = "t2i-cifar10.ckpt"
GPU_RULES = {"train_t2i", "poison_concepts", "train_mia_ddpm", "mia_score", "mia_eval"}
CPU_RULES = {"prepare_cifar10", "prepare_szt_concepts", "member_split"}   # fetch-source picks no device
TIMEOUT = 900   # seconds, the whole Slurm run (~3-5 min on 2 shared cores)


def _env(**extra: str) -> dict[str, str]:
    # rules call `diffsec`, which lives beside this interpreter
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}


def _snakemake(work: Path, mirror: Path, extra: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile", str(SMOKE), str(extra),
            "--directory", str(work), "--config", f"mirror={mirror}", *args]


def _results(work: Path) -> dict[str, bytes]:
    """Every file under results/, manifests left out (they record times, hosts and attempts)."""
    return {str(f.relative_to(work)): f.read_bytes() for f in sorted((work / "results").rglob("*"))
            if f.is_file() and f.name != "manifest.json" and ".ckpt" not in f.parts[-2]}


@pytest.fixture(scope="module")
def extra_config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("slurm-config") / "ckpt.yaml"
    p.write_text(EXTRA)
    return p


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, mirror, extra_config) -> Path:
    """The same slice, run locally (the default profile, 2 cores)."""
    work = tmp_path_factory.mktemp("local")
    p = subprocess.run(_snakemake(work, mirror, extra_config, "--cores", "2", "--", *TARGETS), capture_output=True,
                       text=True, env=_env(), timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr[-4000:]
    return work


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = unavailable()
    if why:
        pytest.skip(f"no Slurm here: {why}")
    with SlurmCluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def _scancel_when_held(cluster: SlurmCluster, work: Path, done: threading.Event, found: dict) -> None:
    """Wait for the world's stage to log that it holds after its first checkpoint write, then
    scancel its Slurm job (found by the rule name in the job's comment)."""
    log = work / "logs/train_t2i.log"
    while not done.is_set():
        if log.exists() and "checkpoint: holding after save 1" in log.read_text(errors="replace"):
            q = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, env=cluster.env)
            ids = [line.split()[0] for line in q.stdout.splitlines() if "rule_train_t2i" in line]
            if ids:
                found["job"] = ids[0]
                found["ckpt_existed"] = (work / "results/models" / HELD / "state.pt").is_file()
                found["scancel"] = subprocess.run(["scancel", ids[0]], env=cluster.env).returncode
                return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory, mirror, extra_config, local_run) -> dict:
    work = tmp_path_factory.mktemp("slurm")
    env = _env(SLURM_CONF=str(cluster.conf), DIFFSEC_HOLD_AFTER_SAVE=f"{HELD}:1")
    # the profile as shipped; the first status check sooner than its 10 s, as a test can afford
    cmd = _snakemake(work, mirror, extra_config, "--workflow-profile", str(PROFILE),
                     "--slurm-init-seconds-before-status-checks", "2", "--", *TARGETS)
    done, found = threading.Event(), {}
    killer = threading.Thread(target=_scancel_when_held, args=(cluster, work, done, found), daemon=True)
    killer.start()
    t0 = time.monotonic()
    try:
        p = subprocess.run(["timeout", "-k", "10", str(TIMEOUT), *cmd], capture_output=True, text=True, env=env)
    finally:
        done.set()
        killer.join()
    wall = time.monotonic() - t0
    # finished jobs stay known to slurmctld for MinJobAge (the harness: 1 h): their start and end times
    q = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%k|%S|%e"], capture_output=True, text=True,
                       env=cluster.env)
    jobs = {}
    for line in q.stdout.splitlines():
        jid, comment, start, end = line.split("|")
        jobs[jid] = {"rule": comment.split("_wildcards_")[0].removeprefix("rule_"), "start": start, "end": end}
    return {"work": work, "proc": p, "wall": wall, "found": found, "jobs": jobs}


def test_slice_completes_through_slurm_with_the_shipped_profile(slurm_run, local_run):
    p = slurm_run["proc"]
    assert p.returncode == 0, f"rc {p.returncode} after {slurm_run['wall']:.0f} s:\n{p.stderr[-6000:]}"
    # every job went to the cluster (one benchmark file per job in the local run), the world's twice
    jobs = len(list((local_run / "benchmarks").rglob("*.tsv")))
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", p.stderr)
    assert len(set(submitted)) == jobs + 1 and jobs >= 15, (jobs, submitted)
    print(f"slurm slice wall time: {slurm_run['wall']:.1f} s, {jobs} jobs")


def test_results_equal_the_local_run(slurm_run, local_run):
    ours, theirs = _results(slurm_run["work"]), _results(local_run)
    assert set(ours) == set(theirs), sorted(set(ours) ^ set(theirs))
    differ = [f for f in ours if ours[f] != theirs[f]]
    assert not differ, differ
    # the slice's pieces are all there
    for f in ("results/tables/sedid_mia.csv", "results/poison/adm+/distances.json",
              "results/models/t2i-cifar10/pipeline/unet/diffusion_pytorch_model.safetensors"):
        assert f in ours, f


def test_scancelled_training_job_is_rerun_and_resumes_from_its_checkpoint(slurm_run):
    import json

    found = slurm_run["found"]
    assert found.get("scancel") == 0 and found.get("ckpt_existed"), found
    work = slurm_run["work"]
    # Snakemake saw the cancelled job fail and submitted it again
    err = slurm_run["proc"].stderr
    assert f"SLURM-job '{found['job']}' failed" in err, err[-3000:]
    submitted = re.findall(r"rule_train_t2i/(\d+)\.log", err)
    assert len(set(submitted)) == 2, submitted
    resume = json.loads((work / "results/models/t2i-cifar10/manifest.json").read_text())["resume"]
    assert resume["resumed"] and len(resume["attempts"]) == 2, resume
    assert resume["attempts"][0]["start_step"] == 0 and resume["attempts"][1]["start_step"] == 2, resume
    assert "resume: continuing from step 2" in (work / "logs/train_t2i.log").read_text()
    assert not (work / "results/models" / HELD).exists()


def test_dry_run_through_the_profile_has_nothing_to_do(slurm_run, mirror, extra_config, cluster):
    p = subprocess.run(_snakemake(slurm_run["work"], mirror, extra_config, "--workflow-profile", str(PROFILE),
                                  "-n", "--", *TARGETS),
                       capture_output=True, text=True, env=_env(SLURM_CONF=str(cluster.conf)), timeout=120)
    assert p.returncode == 0 and "Nothing to be done" in p.stdout + p.stderr, (p.stdout + p.stderr)[-3000:]


def _placements(work: Path) -> dict[str, str | None]:
    """Slurm job id -> CUDA_VISIBLE_DEVICES, from the `device:` line each stage writes to its log."""
    out = {}
    for log in (work / "logs").rglob("*.log"):
        for m in re.finditer(r"^device: (\S+) \(requested \S+; SLURM job (\d+); CUDA_VISIBLE_DEVICES=(\S+);",
                             log.read_text(errors="replace"), re.M):
            out[m.group(2)] = None if m.group(3) == "unset" else m.group(3)
    return out


def test_gpu_jobs_get_distinct_gpus_and_log_the_one_they_got(slurm_run):
    from datetime import datetime

    placed, jobs = _placements(slurm_run["work"]), slurm_run["jobs"]
    gpu_jobs = {j: v for j, v in jobs.items() if v["rule"] in GPU_RULES and j in placed}
    cpu_jobs = {j: v for j, v in jobs.items() if v["rule"] in CPU_RULES and j in placed}
    assert {v["rule"] for v in gpu_jobs.values()} == GPU_RULES, (jobs, placed)
    assert {v["rule"] for v in cpu_jobs.values()} == CPU_RULES, (jobs, placed)
    # every GPU-tagged job was assigned one of the node's two GPUs; CPU jobs none
    assert all(placed[j] in ("0", "1") for j in gpu_jobs), {j: placed[j] for j in gpu_jobs}
    assert all(placed[j] is None for j in cpu_jobs), {j: placed[j] for j in cpu_jobs}

    def span(j):
        return datetime.fromisoformat(jobs[j]["start"]), datetime.fromisoformat(jobs[j]["end"])

    overlapping = [(a, b) for a in gpu_jobs for b in gpu_jobs if a < b
                   and span(a)[0] < span(b)[1] and span(b)[0] < span(a)[1]]
    assert overlapping, "no two GPU jobs ran at the same time"
    for a, b in overlapping:
        assert placed[a] != placed[b], (a, b, jobs[a], jobs[b], placed[a])
