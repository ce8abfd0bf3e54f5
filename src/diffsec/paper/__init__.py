"""Numbers printed in the papers (paper_value columns) and the shapes of their tables."""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources


@cache
def paper_values(name: str) -> dict[tuple[str, str, str, str], float]:
    """{(table, row, column, metric): value} from `<name>.csv` in this package, transcribed from
    the paper's tables (its `source` column names the table)."""
    with resources.files(__package__).joinpath(f"{name}.csv").open(newline="") as f:
        return {(r["table"], r["row"], r["column"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}
