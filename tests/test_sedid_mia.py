"""sedid_mia: the member split, the target's EMA snapshots, and the membership table.

A snapshot of step s is checked against an independent run stopped at s; the split against set
arithmetic on its saved indices; the table against the evaluation it reads.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec import resume
from diffsec.cli.main import main
from diffsec.data.members import member_split
from diffsec.errors import DiffsecError
from diffsec.imageset import load_imageset, save_imageset, to_float
from diffsec.models import ddpm
from diffsec.plan import mia_plan

RUN = ["--threads", "1", "--device", "cpu"]
TINY = ddpm.DDPMConfig(resolution=8, channels=[8, 16], attention=[False, False], layers_per_block=1)


def test_member_split_is_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 30)
    mem, held = member_split(labels, 100, 50, seed=3)
    assert len(mem) == 100 and len(held) == 50 and not set(mem) & set(held)
    assert np.bincount(labels[mem]).tolist() == [10] * 10 and np.bincount(labels[held]).tolist() == [5] * 10
    again = member_split(labels, 100, 50, seed=3)
    assert np.array_equal(mem, again[0]) and np.array_equal(held, again[1])
    assert not np.array_equal(mem, member_split(labels, 100, 50, seed=4)[0])


@pytest.mark.parametrize("members,heldout,why", [(200, 101, "exceed"), (0, 5, "at least 1")])
def test_member_split_refuses_impossible_sizes(members, heldout, why):
    with pytest.raises(DiffsecError, match=why):
        member_split(np.repeat(np.arange(10), 30), members, heldout, 0)


def _train(images, steps, snapshots=(), ckpt=None):
    torch.manual_seed(0)
    unet, sched = ddpm.build_ddpm(TINY)
    cfg = ddpm.TrainConfig(steps=steps, batch_size=4, lr=1e-3, warmup=1, ema_decay=0.9, log_every=2, seed=0,
                           snapshots=tuple(snapshots))
    return ddpm.train_ddpm(unet, sched, to_float(images), cfg, ckpt)


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.values(), b.values(), strict=True))


def test_snapshot_is_the_ema_of_a_run_stopped_at_its_step(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    _, _, snaps = _train(images, 6, snapshots=(2, 4))
    assert sorted(snaps) == [2, 4]
    for s in (2, 4):
        stopped, _, _ = _train(images, s)
        assert _equal(snaps[s], stopped.state_dict())
    assert not _equal(snaps[2], snaps[4])
    # a run killed after its step-3 checkpoint keeps the step-2 snapshot and ends with the same bytes
    real, calls = ddpm.ema_update, []

    def dying(ema, model, decay):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt   # the job is killed inside step 5
        real(ema, model, decay)

    monkeypatch.setattr(ddpm, "ema_update", dying)
    with pytest.raises(KeyboardInterrupt):
        _train(images, 6, snapshots=(2, 4), ckpt=resume.Checkpoint(tmp_path / "ckpt", key="k", every=3))
    monkeypatch.undo()
    resumed = resume.Checkpoint(tmp_path / "ckpt", key="k", every=3)
    _, _, again = _train(images, 6, snapshots=(2, 4), ckpt=resumed)
    assert resumed.start_step == 3 and all(_equal(snaps[s], again[s]) for s in (2, 4))


@pytest.mark.parametrize("snapshots", [[0], [7], [2.5]])
def test_snapshot_steps_outside_the_run_are_refused(snapshots):
    with pytest.raises(DiffsecError, match="snapshots"):
        ddpm.TrainConfig(steps=6, batch_size=4, lr=1e-3, warmup=1, ema_decay=0.9, log_every=2, seed=0,
                         snapshots=tuple(snapshots))


MIA = {"members": 1000, "heldout": 1000, "epochs": [50, 100, 200], "secmi": {"t": 100, "k": 10},
       "world": {"batch_size": 32}}


def test_mia_plan_turns_epochs_into_kept_steps():
    plan = mia_plan(MIA)
    assert plan.steps == 6250 and plan.snapshots == (1562, 3125)   # 31.25 steps an epoch, rounded half to even
    assert plan.variants == ("step-1562", "step-3125", "final")
    assert plan.epochs == pytest.approx((1562 / 31.25, 100, 200))


@pytest.mark.parametrize("change,why", [({"epochs": [1, 1.005]}, "same step"),
                                        ({"secmi": {"t": 105, "k": 10}}, "sedid.mia.secmi")])
def test_mia_plan_refuses_what_the_stages_cannot_run(change, why):
    with pytest.raises(DiffsecError, match=why):
        mia_plan({**MIA, **change})


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A member split of 24 labelled images and an 8 px DDPM trained on its members, snapshot kept."""
    d = tmp_path_factory.mktemp("mia")
    rng = np.random.default_rng(0)
    save_imageset(d / "train.npz", rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
                  labels=np.repeat(np.arange(4), 10))
    assert main(["member-split", "--data", str(d / "train.npz"), "--members", "12", "--heldout", "12", *RUN,
                 "--out", str(d / "split")]) == 0
    assert main(["train-ddpm", "--data", str(d / "split/members.npz"), "--resolution", "8", "--channels", "[8,16]",
                 "--attention", "[false,false]", "--steps", "4", "--batch-size", "4", "--warmup", "1",
                 "--snapshots", "[2]", "--grid-samples", "4", "--grid-steps", "2", *RUN,
                 "--out", str(d / "model")]) == 0
    return d


def test_member_split_stage_saves_disjoint_indexed_sets(target):
    src = load_imageset(target / "train.npz")
    mem, held = (load_imageset(target / f"split/{n}.npz") for n in ("members", "heldout"))
    assert not set(mem["index"]) & set(held["index"])
    for part in (mem, held):
        assert np.array_equal(part["images"], src["images"][part["index"]])
        assert np.array_equal(part["labels"], src["labels"][part["index"]])
    m = json.loads((target / "split/manifest.json").read_text())
    assert m["n_members"] == 12 and m["n_heldout"] == 12 and "data" in m["inputs"]


def test_member_split_stage_refuses_too_many_in_one_line(target, tmp_path, capsys):
    capsys.readouterr()
    assert main(["member-split", "--data", str(target / "train.npz"), "--members", "30", "--heldout", "11", *RUN,
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exceed the set's 40 images" in err[0] and not (tmp_path / "out").exists()


def test_membership_table_from_scored_snapshots(target, tmp_path, capsys):
    from diffsec.models.ddpm import open_artifact

    snap, _ = open_artifact(target / "model", "cpu", 2)
    final, _ = open_artifact(target / "model", "cpu")
    assert not _equal(snap.state_dict(), final.state_dict())
    score = ["--k", "330", "--t-secs", "[330,660]", "--loss-ts", "[100,300]", "--sweep-ks", "[10]", "--sweep-t",
             "20", "--sweep-n", "12", "--batch-size", "6"]
    evals = []
    for variant, step in (("step-2", "2"), ("final", "0")):
        for group in ("members", "heldout"):
            assert main(["sedid-score", "--model", str(target / "model"), "--snapshot", step, "--images",
                         str(target / f"split/{group}.npz"), *score, *RUN,
                         "--out", str(tmp_path / variant / group)]) == 0
        evals.append(tmp_path / variant / "eval")
        assert main(["sedid-eval", "--label", f"mia-{variant}", "--real", str(tmp_path / variant / "heldout"),
                     "--generated", str(tmp_path / variant / "members"), "--train-frac", "0.5", "--epochs", "1",
                     "--batch-size", "4", *RUN, "--out", str(evals[-1])]) == 0
    # the snapshot's scores differ from the final model's: the stage scored the weights it was asked for
    with np.load(tmp_path / "step-2/members/scores.npz") as a, np.load(tmp_path / "final/members/scores.npz") as b:
        assert not np.array_equal(a["stat"], b["stat"])
    out = tmp_path / "sedid_mia.csv"
    assert main(["table-sedid-mia", "--metrics", *map(str, evals), "--epochs", "0.67", "1.33", "--profile", "test",
                 "--out", str(out)]) == 0
    import csv

    rows = list(csv.DictReader(out.open()))
    cell = {(r["row"], r["column"], r["metric"]): r for r in rows}
    final_m = json.loads((evals[1] / "metrics.json").read_text())
    assert float(cell[("SecMI_stat (k 10)", "1.33 epochs", "auc")]["value"]) == pytest.approx(
        final_m["sweep"]["10"]["auc"], abs=5e-5)   # the table prints four decimals
    assert cell[("SecMI_stat (k 10)", "1.33 epochs", "t")]["value"] == "20"
    assert int(cell[("SecMI_stat (k 10)", "1.33 epochs", "auc")]["n_samples"]) == 24   # every image: it fits nothing
    assert float(cell[("Loss attack", "0.67 epochs", "auc")]["value"]) == pytest.approx(
        json.loads((evals[0] / "metrics.json").read_text())["table2"]["loss"]["auc"], abs=5e-5)
    assert {r["paper_value"] for r in rows} == {""} and {r["table"] for r in rows} == {"sedid_mia"}
    assert main(["figure-sedid-mia", "--metrics", *map(str, evals), "--epochs", "0.67", "1.33", "--model",
                 str(target / "model"), *RUN, "--out", str(tmp_path / "fig")]) == 0
    assert {p.name for p in (tmp_path / "fig").glob("*.png")} == {"auc_vs_epochs.png", "target_loss.png"}


def test_scoring_a_snapshot_the_target_lacks_is_one_line(target, tmp_path, capsys):
    capsys.readouterr()
    assert main(["sedid-score", "--model", str(target / "model"), "--snapshot", "3", "--images",
                 str(target / "split/members.npz"), "--k", "330", "--t-secs", "[330]", *RUN,
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no snapshot of that step" in err[0] and not (tmp_path / "out").exists()
