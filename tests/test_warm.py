"""Warm start (src/diffsec/warm.py): a stage forked from the server behaves as a cold process.

Same bytes, the same one-line errors and exit codes, a SIGKILL inside the stage reaches Snakemake
as a SIGKILL, a killed client takes its stage down with it, and anything the server should not
run (another environment, no server at all) runs cold.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from diffsec import warm

DIFFSEC = [sys.executable, "-m", "diffsec.cli.main"]


@pytest.fixture(scope="module")
def server():
    path = warm.start(os.getpid())
    assert path, "the server did not come up"
    yield path
    warm.stop(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from diffsec.models import ddpm

    d = tmp_path_factory.mktemp("warm")
    torch.manual_seed(0)
    ddpm.save_ddpm(*ddpm.build_ddpm(ddpm.DDPMConfig(8, [8, 16], [False, False], 1)), d / "ddpm" / "pipeline")
    return d / "ddpm"


def run(argv: list[str], server: str | None, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    full.pop(warm.ENV, None)
    if server:
        full[warm.ENV] = server
    return subprocess.run([*DIFFSEC, *argv], env=full, capture_output=True, text=True)


def sample(model: Path, out: Path, *extra: str) -> list[str]:
    return ["sample-ddpm", "--model", str(model), "--n", "6", "--batch-size", "2", "--steps", "3", "--threads", "1",
            "--device", "cpu", "--ckpt-every", "1", "--out", str(out), *extra]


def server_children(path: str) -> list[psutil.Process]:
    return psutil.Process(warm._listener_pid(path)).children()


def test_forked_stage_writes_the_bytes_of_a_cold_run(server, model, tmp_path):
    cold, hot = run(sample(model, tmp_path / "cold"), None), run(sample(model, tmp_path / "hot"), server)
    assert cold.returncode == hot.returncode == 0, hot.stderr[-2000:]
    for name in ("samples.npz", "samples.png"):
        assert (tmp_path / "cold" / name).read_bytes() == (tmp_path / "hot" / name).read_bytes()
    res = {k: json.loads((tmp_path / k / "manifest.json").read_text())["resources"] for k in ("cold", "hot")}
    assert res["hot"]["warm_start"] and not res["cold"]["warm_start"]
    assert res["hot"]["peak_rss_mib"] > 0 and res["cold"]["cpu_s"] > 0
    assert "batches: 100%" in hot.stderr  # the stage's progress reached the client's stderr


def test_bad_input_through_the_server_is_one_line_and_rc_2(server, tmp_path):
    p = run(["sample-ddpm", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], server)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("diffsec sample-ddpm: error:")
    assert not (tmp_path / "o").exists()
    p = run(["sample-ddpm", "--n", "x"], server)  # argparse's own usage error
    assert p.returncode == 2 and "invalid int value" in p.stderr


def test_sigkill_inside_the_stage_ends_the_client_by_sigkill(server, model, tmp_path):
    p = run(sample(model, tmp_path / "k"), server, DIFFSEC_KILL_AT_SAVE="1")
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert (tmp_path / "k.ckpt" / "state.pt").is_file() and not (tmp_path / "k").exists()
    p = run(sample(model, tmp_path / "k"), server)  # and the rerun resumes from it
    assert p.returncode == 0 and "resume: continuing from step 1" in p.stderr


def test_killing_the_client_kills_its_stage(server, model, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != warm.ENV} | {warm.ENV: server}
    client = subprocess.Popen([*DIFFSEC, *sample(model, tmp_path / "long")[:-4], "--n", "4000", "--steps", "50",
                               "--out", str(tmp_path / "long")], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not server_children(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    stage = server_children(server)
    assert stage, "the stage never started in the server"
    time.sleep(1.0)
    assert stage[0].status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD), "the stage ended on its own"
    client.kill()
    client.wait()
    gone, alive = psutil.wait_procs(stage, timeout=5)
    assert not alive and not (tmp_path / "long").exists()


def test_another_environment_or_no_server_runs_cold(server, monkeypatch):
    monkeypatch.setenv(warm.ENV, server)
    monkeypatch.setattr(warm, "_identity", lambda: {"python": "/elsewhere", "package": warm._package()})
    assert warm.forward(["--help"]) is None  # refused: the caller runs the stage itself
    monkeypatch.setenv(warm.ENV, server + ".missing")
    assert warm.forward(["--help"]) is None
    monkeypatch.setenv(warm.ENV, server)
    monkeypatch.setenv(warm.CHILD, "1")
    assert warm.forward(["--help"]) is None  # a forked stage never forwards again


def test_server_exits_with_the_run_it_serves():
    watched = subprocess.Popen(["sleep", "60"])
    path = warm.start(watched.pid)
    pid = warm._listener_pid(path)
    watched.kill()
    watched.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the server outlived the run it served"
        time.sleep(0.05)
    warm.stop(path)
    assert not Path(path).exists()
