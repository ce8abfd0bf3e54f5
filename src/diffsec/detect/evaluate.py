"""SeDID's evaluation of one generated set against the real set: Tables 1 and 2 and Fig. 2-4 data.

Labels: 1 = generated (positive), 0 = real. One seeded, class-stratified split
(`detect.nn.split`) serves every method: the NN split (`train_frac` of the images, its
`val_frac` for epoch selection) fits what is fitted, and every reported number comes from the
test split (the rest).

- Table 1: SeDID_Stat at each t_SEC, on the test split.
- Table 2: the loss attack at the timestep, and Stat at the t_SEC, with the best AUC on the NN
  split (never the test split). SeDID_NNs is trained on the error maps at Stat's t_SEC.
- Fig. 2: Stat at the sweep's t_SEC for each step k, on the sweep's images (no split: Stat
  fits nothing); empty where the generated set was scored without the sweep (the controls).

Every entry has the exact figures (`metrics.roc.roc_report`: AUC, best accuracy, TPR at 1% and
0.1% FPR) and the papers' grid variant under `grid_`, with the number of images behind it.
"""

from __future__ import annotations

import numpy as np

from diffsec.detect.nn import NNConfig, split, train_detector
from diffsec.metrics.roc import roc_metrics, roc_report, scores_labels


def _report(pos: np.ndarray, neg: np.ndarray) -> dict:
    s, y = scores_labels(pos, neg)
    return {**roc_report(s, y), "n_generated": int(len(pos)), "n_real": int(len(neg))}


def _best_column(scores: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> int:
    """Index of the score column with the highest exact AUC on `rows`."""
    return int(np.argmax([roc_metrics(scores[rows, j], labels[rows])["auc"] for j in range(scores.shape[1])]))


def evaluate(real: dict[str, np.ndarray], gen: dict[str, np.ndarray], cfg: NNConfig, train_frac: float,
             val_frac: float, device="cpu") -> tuple[dict, dict[str, np.ndarray], list[dict]]:
    """(metrics, test-split scores of the three methods, NN training curve); `real` and `gen`
    are sedid-score outputs (stat, loss, maps, sweep, t_secs, loss_ts, sweep_ks)."""
    labels = np.r_[np.zeros(len(real["stat"]), int), np.ones(len(gen["stat"]), int)]
    both = {k: np.concatenate([real[k], gen[k]]) for k in ("stat", "loss")}
    s = split(labels, train_frac, val_frac, cfg.seed)
    fit_rows, test = np.r_[s.train, s.val], s.test
    t_secs, loss_ts = [int(t) for t in real["t_secs"]], [int(t) for t in real["loss_ts"]]
    pos, neg = test[labels[test] == 1], test[labels[test] == 0]

    table1 = {t: _report(both["stat"][pos, j], both["stat"][neg, j]) for j, t in enumerate(t_secs)}
    j_stat = _best_column(both["stat"], labels, fit_rows)
    j_loss = _best_column(both["loss"], labels, fit_rows)
    maps = np.concatenate([real["maps"][:, j_stat], gen["maps"][:, j_stat]])   # the NN sees one t_SEC
    model, curve, epoch = train_detector(maps, labels, s, cfg, device)
    nn_scores = np.zeros(len(labels), np.float32)
    nn_scores[test] = model.scores(maps[test])
    test_scores = {"loss": both["loss"][:, j_loss], "stat": both["stat"][:, j_stat], "nn": nn_scores}
    table2 = {"loss": {**_report(test_scores["loss"][pos], test_scores["loss"][neg]), "t": loss_ts[j_loss]},
              "stat": {**_report(test_scores["stat"][pos], test_scores["stat"][neg]), "t": t_secs[j_stat]},
              "nn": {**_report(nn_scores[pos], nn_scores[neg]), "t": t_secs[j_stat], "epoch": epoch}}
    swept = len(gen["sweep"]) and len(real["sweep"])   # the controls skip the step-size sweep
    sweep = {int(k): _report(gen["sweep"][:, i], real["sweep"][:, i]) for i, k in enumerate(real["sweep_ks"])
             if swept}
    metrics = {"table1": table1, "table2": table2, "sweep": sweep, "sweep_t": int(real["sweep_t"]),
               "split": {"train": int(len(s.train)), "val": int(len(s.val)), "test": int(len(test))}}
    return metrics, {"labels": labels[test], **{k: v[test] for k, v in test_scores.items()}}, curve
