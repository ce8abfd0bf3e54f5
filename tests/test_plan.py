"""The plans of the paper slices (src/diffsec/plan/), as pure functions of the config: which sets
each SZT defense trains on, which InvisibleDiffusion attacks, sweeps and figure panels run, and a
config the tables cannot be filled from refused in one line. No Snakemake here."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO
from diffsec.errors import DiffsecError
from diffsec.paper import invisible as shape
from diffsec.plan import invisible_plan, szt_plan

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture
def szt():
    return copy.deepcopy(CONFIG["szt"])


@pytest.fixture
def inv():
    return copy.deepcopy(CONFIG["invisible"])


def test_timestep_ablation_defenses_skip_the_sets_their_tables_leave_out(szt):
    plan = szt_plan(szt)
    assert plan.sets == ["clean", "adm+", "adm-", "sds+", "sds-", "ea", "da", "da-targeted"]
    for d in ("tanh3", "power0.5", "low0.2", "t500", "t700", "t900"):   # only in Tables 6-8
        assert plan.defense_sets[d] == ["clean", "adm+", "adm-", "ea"], d
    # High 0.6 (t600) is also the main table's T600 column: every set, as for nominal
    assert plan.defense_sets["t600"] == plan.defense_sets["nominal"] == plan.sets
    assert set(plan.defense_sets) == set(szt["defenses"])


def test_da_targeted_trains_only_for_the_main_tables_defenses(szt):
    plan = szt_plan(szt)
    assert "da-targeted" in plan.defense_sets["szt"] and "da-targeted" in plan.defense_sets["jpeg"]
    # lm_d08 is shown by the dilation table only, whose rows are the paper's seven
    assert plan.defense_sets["lm_d08"] == ["clean", "adm+", "adm-", "sds+", "sds-", "ea", "da"]
    # the lr / steps ablation (Table 2) trains its defenses on Table 2's four rows only
    assert plan.defense_sets["ti_lr5e-4_s1000"] == ["clean", "adm+", "adm-", "ea"]


def test_a_table_set_missing_from_the_poisons_is_a_config_error(szt):
    szt["poisons"] = [p for p in szt["poisons"] if p != "da-targeted"]
    with pytest.raises(DiffsecError, match=r"szt.poisons: the tables need training sets \['da-targeted'\]"):
        szt_plan(szt)


def test_a_defense_no_table_shows_trains_on_every_set(szt):
    szt["defenses"]["extra"] = {"purify": "jpeg", "objective": "lm"}
    plan = szt_plan(szt)
    assert plan.defense_sets["extra"] == plan.sets
    assert plan.purifier["extra"] == "jpeg" and plan.purifier["nominal"] == "none"


def test_missing_defense_is_one_line_naming_the_key(szt):
    del szt["defenses"]["lm_d24"], szt["defenses"]["tanh5"]
    with pytest.raises(DiffsecError) as e:
        szt_plan(szt)
    assert str(e.value) == "config error: szt.defenses: the tables need defenses ['lm_d24', 'tanh5']"


def test_missing_attack_is_one_line_naming_the_key(inv):
    del inv["attacks"]["id_img_free"]
    with pytest.raises(DiffsecError) as e:
        invisible_plan(inv)
    assert str(e.value) == "config error: invisible.attacks: the tables need attacks ['id_img_free']"


def test_lambda_sweep_adds_the_base_attack_at_every_other_lambda(inv):
    plan = invisible_plan(inv)
    base = {**inv["attacks"][shape.LAMBDA_BASE], "lam": 0.5}
    sweep = {a: spec for a, spec in plan.attacks.items() if a not in inv["attacks"] and "_lam" in a}
    assert sweep == {f"id_ind_free_lam{lam:g}": {**base, "lam": lam} for lam in (0.1, 0.3, 0.7, 0.9)}
    assert plan.attacks[shape.LAMBDA_BASE] == base        # the configured lambda is the base model itself
    assert [plan.lambda_label(lam) for lam in plan.lambdas] == [
        "id_ind_free_lam0.1", "id_ind_free_lam0.3", "id_ind_free", "id_ind_free_lam0.7", "id_ind_free_lam0.9"]
    assert plan.benign == ["benign"] and plan.datasets == ["cifar10"]


def test_snapshots_are_shares_of_the_finetuning_steps_without_the_final_one(inv):
    inv["finetune"]["steps"] = 10
    inv["ablation"]["step_fractions"] = [0.05, 0.2, 0.5, 0.52, 1 - 1e-9]
    plan = invisible_plan(inv)
    assert plan.snapshots == [1, 2, 5] and plan.final_step == 10   # 0.05 -> at least 1, 0.52 -> 5 again, ~1 -> final
    assert plan.snapshots_of(shape.LAMBDA_BASE) == [1, 2, 5] and plan.snapshots_of("id_ind_fixed") == []
    evals = plan.evals("invisible_ablation")
    assert [e for e in evals if "step-" in e] == [f"id_ind_free/ddim/step-{n}" for n in (1, 2, 5)]
    assert evals[-2:] == ["id_img_free/ddpm/final", "id_img_free/ddim/final"]


def test_celeba_repeats_the_table_attacks_with_its_in_d_target(inv):
    inv["datasets"] = ["cifar10", "celeba"]
    plan = invisible_plan(inv)
    celeba = {a: s for a, s in plan.attacks.items() if a.startswith("celeba-")}
    assert set(celeba) == {"celeba-trojdiff_ind", "celeba-id_ind_fixed", "celeba-id_ind_free",
                           "celeba-id_outd_fixed", "celeba-id_outd_free"}         # no BadDiffusion row
    assert celeba["celeba-id_ind_free"]["target"] == "celeba:7"
    assert celeba["celeba-id_outd_free"]["target"] == "mnist:8"                   # Out-D targets stay
    assert plan.benign == ["benign", "celeba-benign"]
    assert plan.targets["CelebA In-D, fixed image"] == "celeba-id_ind_fixed"
    main = plan.evals("invisible_diffusion")
    # Tables I + II, each dataset: the benign row; each attack row and its benign baseline with the
    # attacker chain and the ordinary sampler (BadDiffusion, whose chain is the ordinary one: once)
    assert len(main) == (1 + 5 * 4 + 2) + (1 + 5 * 4) + 2 * (1 + 5 * 4) and "celeba-benign/ddim/final" in main
    assert "celeba-benign_id_outd_free/ddim_ordinary/final" in main
    assert plan.samples_of("celeba-benign_id_outd_free") == "celeba-benign_id_ind_free"
    del inv["in_d_targets"]
    with pytest.raises(DiffsecError, match=r"^config error: invisible\.in_d_targets\.celeba: "):
        invisible_plan(inv)


def test_plans_do_not_change_the_config(szt, inv):
    before = copy.deepcopy((szt, inv))
    szt_plan(szt)
    invisible_plan(inv)
    assert (szt, inv) == before


@pytest.fixture
def sau():
    return yaml.safe_load((REPO / "config.yaml").read_text())["sau"]


def test_sau_plan_evaluates_every_model_both_prompt_sets_and_every_sau_setting(sau):
    from diffsec.plan import sau_plan

    plan = sau_plan(sau)
    n_settings = 1 + sum(len(v) for v in sau["sweep"].values())
    assert list(plan.settings)[0] == "default" and len(plan.settings) == n_settings
    assert plan.settings["alpha-0.5"] == {**sau["sau"], "alpha": 0.5}
    # 4 methods x 2 prompt sets + the SAU settings, per backdoor
    assert len(plan.evals) == 2 * (4 * 2 + n_settings)
    # unpoisoned is one model shared by both backdoors; calibration pairs only for poisoned ones
    assert plan.models[0] == "unpoisoned" and len(plan.models) == 1 + 2 * 3
    assert sorted(g for g in plan.gen_sets if "calib" in g) == sorted(
        f"{b}-poisoned/calib-{p}" for b in ("pixel", "style") for p in ("triggered", "clean"))
    assert plan.eval_source("style", "unpoisoned-clean") == ("unpoisoned", "gen/unpoisoned/clean")
    assert plan.eval_source("pixel", "concept_erasure-triggered") == (
        "concept_erasure", "gen/pixel-concept_erasure/triggered")
    assert plan.eval_source("pixel", "sau-tau-0.3") == ("sau", "defended/pixel/tau-0.3")


def test_sau_attack_steps_are_one_number_or_one_per_backdoor(sau):
    from diffsec.plan import sau_plan

    assert sau_plan({**sau, "attack": {**sau["attack"], "steps": 7}}).attack_steps == {"pixel": 7, "style": 7}
    per = sau_plan({**sau, "attack": {**sau["attack"], "steps": {"pixel": 3, "style": 9}}}).attack_steps
    assert per == {"pixel": 3, "style": 9}


@pytest.mark.parametrize("change, why", [
    ({"generate": {"seeds": "0:20", "calib_seeds": "10:5"}}, "overlap the test seeds"),
    ({"sweep": {"gamma": [1]}}, "not an SAU setting"),
    ({"sweep": {"alpha": [1.0]}}, "is the default setting itself"),
    ({"backdoors": ["pixel", "pixel"]}, "must be distinct"),
    ({"generate": {"seeds": "0-20", "calib_seeds": "1000:10"}}, "is not START:COUNT"),
    ({"attack": {"steps": {"pixel": 400}}}, "names no steps for style"),
])
def test_sau_plan_refuses_what_the_stages_would(sau, change, why):
    from diffsec.plan import sau_plan

    cfg = copy.deepcopy(sau)
    for k, v in change.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and k != "sweep" else v
    with pytest.raises(DiffsecError, match=why):
        sau_plan(cfg)
