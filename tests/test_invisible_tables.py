"""InvisibleDiffusion's tables from the plan's measurements: the benign baselines, the
ordinary-sampler columns, the stealth conventions and the In-D take sweep (issue 19, items 7-11),
on made-up measurements whose every number says which measurement it came from."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import yaml

from conftest import REPO
from diffsec.paper import invisible as shape
from diffsec.plan import invisible_plan
from diffsec.tables import rate_se

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())


def _measurements(plan, labels: list[str]) -> dict[str, dict]:
    """A metrics.json per label: the attack's metrics, clean-set metrics only where the run sampled
    the clean set (the attacker chain on the model's own trigger), values unique per label."""
    out = {}
    for i, full in enumerate(labels):
        attack, sampler, variant = full.split("/")
        label = f"{attack}/{sampler}" + ("" if variant == "final" else f"/{variant}")
        v = (i + 1) / 1000
        m = {"label": label, "backbone": "resnet56-cifar10", "chain": "attacker"}
        owner = plan.trigger_of(attack) or attack
        clean = not plan.is_baseline(attack) and not sampler.endswith(shape.ORDINARY)
        if clean:
            m.update({"fid": 10 + v, "fid_se": 0.5 + v, "precision": v, "recall": v, "n_clean": 64,
                      "n_reference": 64})
        if owner in plan.attacks:
            spec = plan.attacks[owner]
            m.update({"method": spec["method"], "n_trigger": 64, "l2": 1000 + v, "linf": 255.0, "l2_rms": 200 + v,
                      "classifier": "mnist-cnn"})
            m.update({"mse": v} if spec["target"].count(":") == 2 else {"a_prec": v, "asr": v})
        out[label] = m
    return out


@pytest.fixture
def plan():
    return invisible_plan(copy.deepcopy(CONFIG["invisible"]))


def _by(cells):
    return {(c.row, c.column, c.metric): c for c in cells}


def test_every_attack_row_has_its_benign_baseline_in_every_column(plan):
    ms = _measurements(plan, plan.evals("invisible_diffusion"))
    cells = _by(shape.table_cells(ms, ["cifar10"], "tiny", 0, plan.ordinary))
    for column, sampler in shape.COLUMNS.items():
        for col, chain in ((column, sampler), (shape.ordinary_column(column), shape.ordinary(sampler))):
            for row in shape.rows_of("cifar10", sampler):
                attack = shape.ROWS[row]
                if attack == "benign":
                    assert ("CIFAR-10 · " + shape.baseline_row(row), col, "asr") not in cells
                    continue
                metric = "mse" if attack == "baddiffusion_img" else "asr"
                own = "baddiffusion" in attack   # its chain is the ordinary sampler: no second run
                base = cells[("CIFAR-10 · " + shape.baseline_row(row), col, metric)]
                want = ms[f"{shape.baseline(attack)}/{sampler if own else chain}"][metric]
                assert base.value == want and base.n_samples == 64 and "unbackdoored world" in base.note
                assert cells[("CIFAR-10 · " + row, col, metric)].value == ms[
                    f"{attack}/{sampler if own else chain}"][metric]
    # the Out-D and In-D triggers of one kind are one noise: one set of baseline samples each
    assert plan.samples_of("benign_id_outd_free") == plan.samples_of("benign_id_ind_free") == "benign_id_ind_free"
    assert plan.samples_of("benign_id_outd_fixed") == "benign_id_ind_fixed"
    assert plan.trigger_of("benign_id_outd_free") == "id_outd_free"      # scored against its own target
    # ordinary columns carry the attack metrics only; the paper's columns keep clean-noise metrics
    assert ("CIFAR-10 · Benign", "DDIM, ordinary sampler", "fid") not in cells
    assert ("CIFAR-10 · InvisibleDiffusion Out-D (W/o Fixed Image)", "DDIM, ordinary sampler", "fid") not in cells
    bd = cells[("CIFAR-10 · BadDiffusion One Image", "DDPM, ordinary sampler", "mse")]
    assert "ordinary sampler" in bd.note and bd.value == ms["baddiffusion_img/ddpm"]["mse"]


def test_benign_metrics_record_n_and_stealth_records_its_convention(plan):
    ms = _measurements(plan, plan.evals("invisible_diffusion"))
    cells = _by(shape.table_cells(ms, ["cifar10"], "tiny", 0, plan.ordinary))
    fid = cells[("CIFAR-10 · Benign", "DDPM (Table I)", "precision")]
    assert fid.n_samples == 64 and fid.note == "n = 64 samples from clean noise vs 64 reference images"
    bd = "CIFAR-10 · BadDiffusion One Image"
    assert cells[(bd, "DDPM (Table I)", "l2_rms")].paper_value == 228.39       # the paper's BadDiffusion "L2"
    assert cells[(bd, "DDPM (Table I)", "l2")].paper_value == ""
    assert "root mean square" in cells[(bd, "DDPM (Table I)", "l2_rms")].note
    fixed = "CIFAR-10 · InvisibleDiffusion In-D (Fixed Image)"
    assert cells[(fixed, "DDPM (Table I)", "l2")].paper_value == 3555.44 and "Euclidean" in \
        cells[(fixed, "DDPM (Table I)", "l2")].note


def test_lambda_sweep_runs_with_and_without_kappa(plan):
    labels = plan.evals("invisible_ablation")
    for lam in plan.lambdas:
        a = plan.lambda_label(lam)
        assert {f"{a}/{s}/final" for s in ("ddpm", "ddim", "ddpm_ordinary", "ddim_ordinary")} <= set(labels)
    ms = _measurements(plan, labels)
    cells = _by(shape.ablation_cells(ms, plan.lambdas, plan.lam, [*plan.snapshots, plan.final_step], "tiny", 0,
                                     plan.ordinary))
    c = cells[("lambda 0.3", "DDIM, ordinary sampler", "asr")]
    assert c.value == ms["id_ind_free_lam0.3/ddim_ordinary"]["asr"] and "no kappa" in c.note
    assert cells[("lambda 0.3", "DDIM", "asr")].value == ms["id_ind_free_lam0.3/ddim"]["asr"]


def test_take_sweep_curve_starts_at_the_benign_world(plan):
    assert list(plan.take) == ["base", "poison0.5", "lr0.003"]
    assert plan.take_snapshots == [400, 800, 1600, 2400, 3200]
    spec = plan.attacks["id_ind_free_take-poison0.5"]
    assert spec["finetune"] == {"poison_rate": 0.5, "steps": 3200} and spec["target"] == "cifar10:7"
    assert plan.snapshots_of("id_ind_free_take-poison0.5") == [400, 800, 1600, 2400]
    labels = plan.evals("invisible_take")
    ms = _measurements(plan, labels)
    cells = _by(shape.take_cells(ms, plan.take, plan.take_snapshots, "tiny", 0))
    for v in plan.take:
        assert cells[(v, "0 steps", "asr")].value == ms["benign_id_ind_free/ddim"]["asr"]
        assert cells[(v, "3200 steps", "asr")].value == ms[f"id_ind_free_take-{v}/ddim"]["asr"]
        assert cells[(v, "800 steps", "asr")].value == ms[f"id_ind_free_take-{v}/ddim/step-800"]["asr"]
    assert cells[("lr0.003", "800 steps", "asr")].note == "lr 0.003"
    empty = copy.deepcopy(CONFIG["invisible"])
    empty["take"]["variants"] = []
    assert invisible_plan(empty).take == {}


def test_table_stages_read_the_flags_the_rules_pass(plan, tmp_path):
    """table-invisible --ordinary and table-invisible-take --variants / --snapshots, as the rules
    call them (JSON from flags()), over metrics.json artifacts."""
    import json

    from diffsec.cli.main import main
    from diffsec.tables import read_table

    def dirs(labels):
        out = []
        for label, m in _measurements(plan, labels).items():
            d = tmp_path / "m" / label.replace("/", "__")
            d.mkdir(parents=True, exist_ok=True)
            (d / "metrics.json").write_text(json.dumps(m))
            out.append(str(d))
        return out

    main_csv, take_csv = tmp_path / "inv.csv", tmp_path / "take.csv"
    assert main(["table-invisible", "--metrics", *dirs(plan.evals("invisible_diffusion")), "--ordinary",
                 json.dumps(plan.ordinary), "--profile", "t", "--out", str(main_csv)]) == 0
    assert {r["column"] for r in read_table(main_csv) if r["row"].startswith("CIFAR-10")} == {
        "DDPM (Table I)", "DDIM (Table II)", "DDPM, ordinary sampler", "DDIM, ordinary sampler"}
    assert main(["table-invisible-take", "--metrics", *dirs(plan.evals("invisible_take")), "--variants",
                 json.dumps(plan.take), "--snapshots", *map(str, plan.take_snapshots), "--profile", "t",
                 "--out", str(take_csv)]) == 0
    assert {r["row"] for r in read_table(take_csv)} == set(plan.take)
    assert main(["table-invisible", "--metrics", *dirs(plan.evals("invisible_diffusion")), "--ordinary",
                 '["ddpm", "dpm"]', "--profile", "t", "--out", str(main_csv)]) == 2


def test_fid_cells_carry_the_bootstrap_se_asr_cells_the_binomial_se_and_others_none(plan):
    ms = _measurements(plan, plan.evals("invisible_diffusion"))
    cells = shape.table_cells(ms, ["cifar10"], "tiny", 0, plan.ordinary)
    fids = [c for c in cells if c.metric == "fid" and c.value != ""]
    assert fids and all(c.se == pytest.approx(c.value - 9.5) for c in fids)   # fid_se = fid - 9.5 above
    asrs = [c for c in cells if c.metric == "asr" and c.value != ""]
    # every ASR above is a share of n_trigger = 64 samples: sd of a Bernoulli(p) mean over 64 draws
    assert asrs and all(c.n_samples == 64 and c.se == pytest.approx(math.sqrt(c.value * (1 - c.value)) / 8)
                        for c in asrs)
    assert all(c.se == "" for c in cells if c.metric in ("a_prec", "precision", "mse"))


def test_rate_se_matches_the_spread_of_simulated_shares():
    rng = np.random.default_rng(0)
    shares = rng.binomial(200, 0.115, size=20000) / 200
    assert rate_se(0.115, 200) == pytest.approx(shares.std(), rel=0.02)
    assert rate_se(0.0, 200) == 0.0
