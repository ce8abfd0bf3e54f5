"""SPD's stages (paper 003) chained through their CLIs on a tiny random T2I world built here:
images -> fit -> apply (universal, random, per-image PhotoGuard) -> edit -> eval -> table and
figures; bad input is one line with nothing written; spd-fit (per eps) and spd-edit (per batch)
resume after a SIGKILL to the bytes of an uninterrupted run; the plan refuses bad configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.imageset import load_imageset, save_imageset
from resume_harness import check_kill_resume

RUN = ["--threads", "1", "--device", "cpu"]
SIZE = 16
PROMPTS = json.dumps({"P1": "make it like a watercolor painting", "P5": "a photo of a {class}"})
FIT = ["--iters", "2", "--batch-size", "4"]
EDIT = ["--prompts", PROMPTS, "--steps", "2", "--strength", "0.5", "--batch-size", "8"]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _run(*argv) -> None:
    assert main([*map(str, argv), *RUN]) == 0, argv


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    from diffsec.models import t2i
    from diffsec.models.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("spd")
    pipe = t2i.make_pipeline(t2i.build_vae([8, 8], 1, 4, SIZE), t2i.build_text_encoder(32, 1, 2),
                             clip_tokenizer(d / "tok"), t2i.build_unet([16, 32], [False, True], 1, 4, 8, 32, 16),
                             t2i.build_scheduler())
    t2i.save_pipeline(pipe, d / "t2i" / "pipeline")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 3)
    save_imageset(d / "test.npz", rng.integers(0, 256, (30, SIZE, SIZE, 3), dtype=np.uint8), labels=labels,
                  class_name=[CLASSES[k] for k in labels])
    _run("spd-images", "--data", d / "test.npz", "--n", 20, "--train", 12, "--out", d / "images")
    _run("spd-fit", "--model", d / "t2i", "--images", d / "images", "--eps", 8, 16, *FIT, "--out", d / "fit")
    _run("spd-edit", "--model", d / "t2i", "--images", d / "images", *EDIT, "--out", d / "edit-clean")
    return d


def test_images_are_a_stratified_split(d):
    tr, te = load_imageset(d / "images" / "train.npz"), load_imageset(d / "images" / "test.npz")
    assert len(tr["images"]) == 12 and len(te["images"]) == 8
    assert not set(tr["index"]) & set(te["index"]) and len(set(te["labels"])) >= 4
    assert np.bincount(np.concatenate([tr["labels"], te["labels"]])).tolist() == [2] * 10


def test_chain_fills_the_table_and_figures(d, tmp_path):
    from diffsec.tables import read_table

    evals = {}
    for kind, extra in (("universal", ["--delta", d / "fit"]), ("random", []),
                        ("photoguard", ["--model", d / "t2i", *FIT])):
        for eps in (8, 16):
            name = f"{kind}-{eps}"
            _run("spd-apply", "--images", d / "images", "--kind", kind, "--eps", eps, *extra, "--out", tmp_path / name)
            for s in ("train", "test"):
                clean = load_imageset(d / "images" / f"{s}.npz")["images"].astype(int)
                adv = load_imageset(tmp_path / name / f"{s}.npz")["images"].astype(int)
                assert np.abs(adv - clean).max() <= eps and adv.shape == clean.shape
            _run("spd-edit", "--model", d / "t2i", "--images", tmp_path / name, *EDIT, "--out", tmp_path / f"e-{name}")
            column = {"universal": "Ours", "random": "Baseline", "photoguard": "PhotoGuard"}[kind]
            _run("spd-eval", "--edits", tmp_path / f"e-{name}", "--clean", d / "edit-clean", "--label",
                 f"{kind}/eps-{eps}", "--column", column, "--eps", eps, "--out", tmp_path / f"m-{name}")
            evals[name] = tmp_path / f"m-{name}"
    m = json.loads((evals["universal-16"] / "metrics.json").read_text())
    assert set(m["metrics"]["test"]) == {"P1", "P5"}
    assert set(m["metrics"]["train"]["P1"]) == {"ssim", "psnr", "vif_p[up3]", "fsim"}   # 16 px: up 3
    edits = np.load(d / "edit-clean" / "edits.npz")
    assert edits["train"].shape == (2, 12, SIZE, SIZE, 3) and edits["test"].shape == (2, 8, SIZE, SIZE, 3)
    assert main(["table-spd", "--metrics", *map(str, evals.values()), "--profile", "test", "--out",
                 str(tmp_path / "spd.csv")]) == 0
    rows = read_table(tmp_path / "spd.csv")
    assert {r["row"] for r in rows} == {f"{p} · {s}" for p in ("P1", "P5") for s in ("Train", "Test")}
    cols = {r["column"] for r in rows}
    assert cols == {f"{c} · {e}" for c in ("Baseline", "Ours", "PhotoGuard")
                    for e in ("eps 8/255", "eps 16/255", "mean over eps")}
    paper = [r for r in rows if r["paper_value"] != ""]
    assert paper and all(r["row"].startswith("P1") and r["column"] in ("Baseline · mean over eps",
                                                                       "Ours · mean over eps") for r in paper)
    assert len(paper) == 2 * 2 * 4   # P1 x Train/Test x Baseline/Ours x 4 metrics
    # every per-eps cell carries the se of its mean over the split's images; the mean over eps none
    for r in rows:
        assert (r["se"] != "") == ("mean over eps" not in r["column"]), r
    m8 = json.loads((evals["random-8"] / "metrics.json").read_text())
    where = ("P5 · Test", "Baseline · eps 8/255", "ssim")
    cell = next(r for r in rows if (r["row"], r["column"], r["metric"]) == where)
    assert float(cell["se"]) == pytest.approx(m8["se"]["test"]["P5"]["ssim"], rel=1e-3) and float(cell["se"]) >= 0
    _run("figure-spd", "--metrics", *evals.values(), "--clean-edits", d / "edit-clean", "--baseline-edits",
         tmp_path / "e-random-8", tmp_path / "e-random-16", "--ours-edits", tmp_path / "e-universal-8",
         tmp_path / "e-universal-16", "--fits", d / "fit", d / "fit", "--eps", 8, 16, "--out", tmp_path / "fig")
    assert {p.name for p in (tmp_path / "fig").glob("*.png")} == {"fig1_train.png", "fig2_test.png",
                                                                   "fig3_edits.png", "delta_u.png"}


def test_vif_names_its_upsampling():
    from diffsec.poison.immunize import vif_name

    assert (vif_name(32), vif_name(16), vif_name(41), vif_name(512)) == ("vif_p[up2]", "vif_p[up3]", "vif_p", "vif_p")


def test_same_seed_same_delta_and_each_eps_on_its_own(d, tmp_path):
    _run("spd-fit", "--model", d / "t2i", "--images", d / "images", "--eps", 16, *FIT, "--out", tmp_path / "f16")
    assert (tmp_path / "f16" / "delta-eps-16.npy").read_bytes() == (d / "fit" / "delta-eps-16.npy").read_bytes()
    for f in ("delta-eps-8.png", "loss-eps-8.csv", "loss-eps-8.png"):
        assert (d / "fit" / f).is_file()
    assert np.abs(np.load(d / "fit" / "delta-eps-8.npy")).max() <= 8 / 255 + 1e-7


def cases():
    fit = ["spd-fit", "--model", "{d}/t2i", "--images", "{d}/images"]
    apply = ["spd-apply", "--images", "{d}/images"]
    edit = ["spd-edit", "--model", "{d}/t2i", "--images", "{d}/images"]
    ev = ["spd-eval", "--label", "x", "--column", "Ours", "--eps", "8", "--clean", "{d}/edit-clean"]
    return [
        ("images-train", ["spd-images", "--data", "{d}/test.npz", "--n", "20", "--train", "20"], "--train 20"),
        ("images-too-many", ["spd-images", "--data", "{d}/test.npz", "--n", "31", "--train", "5"], "holds 30 images"),
        ("images-no-data", ["spd-images", "--data", "{d}/nope.npz"], "does not exist"),
        ("fit-eps", [*fit, "--eps", "0"], "--eps 0"),
        ("fit-iters", [*fit, "--eps", "8", "--iters", "0"], "--iters"),
        ("fit-not-images", ["spd-fit", "--model", "{d}/t2i", "--images", "{d}/fit", "--eps", "8"],
         "not an spd-images"),
        ("fit-no-model", ["spd-fit", "--model", "{d}/nope", "--images", "{d}/images", "--eps", "8"], "--model"),
        ("apply-no-delta", [*apply, "--kind", "universal", "--eps", "8"], "needs --delta"),
        ("apply-other-eps", [*apply, "--kind", "universal", "--eps", "4", "--delta", "{d}/fit"], "no delta at eps 4"),
        ("apply-step", [*apply, "--kind", "random", "--eps", "8", "--step-frac", "0"], "--step-frac"),
        ("edit-prompts", [*edit, "--prompts", "[1]"], "--prompts"),
        ("edit-strength", [*edit, "--prompts", PROMPTS, "--strength", "1.5"], "--strength"),
        ("edit-no-model", ["spd-edit", "--model", "{d}/nope", "--images", "{d}/images", "--prompts", PROMPTS],
         "--model"),
        ("eval-not-edits", [*ev, "--edits", "{d}/images"], "not a spd-edit artifact"),
        ("table-not-evals", ["table-spd", "--metrics", "{d}/images", "--profile", "x"], "metrics.json is missing"),
    ]


@pytest.mark.parametrize("argv,why", [pytest.param(a, w, id=i) for i, a, w in cases()])
def test_bad_input_is_one_line_and_writes_nothing(d, tmp_path, capsys, argv, why):
    out = tmp_path / "out"
    run = [] if argv[0] == "table-spd" else RUN
    capsys.readouterr()
    assert main([*(a.replace("{d}", str(d)) for a in argv), *run, "--out", str(out) + (".csv" if not run else "")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"diffsec {argv[0]}: error: "), lines
    assert why in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


def test_killed_spd_fit_resumes_bytes_identical(d, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DIFFSEC_KILL_AT_SAVE", raising=False)
    argv = ["spd-fit", "--model", str(d / "t2i"), "--images", str(d / "images"), "--eps", "8", "16", *FIT]
    check_kill_resume(argv, tmp_path, capsys, 1, 1, ["delta-eps-8.npy", "delta-eps-16.npy"], ["--iters", "3"])


def test_killed_spd_edit_resumes_bytes_identical(d, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DIFFSEC_KILL_AT_SAVE", raising=False)
    argv = ["spd-edit", "--model", str(d / "t2i"), "--images", str(d / "images"), *EDIT[:-1], "10"]
    check_kill_resume(argv, tmp_path, capsys, 2, 2, ["edits.npz"], ["--guidance", "3"])


@pytest.mark.parametrize("change,why", [
    ({"images": {"n": 10, "train": 10}}, "spd.images.train"),
    ({"eps": [0]}, "spd.eps"),
    ({"methods": [{"column": "Adam", "objective": "encoder", "optimizer": "adam"}]}, "no method has column"),
    ({"methods": [{"column": "Ours", "objective": "encoder", "optimizer": "pgd"}] * 2}, "listed twice"),
])
def test_plan_refuses_bad_configs(change, why):
    import yaml

    from conftest import REPO
    from diffsec.errors import DiffsecError
    from diffsec.plan import spd_plan

    spd = {**yaml.safe_load((REPO / "config.yaml").read_text())["spd"], **change}
    with pytest.raises(DiffsecError, match=why):
        spd_plan(spd)
    plan = spd_plan(yaml.safe_load((REPO / "config.yaml").read_text())["spd"])
    assert plan.conditions[0] == "random" and plan.conditions[-1] == "photoguard" and plan.train == 64


def test_bench_spd_times_whole_universal_gradients_and_edits(d, tmp_path, monkeypatch):
    import diffsec.poison.bench as bench

    calls = []
    real = bench.universal_gradient

    def counting(vae, x, delta, objective, z_targ, batch_size):
        calls.append((len(x), batch_size))
        return real(vae, x, delta, objective, z_targ, batch_size)

    monkeypatch.setattr(bench, "universal_gradient", counting)
    out = tmp_path / "bench.json"
    assert main(["bench-spd", "--model", str(d / "t2i"), "--images", str(d / "images" / "train.npz"),
                 "--n-images", "6", "--batch-sizes", "4", "--edit-batch-sizes", "3", "--steps", "2",
                 "--repeats", "1", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    # one warm-up + one timed iteration, each a full pass over the 6 images in minibatches of 4
    assert calls == [(6, 4), (6, 4)]
    g = rows["gradients"][0]
    assert g["n_images"] == 6 and g["image_grads_per_s"] == pytest.approx(6 * g["iters_per_s"])
    assert rows["edits"][0]["batch"] == 3 and rows["edits"][0]["edits_per_s"] > 0
