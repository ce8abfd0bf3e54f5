"""Claims: every headline claim of every paper as a predicate over our tables (DESIGN.md `claims`).

A claim is "A exceeds B" for one or more pairs of cells of the long-format tables (B a cell or a
fixed bar b), with an allowed slack s (0 unless the claim grants one, e.g. "within 1 FID point").
Its margin is the worst pair's:

    m = s + min_i (A_i - B_i)      ours from `value`, the paper's from `paper_value` (where it
                                   printed every cell the claim needs)

"Lower is better" claims (FID, an immunized edit's similarity) swap A and B.

Uncertainty of a pair (cells are independent measurements):
* both cells shares of n trials (ASR, removal accuracy): se^2 = pA(1-pA)/nA + pB(1-pB)/nB, the
  normal approximation of two binomials (a bar contributes 0);
* both cells AUCs over n samples, half of each class (Hanley & McNeil 1982):
      se(A)^2 = (A(1-A) + (P-1)(Q1 - A^2) + (N-1)(Q2 - A^2)) / (P N),   Q1 = A/(2-A), Q2 = 2A^2/(1+A)
  with P = N = n/2;
* both cells carry their own standard error (the table's `se` column: SZT's DINO similarities,
  sd / sqrt(n) over generated images with concept means combined; InvisibleDiffusion's FIDs, a
  bootstrap over the generated set; SPD's SSIM and SAU's CLIP-IQA, sd / sqrt(n) over images):
  se^2 = seA^2 + seB^2 (model MEAN; for two cells on the same images, e.g. SPD's Baseline and Ours,
  this ignores their positive correlation and so overstates the noise: conservative);
* anything else (a cell without `se`, e.g. from a table written before its stage recorded one):
  no interval (se empty), and the sign decides.
The claim's se is its worst pair's. Verdict (z = 1.96): holds when m > z se, fails when m < -z se,
"within noise" otherwise; with no interval the sign decides (m > 0 holds). A claim with a missing
cell or an empty value is "not run". Each claim reads only the tables it names, so a profile that
builds part of the DAG gets the verdicts of what it built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffsec.paper.invisible import baseline_row, lambda_row
from diffsec.tables import Cell, cell_number, rate_se

Z = 1.96
RATE, AUC, MEAN, NONE = "rate", "auc", "mean", "none"   # sampling models of a pair's cells


@dataclass(frozen=True)
class Ref:
    """One table cell, by its coordinates (the backbone is whichever the table recorded)."""
    table: str
    row: str
    column: str
    metric: str


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    statement: str
    pairs: tuple[tuple[Ref, Ref | float], ...]   # A_i exceeds B_i (B_i a cell or a fixed bar)
    model: str = NONE                              # RATE, AUC or NONE
    slack: float = 0.0                             # s: added to the margin


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    ours: float | None       # margin m (None: not run)
    paper: float | None      # the paper's margin, where it printed every cell
    se: float | None         # None: no interval
    n: int | None            # samples of the worst pair's A cell
    verdict: str             # holds | fails | within noise | not run
    why: str = ""


def index(rows: list[dict[str, str]]) -> dict[tuple[str, str, str, str], dict[str, str]]:
    """{(table, row, column, metric): CSV row} over the rows of any number of tables; where several
    backbones share coordinates, the one with a value wins (the first such)."""
    out: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for r in rows:
        key = (r["table"], r["row"], r["column"], r["metric"])
        if key not in out or (cell_number(out[key]["value"]) is None and cell_number(r["value"]) is not None):
            out[key] = r
    return out


def auc_se(a: float, n: int) -> float:
    """Hanley-McNeil standard error of an AUC over n samples, n/2 of each class (module docstring)."""
    pos = neg = n / 2
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (pos - 1) * (q1 - a * a) + (neg - 1) * (q2 - a * a)) / (pos * neg)
    return math.sqrt(max(var, 0.0))


def _side(ref: Ref | float, cells, field: str) -> tuple[float | None, int | None, float | None]:
    """(the cell's `field` as a number, its n_samples, its se) or, for a bar, (the bar, None, 0)."""
    if not isinstance(ref, Ref):
        return float(ref), None, 0.0
    r = cells.get((ref.table, ref.row, ref.column, ref.metric))
    if r is None:
        return None, None, None
    return cell_number(r[field]), int(cell_number(r.get("n_samples")) or 0) or None, cell_number(r.get("se"))


def _se(model: str, a: tuple, b: tuple, b_is_bar: bool) -> float | None:
    """A pair's standard error under the claim's sampling model; a, b = (value, n, se)."""
    (va, na, sa), (vb, nb, sb) = a, b
    if model == MEAN:
        return None if sa is None or sb is None else math.sqrt(sa ** 2 + sb ** 2)
    if model == NONE or na is None or (not b_is_bar and nb is None):
        return None
    one = rate_se if model == RATE else auc_se
    return math.sqrt(one(va, na) ** 2 + (0.0 if b_is_bar else one(vb, nb) ** 2))


def evaluate(claim: Claim, cells: dict[tuple[str, str, str, str], dict[str, str]]) -> Verdict:
    """The claim's margins, uncertainty and verdict over indexed table rows (module docstring)."""
    worst = None   # (margin, se, n)
    paper_margins = []
    for a_ref, b_ref in claim.pairs:
        a, b = _side(a_ref, cells, "value"), _side(b_ref, cells, "value")
        if a[0] is None or b[0] is None:
            missing = a_ref if a[0] is None else b_ref
            return Verdict(claim, None, None, None, None, "not run",
                           f"no value for {missing.table} / {missing.row} / {missing.column} / {missing.metric}")
        m = a[0] - b[0]
        if worst is None or m < worst[0]:
            worst = (m, _se(claim.model, a, b, not isinstance(b_ref, Ref)), a[1])
        pa, pb = _side(a_ref, cells, "paper_value")[0], _side(b_ref, cells, "paper_value")[0]
        paper_margins.append(None if pa is None or pb is None else pa - pb)
    m, se, n = worst
    m += claim.slack
    paper = min(paper_margins) + claim.slack if paper_margins and None not in paper_margins else None
    if se is None:
        verdict = "holds" if m > 0 else "fails"
    else:
        verdict = "holds" if m > Z * se else "fails" if m < -Z * se else "within noise"
    return Verdict(claim, m, paper, se, n, verdict)


def claim_cells(verdicts: list[Verdict], profile: str, seed: int) -> list[Cell]:
    """The `claims` table: per claim a `margin` cell (ours, the paper's margin beside it), an `se`
    cell and a `holds` cell (1 / 0; empty within noise or not run), the verdict and the
    statement in the notes."""
    out = []
    for v in verdicts:
        c, note = v.claim, f"{v.verdict}: {v.claim.statement}" + (f" ({v.why})" if v.why else "")
        common = {"table": "claims", "row": c.id, "column": c.paper, "backbone": "", "profile": profile,
                  "seed": seed, "n_samples": v.n or ""}
        out.append(Cell(metric="margin", value="" if v.ours is None else v.ours,
                        paper_value="" if v.paper is None else v.paper, note=note, **common))
        out.append(Cell(metric="se", value="" if v.se is None else v.se,
                        note="" if v.se is not None else "no interval: one seed, no sampling model", **common))
        holds = {"holds": 1.0, "fails": 0.0}.get(v.verdict, "")
        out.append(Cell(metric="holds", value=holds, note="" if holds != "" else v.verdict, **common))
    return out


def _szt(row: str, column: str, metric: str = "dino") -> Ref:
    return Ref("szt", row, column, metric)


def _inv(row: str, column: str = "DDPM (Table I)", metric: str = "asr") -> Ref:
    return Ref("invisible_diffusion", f"CIFAR-10 · {row}", column, metric)


def _sau(row: str, column: str = "Pixel", metric: str = "removal_accuracy") -> Ref:
    return Ref("sau", row, column, metric)


OUTD_FREE = "InvisibleDiffusion Out-D (W/o Fixed Image)"
IND_FREE = "InvisibleDiffusion In-D (W/o Fixed Image)"
OUTD_FIXED = "InvisibleDiffusion Out-D (Fixed Image)"
TROJDIFF = "TrojDiff In-D"
SINGLE_DEFENSES = ("Regen", "PDMPure", "AdvClean", "JPEG", "T600", "LM")
SZT_COMPONENTS = ("JPEG", "T600", "LM")
STRONG_POISONS = ("ADM+", "SDS+", "EA")
SPD_EPS = (13, 22, 31, 40)
SPD_PROMPTS = ("P1", "P2", "P3", "P4", "P5")
SAU = "Spatial Attention Unlearning"

CLAIMS: tuple[Claim, ...] = (
    Claim("szt-above-nominal", "SZT (004)", "SZT's poisoned-average DINO similarity exceeds nominal TI's",
          ((_szt("Psn Avg", "SZT"), _szt("Psn Avg", "Nominal")),), MEAN),
    Claim("szt-above-every-single-defense", "SZT (004)",
          "SZT's poisoned-average DINO is at least every single defense's (Regen, PDMPure, AdvClean, JPEG, T600, LM)",
          tuple((_szt("Psn Avg", "SZT"), _szt("Psn Avg", d)) for d in SINGLE_DEFENSES), MEAN),
    Claim("strong-poisons-hurt-nominal", "SZT (004)",
          "each of ADM+, SDS+ and EA lowers nominal TI's DINO below its value on clean images",
          tuple((_szt("Clean", "Nominal"), _szt(p, "Nominal")) for p in STRONG_POISONS), MEAN),
    Claim("szt-components-above-nominal", "SZT (004)",
          "each of SZT's components alone (JPEG, T600, LM) raises the poisoned-average DINO above nominal TI's",
          tuple((_szt("Psn Avg", d), _szt("Psn Avg", "Nominal")) for d in SZT_COMPONENTS), MEAN),
    Claim("jpeg-t600-above-jpeg", "SZT (004)",
          "training at high timesteps adds to JPEG: JPEG+T600's poisoned-average DINO exceeds JPEG's",
          ((_szt("Psn Avg", "JPEG+T600"), _szt("Psn Avg", "JPEG")),), MEAN),
    Claim("szt-poisoned-reaches-clean", "SZT (004)",
          "SZT on poisoned images reaches nominal TI on clean images (poisoned-average DINO >= Clean, Nominal)",
          ((_szt("Psn Avg", "SZT"), _szt("Clean", "Nominal")),), MEAN),
    Claim("szt-keeps-clean", "SZT (004)", "SZT costs nothing on clean images: its Clean DINO is at least nominal TI's",
          ((_szt("Clean", "SZT"), _szt("Clean", "Nominal")),), MEAN),
    Claim("outd-asr-0.8", "InvisibleDiffusion (000)",
          "the Out-D backdoor without a fixed image (a variance-only trigger) reaches ASR >= 0.8 (DDIM)",
          ((_inv(OUTD_FREE, "DDIM (Table II)"), 0.8),), RATE),
    Claim("variance-trigger-above-benign", "InvisibleDiffusion (000)",
          "the variance-only trigger's ASR exceeds the benign world's rate on the same noise (DDIM)",
          ((_inv(OUTD_FREE, "DDIM (Table II)"), _inv(baseline_row(OUTD_FREE), "DDIM (Table II)")),), RATE),
    Claim("ind-trigger-above-benign", "InvisibleDiffusion (000)",
          "the In-D variance-only trigger's ASR exceeds the benign world's rate on the same noise (DDIM)",
          ((_inv(IND_FREE, "DDIM (Table II)"), _inv(baseline_row(IND_FREE), "DDIM (Table II)")),), RATE),
    Claim("outd-asr-0.8-ordinary-sampler", "InvisibleDiffusion (000)",
          "the Out-D variance-only trigger reaches ASR >= 0.8 with the ordinary DDIM sampler (the paper's threat "
          "model: the user's sampler, the attacker's noise)",
          ((_inv(OUTD_FREE, "DDIM, ordinary sampler"), 0.8),), RATE),
    Claim("outd-fid-within-1", "InvisibleDiffusion (000)",
          "the Out-D backdoor costs at most 1 FID point on benign samples (DDIM)",
          ((_inv("Benign", "DDIM (Table II)", "fid"), _inv("InvisibleDiffusion Out-D (W/o Fixed Image)",
                                                           "DDIM (Table II)", "fid")),), MEAN, slack=1.0),
    Claim("ind-fid-within-1", "InvisibleDiffusion (000)",
          "the In-D backdoor without a fixed image costs at most 1 FID point on benign samples (DDIM)",
          ((_inv("Benign", "DDIM (Table II)", "fid"), _inv(IND_FREE, "DDIM (Table II)", "fid")),), MEAN, slack=1.0),
    Claim("outd-fixed-above-benign", "InvisibleDiffusion (000)",
          "the Out-D trigger with a fixed noise image also works: its ASR exceeds the benign world's rate on the "
          "same noise (DDIM)",
          ((_inv(OUTD_FIXED, "DDIM (Table II)"), _inv(baseline_row(OUTD_FIXED), "DDIM (Table II)")),), RATE),
    Claim("trojdiff-above-benign", "InvisibleDiffusion (000)",
          "the TrojDiff baseline's In-D ASR exceeds the benign world's rate on its noise (DDIM)",
          ((_inv(TROJDIFF, "DDIM (Table II)"), _inv(baseline_row(TROJDIFF), "DDIM (Table II)")),), RATE),
    Claim("lambda-0.5-beats-the-ends", "InvisibleDiffusion (000)",
          "Fig. 4: the In-D backdoor's ASR at lambda 0.5 exceeds its ASR at lambda 0.1 and 0.9 (DDIM)",
          tuple((Ref("invisible_lambda", lambda_row(0.5), "DDIM", "asr"), Ref("invisible_lambda", lambda_row(x), "DDIM",
                                                                              "asr")) for x in (0.1, 0.9)), RATE),
    Claim("stat-above-loss", "SeDID (002)", "SeDID_Stat's AUC exceeds the existing method's (CIFAR-10)",
          ((Ref("sedid", "SeDID_Stat", "CIFAR-10", "auc"), Ref("sedid", "Existing method", "CIFAR-10", "auc")),),
          AUC),
    Claim("stat-grows-with-t", "SeDID (002)", "Stat's AUC at t_SEC 990 exceeds its AUC at t_SEC 165",
          ((Ref("sedid_stat", "t_SEC 990", "CIFAR-10", "auc"), Ref("sedid_stat", "t_SEC 165", "CIFAR-10", "auc")),),
          AUC),
    Claim("spd-below-baseline", "SPD (003)",
          "the universal perturbation's edits are less similar (SSIM) to the clean edits than random noise's, "
          "for eps >= 13/255, every prompt, train and test",
          tuple((Ref("spd", f"{p} · {split}", f"Baseline · eps {e}/255", "ssim"),
                 Ref("spd", f"{p} · {split}", f"Ours · eps {e}/255", "ssim"))
                for p in SPD_PROMPTS for split in ("Train", "Test") for e in SPD_EPS), MEAN),
    Claim("sau-removes-pixel", "SAU (001)", "SAU removes the pixel backdoor in >= 95% of triggered generations",
          ((_sau(SAU), 0.95),), RATE),
    Claim("sau-above-reversal", "SAU (001)", "SAU's pixel removal accuracy exceeds Finetune Reversal's",
          ((_sau(SAU), _sau("Finetune Reversal")),), RATE),
    Claim("sau-above-erasure", "SAU (001)", "SAU's pixel removal accuracy exceeds Concept Erasure's",
          ((_sau(SAU), _sau("Concept Erasure")),), RATE),
    Claim("sau-iqa-above-poisoned", "SAU (001)", "SAU's CLIP-IQA is at least the poisoned model's (pixel)",
          ((_sau(SAU, metric="clip_iqa"), _sau("Poisoned Unet", metric="clip_iqa")),), MEAN),
    Claim("sau-style-removed-less", "SAU (001)", "SAU removes the style backdoor less well than the pixel one",
          ((_sau(SAU), _sau(SAU, "Style")),), RATE),
)


def claims_markdown(verdicts: list[Verdict], profile: str) -> str:
    """One readable table: claim, paper, statement, our margin, the paper's, +- se, verdict."""
    def f(x):
        return "—" if x is None else f"{x:.4g}"

    lines = [f"### claims (profile `{profile}`)", "",
             "margin = how far the claim's left side exceeds its right side (worst case over its cells); "
             "+- se: standard error where the cells are shares, AUCs or means with a recorded se (SZT's "
             "DINO: generation noise of one training seed); verdict at 1.96 se", "",
             "| claim | paper | statement | margin ours | margin paper | +- se | verdict |",
             "|---|---|---|---:|---:|---:|---|"]
    for v in verdicts:
        verdict = v.verdict + (f" ({v.why})" if v.why else "")
        lines.append(f"| {v.claim.id} | {v.claim.paper} | {v.claim.statement} | {f(v.ours)} | {f(v.paper)} | "
                     f"{f(v.se)} | {verdict} |")
    return "\n".join(lines) + "\n"


VERDICT_COLOURS = {"holds": "#1a7f37", "fails": "#cf222e", "within noise": "#9a6700", "not run": "#8c959f"}


def claims_figure(verdicts: list[Verdict], path) -> None:
    """One row per claim, each on its own x scale (the claims' units differ: DINO, ASR, FID points,
    SSIM): a line at 0 (the claim's threshold: right of it, the claim holds), our margin as a dot
    with its 1.96 se interval, coloured by verdict, and the paper's margin as an open diamond.
    Not-run claims keep their row, empty, so the figure lists every claim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffsec.artifact import atomic_file

    n = len(verdicts)
    fig, axes = plt.subplots(n, 1, figsize=(9.5, 0.42 * n + 0.9), squeeze=False)
    for ax, v in zip(axes[:, 0], verdicts, strict=True):
        xs = [x for x in (v.ours, v.paper, 0.0) if x is not None]
        half = Z * v.se if v.se is not None else 0.0
        if v.ours is not None:
            xs += [v.ours - half, v.ours + half]
        span = max(abs(x) for x in xs) or 1.0
        ax.set_xlim(-1.15 * span, 1.15 * span)
        ax.axvline(0, color="#57606a", lw=0.8)
        colour = VERDICT_COLOURS.get(v.verdict, "#8c959f")
        if v.ours is not None:
            ax.errorbar([v.ours], [0], xerr=[[half], [half]] if half else None, fmt="o", color=colour, ms=5,
                        capsize=3, lw=1.2)
        if v.paper is not None:
            ax.plot([v.paper], [0], marker="D", mfc="none", mec="#0969da", ms=6, ls="none")
        ax.set_yticks([])
        ax.set_ylim(-1, 1)
        ax.tick_params(axis="x", labelsize=6, pad=1, length=2)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.text(-0.01, 0.5, f"{v.claim.id}  ", transform=ax.transAxes, ha="right", va="center", fontsize=7)
        ax.text(1.01, 0.5, v.verdict, transform=ax.transAxes, ha="left", va="center", fontsize=7, color=colour)
    fig.suptitle("claims: our margin (dot, 1.96 se) and the paper's (open diamond); right of 0 = the claim holds",
                 fontsize=8)
    fig.subplots_adjust(left=0.3, right=0.88, top=1 - 0.5 / (0.42 * n + 0.9), bottom=0.02, hspace=1.1)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)
