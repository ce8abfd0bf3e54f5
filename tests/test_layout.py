"""Project promises that are cheap to check: config errors end a run early, Snakemake lint, env in step,
CLI help. (The shipped configs validate: tests/test_config.py; snakefmt and ruff: tests/test_lint.py.)"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


@pytest.mark.parametrize("override, key", [
    ("seed=-1", "seed"),
    ('worlds={"ddpm": {"steps": 0}}', "worlds.ddpm.steps"),
    ('data={"dreambooth": {"masker": "scissors"}}', "data.dreambooth.masker"),
    ('metrics={"fid_sampels": 3}', "metrics"),
])
def test_invalid_config_is_one_line_naming_the_key(tmp_path, override, key):
    p = subprocess.run([*SNAKEMAKE, "--directory", str(tmp_path), "--cores", "1", "--config", override],
                       capture_output=True, text=True)
    assert p.returncode != 0
    # Snakemake itself may first note that --config extends config.yaml; the error is one line.
    lines = p.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == [lines[-1]] and lines[-1].startswith(f"config error: {key}:"), p.stderr
    assert not (tmp_path / "results").exists()


def test_snakemake_lint_is_clean(tmp_path):
    p = subprocess.run([*SNAKEMAKE, "--lint", "--directory", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Congratulations" in p.stdout + p.stderr or "No lints" in p.stdout + p.stderr


def test_conda_env_matches_pyproject():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs/diffsec.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == sorted(deps + ["-e ../"])


def test_every_stage_has_help():
    from diffsec.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "stage")
    assert len(sub.choices) >= 10
    for name, p in sub.choices.items():
        assert p.format_help().strip(), name
        assert p.description or p.format_usage(), name


def test_every_rule_calls_one_diffsec_cli():
    """DESIGN.md: a rule calls exactly one CLI (rules without a shell are aggregation targets)."""
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\nrule ", smk.read_text())[1:]:
            shell = re.search(r"shell:\n((?:\s+\".*\"\n?)+)", block)
            if shell:
                assert shell.group(1).count("diffsec ") == 1, (smk.name, block[:40])


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text().splitlines()
    commands = [line for line in readme[:30] if line.startswith("python3 -m venv")]
    assert len(commands) == 2, commands
    assert commands[1] in (REPO / ".ci/run").read_text()


def test_slurm_profile_dry_run_needs_no_conda_and_no_cluster(tmp_path):
    """`--workflow-profile workflow/profiles/slurm -n` plans the default target on any machine: no
    conda (`--sdm conda` is opt-in), no Slurm daemons (the dry run submits nothing)."""
    env = {**__import__("os").environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}   # no conda on this PATH
    (tmp_path / "conda").write_text("#!/bin/sh\nexit 97\n")   # a conda that would fail if called
    (tmp_path / "conda").chmod(0o755)
    p = subprocess.run([*SNAKEMAKE, "--workflow-profile", str(REPO / "workflow/profiles/slurm"), "-n",
                        "--directory", str(tmp_path / "w")], capture_output=True, text=True, env=env)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "Job stats" in p.stdout + p.stderr and "conda" not in (p.stdout + p.stderr).lower()
