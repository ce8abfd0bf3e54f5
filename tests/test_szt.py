"""The SZT slice's evaluation and tables: metrics per run against direct computations, the
paper values as transcribed, and a table filled from eval-ti artifacts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import linalg


class MeanColour:
    """A transparent stand-in feature extractor (mean and std of each channel, plus a constant
    offset so cosines are not degenerate), so every number below can be recomputed by hand."""

    name = "mean-colour"

    def features(self, images, batch_size=64):
        x = np.asarray(images, np.float64) / 255
        return np.concatenate([x.mean((1, 2)), x.std((1, 2)), np.ones((len(x), 1))], 1)

    def text_features(self, texts):
        return np.array([[len(t) % 7 + 1.0, t.count("a") + 1.0, 1.0, 0.5, 0.2, 0.1, 1.0] for t in texts])


def _fid_direct(a, b):
    """Tr (S1 S2)^1/2 as the sum of square roots of the eigenvalues of S2^1/2 S1 S2^1/2, which is
    exact for the singular covariances of a few reference images (no sqrtm of a product)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = linalg.eigh(s2)
    r2 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    e = linalg.eigvalsh(r2 @ s1 @ r2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(e, 0, None)).sum())


def test_evaluate_runs_matches_direct_computation():
    from diffsec.personalize.evaluate import average_over_concepts, clip_texts, evaluate_runs

    rng = np.random.default_rng(1)
    clean = {"images": rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)}
    templates = ["a {0} {1} in the snow", "a {0} on the beach"]
    runs = [{"name": f"{c}-{s}", "indices": idx, "tags": {"concept": c, "set": s}}
            for c, idx in (("dog", [0, 1, 2]), ("cat", [3, 4, 5])) for s in ("clean", "adm+")]
    names = np.repeat([r["name"] for r in runs], 10)
    gen = {"images": rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), "run": names,
           "template": np.tile([0, 1], 20), "class_name": np.array([n.split("-")[0] for n in names])}
    bb = MeanColour()
    out = evaluate_runs(gen, runs, clean, templates, bb, bb, bb)
    texts = clip_texts(templates, gen["template"], gen["class_name"])
    assert texts[:2] == ["a dog in the snow", "a dog on the beach"]
    for k, r in enumerate(runs):
        g, ref = bb.features(gen["images"][10 * k:10 * k + 10]), bb.features(clean["images"][r["indices"]])
        cos = (g / np.linalg.norm(g, axis=1, keepdims=True)) @ (ref / np.linalg.norm(ref, axis=1, keepdims=True)).T
        t = bb.text_features(texts[10 * k:10 * k + 10])
        cs = np.maximum((g * t).sum(1) / np.linalg.norm(g, axis=1) / np.linalg.norm(t, axis=1), 0).mean()
        m = out[r["name"]]
        assert m["dino"] == pytest.approx(cos.mean(), abs=1e-12)
        assert m["fid"] == pytest.approx(_fid_direct(g, ref), rel=1e-5, abs=1e-7)
        assert m["clip_score"] == pytest.approx(cs, abs=1e-12)
        assert (m["concept"], m["set"], m["n_generated"], m["n_reference"]) == (*r["name"].split("-"), 10, 3)
    avg = average_over_concepts(out)
    assert avg["adm+"]["dino"] == pytest.approx((out["dog-adm+"]["dino"] + out["cat-adm+"]["dino"]) / 2)
    assert avg["clean"]["n_concepts"] == 2 and avg["clean"]["n_generated"] == 20


def test_paper_values_are_consistent():
    """The transcription: every cell present, and each 'Psn Avg' is the mean of its six poison
    rows up to the paper's rounding (a typo in either would break this)."""
    from diffsec.paper import paper_values
    from diffsec.paper.szt import POISON_AVG, ROWS, TABLES

    pv = paper_values("szt")
    assert len(pv) == 864
    for table, shape in TABLES.items():
        for col in shape["columns"]:
            for metric in ("dino", "fid", "clip_score"):
                rows = [pv[(table, r, col, metric)] for r in shape["rows"]]
                assert all(v > 0 for v in rows)
                if POISON_AVG in {r for (t, r, _, _) in pv if t == table}:
                    poisons = [pv[(table, r, col, metric)] for r in ROWS if r != "Clean"]
                    tol = 1.6 if metric == "fid" else 0.0151
                    assert pv[(table, POISON_AVG, col, metric)] == pytest.approx(np.mean(poisons), abs=tol), \
                        (table, col, metric)
    assert pv[("szt", "ADM+", "SZT", "dino")] == 0.45 and pv[("szt_timestep", "EA", "High 0.9", "fid")] == 439


def test_table_szt_from_metrics(tmp_path):
    from diffsec.cli.main import main
    from diffsec.paper.szt import TABLES, defenses_of, sets_of
    from diffsec.tables import read_table

    dirs = []
    for i, d in enumerate(defenses_of("szt_masking")):
        per_set = {s: {"dino": 0.1 * i + 0.01 * j, "fid": 100.0 + j, "clip_score": 0.5, "n_generated": 24}
                   for j, s in enumerate(sets_of("szt_masking"))}
        p = tmp_path / d
        p.mkdir()
        (p / "metrics.json").write_text(json.dumps({"label": d, "per_set": per_set, "backbones": {
            "dino": "mean-colour", "fid": "mean-colour", "clip_score": "clip-x"}}))
        dirs.append(str(p))
    out = tmp_path / "szt_masking.csv"
    assert main(["table-szt", "--table", "szt_masking", "--metrics", *dirs, "--profile", "smoke",
                 "--out", str(out)]) == 0
    rows = read_table(out)
    assert len(rows) == 5 * 8 * 3
    cell = {(r["row"], r["column"], r["metric"]): r for r in rows}
    assert float(cell[("Psn Avg", "IM", "fid")]["value"]) == pytest.approx(np.mean(range(101, 107)))
    adm_lm = cell[("ADM+", "LM", "dino")]
    assert adm_lm["paper_value"] == "0.36" and adm_lm["backbone"] == "mean-colour"
    assert out.with_suffix(".md").is_file()
    # a missing defense column is a one-line error, and no table is written
    assert main(["table-szt", "--table", "szt_masking", "--metrics", *dirs[:-1], "--profile", "smoke",
                 "--out", str(tmp_path / "bad.csv")]) == 2
    assert not (tmp_path / "bad.csv").exists()
    assert set(TABLES) == {"szt", "szt_timestep", "szt_masking", "szt_dilation"}


def test_a_table_cell_refuses_a_value_that_is_not_a_number():
    from diffsec.errors import DiffsecError
    from diffsec.tables import Cell, render_markdown

    with pytest.raises(DiffsecError, match="not a number .a reason belongs in `note`."):
        Cell("t", "r", "c", "m", "", "not run: no data")
    cell = Cell("t", "r", "c", "m", "", "", 0.5, "tiny", 0, 0, "not run: no data")
    assert "| r | — (0.5) [not run: no data] |" in render_markdown([cell])
