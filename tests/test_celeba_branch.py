"""InvisibleDiffusion's CelebA branch, stage by stage through the CLIs the DAG calls, on the
CelebA file-format fixture (CelebA itself is not offline): prepare-celeba -> a CelebA DDPM world
-> the attribute classifier -> an In-D backdoor to a CelebA class -> samples -> measurements.

The numbers are checked against direct computations: the target is the test split's images of
the class, and ASR is the share of triggered samples the saved classifier puts in that class."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.imageset import load_imageset
from test_celeba import celeba  # noqa: F401  (the fixture)

torch.set_num_threads(1)
RES = 16


def _ok(*argv: str) -> None:
    assert main([str(a) for a in argv]) == 0, argv


@pytest.fixture
def branch(celeba, tmp_path, mirror):  # noqa: F811
    root = celeba[0]
    data, world, clf = tmp_path / "celeba", tmp_path / "ddpm-celeba", tmp_path / "celeba-classifier"
    _ok("prepare-celeba", "--images", root / "img_align_celeba.zip", "--attributes", root / "list_attr_celeba.txt",
        "--partition", root / "list_eval_partition.txt", "--resolution", RES, "--out", data)
    _ok("train-ddpm", "--data", data / "train.npz", "--resolution", RES, "--channels", "[16, 32]",
        "--attention", "[false, false]", "--steps", 4, "--batch-size", 4, "--grid-samples", 4,
        "--grid-steps", 2, "--out", world, "--device", "cpu")
    _ok("train-celeba-classifier", "--data", data, "--epochs", 1, "--batch-size", 8, "--out", clf, "--device", "cpu")
    return data, world, clf, mirror


def test_in_d_backdoor_on_a_celeba_world(branch, tmp_path):
    from diffsec.catalog import SOURCES
    from diffsec.models.celeba_net import load_celeba_classifier

    data, world, clf, mirror = branch
    train, test = load_imageset(data / "train.npz"), load_imageset(data / "test.npz")
    # the class with most test images that the train split also has (the paper's is 7)
    c = int(next(k for k in np.argsort(-np.bincount(test["labels"], minlength=8)) if (train["labels"] == k).any()))
    model, samples, metrics = tmp_path / "bd", tmp_path / "samples", tmp_path / "metrics"
    _ok("backdoor-train", "--model", world, "--data", data, "--method", "invisible", "--trigger", "free",
        "--target", f"celeba:{c}", "--steps", 3, "--batch-size", 4, "--poison-rate", 0.5, "--out", model,
        "--device", "cpu")
    attack = json.loads((model / "attack.json").read_text())
    assert (attack["target_dataset"], attack["target_label"], attack["target_kind"]) == ("celeba", c, "In-D")
    assert np.array_equal(load_imageset(model / "target.npz")["images"], test["images"][test["labels"] == c])

    _ok("backdoor-sample", "--model", model, "--sampler", "ddim", "--steps", 2, "--n", 6, "--batch-size", 6,
        "--trajectory", 0, "--out", samples, "--device", "cpu")
    resnet = mirror / SOURCES["resnet56"].mirror_path
    _ok("backdoor-eval", "--samples", samples, "--model", model, "--reference", data / "test.npz",
        "--celeba-classifier", clf, "--backbone-weights", resnet, "--label", "celeba-x/ddim", "--k", 1,
        "--out", metrics, "--device", "cpu")
    m = json.loads((metrics / "metrics.json").read_text())
    pred = load_celeba_classifier(clf, "cpu").predict(load_imageset(samples / "trigger.npz")["images"])
    assert m["classifier"] == "celeba-net" and m["asr"] == pytest.approx(float((pred == c).mean()))
    assert m["n_trigger"] == 6 and m["l2"] == 0.0 and m["target"] == f"celeba:{c}"


def test_cifar_target_refused_on_celeba_data(branch, tmp_path):
    data, world, _, _ = branch
    assert main(["backdoor-train", "--model", str(world), "--data", str(data), "--method", "invisible",
                 "--trigger", "free", "--target", "cifar10:7", "--steps", "2", "--out", str(tmp_path / "bad"),
                 "--device", "cpu"]) == 2
    assert not (tmp_path / "bad").exists()


def test_table_fills_celeba_rows_when_run(tmp_path):
    """table-invisible: with --datasets cifar10 celeba every CelebA cell comes from its
    <dataset>-<attack> measurement, beside the paper's number; without, CelebA is listed as not
    run. The measurements are synthetic here: this checks the table's assembly, not a result."""
    from diffsec.paper import invisible as shape
    from diffsec.paper import paper_values
    from diffsec.tables import read_table

    dirs, value = [], 0.0
    for ds in shape.DATASETS:
        for sampler in shape.COLUMNS.values():
            for row in shape.rows_of(ds, sampler):
                attack = shape.dataset_attack(ds, shape.ROWS[row])
                # each attack row and its benign baseline (the clean world on the attack's noise)
                for name in [attack] + ([shape.baseline(attack)] if shape.ROWS[row] != "benign" else []):
                    value += 1
                    m = {"label": f"{name}/{sampler}", "backbone": "b", "classifier": "c", "n_clean": 4,
                         "n_reference": 4, "n_trigger": 4, **{k: value for k in (
                             "fid", "precision", "recall", "a_prec", "asr", "mse", "l2", "linf", "l2_rms")}}
                    if "BadDiffusion" not in row:   # the one-image row is scored by MSE, the rest by ASR
                        m.pop("mse")
                    d = tmp_path / "m" / name / sampler
                    d.mkdir(parents=True)
                    (d / "metrics.json").write_text(json.dumps(m))
                    dirs.append(str(d))
    paper = paper_values("invisible")
    for datasets in (["cifar10", "celeba"], ["cifar10"]):
        out = tmp_path / f"{len(datasets)}.csv"
        _ok("table-invisible", "--metrics", *dirs, "--datasets", *datasets, "--profile", "test", "--out", out)
        rows = [r for r in read_table(out) if r["row"].startswith("CelebA · ")]
        assert rows
        if len(datasets) == 1:
            assert all(r["value"] == "" and r["note"].startswith("not run") for r in rows)
            continue
        # Table I has 6 CelebA rows, Table II 6, each attack row (5) with its benign baseline;
        # each cell's paper value where the paper prints one
        assert len({(r["row"], r["column"]) for r in rows}) == 2 * (6 + 5)
        for r in rows:
            float(r["value"])
            assert r["paper_value"] == "" or float(r["paper_value"]) == pytest.approx(
                paper[(r["table"], r["row"], r["column"], r["metric"])], rel=1e-3)
        assert sum(r["paper_value"] != "" for r in rows) == sum(
            1 for k in paper if k[0] == "invisible_diffusion" and k[1].startswith("CelebA"))
