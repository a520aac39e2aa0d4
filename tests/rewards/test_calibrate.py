import numpy as np
import pytest

from serl.rewards.calibrate import (
    CalibrationError,
    ConsecutiveRule,
    binary_metrics,
    choose_threshold,
)


def test_threshold_meets_the_requested_precision_with_the_highest_recall():
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.3
    scores = np.clip(rng.normal(np.where(labels, 0.7, 0.3), 0.15), 0, 1)
    for target in (0.9, 0.95, 0.99):
        threshold = choose_threshold(scores, labels, target)
        assert binary_metrics(scores, labels, threshold)["precision"] >= target
        # The next lower score would break the target: the threshold is the lowest that works.
        lower = scores[scores < threshold].max()
        assert binary_metrics(scores, labels, lower)["precision"] < target or lower < 0.0


def test_threshold_on_hand_made_scores_excludes_the_top_negative():
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.2])
    labels = np.array([1, 1, 0, 1, 1, 0], bool)
    assert choose_threshold(scores, labels, 0.99) == 0.9
    assert choose_threshold(scores, labels, 0.75) == 0.6


def test_unreachable_precision_is_an_error_that_names_the_best():
    with pytest.raises(CalibrationError, match="best 0.500"):
        choose_threshold(np.array([0.9, 0.9]), np.array([True, False]), 0.99)


def test_metrics_count_the_confusion_matrix():
    m = binary_metrics(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 0, 1, 0], bool), 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 1, 1, 1)
    assert m["accuracy"] == 0.5


def test_consecutive_rule_needs_k_positive_frames_in_a_row():
    rule = ConsecutiveRule(3)
    assert [rule.update(p) for p in (1, 1, 0, 1, 1, 1, 1)] == [0, 0, 0, 0, 0, 1, 1]
