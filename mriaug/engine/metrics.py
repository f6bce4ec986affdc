"""Test metrics of one run, from logits and labels (numpy only, no sklearn)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.classes import CLASSES

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


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))


def weighted_ce(logits: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> float:
    """Cross-entropy averaged with per-class weights as the training loss averages it (`torch`'s weighted mean:
    sum of w[y] * loss over sum of w[y]); the plain mean without weights."""
    loss = -log_softmax(logits)[np.arange(len(y)), y]
    if weight is None:
        return float(loss.mean())
    w = np.asarray(weight, np.float64)[y]
    return float((w * loss).sum() / w.sum())


def classification_metrics(logits: np.ndarray, y: np.ndarray,
                           classes: tuple[str, ...] = CLASSES) -> dict[str, Any]:
    """Per-image metrics of `logits` (N, len(classes)) against labels `y`; balanced accuracy and macro F1 over the
    classes present in `y`."""
    logp = log_softmax(logits)
    ce = float(-logp[np.arange(len(y)), y].mean())
    pred = logits.argmax(1)
    conf = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(conf, (y, pred), 1)
    per_class, recalls, f1s = {}, [], []
    for k, name in enumerate(classes):
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
        "confusion_labels": list(classes),
    }


def scan_metrics(logits: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Whole-scan scores: the test images grouped by scan (`groups`, one id per image; a scan has one class), a
    scan's prediction the mean of its slices' probabilities. Accuracy, balanced accuracy (over the classes
    present among the scans) and cross-entropy of those means, and the number of scans."""
    probs = np.exp(log_softmax(logits))
    ids, where = np.unique(groups, return_inverse=True)
    mean = np.zeros((len(ids), probs.shape[1]))
    np.add.at(mean, where, probs)
    mean /= np.bincount(where, minlength=len(ids))[:, None]
    label = np.zeros(len(ids), np.int64)
    label[where] = y
    pred = mean.argmax(1)
    recalls = [float((pred[label == k] == k).mean()) for k in np.unique(label)]
    return {"scan_accuracy": float((pred == label).mean()), "scan_balanced_accuracy": float(np.mean(recalls)),
            # a mean probability of 0 (only in a float underflow) would be an infinite loss: floor it
            "scan_ce": float(-np.log(np.maximum(mean[np.arange(len(ids)), label], 1e-300)).mean()),
            "test_scans": len(ids)}
