"""`diffsec cost-plan`: GPU-hours, CPU-hours, peak memory and storage of a config's DAG before launch
(the estimation is diffsec.costs)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from diffsec.errors import DiffsecError

# which paper a rule serves, by the rules file that holds it
GROUPS = {"personalize": "SZT", "poison": "SZT", "backdoor": "InvisibleDiffusion", "detection": "SeDID",
          "immunize": "SPD", "unlearn": "SAU"}


def register(sub) -> None:
    p = sub.add_parser("cost-plan", help="expected GPU-hours, CPU-hours, memory and storage of a config's DAG",
                       description="Dry-run the DAG (snakemake -n --forceall -p) for the given config files and "
                       "print per rule and in total the expected H100-hours (batched as the DAG runs, and one run "
                       "or image at a time), CPU-hours from benchmark files, peak GPU and host memory and "
                       "storage, with the measurement each estimate extrapolates from (diffsec.costs). "
                       "Runs no job.")
    p.add_argument("--configfile", nargs="*", default=[], help="config files, as for snakemake (none: config.yaml)")
    p.add_argument("--snakefile", type=Path, default=Path("Snakefile"), help="the workflow (default: ./Snakefile)")
    p.add_argument("--benchmarks", type=Path, default=Path("benchmarks"),
                   help="benchmark files of an earlier run (CPU-hours, peak RSS); missing = none")
    p.add_argument("--targets", nargs="*", default=[], help="snakemake targets (default: the default target)")
    p.add_argument("--ti-dtype", default=None, help="price every train_ti job at this dtype of the TI model's "
                   "frozen parts: float32, float16 or bfloat16 (the rows of README Benchmarks); default: each "
                   "job's own --dtype (szt.ti.dtype), float32 where it has none")
    p.add_argument("--dry-run-output", type=Path, default=None,
                   help="read this saved `snakemake -n -p` output instead of running snakemake")
    p.set_defaults(func=run)


def _dry_run(args: argparse.Namespace) -> str:
    if args.dry_run_output is not None:
        return args.dry_run_output.read_text()
    if not args.snakefile.is_file():
        raise DiffsecError(f"no workflow at {args.snakefile} (run from the repository or pass --snakefile)")
    for c in args.configfile:
        if not Path(c).is_file():
            raise DiffsecError(f"--configfile {c}: no such file")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(args.snakefile), "-n", "--forceall", "-p", "--cores", "1",
           "--workflow-profile", "none", *(["--configfile", *args.configfile] if args.configfile else []),
           "--", *args.targets]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        last = [ln for ln in (p.stderr + p.stdout).strip().splitlines() if ln.strip()] or ["(no output)"]
        raise DiffsecError(f"the dry run failed: {last[-1]}")
    return p.stdout + p.stderr


def rule_groups(rules_dir: Path) -> dict[str, str]:
    out = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        for name in re.findall(r"^rule (\w+):", smk.read_text(), re.M):
            out[name] = GROUPS.get(smk.stem, "shared")
    return out


def run(args: argparse.Namespace) -> None:
    from diffsec.costs import by_rule, estimate, markdown, parse_dry_run, totals

    jobs = parse_dry_run(_dry_run(args))
    if not jobs:
        raise DiffsecError("the dry run lists no jobs")
    groups = rule_groups(args.snakefile.resolve().parent / "workflow/rules")
    bench = args.benchmarks if args.benchmarks.is_dir() else None
    rows = by_rule(estimate(jobs, bench, args.ti_dtype), groups)
    dtype = args.ti_dtype or "each job's --dtype"
    print(f"{len(jobs)} jobs; benchmark files: {bench or 'none'}; TI dtype {dtype}; "
          "n/e = GPU rule without a paper-scale measurement (not in the totals)\n")
    print(markdown(rows, totals(rows)))
