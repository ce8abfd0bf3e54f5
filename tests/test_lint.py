"""Lint gates: the workflow is snakefmt-formatted and the package and tests are ruff-clean
(settings in pyproject.toml). Both tools are test dependencies, so a missing one fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    exe = BIN / tool
    assert exe.is_file(), f"{tool} is not installed beside {sys.executable} (pip install -e '.[test]')"
    return subprocess.run([str(exe), *args], cwd=REPO, capture_output=True, text=True)


def test_workflow_is_snakefmt_formatted():
    p = _run("snakefmt", "--check", "Snakefile", "workflow/rules")
    assert p.returncode == 0, f"run `snakefmt Snakefile workflow/rules`:\n{p.stdout[-3000:]}{p.stderr[-3000:]}"


def test_package_and_tests_are_ruff_clean():
    p = _run("ruff", "check", "src", "tests")
    assert p.returncode == 0, p.stdout[-5000:] + p.stderr[-2000:]
