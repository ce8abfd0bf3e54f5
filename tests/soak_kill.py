"""Soak check (outside the suite): SIGKILL long stages at random moments, rerun, compare bytes.

    python tests/soak_kill.py --kills 20 [--mirror ../shared/mirror] [--seed 0] [--workdir DIR]

Real stages on real data: `train-ddpm` (a small UNet on 256 CIFAR-10 train images prepared from the
mirror, checkpoint every 5 steps) and `sample-ddpm` / `backdoor-sample` on the published tiny DDPM
world (checkpoint per batch). Each stage first runs uninterrupted once (the reference). Then, `--kills`
times: pick a stage, start it, kill it with SIGKILL after a random delay (uniform over the
reference's wall time, so some kills land in start-up, some between checkpoints, some just before
the artifact is renamed), sometimes kill the rerun too, then let it finish; the artifact must equal
the reference byte for byte (manifests aside) and no temporary may be left beside it. Prints one
line per kill and the count survived; exit status 1 if any differed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def diffsec(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffsec.cli.main", *args]


def run(cmd: list[str], cwd: Path) -> float:
    t0 = time.time()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return time.time() - t0


def files(art: Path) -> dict[str, bytes]:
    return {str(f.relative_to(art)): f.read_bytes() for f in sorted(art.rglob("*"))
            if f.is_file() and f.name != "manifest.json"}


def prepare(work: Path, mirror: Path) -> dict[str, list[str]]:
    """Fixtures (sources, a small CIFAR-10 set, the published DDPM world) and each stage's command
    without --out."""
    for name in ("cifar10", "world_ddpm-cifar10"):
        run(diffsec("fetch-source", "--name", name, "--mirror", str(mirror), "--out", f"src-{name}"), work)
    run(diffsec("prepare-cifar10", "--source", "src-cifar10", "--train-size", "256", "--test-size", "64",
                "--out", "cifar10"), work)
    run(diffsec("install-world", "--source", "src-world_ddpm-cifar10", "--world", "ddpm-cifar10",
                "--out", "world"), work)
    common = ["--seed", "0", "--threads", "1", "--device", "cpu"]
    return {
        "train-ddpm": diffsec("train-ddpm", "--data", "cifar10/train.npz", "--channels", "[16, 32]",
                              "--attention", "[false, true]", "--steps", "60", "--batch-size", "8",
                              "--ckpt-every", "5", "--grid-samples", "8", "--grid-steps", "5", *common),
        "sample-ddpm": diffsec("sample-ddpm", "--model", "world", "--n", "24", "--sampler", "ddim",
                               "--steps", "20", "--batch-size", "4", *common),
        "backdoor-sample": diffsec("backdoor-sample", "--model", "world", "--sampler", "ddim", "--n", "16",
                                   "--steps", "20", "--batch-size", "4", *common),
    }


def kill_after(cmd: list[str], cwd: Path, delay: float) -> bool:
    """Start `cmd`, SIGKILL it after `delay` s; True if it was still running (a real kill)."""
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="random kills to survive (default 20)")
    ap.add_argument("--mirror", type=Path, default=REPO.parent / "shared" / "mirror")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    ap.add_argument("--workdir", type=Path, default=None, help="keep fixtures here (default: a temp dir)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    t_start = time.time()
    stages = prepare(work, args.mirror)
    ref, wall = {}, {}
    for name, cmd in stages.items():
        wall[name] = run([*cmd, "--out", f"ref-{name}"], work)
        ref[name] = files(work / f"ref-{name}")
        print(f"reference {name}: {wall[name]:.1f} s, {len(ref[name])} files", flush=True)
    survived = real = resumed = 0
    for i in range(1, args.kills + 1):
        name = rng.choice(sorted(stages))
        out = f"run-{i}-{name}"
        cmd = [*stages[name], "--out", out]
        kills = [kill_after(cmd, work, rng.uniform(0.5, wall[name]))]
        if rng.random() < 0.3:  # kill the rerun as well, at another moment
            kills.append(kill_after(cmd, work, rng.uniform(0.5, wall[name])))
        run(cmd, work)
        same = files(work / out) == ref[name]
        starts = [a["start_step"] for a in json.loads((work / out / "manifest.json").read_text())
                  .get("resume", {}).get("attempts", [])]
        resumed += any(starts[1:])
        litter = [p.name for p in work.glob(f".{out}.tmp-*")] + [p.name for p in work.glob(f"{out}.ckpt")]
        ok = same and not litter
        survived += ok
        real += sum(kills)
        print(f"kill {i:3d} {name:16s} killed {sum(kills)}x, attempts started at {starts}: "
              f"{'identical' if same else 'DIFFERS'}"
              f"{'' if not litter else f', left {litter}'}", flush=True)
        shutil.rmtree(work / out, ignore_errors=True)
    print(f"survived {survived}/{args.kills} runs ({real} SIGKILLs of a running stage, {resumed} reruns "
          f"resumed from a checkpoint) in "
          f"{time.time() - t_start:.0f} s; workdir {work}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if survived == args.kills else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
