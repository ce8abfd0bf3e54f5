"""SeDID's figures: AUC / ACC against the step size k (paper Fig. 2), Stat against t_SEC (Fig. 3),
TPR at 1% and 0.1% FPR against t_SEC (Fig. 4), the ROC curves of the three methods on the test
split, and real vs generated images beside their error maps; for `sedid_mia`, each method's AUC
and TPR at 1% FPR against the member-trained DDPM's training epochs.

Error maps are shown as sum over channels of E_t, on one colour scale shared by every map of the
figure (a map's brightness is comparable across images), in log10 so that the small errors of
generated images stay visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def paper_curve(metric: str, t_secs: list[int]) -> list[float | None]:
    """The paper's CIFAR-10 Table 1 value of `metric` at each t_SEC (None where it prints none)."""
    from diffsec.paper import paper_values

    p = paper_values("sedid")
    return [p.get(("sedid_stat", f"t_SEC {t}", "CIFAR-10", metric)) for t in t_secs]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _plt().close(fig)


def step_sweep(sweep: dict, t_sec: int, path: Path) -> None:
    """Fig. 2: AUC and best accuracy of Stat at `t_sec` for each step k."""
    plt = _plt()
    ks = sorted(sweep, key=int)
    fig, ax = plt.subplots(figsize=(4.2, 3))
    for metric, style in (("auc", "o-"), ("acc", "s--")):
        ax.plot([int(k) for k in ks], [sweep[k][metric] for k in ks], style, label=metric.upper())
    n = sweep[ks[0]]["n_generated"] + sweep[ks[0]]["n_real"]
    ax.set(xlabel="step size k", ylabel="", title=f"SeDID_Stat at t_SEC {t_sec} ({n} images)", ylim=(0, 1.02))
    ax.axhline(0.5, color="grey", lw=0.6)
    ax.legend(fontsize=8)
    _save(fig, path)


def over_t(table1: dict, path_stat: Path, path_tpr: Path) -> None:
    """Fig. 3 (AUC / ACC against t_SEC, the paper's CIFAR-10 values beside) and Fig. 4 (TPR at
    1% and 0.1% FPR against t_SEC)."""
    plt = _plt()
    ts = sorted(table1, key=int)
    x = [int(t) for t in ts]
    fig, ax = plt.subplots(figsize=(4.2, 3))
    for metric, style in (("auc", "o-"), ("acc", "s-")):
        ax.plot(x, [table1[t][metric] for t in ts], style, label=f"{metric.upper()} ours")
        paper = paper_curve(metric, x)
        ax.plot([t for t, v in zip(x, paper, strict=True) if v is not None], [v for v in paper if v is not None],
                style.replace("-", ":"), alpha=0.6, label=f"{metric.upper()} paper")
    ax.axhline(0.5, color="grey", lw=0.6)
    ax.set(xlabel="t_SEC", ylim=(0, 1.02), title="SeDID_Stat on CIFAR-10 (test split)")
    ax.legend(fontsize=7)
    _save(fig, path_stat)
    fig, ax = plt.subplots(figsize=(4.2, 3))
    for metric, style in (("tpr@1%fpr", "o-"), ("tpr@0.1%fpr", "s-")):
        ax.plot(x, [table1[t][metric] for t in ts], style, label=metric.upper())
    n_real = table1[ts[0]]["n_real"]
    ax.set(xlabel="t_SEC", ylim=(0, 1.02), title=f"SeDID_Stat TPR at low FPR ({n_real} real images)")
    ax.legend(fontsize=8)
    _save(fig, path_tpr)


def roc_curves(roc: dict[str, np.ndarray], table2: dict, path: Path) -> None:
    """ROC of the loss attack, Stat and NNs on the test split (exact, every threshold; log FPR)."""
    from sklearn.metrics import roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    names = {"loss": "existing method (loss)", "stat": "SeDID_Stat", "nn": "SeDID_NNs"}
    for key, name in names.items():
        fpr, tpr, _ = roc_curve(roc["labels"], roc[key])
        ax.plot(np.maximum(fpr, 1e-4), tpr, label=f"{name}, t {table2[key]['t']}: AUC {table2[key]['auc']:.3f}")
    ax.plot([1e-4, 1], [1e-4, 1], color="grey", lw=0.6)
    ax.set(xscale="log", xlabel="false positive rate (real called generated)", ylabel="true positive rate",
           title=f"test split: {int(roc['labels'].sum())} generated, {int((1 - roc['labels']).sum())} real")
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def image_grid(real: np.ndarray, gen: np.ndarray, real_maps: np.ndarray, gen_maps: np.ndarray, t_sec: int,
               path: Path) -> None:
    """Rows: real images, their error maps, generated images, their error maps (maps N x C x H x W)."""
    plt = _plt()
    maps = np.log10(np.concatenate([real_maps, gen_maps]).sum(1) + 1e-12)
    lo, hi = np.percentile(maps, [1, 99])
    n = len(real)
    fig, axes = plt.subplots(4, n, figsize=(1.05 * n, 4.6), squeeze=False)
    rows = [("real", real), ("E (real)", maps[:n]), ("generated", gen), ("E (generated)", maps[n:])]
    for r, (name, items) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.axis("off")
            if items.ndim == 4:
                ax.imshow(items[c], interpolation="nearest")
            else:
                ax.imshow(items[c], cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
        axes[r, 0].text(-3, 16, name, ha="right", va="center", fontsize=8)
    fig.suptitle(f"t-error maps at t_SEC {t_sec} (log10, one colour scale)", fontsize=9)
    _save(fig, path)



def mia_over_epochs(rows: dict[str, list[dict]], epochs: list[float], path: Path) -> None:
    """sedid_mia: AUC (left) and TPR at 1% FPR (right) of each method against training epochs;
    `rows[name][i]` is the method's ROC report for the model at epochs[i]."""
    plt = _plt()
    order = np.argsort(epochs)
    x = [epochs[i] for i in order]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric, base in ((axes[0], "auc", 0.5), (axes[1], "tpr@1%fpr", 0.01)):
        for (name, reports), style in zip(rows.items(), ("o-", "s-", "^-", "d-"), strict=False):
            ax.plot(x, [reports[i][metric] for i in order], style, label=name)
        ax.axhline(base, color="grey", lw=0.6)
        ax.set(xscale="log", xlabel="training epochs of the target DDPM", ylabel=metric.upper(), ylim=(0, 1.02))
        ax.set_xticks(x, [f"{e:g}" for e in x])
        ax.minorticks_off()
    r0 = next(iter(rows.values()))[order[-1]]
    axes[0].legend(fontsize=7)
    fig.suptitle(f"members vs held-out images ({r0['n_generated']} + {r0['n_real']}; NN-picked t on its split)",
                 fontsize=9)
    _save(fig, path)
