"""Decision threshold, metrics and the k-consecutive-frames rule.

A false "success" teaches the robot the wrong thing (the agent is rewarded, and the episode
ends, in a state that is not the goal), while a missed success only delays learning. So the
threshold is chosen on the validation split for a target precision (0.99 by default): among
the thresholds whose precision on the validation frames is at least the target, the one with
the highest recall (the lowest such threshold). Precision at threshold t counts the frames
with score >= t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class CalibrationError(ValueError):
    """No threshold reaches the requested precision on the validation split."""


@dataclass(frozen=True)
class PRCurve:
    thresholds: np.ndarray
    """Distinct scores, descending; point i predicts positive for score >= thresholds[i]."""
    precision: np.ndarray
    recall: np.ndarray


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> PRCurve:
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    tp = np.cumsum(sorted_labels)
    fp = np.cumsum(~sorted_labels)
    # The last index of each run of equal scores: everything >= that score is predicted positive.
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1] if len(scores) else []
    tp, fp = tp[last], fp[last]
    positives = max(int(labels.sum()), 1)
    return PRCurve(sorted_scores[last], tp / (tp + fp), tp / positives)


def choose_threshold(scores: np.ndarray, labels: np.ndarray, target_precision: float) -> float:
    """The lowest threshold whose validation precision is >= `target_precision`."""
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision {target_precision} is not in (0, 1]")
    labels = np.asarray(labels, bool)
    if not labels.any():
        raise CalibrationError(
            "the validation split has no positive frames; record more successes or raise "
            "--val-fraction"
        )
    curve = pr_curve(scores, labels)
    ok = np.flatnonzero(curve.precision >= target_precision)
    if len(ok) == 0:
        best = int(np.argmax(curve.precision))
        raise CalibrationError(
            f"no threshold reaches precision {target_precision} on the validation split (best "
            f"{curve.precision[best]:.3f} at recall {curve.recall[best]:.3f}); record more "
            "frames, train longer, or lower --target-precision"
        )
    # Recall grows as the threshold falls, so the last qualifying point has the highest recall.
    return float(curve.thresholds[ok[-1]])


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and the confusion counts at `threshold`."""
    predicted = np.asarray(scores) >= threshold
    labels = np.asarray(labels, bool)
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    tn = int(np.sum(~predicted & ~labels))
    # No positive prediction makes no false success: precision 1 by convention.
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / max(len(labels), 1),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


class ConsecutiveRule:
    """Success only after `k` consecutive positive frames (k = 1: every positive frame)."""

    def __init__(self, k: int = 1) -> None:
        if k < 1:
            raise ValueError(f"consecutive frames k={k}; use k >= 1")
        self.k = k
        self.run = 0

    def reset(self) -> None:
        self.run = 0

    def update(self, positive: bool) -> bool:
        self.run = self.run + 1 if positive else 0
        return self.run >= self.k
