"""Bad input to the backdoor stages: one line on stderr, exit status 2, nothing written."""

from __future__ import annotations

import pytest

from diffsec.cli.main import main
from test_resume_backdoor import world  # noqa: F401  (the fixture: a tiny world and its data)


def _flags(**kw) -> list:
    return [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", v)]


def _train(model, data, **change) -> list:
    return ["backdoor-train", "--model", model, "--data", data,
            *_flags(**{"method": "invisible", "trigger": "gaussian", "target": "cifar10:7", "steps": 2,
                       "batch_size": 4, **change})]


def _sample(model, **change) -> list:
    return ["backdoor-sample", "--model", model, *_flags(**{"sampler": "ddim", "steps": 2, "n": 2, "batch_size": 2,
                                                            **change})]


CASES = {   # name -> (stage, argv from (world dir, data dir, an empty dir), what the message says)
    "train: model is no artifact": ("backdoor-train", lambda w, d, e: _train(e, d), "not a train-ddpm"),
    "train: model is missing": ("backdoor-train", lambda w, d, e: _train(e / "nope", d), "no such artifact"),
    "train: data is no artifact": ("backdoor-train", lambda w, d, e: _train(w, e), "not a prepare-cifar10"),
    "train: steps 0": ("backdoor-train", lambda w, d, e: _train(w, d, steps=0), "--steps 0"),
    "train: batch of 1": ("backdoor-train", lambda w, d, e: _train(w, d, batch_size=1), "--batch-size 1"),
    "train: lr 0": ("backdoor-train", lambda w, d, e: _train(w, d, lr=0), "--lr 0"),
    "train: poison rate 1.5": ("backdoor-train", lambda w, d, e: _train(w, d, poison_rate=1.5), "(0, 1)"),
    "train: poison rate 0": ("backdoor-train", lambda w, d, e: _train(w, d, poison_rate=0), "(0, 1)"),
    "train: ema decay 1": ("backdoor-train", lambda w, d, e: _train(w, d, ema_decay=1), "--ema-decay"),
    "train: lambda 1": ("backdoor-train", lambda w, d, e: _train(w, d, lam=1.0), "--lam"),
    "train: target spec": ("backdoor-train", lambda w, d, e: _train(w, d, target="svhn:1"), "svhn:1"),
    "train: snapshot past the end": ("backdoor-train", lambda w, d, e: _train(w, d, snapshots="[3]"), "--snapshots"),
    "train: snapshots not a list": ("backdoor-train", lambda w, d, e: _train(w, d, snapshots="7"), "--snapshots"),
    "train: mist trigger without --mist": ("backdoor-train", lambda w, d, e: _train(w, d, trigger="mist"), "--mist"),
    "train: MNIST target without --mnist": ("backdoor-train", lambda w, d, e: _train(w, d, target="mnist:8"),
                                            "--mnist"),
    "train: target absent from the data": ("backdoor-train", lambda w, d, e: _train(w, d, target="cifar10:11"),
                                           "no images of class 11"),
    "sample: model is no artifact": ("backdoor-sample", lambda w, d, e: _sample(e), "not a train-ddpm"),
    "sample: n 0": ("backdoor-sample", lambda w, d, e: _sample(w, n=0), "--n 0"),
    "sample: batch 0": ("backdoor-sample", lambda w, d, e: _sample(w, batch_size=0), "--batch-size 0"),
    "sample: steps 0": ("backdoor-sample", lambda w, d, e: _sample(w, steps=0), "--steps 0"),
    "sample: frames 0": ("backdoor-sample", lambda w, d, e: _sample(w, frames=0), "--frames 0"),
    "sample: no such snapshot": ("backdoor-sample", lambda w, d, e: _sample(w, snapshot=7), "no snapshot of step 7"),
    "eval: k 0": ("backdoor-eval", lambda w, d, e: ["backdoor-eval", "--samples", e, "--model", w, "--reference",
                                                    d / "test.npz", "--label", "x", "--k", 0], "--k 0"),
    "eval: bootstrap 1": ("backdoor-eval", lambda w, d, e: ["backdoor-eval", "--samples", e, "--model", w,
                                                            "--reference", d / "test.npz", "--label", "x",
                                                            "--fid-bootstrap", 1], "--fid-bootstrap 1"),
    "eval: samples missing": ("backdoor-eval", lambda w, d, e: ["backdoor-eval", "--samples", e / "nope", "--model", w,
                                                                "--reference", d / "test.npz", "--label", "x"],
                              "--samples"),
    "figure: no trajectory": ("figure-backdoor-trajectories",
                              lambda w, d, e: ["figure-backdoor-trajectories", "--samples", f"benign={e}"],
                              "trajectory_clean.npz"),
    "figure: no ablation table": ("figure-backdoor-ablation",
                                  lambda w, d, e: ["figure-backdoor-ablation", "--table", e / "nope.csv"], "nope.csv"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(case, world, tmp_path, capsys):  # noqa: F811
    stage, argv, says = CASES[case]
    (empty := tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    rc = main([str(a) for a in argv(*world, empty)] + ["--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"diffsec {stage}: error:"), err
    assert says in err[0]
    assert not out.exists() and not (tmp_path / "out.ckpt").exists()
