"""How well our tables rank their cells the way the papers do: Spearman's rho per table and metric.

For one (table, metric, backbone) group, take every cell with both a measured `value` and a
`paper_value`, leaving out derived rows (`Psn Avg`, any row named "... Avg": means of other cells
of the same group, which would count those cells twice). With x = our values, y = the paper's,
R(.) their average ranks (ties share the mean rank):

    rho = corr(R(x), R(y))                         (Pearson correlation of the ranks)
    t   = rho sqrt((n - 2) / (1 - rho^2)),  p = 2 P(T_{n-2} > |t|)   (two-sided, scipy.stats.spearmanr)

The cells of one table share rows and columns, so they are not independent draws: the p-value is
optimistic, a guide rather than a test. Groups with fewer than `MIN_CELLS` pairs or a constant
side (rho undefined) are left out. Paper values are on the paper's models and data; rho asks only
whether our numbers order the cells as theirs do.
"""

from __future__ import annotations

from collections import defaultdict

from diffsec.tables import Cell, cell_number

MIN_CELLS = 5


def derived(row: str) -> bool:
    return row == "Psn Avg" or row.endswith(" Avg")


def measured_pairs(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
    """{(table, metric, backbone): [(ours, paper), ...]} over measured, non-derived cells."""
    groups = defaultdict(list)
    for r in rows:
        ours, paper = cell_number(r.get("value", "")), cell_number(r.get("paper_value", ""))
        if ours is None or paper is None or derived(r["row"]):
            continue
        groups[(r["table"], r["metric"], r["backbone"])].append((ours, paper))
    return dict(groups)


def spearman(pairs: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(rho, two-sided p) of the pairs, or None when undefined (too few, or one side constant)."""
    from scipy.stats import spearmanr

    if len(pairs) < MIN_CELLS or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return None
    res = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
    return float(res.statistic), float(res.pvalue)


def agreement_cells(rows: list[dict[str, str]], profile: str, seed: int) -> list[Cell]:
    """One row per group: metric `spearman_rho` and `spearman_p`, column = the table's metric and
    backbone, n_samples = the number of cell pairs."""
    cells = []
    for (table, metric, backbone), pairs in sorted(measured_pairs(rows).items()):
        res = spearman(pairs)
        if res is None:
            continue
        column = f"{metric} [{backbone}]" if backbone else metric
        for name, value in zip(("spearman_rho", "spearman_p"), res, strict=True):
            cells.append(Cell(table="agreement", row=table, column=column, metric=name, backbone="",
                              value=value, paper_value="", profile=profile, n_samples=len(pairs), seed=seed))
    return cells


def agreement_markdown(cells: list[Cell], profile: str) -> str:
    """One line per (table, metric): cells compared, rho, p."""
    from diffsec.tables import markdown_table

    by = defaultdict(dict)
    for c in cells:
        by[(c.row, c.column)][c.metric] = c
    lines = [[t, col, str(d["spearman_rho"].n_samples), f"{d['spearman_rho'].value:.2f}",
              f"{d['spearman_p'].value:.2g}"] for (t, col), d in by.items()]
    return (f"### agreement: Spearman rho of our cells against the papers'\n\nprofile `{profile}`; measured cells "
            "with a paper value, derived averages left out; cells share rows and columns, so p is optimistic\n\n"
            + markdown_table(["table", "metric [backbone]", "cells", "rho", "p"], lines, "llrrr") + "\n")
