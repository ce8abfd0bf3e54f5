"""Metrics, one implementation each; feature-based ones take a swappable backbone whose name is
recorded beside every number."""

from diffsec.metrics.backbones import FeatureBackbone, get_backbone
from diffsec.metrics.classify import accuracy, attack_success_rate, per_class_accuracy, predict_labels
from diffsec.metrics.distance import l2, linf, mse
from diffsec.metrics.fid import feature_stats, fid, frechet_distance
from diffsec.metrics.prdc import precision_recall
from diffsec.metrics.quality import fsim, psnr, ssim, vif_p
from diffsec.metrics.roc import grid_roc_metrics, roc_metrics, roc_report, scores_labels
from diffsec.metrics.similarity import clip_iqa, clip_score, cosine_matrix, dino_similarity, mean_pairwise_cosine

__all__ = [
    "FeatureBackbone", "get_backbone", "accuracy", "attack_success_rate", "per_class_accuracy",
    "predict_labels", "l2", "linf", "mse", "feature_stats", "fid", "frechet_distance",
    "precision_recall", "fsim", "psnr", "ssim", "vif_p", "grid_roc_metrics", "roc_metrics",
    "roc_report", "scores_labels", "clip_iqa", "clip_score", "cosine_matrix", "dino_similarity",
    "mean_pairwise_cosine",
]
