"""The whole DAG on the smoke profile, in a temp dir: it completes, a second dry run has nothing
to do, and changing one world hyperparameter reruns only the stages downstream of it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow
# Rules call `diffsec` and the run ends with `dvc`: both live beside this interpreter.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]
SMOKE = REPO / "workflow/configs/smoke.yaml"


def snakemake(workdir: Path, *args: str, check: bool = True, extra_config: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    configs = ["--configfile", str(SMOKE), *([str(extra_config)] if extra_config else [])]
    p = subprocess.run([*SNAKEMAKE, *configs, "--directory", str(workdir), *args], capture_output=True,
                       text=True, env={**ENV, **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run: rule -> count."""
    jobs, in_table = {}, False
    for line in dry_run_output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m and m.group(1) != "total":
                jobs[m.group(1)] = int(m.group(2))
            elif line.strip() == "" and jobs:
                break
    return jobs


def sh(cwd: Path, *cmd: str) -> str:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    assert p.returncode == 0, f"{' '.join(cmd)}: {p.stdout[-2000:]}{p.stderr[-2000:]}"
    return p.stdout


GIT = ["git", "-c", "user.name=diffsec-test", "-c", "user.email=test@diffsec.invalid"]


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory, mirror) -> Path:
    """A git + DVC working directory (results only; the workflow is run from the repo) with a
    local DVC remote, after one full smoke run."""
    work = tmp_path_factory.mktemp("smoke")
    sh(work, "git", "init", "-q")
    sh(work, "dvc", "init", "-q")
    sh(work, "dvc", "remote", "add", "-d", "local", str(work.parent / "dvc-remote"))
    snakemake(work, "--config", f"mirror={mirror}")
    return work


def test_smoke_dag_completes(smoke_dir):
    rows = (smoke_dir / "results/tables/worlds.csv").read_text().splitlines()
    assert rows[0] == "table,row,column,metric,backbone,value,paper_value,profile,n_samples,seed,note,se"
    assert len(rows) > 5
    # the T2I world's VAE ceiling: accuracy on round-tripped test images, and their PSNR
    assert sum("CIFAR-10 test images through the t2i VAE" in r for r in rows) == 2
    for art in ["results/models/ddpm-cifar10", "results/models/t2i-cifar10", "results/data/dreambooth"]:
        manifest = json.loads((smoke_dir / art / "manifest.json").read_text())
        assert manifest["params"]["seed"] == 0 and manifest["wall_time_s"] >= 0
    # Every rule wrote its benchmark file.
    assert len(list((smoke_dir / "benchmarks").rglob("*.tsv"))) >= 10


def test_second_dry_run_has_nothing_to_do(smoke_dir, mirror):
    p = snakemake(smoke_dir, "-n", "--config", f"mirror={mirror}")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]


def planned_after_override(smoke_dir, mirror, tmp_path, yaml_text: str) -> dict[str, int]:
    """Jobs a dry run plans once `yaml_text` is merged over the smoke config (a second config
    file, since --config stringifies nested numbers); the `all` target left out."""
    override = tmp_path / "override.yaml"
    override.write_text(yaml_text)
    p = snakemake(smoke_dir, "-n", "--config", f"mirror={mirror}", extra_config=override)
    jobs = planned_jobs(p.stdout)
    jobs.pop("all", None)
    return jobs


def test_world_hyperparameter_reruns_only_dependents(smoke_dir, mirror, tmp_path):
    jobs = planned_after_override(smoke_dir, mirror, tmp_path, "worlds:\n  ddpm:\n    lr: 0.002\n")
    # the DDPM world is also the PDMPure purifier of the SZT slice (its column reruns), the base
    # model every InvisibleDiffusion attack fine-tunes and the model SeDID inverts (both slices
    # rerun); nothing else
    assert jobs == {"train_ddpm": 1, "sample_ddpm": 1, "fid_ddpm_vs_test": 1, "table_worlds": 1,
                    "purify_set": 8, "train_ti": 1, "generate_ti": 1, "eval_ti": 1, "table_szt": 1,
                    "figure_ti_grid": 1,
                    "backdoor_train": 8, "backdoor_sample": 33, "backdoor_eval": 39,
                    "figure_backdoor_trajectories": 1, "figure_backdoor_targets": 1,
                    "figure_backdoor_ablation": 1, "table_invisible": 1, "table_invisible_ablation": 1,
                    "table_invisible_take": 1,
                    "sample_sedid": 1, "sedid_score": 4, "sedid_eval": 3, "figure_sedid": 1, "table_sedid": 1,
                    "table_claims": 1, "table_agreement": 1}, jobs


def test_invisible_attack_setting_reruns_only_that_attack(smoke_dir, mirror, tmp_path):
    """A new trigger for one attack: its model, its three sample sets (DDPM, DDIM, DDIM with the
    ordinary sampler) and measurements, its benign baseline's (no longer the In-D fixed trigger's
    samples: its own noise now), the figure that shows it and Tables I/II; not the other attacks,
    not the ablation."""
    jobs = planned_after_override(smoke_dir, mirror, tmp_path, "invisible:\n  attacks:\n    id_outd_fixed: "
                                  "{method: invisible, trigger: uniform, target: 'mnist:8'}\n")
    assert jobs == {"backdoor_train": 1, "backdoor_sample": 6, "backdoor_eval": 6, "figure_backdoor_targets": 1,
                    "table_invisible": 1, "table_claims": 1, "table_agreement": 1}, jobs


def test_celeba_dataset_adds_its_branch_only(smoke_dir, mirror, tmp_path):
    """Naming CelebA in invisible.datasets plans its own branch beside the finished CIFAR-10 one:
    its three sources, data, DDPM world and attribute classifier, the five attacks of its table
    rows (no BadDiffusion row), benign + attacks sampled and measured with both samplers (12), the
    attacks again with the ordinary DDIM sampler (5), the benign baselines on the three distinct
    triggers x three chains (9 sample sets, 15 measurements), Fig. 3 (which gains CelebA blocks)
    and the table; nothing of CIFAR-10 reruns."""
    jobs = planned_after_override(smoke_dir, mirror, tmp_path, "invisible:\n  datasets: [cifar10, celeba]\n")
    assert jobs == {"fetch_source": 3, "prepare_celeba": 1, "train_ddpm": 1, "train_celeba_classifier": 1,
                    "backdoor_train": 5, "backdoor_sample": 12 + 5 + 9, "backdoor_eval": 12 + 5 + 15,
                    "figure_backdoor_targets": 1, "table_invisible": 1, "table_claims": 1,
                    "table_agreement": 1}, jobs


def test_szt_defense_setting_reruns_only_its_column(smoke_dir, mirror, tmp_path):
    jobs = planned_after_override(smoke_dir, mirror, tmp_path,
                                  "szt:\n  defenses:\n    lm_d24: {objective: lm, dilation: 32}\n")
    assert jobs == {"train_ti": 1, "generate_ti": 1, "eval_ti": 1, "table_szt": 1, "table_agreement": 1}, jobs


def test_metric_setting_in_params_reruns_the_evaluations(smoke_dir, mirror, tmp_path):
    """Naming FID's backbone explicitly (the same network: no input changes) changes only the
    eval_ti flags: every evaluation and the table rerun. Params derived from `input` are not
    recorded by Snakemake, so this would plan nothing if eval_ti_flags read `input`."""
    defenses = {**yaml.safe_load((REPO / "config.yaml").read_text())["szt"]["defenses"],
                **yaml.safe_load(SMOKE.read_text())["szt"].get("defenses", {})}
    jobs = planned_after_override(smoke_dir, mirror, tmp_path,
                                  "szt:\n  metrics:\n    fid_backbone: resnet56-cifar10\n")
    # table_szt runs once per SZT table (main, prompt forms, lr / steps and three ablations), each
    # reading some eval_ti (the prompt-form table adds five class-noun evaluations); the claims read
    # the main one, the agreement all of them
    assert jobs == {"eval_ti": len(defenses) + 5, "table_szt": 6, "table_claims": 1, "table_agreement": 1}, jobs


def test_editing_a_module_a_stage_imports_reruns_that_stage(smoke_dir, mirror):
    """No rule names models/t2i.py: train-ti runs it through its CLI's imports, so its code inputs
    (the import closure, src/diffsec/codedeps.py) include it and editing it plans train_ti again.
    An edit, not a touch: Snakemake skips an input whose checksum it recorded unchanged."""
    src = REPO / "src/diffsec/models/t2i.py"
    text, st = src.read_bytes(), src.stat()
    try:
        src.write_bytes(text + b"\n# edited by test_workflow\n")
        jobs = planned_jobs(snakemake(smoke_dir, "-n", "--config", f"mirror={mirror}").stdout)
    finally:
        src.write_bytes(text)
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert jobs.get("train_ti", 0) >= 1, jobs
    # stages whose code inputs hold no T2I code, and that read nothing that reruns, stay done
    assert not {"fetch_source", "prepare_cifar10", "prepare_mnist", "train_mnist_classifier",
                "classifier_resnet", "train_ddpm", "train_clip"} & set(jobs), jobs
    p = snakemake(smoke_dir, "-n", "--config", f"mirror={mirror}")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]


def test_szt_tables_filled(smoke_dir):
    from diffsec.paper.szt import PAPER_TABLES, REFERENCE_COLUMN, ROWS, TABLES
    from diffsec.tables import read_table

    for name, shape in TABLES.items():
        rows = read_table(smoke_dir / f"results/tables/{name}.csv")
        n_rows = len(shape["rows"]) + (1 if set(ROWS) <= set(shape["rows"]) else 0)  # + Psn Avg
        # dino, its centred twin, fid, clip_score; the main table adds floor and ceiling (x 2 backbones)
        assert len(rows) == n_rows * len(shape["columns"]) * 4 + (4 if name == "szt" else 0), name
        for r in rows:
            float(r["value"])  # every cell measured
            assert r["backbone"] and r["profile"] == "smoke"
            paper_cell = (name in PAPER_TABLES and r["column"] != REFERENCE_COLUMN
                          and not r["backbone"].endswith("-centred") and r["row"] != "DA-targeted"
                          and (name != "szt_ti_hparams" or (r["metric"] == "dino" and r["column"].endswith("1k"))))
            assert (r["paper_value"] != "") == paper_cell, (name, r)
    for fig in ("perturbations/adm+.png", "loss-per-t/loss_per_t.png", "ti-grid/grid.png", "ssm/ssm.png"):
        assert (smoke_dir / "results/figures/szt" / fig).is_file(), fig
    report = json.loads((smoke_dir / "results/poison/adm+/distances.json").read_text())
    assert report["within_budget"]


def test_every_table_value_column_reads_as_floats(smoke_dir):
    """DESIGN.md: `value` is a number or empty, the reason for an empty one in `note`; pandas reads
    every table's values as floats, and an empty value always has its note."""
    import pandas as pd

    tables = sorted((smoke_dir / "results/tables").glob("*.csv"))
    assert len(tables) >= 12
    for path in tables:
        df = pd.read_csv(path, dtype={"note": str}, keep_default_na=False,
                         na_values={"value": ["", "nan"], "se": ["", "nan"]})
        assert df["value"].dtype == float and df["se"].dtype == float, (path.name, df.dtypes)
        empty = pd.read_csv(path, dtype=str, keep_default_na=False)["value"] == ""
        assert (df.loc[empty, "note"] != "").all(), path.name
    szt = pd.read_csv(smoke_dir / "results/tables/szt.csv", keep_default_na=False, na_values={"se": [""]})
    dino = szt[(szt["metric"] == "dino") & (szt["column"] != "Reference")]
    assert (dino["se"] > 0).all(), "every measured SZT DINO cell carries its standard error"


def test_invisible_tables_filled(smoke_dir):
    """Tables I/II: every CIFAR-10 cell measured, with the paper's number wherever it prints one;
    CelebA rows present as not run; the ablation and Table III filled; the three figures drawn."""
    from diffsec.paper import paper_values
    from diffsec.tables import read_table

    paper = paper_values("invisible")
    rows = read_table(smoke_dir / "results/tables/invisible_diffusion.csv")
    cifar = [r for r in rows if r["row"].startswith("CIFAR-10")]
    # Table I rows + Table II rows, each attack row with its benign baseline (7 + 6, 6 + 5), and
    # the smoke config's DDIM ordinary-sampler column: 5 attacks and their baselines
    assert len({(r["row"], r["column"]) for r in cifar}) == (7 + 6) + (6 + 5) + (5 + 5)
    baseline = [r for r in cifar if r["row"].startswith("CIFAR-10 · Benign world on ") and r["metric"] == "asr"]
    # ASR baselines: DDPM 5 (BadDiffusion's is an MSE), DDIM 5, DDIM ordinary 5
    assert len(baseline) == 5 + 5 + 5 and all(0 <= float(r["value"]) <= 1 for r in baseline)
    for r in cifar:
        float(r["value"])
        assert r["paper_value"] == "" or float(r["paper_value"]) == pytest.approx(   # CSV keeps 4 digits
            paper[(r["table"], r["row"], r["column"], r["metric"])], rel=1e-3)
    assert sum(r["paper_value"] != "" for r in cifar) == sum(
        1 for k in paper if k[0] == "invisible_diffusion" and k[1].startswith("CIFAR-10"))
    celeba = [r for r in rows if r["row"].startswith("CelebA")]
    assert celeba and all(r["value"] == "" and r["note"].startswith("not run") for r in celeba)
    free = [r for r in cifar if "W/o Fixed Image" in r["row"] and r["metric"] in ("l2", "linf")]
    assert free and all(float(r["value"]) == 0.0 for r in free)
    ablation = read_table(smoke_dir / "results/tables/invisible_ablation.csv")
    assert {r["table"] for r in ablation} == {"invisible_lambda", "invisible_steps", "invisible_one_image"}
    for r in ablation:
        float(r["value"])
    assert [r for r in ablation if r["table"] == "invisible_one_image" and r["metric"] == "mse"]
    assert [r for r in ablation if r["column"] == "DDIM, ordinary sampler" and r["metric"] == "asr"]
    take = read_table(smoke_dir / "results/tables/invisible_take.csv")
    assert {(r["row"], r["column"]) for r in take if r["metric"] == "asr"} == {
        ("lr0.002", "0 steps"), ("lr0.002", "2 steps"), ("lr0.002", "4 steps")}
    for fig in ("trajectories/trajectories.png", "targets/targets.png", "ablation/lambda.png", "ablation/steps.png"):
        assert (smoke_dir / "results/figures/invisible" / fig).is_file(), fig


def test_sedid_tables_filled(smoke_dir):
    """Tables 1 and 2 measured for CIFAR-10 with the paper's AUC / ACC beside every cell, the other
    datasets listed as not run, the three controls filled, the figures drawn."""
    from diffsec.tables import read_table

    rows = read_table(smoke_dir / "results/tables/sedid.csv")
    assert {r["table"] for r in rows} == {"sedid_stat", "sedid", "sedid_controls"}
    cifar = [r for r in rows if r["column"] == "CIFAR-10"]
    assert len(cifar) == (6 + 3) * 4   # t_SEC rows and methods x AUC, ACC, TPR@1%, TPR@0.1%
    for r in cifar:
        assert 0.0 <= float(r["value"]) <= 1.0
        assert (r["paper_value"] != "") == (r["metric"] in ("auc", "acc"))
    assert all(r["value"] == "" and r["note"].startswith("not run")
               for r in rows if r["column"] in ("Tiny-ImageNet", "CelebA"))
    controls = [r for r in rows if r["table"] == "sedid_controls"]
    assert len({r["row"] for r in controls}) == 3 and len(controls) == 3 * 3 * 4
    for fig in ("step_sweep", "stat_vs_t", "tpr_vs_t", "roc", "maps"):
        assert (smoke_dir / f"results/figures/sedid/{fig}.png").is_file(), fig


def test_sedid_mia_table_filled(smoke_dir):
    """sedid_mia: four methods at each kept epoch of the member-trained DDPM, no paper values, the
    target trained on the saved members only, the figure drawn."""
    import json

    from diffsec.tables import read_table

    rows = read_table(smoke_dir / "results/tables/sedid_mia.csv")
    assert {r["table"] for r in rows} == {"sedid_mia"} and {r["paper_value"] for r in rows} == {""}
    assert {r["column"] for r in rows} == {"4 epochs", "8 epochs"}   # smoke: 12 members, batch 8
    assert {r["row"] for r in rows} == {"Loss attack", "SecMI_stat (k 10)", "SeDID_Stat", "SeDID_NNs"}
    for r in rows:
        assert 0.0 <= float(r["value"]) <= 1.0 or r["metric"] == "t", r
    model = json.loads((smoke_dir / "results/detect/mia/model/manifest.json").read_text())
    assert model["n_train_images"] == 12 and model["snapshots"] == [6] and model["params"]["steps"] == 12
    assert (smoke_dir / "results/figures/sedid-mia/auc_vs_epochs.png").is_file()


def test_claims_table_judges_every_claim(smoke_dir):
    """claims.csv: per claim a margin, an se and a holds cell; each verdict is one of the four, a
    claim that was run has a margin, and the Markdown lists every claim."""
    from diffsec.paper.claims import CLAIMS
    from diffsec.tables import read_table

    rows = read_table(smoke_dir / "results/tables/claims.csv")
    assert {r["row"] for r in rows} == {c.id for c in CLAIMS} and len(rows) == 3 * len(CLAIMS)
    margin = {r["row"]: r for r in rows if r["metric"] == "margin"}
    for claim in CLAIMS:
        verdict = margin[claim.id]["note"].split(":")[0]
        assert verdict in ("holds", "fails", "within noise", "not run"), margin[claim.id]
        assert (margin[claim.id]["value"] != "") == (verdict != "not run"), margin[claim.id]
    md = (smoke_dir / "results/tables/claims.md").read_text()
    assert all(f"| {c.id} |" in md for c in CLAIMS)


def test_spd_table_filled(smoke_dir):
    """SPD Table 1: rows P1-P5 x Train/Test, Baseline / Ours / the other universal methods /
    PhotoGuard per eps and the mean over eps, the paper's values beside the Baseline and Ours means
    of P1-P4, every immunized image within eps, the figures drawn."""
    import numpy as np

    from diffsec.imageset import load_imageset
    from diffsec.tables import read_table

    smoke = yaml.safe_load(SMOKE.read_text())["spd"]
    (eps,) = smoke["eps"]
    rows = read_table(smoke_dir / "results/tables/spd.csv")
    assert {r["table"] for r in rows} == {"spd"}
    assert {r["row"] for r in rows} == {f"P{i} · {s}" for i in range(1, 6) for s in ("Train", "Test")}
    columns = ["Baseline", *(m["column"] for m in smoke["methods"]), "PhotoGuard"]
    assert {r["column"] for r in rows} == {f"{c} · {e}" for c in columns for e in (f"eps {eps}/255", "mean over eps")}
    assert {r["metric"] for r in rows} == {"ssim", "psnr", "vif_p[up2]", "fsim"}
    paper = {(r["row"], r["column"]) for r in rows if r["paper_value"] != ""}
    assert paper == {(f"P{i} · {s}", f"{c} · mean over eps") for i in range(1, 5) for s in ("Train", "Test")
                     for c in ("Baseline", "Ours")}
    for r in rows:
        assert np.isfinite(float(r["value"])), r
        assert r["n_samples"] == str(smoke["images"]["train"] if r["row"].endswith("Train")
                                     else smoke["images"]["n"] - smoke["images"]["train"])
    spd = smoke_dir / "results/immunize/spd"
    for cond in ("random", "encoder-pgd", "photoguard"):
        for split in ("train", "test"):
            clean = load_imageset(spd / f"images/{split}.npz")["images"].astype(int)
            adv = load_imageset(spd / f"apply/{cond}/eps-{eps}/{split}.npz")["images"].astype(int)
            assert np.abs(adv - clean).max() <= eps, (cond, split)
    for fig in ("fig1_train", "fig2_test", "fig3_edits", "delta_u"):
        assert (smoke_dir / f"results/figures/spd/{fig}.png").is_file(), fig


def test_secmi_setting_reruns_only_the_membership_scores(smoke_dir, mirror, tmp_path):
    jobs = planned_after_override(smoke_dir, mirror, tmp_path, "sedid:\n  mia:\n    secmi: {t: 200, k: 10}\n")
    assert jobs == {"mia_score": 4, "mia_eval": 2, "figure_sedid_mia": 1, "table_sedid_mia": 1}, jobs


def test_dvc_push_clone_pull_restores_results(smoke_dir, mirror, tmp_path):
    """DVC round trip as the README documents it: push, fresh clone, pull, re-stamp, nothing to do."""
    pointers = sorted(smoke_dir.glob("results/**/*.dvc"))
    assert len(pointers) >= 10  # every finished artifact went into the DVC cache
    sh(smoke_dir, *GIT, "add", "-A")
    sh(smoke_dir, *GIT, "commit", "-q", "-m", "results")
    sh(smoke_dir, "dvc", "push", "-q")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(smoke_dir), str(clone))
    assert not (clone / "results/models/ddpm-cifar10").exists()
    sh(clone, "dvc", "pull", "-q")
    original = (smoke_dir / "results/samples/ddpm-cifar10/samples.npz").read_bytes()
    assert (clone / "results/samples/ddpm-cifar10/samples.npz").read_bytes() == original
    snakemake(clone, "--touch", "--config", f"mirror={mirror}")
    p = snakemake(clone, "-n", "--config", f"mirror={mirror}")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]


# ---- Fault injection through Snakemake (last in this file: these rewrite a few finished artifacts
# with other checkpoint settings, so later dry runs would plan their dependents again). ----
# rule -> (target, config that makes the job save checkpoints mid-run, how many it saves, whether
# that config leaves the result's bytes alone: a checkpoint period is bookkeeping, so the resumed
# run must equal the smoke run's own, checkpoint-free artifact; a batch size may change float order,
# so those are compared with an uninterrupted run at the same batch size)
FAULTS = {
    "train_ddpm": ("results/models/ddpm-cifar10", "worlds:\n  ddpm:\n    ckpt_every: 5\n", 3, True),
    "poison_concepts": ("results/poison/adm+", "szt:\n  poison:\n    batch_size: 1\n", 1, False),
    "train_ti": ("results/personalize/ti/nominal", "szt:\n  ti:\n    ckpt_every: 1\n", 2, True),
    "backdoor_sample": ("results/backdoor/samples/id_outd_free/ddim/final",
                        "invisible:\n  sample:\n    batch_size: 4\n", 1, False),
}


def _files(art: Path) -> dict[str, bytes]:
    """An artifact's bytes, its manifest (run times, attempts) left out."""
    return {str(f.relative_to(art)): f.read_bytes() for f in sorted(art.rglob("*"))
            if f.is_file() and f.name != "manifest.json"}


def _force(smoke_dir: Path, mirror: Path, rule: str, target: str, config: Path, kill_at: int = 0):
    env = {"DIFFSEC_KILL_AT_SAVE": str(kill_at)} if kill_at else None
    return snakemake(smoke_dir, "--forcerun", rule, "--config", f"mirror={mirror}", "--", target,
                     extra_config=config, env=env, check=not kill_at)


@pytest.mark.parametrize("rule", list(FAULTS))
def test_killed_job_resumes_to_the_bytes_of_an_uninterrupted_run(smoke_dir, mirror, tmp_path, rule):
    """SIGKILL a job at a random checkpoint through Snakemake, rerun: the result equals an
    uninterrupted run's byte for byte and its manifest records the resume."""
    import random

    target, yaml_text, saves, bookkeeping = FAULTS[rule]
    config = tmp_path / "ckpt.yaml"
    config.write_text(yaml_text)
    kill_at = random.randint(1, saves)
    out = smoke_dir / target
    smoke_bytes = _files(out)
    killed = _force(smoke_dir, mirror, rule, target, config, kill_at=kill_at)
    assert killed.returncode != 0 and not out.exists(), (kill_at, killed.stdout[-1500:])
    assert (out.parent / f"{out.name}.ckpt").is_dir(), kill_at
    _force(smoke_dir, mirror, rule, target, config)
    resumed = _files(out)
    record = json.loads((out / "manifest.json").read_text())["resume"]
    assert record["resumed"] and len(record["attempts"]) == 2 and record["attempts"][1]["start_step"] > 0, record
    assert not (out.parent / f"{out.name}.ckpt").exists()
    if not bookkeeping:
        _force(smoke_dir, mirror, rule, target, config)
        smoke_bytes = _files(out)
    assert resumed == smoke_bytes, f"{rule}: a run killed at save {kill_at} and resumed differs"


def test_killed_job_rerun_with_another_setting_starts_fresh(smoke_dir, mirror, tmp_path):
    """Kill train_ddpm mid-run, change its learning rate, rerun: the old checkpoint is discarded (the
    log says so) and the world equals an uninterrupted run with the new rate."""
    target, yaml_text, saves, _ = FAULTS["train_ddpm"]
    config, changed = tmp_path / "ckpt.yaml", tmp_path / "changed.yaml"
    config.write_text(yaml_text)
    changed.write_text(yaml_text + "    lr: 0.002\n")
    killed = _force(smoke_dir, mirror, "train_ddpm", target, config, kill_at=saves)
    assert killed.returncode != 0
    _force(smoke_dir, mirror, "train_ddpm", target, changed)
    log = (smoke_dir / "logs/train_ddpm/cifar10.log").read_text()
    assert "other settings or inputs; starting fresh" in log, log[-2000:]
    out = smoke_dir / target
    after_kill = _files(out)
    assert not json.loads((out / "manifest.json").read_text())["resume"]["resumed"]
    _force(smoke_dir, mirror, "train_ddpm", target, changed)
    assert _files(out) == after_kill
