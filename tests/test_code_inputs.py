"""A rule's `code` inputs are the files the CLI it runs imports (src/diffsec/codedeps.py), derived
from the code: checked for every rule of the workflow, and the closure itself on a small package."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO
from diffsec.codedeps import import_closure, stage_code, stage_functions, stage_modules
from diffsec.errors import DiffsecError

SRC = REPO / "src"

# Load the workflow with Snakemake's API (no DAG, no jobs) in a child process (the API changes the
# working directory) and print each rule's shell command and `code` inputs.
RULES_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(),
                      snakefile=Path(sys.argv[1]), workdir=Path(sys.argv[2]))._workflow
    print(json.dumps({r.name: [r.shellcmd, list(r.input.get("code", []))] for r in wf.rules}))
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> dict[str, list]:
    work = tmp_path_factory.mktemp("rules")
    p = subprocess.run([sys.executable, "-c", RULES_SCRIPT, str(REPO / "Snakefile"), str(work)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_every_rule_declares_the_import_closure_of_the_cli_it_runs(rules):
    assert len(rules) >= 30
    for name, (shell, code) in rules.items():
        if shell is None:   # aggregation targets (rule all) run nothing
            assert code == [], name
            continue
        stage = re.match(r"diffsec ([a-z0-9-]+) ", shell).group(1)
        assert sorted(code) == [str(p) for p in stage_code(SRC, stage)], name
        assert str(SRC / "diffsec/cli" / f"{stage_modules(SRC)[stage].rsplit('.', 1)[1]}.py") in code, name


def test_closures_reach_past_the_cli_into_the_library(rules):
    """train-ti runs the T2I model code without naming it (the hand-written list had missed it),
    the SZT table reads its paper values through importlib.resources, and a stage does not depend
    on code it does not import (a table stage on no model code)."""
    code = {name: {p.removeprefix(str(SRC / "diffsec") + "/") for p in files} for name, (_, files) in rules.items()}
    assert "models/t2i.py" in code["train_ti"]
    assert {"paper/szt.csv", "paper/__init__.py", "tables.py"} <= code["table_szt"]
    assert not any(p.startswith(("models/", "diffusion/")) for p in code["table_worlds"]), code["table_worlds"]


def test_static_stage_map_matches_the_parser():
    """Every subcommand the CLI offers is found by the AST scan, in the module whose function it runs."""
    from diffsec.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "stage")
    found = stage_modules(SRC)
    assert set(found) == set(sub.choices)
    for stage, parser in sub.choices.items():
        assert parser.get_default("func").__module__ == found[stage], stage
    # and, where the scan names the function a stage dispatches to, it is the parser's
    funcs = stage_functions(SRC)
    assert len(funcs) >= 0.9 * len(found)
    for stage, name in funcs.items():
        assert sub.choices[stage].get_default("func").__name__ == name, stage


def test_a_stage_depends_on_its_own_function_not_on_its_neighbours(tmp_path):
    """Two stages in one CLI module: each closure holds the module's top-level imports, what its
    register function imports, and its own function's imports (and their helpers'), not the other
    stage's; a stage the scan cannot pair with a function (a loop) gets the whole module."""
    _write(tmp_path, {
        "pk/__init__.py": "", "pk/cli/__init__.py": "", "pk/top.py": "", "pk/reg.py": "", "pk/fit.py": "",
        "pk/plot.py": "", "pk/helper.py": "", "pk/loop.py": "",
        "pk/cli/common.py": """
            def add_stage(sub, name, func):
                p = sub.add_parser(name)
                p.set_defaults(func=func)
                return p
            """,
        "pk/cli/two.py": """
            import pk.top
            from pk.cli.common import add_stage

            def register(sub):
                from pk import reg
                add_stage(sub, "fit", run_fit)
                p = sub.add_parser("plot")
                p.set_defaults(func=run_plot)
                for stage, f in (("loop-a", run_loop),):
                    sub.add_parser(stage).set_defaults(func=f)

            def _load():
                from pk import helper

            def run_fit(args):
                from pk import fit
                _load()

            def run_plot(args):
                from pk import plot

            def run_loop(args):
                from pk import loop
            """,
    })
    assert stage_functions(tmp_path, "pk") == {"fit": "run_fit", "plot": "run_plot"}
    base = {"__init__.py", "cli/__init__.py", "cli/two.py", "cli/common.py", "top.py", "reg.py"}
    rel = lambda files: {str(f.relative_to(tmp_path / "pk")) for f in files}  # noqa: E731
    assert rel(stage_code(tmp_path, "fit", "pk")) == base | {"fit.py", "helper.py", "loop.py"}
    assert rel(stage_code(tmp_path, "plot", "pk")) == base | {"plot.py", "loop.py"}
    assert rel(stage_code(tmp_path, "loop-a", "pk")) == base | {"fit.py", "helper.py", "plot.py", "loop.py"}


def _write(root, files: dict[str, str]) -> None:
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text))


@pytest.fixture
def fake_pkg(tmp_path):
    _write(tmp_path, {
        "fakepkg/__init__.py": "",
        "fakepkg/cli/__init__.py": "",
        "fakepkg/cli/common.py": """
            def add_stage(sub, name, func):
                return sub.add_parser(name).set_defaults(func=func)
            """,
        "fakepkg/cli/alpha.py": """
            import argparse
            from fakepkg.cli.common import add_stage

            def register(sub):
                sub.add_parser("alpha-one")
                add_stage(sub, "alpha-two", run)

            def run(args):
                import numpy
                from fakepkg.rooms import helper          # function-local, submodule of a package
                from fakepkg.rooms.const import VALUE     # a name, not a module: rooms/const.py
            """,
        "fakepkg/cli/beta.py": """
            def register(sub):
                sub.add_parser(name="beta")
                for stage, func in (("beta-x", run), ("beta-y", run)):
                    sub.add_parser(stage).set_defaults(func=func)

            def run(args):
                import fakepkg.deep.leaf as leaf
            """,
        "fakepkg/rooms/__init__.py": "from fakepkg import top\n",
        "fakepkg/rooms/helper.py": "from .sibling import f\nfrom .. import shared\n",
        "fakepkg/rooms/sibling.py": "from . import const\n",
        "fakepkg/rooms/const.py": "VALUE = 1\n",
        "fakepkg/rooms/table.csv": "a,b\n",
        "fakepkg/rooms/.table.csv.swp": "",
        "fakepkg/top.py": "",
        "fakepkg/shared.py": "",
        "fakepkg/unused.py": "import fakepkg.rooms\n",
        "fakepkg/deep/__init__.py": "",
        "fakepkg/deep/leaf.py": "",
    })
    return tmp_path


def _rel(root, files) -> set[str]:
    return {str(f.relative_to(root / "fakepkg")) for f in files}


def test_closure_follows_local_relative_and_submodule_imports(fake_pkg):
    assert stage_modules(fake_pkg, "fakepkg") == {
        "alpha-one": "fakepkg.cli.alpha", "alpha-two": "fakepkg.cli.alpha",   # direct, through add_stage
        "beta": "fakepkg.cli.beta", "beta-x": "fakepkg.cli.beta", "beta-y": "fakepkg.cli.beta"}  # keyword, loop
    assert _rel(fake_pkg, stage_code(fake_pkg, "alpha-two", "fakepkg")) == {
        "__init__.py", "cli/__init__.py", "cli/alpha.py", "cli/common.py",
        "rooms/__init__.py", "rooms/helper.py", "rooms/sibling.py", "rooms/const.py", "rooms/table.csv",
        "top.py", "shared.py"}
    assert _rel(fake_pkg, import_closure(fake_pkg, "fakepkg.cli.beta", "fakepkg")) == {
        "__init__.py", "cli/__init__.py", "cli/beta.py", "deep/__init__.py", "deep/leaf.py"}


def test_unknown_or_doubly_registered_stage_is_an_error(fake_pkg):
    with pytest.raises(DiffsecError, match="no CLI module registers stage 'gamma'"):
        stage_code(fake_pkg, "gamma", "fakepkg")
    _write(fake_pkg, {"fakepkg/cli/gamma.py": "def register(sub):\n    sub.add_parser('beta')\n"})
    with pytest.raises(DiffsecError, match="'beta' is registered by both"):
        stage_modules(fake_pkg, "fakepkg")
