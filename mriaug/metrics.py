"""Test metrics of one run, from logits and labels (numpy only, no sklearn)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .classes import CLASSES, NUM_CLASSES

ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over `bins` equal-width bins of the top-class confidence, bin k holding (k/bins, (k+1)/bins]:
    sum over bins of (share of images in the bin) * |accuracy - mean confidence| in the bin."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == y).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    # Per bin |sum(correct) - sum(confidence)| / N is (bin share) * |accuracy - confidence|.
    gap = np.abs(np.bincount(which, correct, bins) - np.bincount(which, conf, bins))
    return float(gap.sum() / max(len(y), 1))


def classification_metrics(logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    ce = float(-logp[np.arange(len(y)), y].mean())
    pred = logits.argmax(1)
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(conf, (y, pred), 1)
    per_class, recalls, f1s = {}, [], []
    for k, name in enumerate(CLASSES):
        tp, support, predicted = conf[k, k], conf[k].sum(), conf[:, k].sum()
        recall = tp / support if support else 0.0
        precision = tp / predicted if predicted else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"recall": float(recall), "precision": float(precision), "f1": float(f1),
                           "support": int(support)}
        if support:
            recalls.append(recall)
            f1s.append(f1)
    return {
        "test_ce": ce,
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "macro_f1": float(np.mean(f1s)),
        "ece": expected_calibration_error(np.exp(logp), y),
        "per_class": per_class,
        "confusion": conf.tolist(),
        "confusion_labels": list(CLASSES),
    }
