"""SeDID's stages through their CLIs: bad input is one line with nothing written, sedid-score
resumes after a SIGKILL to the bytes of an uninterrupted run, and the paper values transcribed
in paper/sedid.csv agree with themselves (Table 2's averages, Table 2's Stat vs Table 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsec.cli.main import main
from diffsec.imageset import save_imageset
from resume_harness import check_kill_resume

RUN = ["--threads", "1", "--device", "cpu"]
SCORE = ["--k", "330", "--t-secs", "[330,660]", "--loss-ts", "[100]", "--sweep-ks", "[330]", "--sweep-t", "990",
         "--sweep-n", "2", "--batch-size", "2"]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    from diffsec.models import ddpm

    d = tmp_path_factory.mktemp("sedid")
    rng = np.random.default_rng(0)
    save_imageset(d / "real.npz", rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8))
    save_imageset(d / "gen.npz", rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8))
    torch.manual_seed(0)
    ddpm.save_ddpm(*ddpm.build_ddpm(ddpm.DDPMConfig(8, [8, 16], [False, False], 1)), d / "ddpm" / "pipeline")
    for name in ("real", "gen"):
        assert main(["sedid-score", "--model", str(d / "ddpm"), "--images", str(d / f"{name}.npz"), *SCORE, *RUN,
                     "--out", str(d / f"scores-{name}")]) == 0
    assert main(["sedid-score", "--model", str(d / "ddpm"), "--images", str(d / "gen.npz"), *SCORE[:2], "--t-secs",
                 "[330]", *SCORE[4:], *RUN, "--out", str(d / "scores-other")]) == 0
    return d


def cases():
    score = ["sedid-score", "--model", "{d}/ddpm", "--images", "{d}/real.npz"]
    ev = ["sedid-eval", "--label", "ddpm", "--real", "{d}/scores-real", "--epochs", "1", "--batch-size", "4"]
    return [
        ("k-zero", [*score, "--k", "0"], "step k must be >= 1"),
        ("t-not-multiple", [*score, "--k", "165", "--t-secs", "[200]"], "not a multiple of k = 165"),
        ("t-too-large", [*score, "--k", "500", "--t-secs", "[1000]"], "not a multiple of k = 500"),
        ("loss-t-outside", [*score, "--loss-ts", "[1000]"], "loss-attack timesteps"),
        ("too-many-images", [*score, "--n", "13"], "holds 12 images"),
        ("jpeg-quality", [*score, "--jpeg", "101"], "--jpeg"),
        ("no-model", ["sedid-score", "--model", "{d}/nope", "--images", "{d}/real.npz"], "--model"),
        ("no-images", ["sedid-score", "--model", "{d}/ddpm", "--images", "{d}/nope.npz"], "does not exist"),
        ("not-scores", [*ev, "--generated", "{d}/ddpm"], "not a sedid-score artifact"),
        ("other-grid", [*ev, "--generated", "{d}/scores-other"], "different t_secs"),
        ("bad-fraction", [*ev, "--generated", "{d}/scores-gen", "--train-frac", "1.5"], "fractions"),
        ("eval-epochs", [*ev, "--generated", "{d}/scores-gen", "--epochs", "0"], "epochs"),
        ("figure-no-eval", ["figure-sedid", "--eval", "{d}/scores-gen", "--real", "{d}/scores-real", "--generated",
                            "{d}/scores-gen", "--real-images", "{d}/real.npz", "--generated-images", "{d}/gen.npz"],
         "not a sedid-eval artifact"),
    ]


@pytest.mark.parametrize("argv,why", [pytest.param(a, w, id=i) for i, a, w in cases()])
def test_bad_input_is_one_line_and_writes_nothing(d, tmp_path, capsys, argv, why):
    out = tmp_path / "out"
    capsys.readouterr()
    assert main([*(a.format(d=d) for a in argv), *RUN, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"diffsec {argv[0]}: error: "), lines
    assert why in lines[0], lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_killed_sedid_score_resumes_bytes_identical(d, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DIFFSEC_KILL_AT_SAVE", raising=False)
    argv = ["sedid-score", "--model", str(d / "ddpm"), "--images", str(d / "real.npz"), *SCORE, "--ckpt-every", "1"]
    check_kill_resume(argv, tmp_path, capsys, 2, 2, ["scores.npz"], ["--loss-ts", "[200]"])


def test_eval_and_figures_run_on_scored_sets(d, tmp_path, capsys):
    import json

    ev = tmp_path / "eval"
    assert main(["sedid-eval", "--label", "ddpm", "--real", str(d / "scores-real"), "--generated",
                 str(d / "scores-gen"), "--train-frac", "0.5", "--epochs", "2", "--batch-size", "4", *RUN,
                 "--out", str(ev)]) == 0
    m = json.loads((ev / "metrics.json").read_text())
    assert m["label"] == "ddpm" and set(m["table1"]) == {"330", "660"} and set(m["table2"]) == {"loss", "stat", "nn"}
    assert m["split"]["test"] == 12 and m["table2"]["stat"]["n_real"] == 6
    assert main(["figure-sedid", "--eval", str(ev), "--real", str(d / "scores-real"), "--generated",
                 str(d / "scores-gen"), "--real-images", str(d / "real.npz"), "--generated-images",
                 str(d / "gen.npz"), "--n-images", "3", *RUN, "--out", str(tmp_path / "fig")]) == 0
    assert {p.name for p in (tmp_path / "fig").glob("*.png")} == {"step_sweep.png", "stat_vs_t.png", "tpr_vs_t.png",
                                                                  "roc.png", "maps.png"}


def test_paper_values_agree_with_themselves():
    from diffsec.paper import paper_values

    p = paper_values("sedid")
    for method in ("Existing method", "SeDID_Stat", "SeDID_NNs"):
        for metric in ("auc", "acc"):
            cols = [p[("sedid", method, c, metric)] for c in ("CIFAR-10", "Tiny-ImageNet", "CelebA")]
            assert p[("sedid", method, "Average", metric)] == pytest.approx(np.mean(cols), abs=6e-5)
    # Table 2's Stat on CIFAR-10 is Table 1's t_SEC 990 row (0.8874 vs 0.8875: the paper's rounding)
    assert p[("sedid", "SeDID_Stat", "CIFAR-10", "auc")] == pytest.approx(p[("sedid_stat", "t_SEC 990", "CIFAR-10",
                                                                               "auc")], abs=2e-4)
    assert p[("sedid_stat", "t_SEC 990", "CelebA", "auc")] == 0.0   # the fixed direction, kept


def test_eval_of_a_set_scored_without_the_sweep(d, tmp_path):
    """The controls are scored without the step-size sweep: their evaluation has no Fig. 2 data."""
    import json

    gen = tmp_path / "gen-nosweep"
    assert main(["sedid-score", "--model", str(d / "ddpm"), "--images", str(d / "gen.npz"), *SCORE[:8],
                 "--sweep-t", "990", "--batch-size", "2", *RUN, "--out", str(gen)]) == 0
    assert main(["sedid-eval", "--label", "jpeg", "--real", str(d / "scores-real"), "--generated", str(gen),
                 "--train-frac", "0.5", "--epochs", "1", "--batch-size", "4", *RUN, "--out", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["sweep"] == {}


def test_bench_sedid_counts_the_model_calls_it_times(d, tmp_path):
    import json

    from diffsec.detect.bench import terror_throughput
    from diffsec.diffusion.inversion import alphas_cumprod
    from diffsec.models.ddpm import build_scheduler

    calls = []

    def counting(x, t):
        calls.append(len(x))
        return torch.tanh(x)

    rows = terror_throughput(counting, alphas_cumprod(dict(build_scheduler().config)), (3, 8, 8), [2], 330, [330, 660],
                             repeats=1)
    # warm-up + one timed batch, each: two inversion steps up to 660, one denoising step per t_SEC
    assert len(calls) == 2 * rows[0]["model_calls_per_image"] == 2 * (2 + 2) and rows[0]["images_per_s"] > 0
    out = tmp_path / "bench.json"
    assert main(["bench-sedid", "--model", str(d / "ddpm"), "--batch-sizes", "2", "--repeats", "1", "--k", "330",
                 "--t-secs", "330", "660", "--threads", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())[0]["batch"] == 2
