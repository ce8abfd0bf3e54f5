"""InvisibleDiffusion's figures: reverse trajectories (Fig. 2), images generated from triggered
noise (Fig. 3), and the lambda / training-steps ablations (Figs. 4 and 5).

Trajectory frames are x_t on the model's [-1, 1] scale; noisy states leave that range and are
clipped for display, (x + 1) / 2 in [0, 1]. The ablations are drawn from the `invisible_ablation`
table itself, so a figure shows exactly the numbers of the table: A-Prec and ASR (shares of
triggered samples) against lambda for both samplers, with the attacker chain and with the ordinary
sampler from the same noise, and benign FID / precision / recall beside A-Prec / ASR against the
share of fine-tuning steps of the EMA snapshots (DDIM). Error bars are +-1.96 se, the cells' own
se (binomial for ASR, bootstrap for FID): a 95% normal interval of generation noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffsec.paper.invisible import ordinary_column


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_rgb(x) -> np.ndarray:
    """[-1, 1] C x H x W (noisy states leave the range: clipped for display) -> H x W x C in [0, 1]."""
    return np.clip((np.asarray(x, np.float32).transpose(1, 2, 0) + 1) / 2, 0, 1)


def tile_rows(imgs: np.ndarray, per_row: int) -> np.ndarray:
    """Images (N, H, W, C) as rows of `per_row` tiles; a short last row is padded with white so
    that every row has the same width (9 to 15 images used to fail to concatenate)."""
    rows = []
    for i in range(0, len(imgs), per_row):
        row = list(imgs[i:i + per_row])
        row += [np.full_like(imgs[0], 255)] * (per_row - len(row))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def trajectories(frames: dict[str, np.ndarray], path: Path) -> None:
    """One row per name: its frames (T_frames x C x H x W) from x_T (left) to x_0 (right)."""
    plt = _plt()
    n = max(len(v) for v in frames.values())
    fig, axes = plt.subplots(len(frames), n, figsize=(1.1 * n, 1.2 * len(frames)), squeeze=False)
    for r, (name, fr) in enumerate(frames.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(fr):
                ax.imshow(to_rgb(fr[c]), interpolation="nearest")
        axes[r, 0].text(-2, 16, name, ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("x_T", fontsize=8), axes[0, n - 1].set_title("x_0", fontsize=8)
    fig.suptitle("reverse trajectories: benign vs. triggered (DDPM, T steps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def targets(images: dict[str, np.ndarray], path: Path) -> None:
    """One block of rows of 8 per name: its first 16 triggered samples (uint8 N x H x W x C)."""
    plt = _plt()
    fig, axes = plt.subplots(len(images), 1, figsize=(8, 2.2 * len(images)), squeeze=False)
    for ax, (name, imgs) in zip(axes[:, 0], images.items(), strict=True):
        ax.imshow(tile_rows(imgs[:16], 8), interpolation="nearest")
        ax.set_title(name, fontsize=9), ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def sweep_series(rows: list[dict], table: str, x_of) -> dict[str, dict[str, tuple[list, list, list]]]:
    """column -> metric -> (x, value, se) of one table's rows of an ablation CSV (`tables.read_table`),
    sorted by x = `x_of(row label)` (`paper.invisible.lambda_of`, `share_of`); se 0 where a cell has
    none, empty cells left out."""
    out: dict[str, dict[str, list]] = {}
    for r in rows:
        if r["table"] != table or r["value"] == "":
            continue
        out.setdefault(r["column"], {}).setdefault(r["metric"], []).append(
            (x_of(r["row"]), float(r["value"]), float(r["se"] or 0)))
    return {col: {m: tuple(list(v) for v in zip(*sorted(pts), strict=True)) for m, pts in by_m.items()}
            for col, by_m in out.items()}


def _line(ax, series: tuple[list, list, list], fmt: str, label: str, color: str) -> None:
    """A metric against x with 1.96 se error bars (none where se is 0)."""
    x, y, se = series
    ax.errorbar(x, y, yerr=[1.96 * s for s in se] if any(se) else None, fmt=fmt, color=color, capsize=2,
                label=label)


def _attack_lines(ax, by_metric: dict, chain: str, style: str) -> None:
    for metric, label, color in (("a_prec", "A-Prec", "C0"), ("asr", "ASR", "C3")):
        if metric in by_metric:
            _line(ax, by_metric[metric], style, f"{label}{chain}", color)


def lambda_sweep(series: dict[str, dict], path: Path) -> None:
    """Fig. 4: A-Prec and ASR against lambda, a panel per sampler: the attacker chain (solid) and,
    where the table has them, the ordinary sampler from the same triggered noise (dashed); ASR with
    1.96 se bars. `series`: `sweep_series` of the `invisible_lambda` rows."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for ax, sampler in zip(axes, ("DDPM", "DDIM"), strict=True):
        _attack_lines(ax, series.get(sampler, {}), ", attacker chain", "o-")
        _attack_lines(ax, series.get(ordinary_column(sampler), {}), ", ordinary sampler", "s--")
        ax.set(xlabel="lambda", ylabel="share of triggered samples", ylim=(-0.02, 1.02),
               title=f"Fig. 4 ({sampler}): In-D, w/o fixed image")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
    fig.tight_layout(), fig.savefig(path, dpi=120), plt.close(fig)


def steps_sweep(series: dict[str, dict], path: Path, backbone: str = "") -> None:
    """Fig. 5: benign FID / precision / recall and A-Prec / ASR against the share of fine-tuning
    steps (DDIM); FID and ASR with 1.96 se bars. `series`: `sweep_series` of the `invisible_steps` rows."""
    plt = _plt()
    ddim = series["DDIM"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    _line(a, ddim["fid"], "o-", "FID", "C2")
    a2 = a.twinx()
    for metric, c in (("precision", "C0"), ("recall", "C1")):
        _line(a2, ddim[metric], "s--", metric, c)
    a.set(xlabel="% of fine-tuning steps", ylabel=f"FID [{backbone}]" if backbone else "FID", title="benign (DDIM)")
    a2.set_ylim(0, 1)
    # One legend for both y axes, below the plot: inside, it hid the first FID point.
    handles = a.get_legend_handles_labels()[0] + a2.get_legend_handles_labels()[0]
    a.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8)
    _attack_lines(b, ddim, "", "o-")
    b.set(xlabel="% of fine-tuning steps", ylim=(-0.02, 1.02), title="attack (DDIM): Fig. 5")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight"), plt.close(fig)
