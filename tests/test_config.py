"""Config safety: every bad config is refused before any job runs, in ONE line naming the key;
--config values are typed as a user types them; no config value reaches a shell unquoted."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from diffsec.config import validate_config
from diffsec.errors import DiffsecError

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
SMOKE = REPO / "workflow/configs/smoke.yaml"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1"]


def _set(path: str | tuple, value):
    """A config edit: set the dotted key `path` (or a tuple of keys; the last created if absent)."""
    def edit(c):
        *parents, last = path.split(".") if isinstance(path, str) else path
        for p in parents:
            c = c[p]
        c[last] = value
    return edit


def _drop(path: str):
    def edit(c):
        *parents, last = path.split(".")
        for p in parents:
            c = c[p]
        del c[last]
    return edit


BAD = [  # (edit, the key the one-line error names, a word of the reason)
    (_set("seed", -1), "seed", "minimum"),
    (_set("worlds.ddpm.steps", 0), "worlds.ddpm.steps", "minimum"),
    (_set("worlds.ddpm.attention", [False, True]), "worlds.ddpm.attention", "levels"),
    (_set("worlds.t2i.unet_cross_attn", [False, True]), "worlds.t2i.unet_cross_attn", "levels"),
    (_set("data.cifar10.train_size", 50001), "data.cifar10.train_size", "50000"),
    (_set("data.cifar10.test_size", 10001), "data.cifar10.test_size", "10000"),
    (_set("szt.poison.eps", 300), "szt.poison.eps", "scale"),
    (_set(("invisible", "attacks", "$(touch pwned)"), {"method": "invisible", "trigger": "free", "target": "mnist:8"}),
     "invisible.attacks", "not a name"),
    (_set(("szt", "defenses", "t500..x"), {}), "szt.defenses", "not a name"),
    (_set("szt.concepts", ["dog", "Cat; rm"]), "szt.concepts.1", "not a name"),
    (_set("szt.figures.concept", "teapot_x"), "szt.figures.concept", "szt.concepts"),
    (_set("mirror", "../elsewhere"), "mirror", "'..'"),
    (_set("worlds.t2i.pretrained", "-rf"), "worlds.t2i.pretrained", "'-'"),
    (_set("dvc_remote", "x\ntouch pwned"), "dvc_remote", "control"),
    (_set("metrics.fid_sampels", 3), "metrics", "fid_sampels"),
    (_drop("invisible.ablation"), "invisible", "ablation"),
]


@pytest.mark.parametrize("edit, key, why", BAD, ids=[k for _, k, _ in BAD])
def test_bad_config_is_refused_in_one_line_naming_the_key(edit, key, why):
    config = copy.deepcopy(CONFIG)
    edit(config)
    with pytest.raises(DiffsecError) as e:
        validate_config(config, SCHEMA)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"config error: {key}: ") and why in msg, msg


def test_the_shipped_configs_validate():
    for extra in (None, SMOKE, REPO / "workflow/configs/paper.yaml"):
        config = copy.deepcopy(CONFIG)
        if extra:
            _merge(config, yaml.safe_load(extra.read_text()))
        validate_config(config, SCHEMA, configfiles=[REPO / "config.yaml", *([extra] if extra else [])])


def _merge(base: dict, over: dict) -> None:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def test_duplicate_key_in_a_config_file_is_an_error(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("worlds:\n  ddpm:\n    steps: 10\n    lr: 0.01\n    steps: 20\n")
    with pytest.raises(DiffsecError) as e:
        validate_config(copy.deepcopy(CONFIG), SCHEMA, configfiles=[f])
    assert str(e.value) == "config error: worlds.ddpm.steps: given twice in mine.yaml (lines 3 and 5)"


def test_config_overrides_are_typed_as_the_schema_wants():
    """What Snakemake hands over for `--config dvc_track=false 'worlds={"ddpm": {...}}' dvc_remote=`."""
    config = copy.deepcopy(CONFIG)
    config["dvc_track"] = "false"
    config["dvc_remote"] = None
    config["worlds"]["ddpm"].update({"lr": "1e-3", "steps": "10", "attention": ["false", "true", "false"]})
    config["invisible"]["ablation"]["lambdas"] = ["0.5", "0.25"]
    config["szt"]["concepts"] = ["dog", "123"]            # strings where the schema wants strings stay
    validate_config(config, SCHEMA)
    assert config["dvc_track"] is False and config["dvc_remote"] == ""
    assert config["worlds"]["ddpm"]["lr"] == 0.001 and config["worlds"]["ddpm"]["steps"] == 10
    assert config["worlds"]["ddpm"]["attention"] == [False, True, False]
    assert config["invisible"]["ablation"]["lambdas"] == [0.5, 0.25] and config["szt"]["concepts"] == ["dog", "123"]
    config["seed"] = "abc"
    with pytest.raises(DiffsecError, match=r"^config error: seed: 'abc' is not of type 'integer'$"):
        validate_config(config, SCHEMA)


def _snakemake(workdir: Path, *args: str, extra: Path | None = None) -> subprocess.CompletedProcess:
    configs = ["--configfile", str(SMOKE), *([str(extra)] if extra else [])]
    return subprocess.run([*SNAKEMAKE, *configs, "--directory", str(workdir), *args], capture_output=True,
                          text=True, env=ENV, cwd=workdir)


def _refused(p: subprocess.CompletedProcess, key: str) -> None:
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and lines[-1].startswith(f"config error: {key}: "), p.stderr[-2000:]
    assert [line for line in lines if "error" in line.lower()] == [lines[-1]], p.stderr[-2000:]


def test_snakemake_refuses_a_duplicate_key_file_before_any_job(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("szt:\n  ti: {steps: 3}\n  ti: {steps: 4}\n")
    p = _snakemake(tmp_path, "-n", extra=extra)
    _refused(p, "szt.ti")
    assert not (tmp_path / "results").exists()


def test_snakemake_refuses_an_attack_name_a_shell_would_expand(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("invisible:\n  attacks:\n"
                     "    'x$(touch pwned)': {method: invisible, trigger: free, target: 'mnist:8'}\n")
    p = _snakemake(tmp_path, "-n", extra=extra)
    _refused(p, "invisible.attacks")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "results").exists()


def test_snakemake_takes_overrides_as_typed(tmp_path):
    p = _snakemake(tmp_path, "-n", "--config", "dvc_track=false", 'worlds={"ddpm": {"lr": "0.002", "steps": 7}}')
    assert p.returncode == 0, p.stderr[-2000:]
    p = _snakemake(tmp_path, "-n", "--config", 'worlds={"ddpm": {"steps": 0}}')
    _refused(p, "worlds.ddpm.steps")


def test_dvc_remote_reaches_dvc_as_one_argument(tmp_path, mirror):
    """A successful run ends with `diffsec dvc-track --remote <dvc_remote>`: as an argument list,
    so a remote with shell syntax is stored verbatim and runs nothing."""
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, env=ENV, check=True)
    remote = "x; touch pwned"
    p = _snakemake(tmp_path, "--config", f"dvc_remote={remote}", f"mirror={mirror}", "--",
                   "results/sources/mnist_test_labels")
    assert p.returncode == 0, p.stderr[-3000:]
    assert not (tmp_path / "pwned").exists()
    assert remote in (tmp_path / ".dvc/config.local").read_text()
    assert (tmp_path / "results/sources/mnist_test_labels.dvc").is_file()
    assert "shell(" not in (REPO / "Snakefile").read_text()


# common.smk helpers whose result is already shell words (built by flags(), named() or words(), or a
# literal flag name): a shell line may use them unquoted
QUOTED_HELPERS = {"backbone_flags", "ti_flags", "eval_ti_flags", "backdoor_train_flags", "backdoor_sample_flags",
                  "backdoor_eval_flags",
                  "in_d_flag", "sedid_score_flags", "mia_score_flags",
                  "spd_fit_flags", "spd_apply_flags", "spd_eval_flags", "sau_generate_flags", "sau_apply_flags",
                  "sau_eval_flags", "sau_figure_flags", "sau_detector_flags", "sau_attack_flags",
                  "generate_ti_flags", "szt_backbone_flags"}


def _rules() -> dict[str, str]:
    """rule name -> its text, from every rule file."""
    out = {}
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        parts = re.split(r"^\s*rule (\w+):\n", smk.read_text(), flags=re.M)
        out.update(dict(zip(parts[1::2], parts[2::2], strict=True)))
    return out


def test_shell_commands_quote_every_interpolated_value():
    """Paths and wildcards are `:q`; an unquoted `{params.X}` is built by flags()/named()/words()."""
    common = (REPO / "workflow/rules/common.smk").read_text()
    for helper in QUOTED_HELPERS:
        assert re.search(rf"^def {helper}\(", common, re.M), helper
    rules = _rules()
    assert len(rules) >= 30
    for name, text in rules.items():
        shell = "".join(re.findall(r'^\s+"(.*)"$', text.split("shell:", 1)[1], re.M))
        block = text.split("params:\n", 1)[1].split("shell:")[0] if "params:" in text else ""
        indent = re.match(r"\s*", block).group(0)   # the params themselves, not arguments inside them
        params = dict(re.findall(rf"^{indent}(\w+)=(.*)$", block, re.M))
        for field in re.findall(r"\{([^{}]+)\}", shell):
            if field == "threads" or field.endswith(":q"):
                continue
            assert field.startswith("params."), (name, field)
            value = params[field.removeprefix("params.")]
            built = r"(RUN,|(flags|named|words|world_flags)\(|lambda w(, input)?: (world_)?flags\()"
            assert re.match(built, value) or value.rstrip(",") in QUOTED_HELPERS, (name, field, value)
