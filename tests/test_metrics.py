"""Known answers for `classification_metrics`: every expected number below is worked out by hand.

The logits are log-probabilities (plus a different constant per row, which softmax ignores), so the
cross-entropy of an image is -ln p(true class) with p a power of 1/2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mriaug.data.classes import CLASSES
from mriaug.engine.metrics import classification_metrics

LN2 = math.log(2)
H, Q, E = 0.5, 0.25, 0.125
# (true class, probabilities): argmax is the prediction.
ROWS = [
    (0, [H, Q, E, E]),  # 0 -> 0, p = 1/2
    (0, [Q, E, H, E]),  # 0 -> 2, p = 1/4
    (1, [Q, H, E, E]),  # 1 -> 1, p = 1/2
    (2, [E, E, H, Q]),  # 2 -> 2, p = 1/2
    (2, [E, E, H, Q]),  # 2 -> 2, p = 1/2
    (2, [E, E, Q, H]),  # 2 -> 3, p = 1/4
    (3, [E, E, Q, H]),  # 3 -> 3, p = 1/2
    (3, [E, E, H, Q]),  # 3 -> 2, p = 1/4
]


def _logits(rows: list[tuple[int, list[float]]], shift: float = 0.0,
            dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([t for t, _ in rows])
    offsets = shift + np.arange(len(rows))[:, None] * 3.0 - 7.0  # softmax is blind to a per-row constant
    return (np.log(np.array([p for _, p in rows])) + offsets).astype(dtype), y


def test_cross_entropy_is_the_mean_over_images_not_over_classes() -> None:
    m = classification_metrics(*_logits(ROWS))
    # Five images at p = 1/2 (ln 2 each), three at p = 1/4 (2 ln 2 each): 11 ln 2 / 8.
    assert m["test_ce"] == pytest.approx(11 * LN2 / 8, abs=1e-6)
    # The mean of the per-class means would be (3/2 + 1 + 4/3 + 3/2) ln 2 / 4 = 4/3 ln 2: a different number.
    assert abs(m["test_ce"] - 4 * LN2 / 3) > 0.02


def test_cross_entropy_is_stable_for_large_logits() -> None:
    m = classification_metrics(*_logits(ROWS, shift=1000.0, dtype=np.float64))  # exp(1000) overflows
    assert m["test_ce"] == pytest.approx(11 * LN2 / 8, abs=1e-6)
    # Rows on very different scales: each row is shifted by its own maximum (one shift for the whole batch
    # would underflow the small row to log(0)).
    logits, y = _logits(ROWS, dtype=np.float64)
    logits[0] += 2000.0
    assert classification_metrics(logits, y)["test_ce"] == pytest.approx(11 * LN2 / 8, abs=1e-6)


def test_confusion_matrix_rows_are_true_classes() -> None:
    m = classification_metrics(*_logits(ROWS))
    assert m["confusion"] == [
        [1, 0, 1, 0],  # Mild: one right, one called Non
        [0, 1, 0, 0],  # Moderate
        [0, 0, 2, 1],  # Non: one called Very mild
        [0, 0, 1, 1],  # Very mild: one called Non
    ]
    assert m["confusion_labels"] == list(CLASSES)
    assert all(type(v) is int for row in m["confusion"] for v in row), "counts, written to JSON as integers"


def test_accuracy_balanced_accuracy_and_macro_f1() -> None:
    m = classification_metrics(*_logits(ROWS))
    assert m["accuracy"] == pytest.approx(5 / 8)
    # Recalls 1/2, 1, 2/3, 1/2 -> mean 2/3 (not the accuracy 5/8).
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    # Precisions 1, 1, 1/2, 1/2; F1s 2/3, 1, 4/7, 1/2 -> mean 115/168.
    assert m["macro_f1"] == pytest.approx(115 / 168)


def test_per_class_recall_precision_f1_support() -> None:
    pc = classification_metrics(*_logits(ROWS))["per_class"]
    want = {
        "Mild_Demented": (1 / 2, 1.0, 2 / 3, 2),
        "Moderate_Demented": (1.0, 1.0, 1.0, 1),
        "Non_Demented": (2 / 3, 1 / 2, 4 / 7, 3),
        "Very_Mild_Demented": (1 / 2, 1 / 2, 1 / 2, 2),
    }
    assert list(pc) == list(CLASSES)
    for name, (recall, precision, f1, support) in want.items():
        assert pc[name]["recall"] == pytest.approx(recall), name
        assert pc[name]["precision"] == pytest.approx(precision), name
        assert pc[name]["f1"] == pytest.approx(f1), name
        assert pc[name]["support"] == support and isinstance(pc[name]["support"], int), name
    for key in ("test_ce", "accuracy", "balanced_accuracy", "macro_f1"):
        assert type(classification_metrics(*_logits(ROWS))[key]) is float


def test_absent_class_is_left_out_of_the_means_and_unpredicted_class_scores_zero() -> None:
    # No Moderate image in the test set; nothing is ever predicted Very mild.
    rows = [
        (0, [H, Q, E, E]),  # 0 -> 0
        (2, [H, E, Q, E]),  # 2 -> 0
        (2, [E, E, H, Q]),  # 2 -> 2
        (3, [Q, E, H, E]),  # 3 -> 2
    ]
    m = classification_metrics(*_logits(rows))
    pc = m["per_class"]
    assert pc["Moderate_Demented"] == {"recall": 0.0, "precision": 0.0, "f1": 0.0, "support": 0}
    assert pc["Very_Mild_Demented"] == {"recall": 0.0, "precision": 0.0, "f1": 0.0, "support": 1}
    # Recalls over the 3 present classes: 1, 1/2, 0 -> 1/2; precisions 1/2, -, 1/2, -.
    assert m["balanced_accuracy"] == pytest.approx(1 / 2)
    # F1s: Mild 2/3, Non 1/2, Very mild 0 -> 7/18.
    assert m["macro_f1"] == pytest.approx(7 / 18)
    assert m["accuracy"] == pytest.approx(2 / 4)
    # p(true) = 1/2, 1/4, 1/2, 1/8 -> (1 + 2 + 1 + 3) ln 2 / 4.
    assert m["test_ce"] == pytest.approx(7 * LN2 / 4, abs=1e-6)


def test_perfect_and_certain_predictions() -> None:
    y = np.array([0, 1, 2, 3, 2])
    logits = np.full((5, 4), -30.0)
    logits[np.arange(5), y] = 30.0
    m = classification_metrics(logits, y)
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0
    assert m["test_ce"] == pytest.approx(3 * math.exp(-60), abs=1e-12)
    assert m["confusion"] == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]


def test_expected_calibration_error_by_hand() -> None:
    from mriaug.engine.metrics import expected_calibration_error as ece

    # One image, confidence 0.8, right: |1 - 0.8| = 0.2.
    assert ece(np.array([[0.8, 0.1, 0.05, 0.05]]), np.array([0])) == pytest.approx(0.2)
    # 10 bins: (0.8, 0.9] and (0.9, 1]: 0.95 right and 0.85 wrong stay apart: (0.05 + 0.85) / 2.
    top = np.array([[0.95, 0.05, 0.0, 0.0], [0.85, 0.15, 0.0, 0.0]])
    assert ece(top, np.array([0, 1]), bins=10) == pytest.approx(0.45)
    # Bins [0, 0.1] and (0.1, 0.2] (20 classes, so confidences this low exist): 0.15 right, 0.05 wrong.
    low = np.full((2, 20), 0.05)
    low[0] = (1 - 0.15) / 19
    low[0, 3] = 0.15
    assert ece(low, np.array([3, 1]), bins=10) == pytest.approx((0.85 + 0.05) / 2)
    # The default is 15 bins: 0.15 and 0.05 fall in (2/15, 3/15] and [0, 1/15].
    assert ece(low, np.array([3, 1])) == pytest.approx((0.85 + 0.05) / 2)


def test_ece_fifteen_bins_and_an_edge_by_hand() -> None:
    from mriaug.engine.metrics import expected_calibration_error as ece

    # Five images, top-class confidence and whether it is right. 15 bins, bin k = (k/15, (k+1)/15]:
    #   0.40 right: exactly on the edge 6/15, so bin 5 = (1/3, 2/5], with 0.34 wrong;
    #   0.42 wrong: bin 6 = (2/5, 7/15];  0.90 right and 0.92 wrong: bin 13 = (13/15, 14/15].
    # Per bin |sum(right) - sum(confidence)|: |1 - 0.74| + |0 - 0.42| + |1 - 1.82| = 0.26 + 0.42 + 0.82 = 1.5,
    # over 5 images: 0.30. The edge in the bin above gives 0.268 (so do 14 and 16 bins); 10 bins give 0.34.
    probs = np.array([[0.40, 0.30, 0.30, 0.0], [0.34, 0.33, 0.33, 0.0], [0.42, 0.29, 0.29, 0.0],
                      [0.90, 0.10, 0.0, 0.0], [0.92, 0.08, 0.0, 0.0]])
    y = np.array([0, 1, 1, 0, 1])
    assert ece(probs, y) == pytest.approx(0.30, abs=1e-12)
    assert ece(probs, y, bins=10) == pytest.approx(0.34, abs=1e-12)
    # Through classification_metrics (the number results record): the same probabilities as logits.
    assert classification_metrics(np.log(np.maximum(probs, 1e-300)), y)["ece"] == pytest.approx(0.30, abs=1e-9)
