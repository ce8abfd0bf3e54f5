"""The claims table: margins, uncertainty and verdicts against hand computations, and every claim
pointing at cells our tables have."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from conftest import REPO
from diffsec.paper.claims import AUC, CLAIMS, NONE, RATE, Claim, Ref, auc_se, claim_cells, evaluate, index, rate_se


def _row(table, row, column, metric, value, paper="", n=100):
    return {"table": table, "row": row, "column": column, "metric": metric, "backbone": "", "value": str(value),
            "paper_value": str(paper), "profile": "t", "n_samples": str(n), "seed": "0", "note": ""}


def test_rate_and_auc_errors_match_their_textbook_forms():
    assert rate_se(0.3, 50) == pytest.approx(math.sqrt(0.3 * 0.7 / 50))
    # at AUC 0.5 Hanley-McNeil is the Mann-Whitney null variance (P + N + 1) / (12 P N)
    p = n = 50
    assert auc_se(0.5, 100) == pytest.approx(math.sqrt((p + n + 1) / (12 * p * n)))
    assert auc_se(0.9, 100) < auc_se(0.7, 100)


def test_verdict_is_the_worst_pair_against_its_noise():
    cells = index([_row("t", "a", "c", "asr", 0.60, 0.9), _row("t", "b", "c", "asr", 0.50, 0.2),
                   _row("t", "x", "c", "asr", 0.95), _row("t", "y", "c", "asr", 0.05)])
    a, b, x, y = (Ref("t", r, "c", "asr") for r in "abxy")
    close = evaluate(Claim("close", "P", "a > b", ((a, b),), RATE), cells)
    se = math.sqrt(0.6 * 0.4 / 100 + 0.5 * 0.5 / 100)
    assert close.ours == pytest.approx(0.1) and close.se == pytest.approx(se) and close.paper == pytest.approx(0.7)
    assert close.verdict == "within noise"                       # 0.1 < 1.96 x 0.0700
    far = evaluate(Claim("far", "P", "x > y and a > y", ((x, y), (a, y)), RATE), cells)
    assert far.ours == pytest.approx(0.55) and far.verdict == "holds" and far.paper is None   # y has no paper value
    assert evaluate(Claim("no", "P", "y > x", ((y, x),), RATE), cells).verdict == "fails"
    bar = evaluate(Claim("bar", "P", "a >= 0.8", ((a, 0.8),), RATE), cells)
    assert bar.se == pytest.approx(rate_se(0.6, 100)) and bar.verdict == "fails"
    signed = evaluate(Claim("sign", "P", "a > b, no model", ((a, b),), NONE, slack=0.05), cells)
    assert signed.se is None and signed.ours == pytest.approx(0.15) and signed.verdict == "holds"


def test_a_missing_or_empty_cell_is_not_run():
    cells = index([_row("t", "a", "c", "auc", 0.7), _row("t", "b", "c", "auc", "")])
    v = evaluate(Claim("e", "P", "a > b", ((Ref("t", "a", "c", "auc"), Ref("t", "b", "c", "auc")),), AUC), cells)
    assert v.verdict == "not run" and v.ours is None and "t / b / c / auc" in v.why
    cells = claim_cells([v], "tiny", 0)
    assert [c.metric for c in cells] == ["margin", "se", "holds"]
    assert all(c.value == "" for c in cells) and cells[0].note.startswith("not run: a > b")


def test_mean_claims_use_the_cells_own_standard_errors():
    """MEAN: se^2 = seA^2 + seB^2 from the table's `se` column; a bar adds nothing; a cell without
    se gives no interval (the sign decides)."""
    from diffsec.paper.claims import MEAN, index

    rows = [{"table": "t", "row": r, "column": "c", "metric": "dino", "value": v, "paper_value": "",
             "n_samples": "75", "se": se} for r, v, se in (("a", "0.70", "0.01"), ("b", "0.67", "0.02"),
                                                            ("c", "0.60", "0.01"), ("d", "0.50", ""))]
    cells = index(rows)
    a, b, c, d = (Ref("t", r, "c", "dino") for r in "abcd")
    close = evaluate(Claim("close", "P", "a > b", ((a, b),), MEAN), cells)
    assert close.se == pytest.approx(np.hypot(0.01, 0.02)) and close.verdict == "within noise"   # 0.03 < 1.96 x 0.0224
    far = evaluate(Claim("far", "P", "a > c", ((a, c),), MEAN), cells)
    assert far.ours == pytest.approx(0.1) and far.se == pytest.approx(np.hypot(0.01, 0.01)) and far.verdict == "holds"
    assert evaluate(Claim("bar", "P", "a > 0.69", ((a, 0.69),), MEAN), cells).se == pytest.approx(0.01)
    no_se = evaluate(Claim("nose", "P", "a > d", ((a, d),), MEAN), cells)
    assert no_se.se is None and no_se.verdict == "holds"


def test_every_claim_names_cells_of_the_committed_tables():
    rows = [r for f in sorted((REPO / "results/tables").glob("*.csv")) for r in csv.DictReader(open(f))]
    coords = {(r["table"], r["row"], r["column"]) for r in rows}
    for claim in CLAIMS:
        for a, b in claim.pairs:
            for ref in (a, b):
                if isinstance(ref, Ref):
                    assert (ref.table, ref.row, ref.column) in coords, (claim.id, ref)
    assert len({c.id for c in CLAIMS}) == len(CLAIMS)


def test_table_claims_stage_judges_given_tables_and_refuses_a_missing_one(tmp_path, capsys):
    from diffsec.cli.main import main

    sau = tmp_path / "sau.csv"
    header = "table,row,column,metric,backbone,value,paper_value,profile,n_samples,seed,note\n"
    sau.write_text(header + "".join(
        f"sau,{row},Pixel,removal_accuracy,,{v},,tiny,200,0,\n"
        for row, v in (("Spatial Attention Unlearning", 0.99), ("Finetune Reversal", 0.5))))
    out = tmp_path / "claims.csv"
    assert main(["table-claims", "--tables", str(sau), "--profile", "tiny", "--out", str(out)]) == 0
    rows = {(r["row"], r["metric"]): r for r in csv.DictReader(open(out))}
    assert float(rows[("sau-above-reversal", "margin")]["value"]) == pytest.approx(0.49)
    assert rows[("sau-above-reversal", "holds")]["value"] == "1"
    assert rows[("szt-above-nominal", "margin")]["note"].startswith("not run")
    assert "| sau-removes-pixel |" in (tmp_path / "claims.md").read_text()
    fig = tmp_path / "fig" / "claims.png"
    assert main(["table-claims", "--tables", str(sau), "--profile", "tiny", "--out", str(tmp_path / "c2.csv"),
                 "--figure", str(fig)]) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 10_000
    assert main(["table-claims", "--tables", str(tmp_path / "none.csv"), "--profile", "tiny",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "no such table" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_agreement_rho_is_the_rank_correlation_over_measured_cells_only():
    """Spearman's rho against a direct computation (Pearson on average ranks); derived averages,
    cells without a paper value and empty values are left out; a constant side gives no row."""
    from scipy.stats import rankdata

    from diffsec.paper.agreement import agreement_cells, measured_pairs, spearman

    ours = [0.1, 0.4, 0.35, 0.8, 0.5, 0.5]
    paper = [1.0, 2.0, 4.0, 3.0, 6.0, 5.0]
    rows = [{"table": "t", "row": f"r{i}", "metric": "m", "backbone": "b", "value": str(a), "paper_value": str(b)}
            for i, (a, b) in enumerate(zip(ours, paper, strict=True))]
    rows += [{"table": "t", "row": "Psn Avg", "metric": "m", "backbone": "b", "value": "9", "paper_value": "-9"},
             {"table": "t", "row": "x", "metric": "m", "backbone": "b", "value": "", "paper_value": "1"},
             {"table": "t", "row": "y", "metric": "m", "backbone": "b", "value": "0.3", "paper_value": ""}]
    rows += [{"table": "u", "row": f"r{i}", "metric": "m", "backbone": "", "value": "0.5", "paper_value": str(i)}
             for i in range(6)]
    pairs = measured_pairs(rows)
    assert len(pairs[("t", "m", "b")]) == 6
    rx, ry = rankdata(ours), rankdata(paper)
    direct = np.corrcoef(rx, ry)[0, 1]
    rho, p = spearman(pairs[("t", "m", "b")])
    assert rho == pytest.approx(direct, abs=1e-12) and 0 < p < 1
    cells = agreement_cells(rows, "tiny", 0)
    assert [(c.row, c.column, c.metric, c.n_samples) for c in cells] == [
        ("t", "m [b]", "spearman_rho", 6), ("t", "m [b]", "spearman_p", 6)]   # u: our side is constant
    assert spearman([(1, 1), (2, 2), (3, 3), (4, 4)]) is None   # fewer than MIN_CELLS
