"""Long-format result tables (DESIGN.md): one row per cell, a Markdown rendering beside the CSV."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from diffsec.artifact import atomic_file


@dataclass
class Cell:
    table: str
    row: str
    column: str
    metric: str
    backbone: str
    value: float | str
    paper_value: float | str = ""
    profile: str = ""
    n_samples: int | str = ""
    seed: int | str = ""


COLUMNS = [f.name for f in fields(Cell)]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def write_table(cells: list[Cell], csv_path: str | os.PathLike) -> None:
    """Write the CSV and its Markdown rendering (same stem, .md), each atomically."""
    with atomic_file(csv_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for c in cells:
            w.writerow({k: _fmt(v) for k, v in asdict(c).items()})
    md = Path(csv_path).with_suffix(".md")
    with atomic_file(md) as tmp:
        tmp.write_text(render_markdown(cells))


def render_markdown(cells: list[Cell]) -> str:
    """One Markdown table per (table, metric): rows x columns, 'ours (paper)' in each cell."""
    out = []
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.table, c.metric, c.backbone), []).append(c)
    for (table, metric, backbone), group in groups.items():
        rows = list(dict.fromkeys(c.row for c in group))
        cols = list(dict.fromkeys(c.column for c in group))
        val = {(c.row, c.column): c for c in group}
        head = f"### {table}: {metric}" + (f" [{backbone}]" if backbone else "")
        first = group[0]
        out += [head, "", f"profile `{first.profile}`, seed {first.seed}; cells: ours (paper)", "",
                "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for r in rows:
            cells_r = []
            for col in cols:
                c = val.get((r, col))
                if c is None:
                    cells_r.append("")
                else:
                    paper = f" ({_fmt(c.paper_value)})" if c.paper_value != "" else ""
                    cells_r.append(_fmt(c.value) + paper)
            out.append(f"| {r} | " + " | ".join(cells_r) + " |")
        out.append("")
    return "\n".join(out)


def read_table(csv_path: str | os.PathLike) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))
