"""Whole-scan scores (issue 28): a scan's prediction is the mean of its slices' probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mriaug.engine.metrics import scan_metrics


def test_a_scan_score_from_three_hand_made_slices() -> None:
    # Scan 7 (class 0) has two slices with probabilities (0.9, 0.1) and (0.3, 0.7): mean (0.6, 0.4), right.
    # Scan 3 (class 1) has one slice (0.8, 0.2): wrong. Per image 1 of 3 right; per scan 1 of 2.
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.8, 0.2]])
    # Logits are log-probabilities up to a constant per image: the scores must come from softmax probabilities.
    logits = np.log(probs) + np.array([[4.0], [-3.0], [1.0]])
    y = np.array([0, 0, 1])
    groups = np.array([7, 7, 3])
    m = scan_metrics(logits, y, groups)
    assert m["test_scans"] == 2
    assert m["scan_accuracy"] == pytest.approx(0.5)
    assert m["scan_balanced_accuracy"] == pytest.approx(0.5)  # recall 1 for class 0, 0 for class 1
    assert m["scan_ce"] == pytest.approx(-(math.log(0.6) + math.log(0.2)) / 2)


def test_balanced_accuracy_per_scan_is_over_the_classes_of_the_scans() -> None:
    # Three scans of class 0 (all right) and one of class 2 (wrong): recalls 1 and 0, balanced 0.5; accuracy 0.75.
    logits = np.log(np.array([[0.7, 0.2, 0.1]] * 3 + [[0.5, 0.3, 0.2]]))
    m = scan_metrics(logits, np.array([0, 0, 0, 2]), np.array([0, 1, 2, 3]))
    assert m["scan_accuracy"] == pytest.approx(0.75) and m["scan_balanced_accuracy"] == pytest.approx(0.5)
