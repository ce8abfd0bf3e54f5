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
    centre = np.array([0.5, 0.5, 0.5, 0.2, 0.2, 0.2, 1.0])
    out = evaluate_runs(gen, runs, clean, templates, bb, bb, bb, centre)
    texts = clip_texts(templates, gen["template"], gen["class_name"])
    assert texts[:2] == ["a dog in the snow", "a dog on the beach"]
    for k, r in enumerate(runs):
        g, ref = bb.features(gen["images"][10 * k:10 * k + 10]), bb.features(clean["images"][r["indices"]])
        cos = (g / np.linalg.norm(g, axis=1, keepdims=True)) @ (ref / np.linalg.norm(ref, axis=1, keepdims=True)).T
        t = bb.text_features(texts[10 * k:10 * k + 10])
        cs = np.maximum((g * t).sum(1) / np.linalg.norm(g, axis=1) / np.linalg.norm(t, axis=1), 0).mean()
        m = out[r["name"]]
        assert m["dino"] == pytest.approx(cos.mean(), abs=1e-12)
        gc, rc = g - centre, ref - centre
        cos_c = (gc / np.linalg.norm(gc, axis=1, keepdims=True)) @ (rc / np.linalg.norm(rc, axis=1, keepdims=True)).T
        assert m["dino_centred"] == pytest.approx(cos_c.mean(), abs=1e-12)
        # se of the mean over the 10 generated images of each one's mean cosine to the references
        for key, c in (("dino_se", cos), ("dino_centred_se", cos_c)):
            s_i = c.mean(axis=1)
            assert m[key] == pytest.approx(np.sqrt(((s_i - s_i.mean()) ** 2).sum() / 9 / 10), rel=1e-9)
        assert m["fid"] == pytest.approx(_fid_direct(g, ref), rel=1e-5, abs=1e-7)
        assert m["clip_score"] == pytest.approx(cs, abs=1e-12)
        assert (m["concept"], m["set"], m["n_generated"], m["n_reference"]) == (*r["name"].split("-"), 10, 3)
    avg = average_over_concepts(out)
    assert avg["adm+"]["dino"] == pytest.approx((out["dog-adm+"]["dino"] + out["cat-adm+"]["dino"]) / 2)
    assert avg["clean"]["n_concepts"] == 2 and avg["clean"]["n_generated"] == 20
    for key in ("dino_se", "dino_centred_se"):   # se of a mean of two independent means
        assert avg["adm+"][key] == pytest.approx(np.hypot(out["dog-adm+"][key], out["cat-adm+"][key]) / 2)
    assert "fid_se" not in avg["adm+"]


def test_paper_values_are_consistent():
    """The transcription: every cell present, and each 'Psn Avg' is the mean of its six poison
    rows up to the paper's rounding (a typo in either would break this)."""
    from diffsec.paper import paper_values
    from diffsec.paper.szt import PAPER_TABLES, POISON_AVG, ROWS, TABLES

    pv = paper_values("szt")
    assert len(pv) == 864 + 12
    assert {t for (t, *_) in pv} == set(PAPER_TABLES) == set(TABLES) - {"szt_prompts"}
    for table in PAPER_TABLES:
        shape = TABLES[table]
        for col in shape["columns"]:
            for metric in ("dino", "fid", "clip_score"):
                # Table 2 is DINO only, at 1k / 5k / 10k steps: our 300-step columns have none
                printed = table != "szt_ti_hparams" or (metric == "dino" and col.endswith("1k"))
                rows = [pv.get((table, r, col, metric)) for r in shape["rows"] if r in ROWS]
                assert all(v is not None and v > 0 for v in rows) if printed else rows == [None] * len(rows)
                if POISON_AVG in {r for (t, r, _, _) in pv if t == table}:
                    poisons = [pv[(table, r, col, metric)] for r in ROWS if r != "Clean"]
                    tol = 1.6 if metric == "fid" else 0.0151
                    assert pv[(table, POISON_AVG, col, metric)] == pytest.approx(np.mean(poisons), abs=tol), \
                        (table, col, metric)
    assert pv[("szt", "ADM+", "SZT", "dino")] == 0.45 and pv[("szt_timestep", "EA", "High 0.9", "fid")] == 439
    assert pv[("szt_ti_hparams", "Clean", "lr 5e-3 · 1k", "dino")] == 0.43


def test_table_szt_from_metrics(tmp_path):
    from diffsec.cli.main import main
    from diffsec.paper.szt import TABLES, defenses_of, sets_of
    from diffsec.tables import read_table

    dirs = []
    for i, d in enumerate(defenses_of("szt_masking")):
        per_set = {s: {"dino": 0.1 * i + 0.01 * j, "dino_centred": 0.05 * j, "fid": 100.0 + j, "clip_score": 0.5,
                       "n_generated": 24} for j, s in enumerate(sets_of("szt_masking"))}
        p = tmp_path / d
        p.mkdir()
        (p / "metrics.json").write_text(json.dumps({"label": d, "per_set": per_set, "backbones": {
            "dino": "mean-colour", "dino_centred": "mean-colour-centred", "fid": "mean-colour",
            "clip_score": "clip-x"}}))
        dirs.append(str(p))
    out = tmp_path / "szt_masking.csv"
    assert main(["table-szt", "--table", "szt_masking", "--metrics", *dirs, "--profile", "smoke",
                 "--out", str(out)]) == 0
    rows = read_table(out)
    assert len(rows) == 5 * 8 * 4
    cell = {(r["row"], r["column"], r["metric"], r["backbone"]): r for r in rows}
    assert float(cell[("Psn Avg", "IM", "fid", "mean-colour")]["value"]) == pytest.approx(np.mean(range(101, 107)))
    adm_lm = cell[("ADM+", "LM", "dino", "mean-colour")]
    assert adm_lm["paper_value"] == "0.36"
    # the centred DINO: the same metric on a second backbone name, after the raw one, no paper value
    centred = cell[("Psn Avg", "LM", "dino", "mean-colour-centred")]
    assert float(centred["value"]) == pytest.approx(0.05 * np.mean(range(1, 7))) and centred["paper_value"] == ""
    order = [(r["row"], r["column"], r["backbone"]) for r in rows if r["metric"] == "dino"]
    assert order.index(("ADM+", "LM", "mean-colour")) < order.index(("ADM+", "LM", "mean-colour-centred"))
    assert out.with_suffix(".md").is_file()
    # a missing defense column is a one-line error, and no table is written
    assert main(["table-szt", "--table", "szt_masking", "--metrics", *dirs[:-1], "--profile", "smoke",
                 "--out", str(tmp_path / "bad.csv")]) == 2
    assert not (tmp_path / "bad.csv").exists()
    assert set(TABLES) == {"szt", "szt_prompts", "szt_ti_hparams", "szt_timestep", "szt_masking", "szt_dilation"}


def test_da_targeted_is_a_row_of_the_main_table_but_not_of_its_poison_average():
    from diffsec.paper.szt import table_cells

    sets = ["clean", "adm+", "adm-", "sds+", "sds-", "ea", "da", "da-targeted"]
    by = {}
    for spec in ("nominal", "regen", "pdmpure", "advclean", "jpeg", "t600", "lm", "jpeg_t600", "jpeg_lm", "szt"):
        per = {s: {"dino": 0.1 * j, "dino_se": 0.01 * (j + 1), "dino_centred": 0.0, "dino_centred_se": 0.0,
                   "fid": 1.0, "clip_score": 0.5, "n_generated": 24} for j, s in enumerate(sets)}
        by[spec] = {"per_set": per, "backbones": {"dino": "b", "dino_centred": "b-centred", "fid": "b",
                                                  "clip_score": "c"}}
    cells = {(c.row, c.column, c.metric, c.backbone): c for c in table_cells("szt", by, "tiny", 0)}
    assert cells[("DA-targeted", "SZT", "dino", "b")].value == pytest.approx(0.7)
    assert cells[("DA-targeted", "SZT", "dino", "b")].paper_value == ""
    assert cells[("Psn Avg", "SZT", "dino", "b")].value == pytest.approx(np.mean([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert cells[("Psn Avg", "SZT", "dino", "b")].n_samples == 6 * 24
    # each row carries its set's se; the average's is that of a mean of six independent means
    assert cells[("EA", "SZT", "dino", "b")].se == pytest.approx(0.06)
    assert cells[("Psn Avg", "SZT", "dino", "b")].se == pytest.approx(
        np.sqrt(sum((0.01 * j) ** 2 for j in range(2, 8))) / 6)
    assert cells[("Psn Avg", "SZT", "fid", "b")].se == ""   # FID has none


def test_prompt_form_columns_read_the_class_noun_samples_by_their_label():
    from diffsec.errors import DiffsecError
    from diffsec.paper.szt import column_source, column_spec, columns_of, defenses_of, table_cells

    assert column_source("lm") == ("lm", "token") and column_source("lm/class") == ("lm", "class")
    assert all(column_source(column_spec(d, f)) == (d, f) for d in ("lm", "nominal") for f in ("token", "class"))
    with pytest.raises(DiffsecError, match="prompt form 'caption'"):
        column_source("lm/caption")
    assert ("nominal", "class") in columns_of("szt_prompts") and ("nominal", "token") in columns_of("szt_prompts")
    assert defenses_of("szt_prompts") == ["nominal", "jpeg", "t600", "lm", "szt"]
    sets = ["clean", "adm+", "adm-", "sds+", "sds-", "ea", "da"]
    by = {}
    for spec in ("nominal", "jpeg", "t600", "lm", "szt"):
        for form, v in (("", 0.3), ("/class", 0.6)):
            per = {s: {"dino": v, "dino_centred": v / 2, "fid": 1.0, "clip_score": 0.5, "n_generated": 24}
                   for s in sets}
            by[spec + form] = {"per_set": per, "backbones": {"dino": "b", "dino_centred": "b-centred",
                                                             "fid": "b", "clip_score": "c"}}
    cells = {(c.row, c.column, c.metric, c.backbone): c.value for c in table_cells("szt_prompts", by, "tiny", 0)}
    assert cells[("Psn Avg", "Nominal", "dino", "b")] == pytest.approx(0.3)
    assert cells[("Psn Avg", "Nominal +class", "dino", "b")] == pytest.approx(0.6)
    del by["lm/class"]
    with pytest.raises(DiffsecError, match="lm/class"):
        table_cells("szt_prompts", by, "tiny", 0)


def test_reference_levels_match_a_direct_computation():
    """Floor: seeded same-class (or class-balanced) draws vs the references; ceiling: each photo
    against the concept's others; both also after centring on the concept set's mean feature."""
    from diffsec.paper.szt import reference_cells
    from diffsec.personalize.evaluate import (
        balanced_indices,
        centre_of,
        floor_indices,
        held_out_cosine,
        reference_levels,
    )

    rng = np.random.default_rng(3)
    clean = {"images": rng.integers(0, 256, (7, 8, 8, 3), dtype=np.uint8),
             "concept": np.array(["dog"] * 4 + ["teapot"] * 3), "class_name": np.array(["dog"] * 4 + ["teapot"] * 3)}
    names = ["cat", "dog"]
    others = {"images": rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), "labels": np.arange(40) % 2}
    bb = MeanColour()
    mu = centre_of(others, names, bb, 10, 0)
    idx = balanced_indices(others["labels"], 2, 10, 0)   # 5 + 5
    np.testing.assert_array_equal(idx, floor_indices(others["labels"], names, "teapot", 10, 0))
    assert np.bincount(others["labels"][idx]).tolist() == [5, 5]
    np.testing.assert_allclose(mu, bb.features(others["images"][idx]).mean(0))
    out = reference_levels(clean, others, names, bb, mu, n=6, seed=1)
    f = bb.features(clean["images"])

    def cos(a, b):
        return (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T

    for c, rows in (("dog", slice(0, 4)), ("teapot", slice(4, 7))):
        ref = f[rows]
        pairs = [cos(ref[i:i + 1], ref[j:j + 1])[0, 0] for i in range(len(ref)) for j in range(len(ref)) if i != j]
        idx = floor_indices(others["labels"], names, c, 6, 1)
        g = bb.features(others["images"][idx])
        m = out["per_concept"][c]
        assert m["ceiling"] == pytest.approx(np.mean(pairs), abs=1e-12)
        assert m["floor"] == pytest.approx(cos(g, ref).mean(), abs=1e-12)
        assert m["floor_centred"] == pytest.approx(cos(g - mu, ref - mu).mean(), abs=1e-12)
        assert m["ceiling_centred"] == pytest.approx(held_out_cosine(ref - mu), abs=1e-12)
    # dog is a class of the other set (6 dogs); teapot is not (3 + 3, class-balanced)
    assert set(others["labels"][floor_indices(others["labels"], names, "dog", 6, 1)]) == {1}
    teapot_floor = others["labels"][floor_indices(others["labels"], names, "teapot", 6, 1)]
    assert np.bincount(teapot_floor).tolist() == [3, 3]
    assert out["per_concept"]["teapot"]["floor_source"] == "all classes"
    per = out["per_concept"]
    assert out["mean"]["ceiling"] == pytest.approx(np.mean([per[c]["ceiling"] for c in ("dog", "teapot")]))
    ref_json = {"backbones": {"dino": "b", "dino_centred": "b-centred"}, **out}
    cells = reference_cells("szt", ref_json, "tiny", 0)
    assert {(c.row, c.backbone) for c in cells} == {(r, b) for r in ("Floor (CIFAR class)", "Ceiling (held-out photo)")
                                                    for b in ("b", "b-centred")}
    assert all(c.column == "Reference" and c.metric == "dino" for c in cells)


def test_a_table_cell_refuses_a_value_that_is_not_a_number():
    from diffsec.errors import DiffsecError
    from diffsec.tables import Cell, render_markdown

    with pytest.raises(DiffsecError, match="not a number .a reason belongs in `note`."):
        Cell("t", "r", "c", "m", "", "not run: no data")
    cell = Cell("t", "r", "c", "m", "", "", 0.5, "tiny", 0, 0, "not run: no data")
    assert "| r | — (0.5) [not run: no data] |" in render_markdown([cell])
