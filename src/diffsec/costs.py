"""What a DAG will cost before it is launched: GPU-hours, CPU-hours, peak memory and storage per rule.

Input: the DAG's job list, as a dry run prints it (`snakemake -n --forceall -p`: per job its rule,
benchmark file, resources and shell command, whose flags carry the work: steps, images, batch),
the per-job benchmark files of an earlier run (`benchmarks/<rule>/<wildcards>.tsv`) and the GPU
measurements of README *Benchmarks* (one NVIDIA H100 80GB), copied below. Every estimate names the
measurement it extrapolates from and how (`basis`). No job is run.

GPU time of a job, by rule (t(b) = measured seconds per step at batch b, piecewise linear between
measured batches, extrapolated linearly past the largest from its last two points):

* `train_ti` (batched textual inversion on SD 1.5 at 512 px; `bench-ti`): a job trains
  R = sets x concepts runs together for S steps: batched S * t_TI(R); one run at a time
  R * S * t_TI(1). t_TI is the row of the job's `--dtype` (float32 when it has none; cost-plan's
  `--ti-dtype` overrides every job's). GPU memory: the table's peak at R, interpolated the same way.
* DDPM sampling (`sample_ddpm`, `sample_sedid`, `backdoor_sample`; `bench-sampling` of the
  `ddpm-cifar10-32` shape): n images, T reverse steps (1000 for DDPM, --steps for DDIM), batch b:
  batched ceil(n / b) * T * t_DDPM(b); one image at a time n * T * t_DDPM(1).
* DDPM training (`train_ddpm`, `train_mia_ddpm`, `backdoor_train`): S steps at batch b, one
  training step = a forward and a backward pass ~ 3 forward passes: S * 3 * t_DDPM(b) (training runs
  one model a job: batched = one at a time).
* A 64 px model (CelebA, `--resolution 64` or a celeba model) costs 4x the 32 px one (pixels; an
  assumption, not a measurement).
* Every other GPU-capable rule has no paper-scale measurement: it is listed with its jobs and left
  out of the GPU totals (`not estimated`).

CPU time of a job: its benchmark file's `cpu_time` (or `s` x `mean_load` / 100) from the given
benchmark directory, as measured at that run's scale (not scaled to the planned config), and only
for CPU rules; missing files are counted. GPU jobs' host CPU is not counted. Peak host memory:
the largest `max_rss` of the rule's benchmark files. Storage: what the sampling and DDPM-training
jobs write, from their flags (uint8 images n x H x W x 3; float32 weights of a 35.75 M-parameter
DDPM per snapshot); other rules `-`.
"""

from __future__ import annotations

import csv
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from diffsec.errors import DiffsecError

GPU_NAME = "H100"
# bench-ti on SD 1.5's architecture at 512 px, H100 (README Benchmarks): runs per batch R ->
# (seconds per step, peak GiB)
TI_H100 = {
    "float16": {1: (0.088, 6.0), 4: (0.099, 6.1), 8: (0.109, 8.4), 16: (0.193, 14.5), 32: (0.330, 26.7),
                64: (0.592, 51.1)},
    "bfloat16": {1: (0.109, 6.0), 32: (0.317, 26.7)},
    "float32": {1: (0.090, 11.5), 4: (0.202, 11.6), 8: (0.336, 15.8), 16: (0.638, 27.6)},
}
# bench-sampling of the ddpm-cifar10-32 shape (35.75 M parameters, float32), H100: batch -> s / step
DDPM_H100 = {1: 0.0126, 16: 0.0165, 64: 0.0172, 256: 0.0596, 1024: 0.2280}
DDPM_PARAMS = 35.75e6
GPU_MEMORY_GIB = 80
ALL_CONCEPTS = 10          # train-ti without --concepts trains every concept of the set (DreamBooth: 10)
SAMPLING = {"sample_ddpm", "sample_sedid", "backdoor_sample"}
TRAINING = {"train_ddpm", "train_mia_ddpm", "backdoor_train"}


@dataclass
class Job:
    rule: str
    benchmark: str = ""
    gpu: bool = False          # declares resources gpu (a GPU-capable rule)
    command: str = ""
    flags: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Estimate:
    job: Job
    gpu_s: float | None = None          # batched (as the DAG runs it)
    gpu_s_single: float | None = None   # one run / one image at a time
    gpu_gib: float | None = None
    cpu_s: float | None = None
    rss_mib: float | None = None
    storage_b: float | None = None
    basis: str = ""


def parse_flags(command: str) -> dict[str, list[str]]:
    """`--flag v1 v2 --other v` of a shell command (up to its first redirection) -> {flag: values}."""
    flags: dict[str, list[str]] = {}
    key = None
    for tok in shlex.split(command):
        if tok in (">", "2>&1", "2>", ">>") or tok.startswith(">"):
            break
        if tok.startswith("--"):
            key = tok[2:]
            flags[key] = []
        elif key is not None:
            flags[key].append(tok)
    return flags


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of `snakemake -n -p` output: one per `rule <name>:` block (`localrule` too)."""
    jobs: list[Job] = []
    job: Job | None = None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            job = Job(m.group(1))
            jobs.append(job)
            continue
        if job is None:
            continue
        s = line.strip()
        if s.startswith("benchmark:"):
            job.benchmark = s.split(":", 1)[1].strip()
        elif s.startswith("resources:"):
            job.gpu = bool(re.search(r"\bgpu=\d", s))
        elif s.startswith("Shell command:") or (s.startswith("diffsec ") and not job.command):
            job.command = s.split(":", 1)[1].strip() if s.startswith("Shell command:") else s
            job.flags = parse_flags(job.command)
    return [j for j in jobs if j.rule != "all"]


def per_step(table: dict[int, float], b: float) -> float:
    """Seconds per step at batch b: piecewise linear between measured batches, linear past the
    largest (from its last two points), the smallest measurement below it."""
    xs = sorted(table)
    if b <= xs[0]:
        return table[xs[0]]
    for lo, hi in zip(xs, xs[1:], strict=False):
        if b <= hi:
            return table[lo] + (table[hi] - table[lo]) * (b - lo) / (hi - lo)
    lo, hi = xs[-2], xs[-1]
    return table[hi] + (table[hi] - table[lo]) * (b - hi) / (hi - lo)


def _one(flags: dict[str, list[str]], name: str, default: float | None = None) -> float | None:
    v = flags.get(name)
    return float(v[0]) if v else default


def _pixels_factor(job: Job) -> tuple[float, int]:
    res = _one(job.flags, "resolution")
    model = " ".join(job.flags.get("model", []) + job.flags.get("pretrained", []))
    if res is None:
        res = 64 if "celeba" in model else 32
    return (res / 32) ** 2, int(res)


def estimate_gpu(job: Job, ti_dtype: str | None = None) -> Estimate:
    """The GPU seconds of one job (see the module docstring), or an Estimate saying why not.
    ti_dtype: the TI row to use for every train_ti job (None: the job's own --dtype)."""
    e = Estimate(job)
    f = job.flags
    if job.rule == "train_ti":
        ti_dtype = ti_dtype or f.get("dtype", ["float32"])[0]
        if ti_dtype not in TI_H100:
            raise DiffsecError(f"train_ti dtype {ti_dtype!r}: measured for {', '.join(TI_H100)}")
        table = TI_H100[ti_dtype]
        runs = len(f.get("sets", [])) * (len(f["concepts"]) if f.get("concepts") else ALL_CONCEPTS)
        steps = _one(f, "steps", 5000)
        t = per_step({r: v[0] for r, v in table.items()}, runs)
        e.gpu_s = steps * t
        e.gpu_s_single = runs * steps * per_step({r: v[0] for r, v in table.items()}, 1)
        e.gpu_gib = per_step({r: v[1] for r, v in table.items()}, runs)
        e.basis = (f"bench-ti SD 1.5 512 px {ti_dtype}, {GPU_NAME}: {steps:.0f} steps x t(R={runs}) "
                   f"{t:.3f} s; one at a time {runs} x {steps:.0f} x t(1)")
    elif job.rule in SAMPLING:
        n = _one(f, "n", 0)
        steps = 1000 if (f.get("sampler", ["ddpm"])[0] == "ddpm") else _one(f, "steps", 50)
        b = _one(f, "batch-size", 64)
        k, res = _pixels_factor(job)
        t = per_step(DDPM_H100, b)
        e.gpu_s = math.ceil(n / b) * steps * t * k
        e.gpu_s_single = n * steps * per_step(DDPM_H100, 1) * k
        e.storage_b = n * res * res * 3
        e.basis = (f"bench-sampling ddpm-cifar10-32, {GPU_NAME}: ceil({n:.0f}/{b:.0f}) x {steps:.0f} steps x "
                   f"t({b:.0f}) {t:.4f} s" + (f" x {k:.0f} ({res} px)" if k != 1 else ""))
    elif job.rule in TRAINING:
        steps = _one(f, "steps", 0)
        b = _one(f, "batch-size", 64)
        k, res = _pixels_factor(job)
        t = per_step(DDPM_H100, b)
        e.gpu_s = e.gpu_s_single = steps * 3 * t * k
        snaps = len(re.findall(r"\d+", " ".join(f.get("snapshots", []))))
        e.storage_b = (1 + snaps) * DDPM_PARAMS * 4
        e.basis = (f"bench-sampling ddpm-cifar10-32, {GPU_NAME}: {steps:.0f} steps x 3 (fwd+bwd) x t({b:.0f}) "
                   f"{t:.4f} s" + (f" x {k:.0f} ({res} px)" if k != 1 else ""))
    else:
        e.basis = "not estimated: no paper-scale GPU measurement"
    return e


def read_benchmark(path: Path) -> dict[str, float] | None:
    """The last record of a Snakemake benchmark file as numbers ('-' -> NaN); None if absent."""
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        recs = list(csv.DictReader(fh, delimiter="\t"))
    if not recs:
        return None

    def num(v: str) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    return {k: num(v) for k, v in recs[-1].items()}


def estimate(jobs: list[Job], benchmarks: Path | None = None, ti_dtype: str | None = None) -> list[Estimate]:
    if ti_dtype is not None and ti_dtype not in TI_H100:
        raise DiffsecError(f"--ti-dtype {ti_dtype!r}: measured for {', '.join(TI_H100)}")
    out = []
    for job in jobs:
        e = estimate_gpu(job, ti_dtype) if job.gpu else Estimate(job, basis="CPU rule")
        rec = read_benchmark(benchmarks / Path(job.benchmark).relative_to("benchmarks")) if (
            benchmarks is not None and job.benchmark.startswith("benchmarks/")) else None
        if rec is not None:
            if not job.gpu:
                cpu = rec.get("cpu_time", float("nan"))
                if math.isnan(cpu):
                    cpu = rec.get("s", float("nan")) * rec.get("mean_load", float("nan")) / 100
                e.cpu_s = None if math.isnan(cpu) else cpu
            rss = rec.get("max_rss", float("nan"))
            e.rss_mib = None if math.isnan(rss) else rss
        out.append(e)
    return out


@dataclass
class RuleCost:
    rule: str
    group: str
    jobs: int = 0
    gpu_h: float = 0.0
    gpu_h_single: float = 0.0
    gpu_estimated: int = 0
    gpu_gib: float = 0.0
    cpu_h: float = 0.0
    cpu_measured: int = 0
    rss_mib: float = 0.0
    storage_gb: float = 0.0
    gpu_rule: bool = False
    basis: str = ""


def by_rule(estimates: list[Estimate], group_of: dict[str, str]) -> list[RuleCost]:
    """Per rule: sums of GPU / CPU hours and storage, maxima of memory, one basis (the largest job's)."""
    rules: dict[str, RuleCost] = {}
    top: dict[str, float] = {}
    for e in estimates:
        r = rules.setdefault(e.job.rule, RuleCost(e.job.rule, group_of.get(e.job.rule, "-")))
        r.jobs += 1
        r.gpu_rule |= e.job.gpu
        if e.gpu_s is not None:
            r.gpu_h += e.gpu_s / 3600
            r.gpu_h_single += (e.gpu_s_single or 0) / 3600
            r.gpu_estimated += 1
            if e.gpu_s >= top.get(r.rule, -1):
                top[r.rule], r.basis = e.gpu_s, e.basis
        elif not r.basis:
            r.basis = e.basis
        r.gpu_gib = max(r.gpu_gib, e.gpu_gib or 0)
        if e.cpu_s is not None:
            r.cpu_h += e.cpu_s / 3600
            r.cpu_measured += 1
        r.rss_mib = max(r.rss_mib, e.rss_mib or 0)
        r.storage_gb += (e.storage_b or 0) / 1e9
    return sorted(rules.values(), key=lambda r: (r.group, -r.gpu_h, r.rule))


def totals(rows: list[RuleCost]) -> dict[str, dict[str, float]]:
    """Per group and overall: GPU-hours batched / one at a time, CPU-hours, storage, rules not estimated."""
    out: dict[str, dict[str, float]] = {}
    for key in [*sorted({r.group for r in rows}), "all"]:
        sel = [r for r in rows if key in ("all", r.group)]
        out[key] = {"gpu_h": sum(r.gpu_h for r in sel), "gpu_h_single": sum(r.gpu_h_single for r in sel),
                    "cpu_h": sum(r.cpu_h for r in sel), "storage_gb": sum(r.storage_gb for r in sel),
                    "jobs": sum(r.jobs for r in sel),
                    "gpu_jobs_unestimated": sum(r.jobs - r.gpu_estimated for r in sel if r.gpu_rule),
                    "cpu_jobs_unmeasured": sum(r.jobs - r.cpu_measured for r in sel if not r.gpu_rule)}
    return out


def _f(x: float, unit: str = "") -> str:
    return "-" if not x else (f"{x:,.1f}{unit}" if x >= 10 else f"{x:.2f}{unit}")


def markdown(rows: list[RuleCost], tot: dict[str, dict[str, float]]) -> str:
    from diffsec.tables import markdown_table

    cells = [[r.rule, r.group, str(r.jobs),
              (_f(r.gpu_h) if r.gpu_estimated else ("n/e" if r.gpu_rule else "")),
              (_f(r.gpu_h_single) if r.gpu_estimated else ""),
              _f(r.gpu_gib, " GiB") + (" (> 80)" if r.gpu_gib > GPU_MEMORY_GIB else ""),
              _f(r.cpu_h), _f(r.rss_mib / 1024, " GiB"), _f(r.storage_gb, " GB"), r.basis]
             for r in rows]
    per_rule = markdown_table(["rule", "paper", "jobs", f"{GPU_NAME}-h batched", f"{GPU_NAME}-h one at a time",
                               "peak GPU mem", "CPU-h", "peak RSS", "storage", "basis"], cells, "llrrrrrrrl")
    tcells = [[k, str(int(v["jobs"])), _f(v["gpu_h"]), _f(v["gpu_h_single"]), str(int(v["gpu_jobs_unestimated"])),
               _f(v["cpu_h"]), str(int(v["cpu_jobs_unmeasured"])), _f(v["storage_gb"], " GB")]
              for k, v in tot.items()]
    total = markdown_table(["paper", "jobs", f"{GPU_NAME}-h batched", f"{GPU_NAME}-h one at a time",
                            "GPU jobs not estimated", "CPU-h", "CPU jobs without benchmark", "storage"],
                           tcells, "lrrrrrrr")
    return f"{per_rule}\n\nTotals:\n\n{total}\n"
