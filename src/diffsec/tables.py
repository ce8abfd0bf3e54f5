"""Long-format result tables (DESIGN.md): one row per cell, a Markdown rendering beside the CSV.

`value` is a number or empty, so that any reader (pandas included) parses the column as floats;
why a cell holds no number, or what qualifies one ("CIFAR-10 only"), is its `note`. `se` is the
standard error of `value` where the stage measured one (a mean over samples: sd / sqrt(n); what it
covers is the table's to say), else empty; `diffsec.paper.claims` judges claims against it."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from diffsec.artifact import atomic_file
from diffsec.errors import DiffsecError


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
    note: str = ""
    se: float | str = ""   # last: older tables (and positional callers) end at `note`

    def __post_init__(self):
        for name in ("value", "se"):
            v = getattr(self, name)
            if isinstance(v, str) and v != "" or isinstance(v, bool):
                raise DiffsecError(f"table {self.table}, cell ({self.row}, {self.column}, {self.metric}): {name} "
                                   f"{v!r} is not a number (a reason belongs in `note`)")


COLUMNS = [f.name for f in fields(Cell)]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def write_table(cells: list[Cell], csv_path: str | os.PathLike, markdown: str | None = None) -> None:
    """Write the CSV and its Markdown rendering (same stem, .md; `markdown` replaces the generic
    one), each atomically."""
    with atomic_file(csv_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for c in cells:
            w.writerow({k: _fmt(v) for k, v in asdict(c).items()})
    md = Path(csv_path).with_suffix(".md")
    with atomic_file(md) as tmp:
        tmp.write_text(render_markdown(cells) if markdown is None else markdown)


def render_markdown(cells: list[Cell]) -> str:
    """One Markdown table per (table, metric): rows x columns, 'ours (paper)' in each cell, 'ours
    ± se (paper)' where the cell has a standard error."""
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
                    se = f" ± {c.se:.2g}" if c.se != "" and c.value != "" else ""
                    note = f" [{c.note}]" if c.note else ""
                    cells_r.append((_fmt(c.value) if c.value != "" else "—") + se + paper + note)
            out.append(f"| {r} | " + " | ".join(cells_r) + " |")
        out.append("")
    return "\n".join(out)


def mean_se(ses) -> float:
    """Standard error of the plain mean of k independent estimates with standard errors `ses`:
    sqrt(sum se^2) / k (e.g. a mean over concepts, or SZT's Psn Avg over six poisons)."""
    return math.sqrt(sum(float(s) ** 2 for s in ses)) / len(ses)


def rate_se(p: float, n: int) -> float:
    """Binomial standard error of a share p of n independent trials: sqrt(p (1 - p) / n)."""
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def cell_number(text) -> float | None:
    """A table field read back as a number: None for an empty, non-numeric or NaN field."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def read_table(csv_path: str | os.PathLike) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def worlds_cells(resnets: list[dict], mnist: dict, ddpm_fid: dict, train_fid: dict, t2i_class: dict,
                 t2i_vae: dict | None, profile: str, seed: int) -> list[Cell]:
    """The foundation's sanity table from its measurements (eval.json / metrics.json contents):
    classifier accuracies (akamaster's reported top-1, in percent on PNG CIFAR-10, beside ours),
    DDPM FID beside the FID of real train images, T2I class fidelity and its VAE's ceiling."""
    common = {"table": "worlds", "profile": profile, "seed": seed}
    cells = [Cell(row=ev["arch"], column="CIFAR-10 test (mirror JPEG q75)", metric="accuracy", backbone="",
                  value=ev["accuracy"], paper_value=ev["reported_top1"] / 100 if ev.get("reported_top1") else "",
                  n_samples=ev["n"], **common) for ev in resnets]
    cells.append(Cell(row="mnist-cnn", column="MNIST held-out", metric="accuracy", backbone="",
                      value=mnist["heldout_accuracy"], n_samples=mnist["n_heldout"], **common))
    for row, m in (("ddpm samples", ddpm_fid), ("CIFAR-10 train images", train_fid)):
        cells += [Cell(row=row, column="vs CIFAR-10 test", metric=metric, backbone=m["backbone"], value=m[metric],
                       n_samples=m["n_fake"], **common) for metric in ("fid", "precision", "recall")]
    m = t2i_class
    cells.append(Cell(row="t2i 'a photo of a <class>' samples", column="prompted class", metric="accuracy",
                      backbone=m["classifier"], value=m["accuracy"], n_samples=m["n"], **common))
    if t2i_vae is not None:
        m, row = t2i_vae, "CIFAR-10 test images through the t2i VAE"
        cells += [Cell(row=row, column="true class", metric="accuracy", backbone=m["classifier"],
                       value=m["accuracy"], n_samples=m["n"], **common),
                  Cell(row=row, column="vs originals", metric="psnr", backbone="", value=m["vae_psnr"],
                       n_samples=m["n"], **common)]
    return cells


def markdown_table(header: list[str], rows: list[list[str]], align: str) -> str:
    """A Markdown table; `align` has one letter per column, l (left) or r (right)."""
    def line(cells):
        return "|" + "|".join(f" {c} " if c != "" else " " for c in cells) + "|"

    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    return "\n".join([line(header), rule, *map(line, rows)])


def benchmark_rows(directory: str | os.PathLike) -> list[tuple[str, float, float, float]]:
    """(job, wall s, peak RSS MiB, mean CPU load %) of the latest run of every Snakemake benchmark
    file under `directory` (NaN where Snakemake wrote '-' for what it could not measure)."""
    def num(rec: dict, key: str) -> float:
        try:
            return float(rec.get(key, "nan"))
        except ValueError:
            return float("nan")

    out = []
    for f in sorted(Path(directory).rglob("*.tsv")):
        with open(f, newline="") as fh:
            recs = list(csv.DictReader(fh, delimiter="\t"))
        if recs:
            r = recs[-1]
            name = str(f.relative_to(directory).with_suffix(""))
            out.append((name, num(r, "s"), num(r, "max_rss"), num(r, "mean_load")))
    if not out:
        raise DiffsecError(f"no benchmark files under {directory}")
    return out


def benchmarks_markdown(rows: list[tuple[str, float, float, float]]) -> str:
    """`benchmark_rows` as a Markdown table, slowest job first, with the sequential total."""
    rows = sorted(rows, key=lambda t: -t[1])
    cells = [[name, f"{s:.1f}", f"{rss:.0f}", f"{load:.0f}"] for name, s, rss, load in rows]
    cells.append(["**total (sequential)**", f"{sum(t[1] for t in rows):.1f}", "", ""])
    return markdown_table(["job", "wall (s)", "peak RSS (MiB)", "mean CPU load (%)"], cells, "lrrr")


def rule_rows(rows: list[tuple[str, float, float, float]]) -> list[tuple[str, int, float, float]]:
    """`benchmark_rows` summed per rule, i.e. per first path component of the benchmark file
    (`benchmarks/<rule>/...` or `benchmarks/<rule>.tsv`; a few rules name theirs shorter, e.g.
    poison_concepts `poison/`, purify_set `purify/`): (name, jobs, summed wall s, longest job s),
    most time first."""
    acc: dict[str, list[float]] = {}
    for name, s, _, _ in rows:
        a = acc.setdefault(name.split("/")[0], [0, 0.0, 0.0])
        a[0] += 1
        a[1] += s
        a[2] = max(a[2], s)
    return sorted(((r, int(a[0]), a[1], a[2]) for r, a in acc.items()), key=lambda t: -t[2])


def rules_markdown(rows: list[tuple[str, int, float, float]]) -> str:
    cells = [[r, str(n), f"{s:,.1f}", f"{longest:,.1f}"] for r, n, s, longest in rows]
    cells.append(["**total**", str(sum(t[1] for t in rows)), f"{sum(t[2] for t in rows):,.1f}", ""])
    return markdown_table(["rule", "jobs", "job time (s)", "longest job (s)"], cells, "lrrr")


def manifest_rows(directory: str | os.PathLike) -> list[tuple[str, int, float, float]]:
    """(stage, jobs, largest peak RSS MiB, summed CPU s) over every artifact manifest under
    `directory`. A stage writes its own peak RSS and CPU time (artifact._resources), which is the
    measurement to read under warm start, where Snakemake's benchmark sees only the thin client
    (NaN for manifests written before stages recorded them). Wall time stays the benchmark files'
    (the client waits for its stage); a manifest's wall_time_s covers only the artifact's writing."""
    from diffsec.artifact import MANIFEST

    acc: dict[str, list[float]] = {}
    for f in sorted(Path(directory).rglob(MANIFEST)):
        try:
            m = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict) or "stage" not in m:
            continue
        res = m.get("resources") or {}
        a = acc.setdefault(m["stage"], [0, float("nan"), 0.0])
        a[0] += 1
        a[1] = max((v for v in (a[1], float(res.get("peak_rss_mib", "nan"))) if not math.isnan(v)),
                   default=float("nan"))
        a[2] += float(res.get("cpu_s", "nan"))
    if not acc:
        raise DiffsecError(f"no artifact manifests under {directory}")
    return [(stage, int(a[0]), a[1], a[2]) for stage, a in acc.items()]


def manifests_markdown(rows: list[tuple[str, int, float, float]]) -> str:
    """`manifest_rows` as a Markdown table, most CPU time first, with the totals."""
    rows = sorted(rows, key=lambda t: -t[3] if not math.isnan(t[3]) else 0.0)
    cells = [[stage, str(n), f"{rss:.0f}", f"{cpu:.1f}"] for stage, n, rss, cpu in rows]
    cells.append(["**total**", str(sum(t[1] for t in rows)), f"{max(t[2] for t in rows):.0f}",
                  f"{sum(t[3] for t in rows):.1f}"])
    return markdown_table(["stage", "jobs", "peak RSS (MiB)", "CPU (s)"], cells, "lrrr")


def ti_throughput_markdown(rows: list[dict]) -> str:
    """Batched textual-inversion throughput rows (personalize.bench) as a Markdown table."""
    mem = any("peak_gib" in r for r in rows)
    header = ["runs per batch R", "s / step", "run-steps / s", "speed-up vs one at a time", *(["peak GiB"] * mem)]
    cells = []
    for r in rows:
        if r.get("out_of_memory"):
            cells.append([str(r["runs"]), "out of memory", "", "", *([""] * mem)])
            continue
        cells.append([str(r["runs"]), f"{r['seconds_per_step']:.4f}", f"{r['run_steps_per_s']:.1f}",
                      f"{r['speedup_vs_one_at_a_time']:.2f}", *([f"{r['peak_gib']:.1f}"] if mem else [])])
    return markdown_table(header, cells, "r" * len(header))


def sampling_markdown(rows: list[dict], ddim_steps: list[int]) -> str:
    """Pixel DDPM sampling throughput rows (diffusion.bench) as a Markdown table."""
    header = ["batch", "s / step", "DDPM-1000 images/s", *(f"DDIM-{k} images/s" for k in ddim_steps)]
    cells = [[str(r["batch"]), f"{r['s_per_step']:.4f}", f"{r['ddpm_images_per_s']:.3f}",
              *(f"{r[f'ddim{k}_images_per_s']:.2f}" for k in ddim_steps)] for r in rows]
    return markdown_table(header, cells, "r" * len(header))


def read_measurement(artifact: str | os.PathLike, name: str = "metrics.json") -> dict:
    """The JSON file `name` of a finished artifact directory (a one-line error when it is missing)."""
    f = Path(artifact) / name
    if not f.is_file():
        raise DiffsecError(f"{f} is missing: is {artifact} a finished artifact?")
    return json.loads(f.read_text())


def measurements_by_label(artifacts: list) -> dict[str, dict]:
    """{label: metrics.json} of measurement artifacts (eval-ti, backdoor-eval), each naming its cell."""
    return {m["label"]: m for m in map(read_measurement, artifacts)}
