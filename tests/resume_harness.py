"""The kill / rerun / compare harness of the resume tests (tests/test_resume_*.py).

`check_kill_resume` runs a stage CLI three ways and asserts the resume contract of
src/diffsec/resume.py: killed with SIGKILL right after its n-th checkpoint write
(DIFFSEC_KILL_AT_SAVE) and rerun unchanged, it resumes from the saved step and ends with the bytes
of an uninterrupted run, the resume in its manifest; killed the same way and rerun with one changed
hyperparameter, it says it starts fresh and ends equal to a fresh run with that setting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from diffsec.cli.main import main

RUN = ["--threads", "1", "--device", "cpu", "--seed", "3"]


def run_stage(argv: list[str], out: Path, capsys) -> str:
    """Run in this process; the stderr log."""
    capsys.readouterr()
    assert main([*argv, *RUN, "--out", str(out)]) == 0
    return capsys.readouterr().err


def killed(argv: list[str], out: Path, n: int) -> None:
    """Run in a subprocess that SIGKILLs itself after its n-th checkpoint write."""
    env = {**os.environ, "DIFFSEC_KILL_AT_SAVE": str(n)}
    r = subprocess.run([sys.executable, "-m", "diffsec.cli.main", *argv, *RUN, "--out", str(out)], env=env,
                       capture_output=True, text=True)
    assert r.returncode == -9, r.stderr[-2000:]
    assert not out.exists() and (out.parent / f"{out.name}.ckpt" / "state.pt").is_file()


def same(a: Path, b: Path, files: list[str]) -> bool:
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def check_kill_resume(argv: list[str], tmp_path: Path, capsys, kill_at: int, start: int, files: list[str],
                      changed: list[str]) -> None:
    ref, run = tmp_path / "ref", tmp_path / "run"
    run_stage(argv, ref, capsys)
    killed(argv, run, kill_at)
    shutil.copytree(tmp_path / "run.ckpt", tmp_path / "other.ckpt")  # the same kill, for the changed rerun

    log = run_stage(argv, run, capsys)
    assert f"resume: continuing from step {start}" in log
    assert same(run, ref, files), "a resumed run ends with the uninterrupted run's bytes"
    resume = json.loads((run / "manifest.json").read_text())["resume"]
    assert resume["resumed"] and [a["start_step"] for a in resume["attempts"]] == [0, start]
    assert not (tmp_path / "run.ckpt").exists()

    log = run_stage([*argv, *changed], tmp_path / "other", capsys)
    assert "written with other settings or inputs; starting fresh" in log
    assert not json.loads((tmp_path / "other" / "manifest.json").read_text())["resume"]["resumed"]
    run_stage([*argv, *changed], tmp_path / "fresh", capsys)
    assert same(tmp_path / "other", tmp_path / "fresh", files)
    assert not same(tmp_path / "other", ref, files[:1]), f"{changed} must change the result"
