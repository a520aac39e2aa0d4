"""The validation report of a reward classifier: report.json and report.png.

The PNG is what a person checks before trusting the classifier on a robot: the validation
precision-recall curve with the calibrated threshold, the metrics at that threshold
(accuracy, precision, recall, F1, the confusion counts), and the most confident mistakes
(false positives first, then false negatives), one row per frame and one column per camera
view the classifier sees. Probabilities sit close to 0 and 1 and the threshold often does
too (0.9996), so they are printed with as many digits as it takes to tell them apart
(`format_probabilities`); a false negative never reads as p = 1.000 beside a threshold of
1.000.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np

from serl.rewards.calibrate import pr_curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from serl.rewards.train import TrainedClassifier

matplotlib.use("Agg")

MIN_DECIMALS = 3
MAX_DECIMALS = 12
"""Probabilities closer than 1e-12 are printed with all of Python's digits (repr)."""
CELL_IN = 1.7
"""Width and height of one frame in the figure, inches."""
LABEL_IN = 1.2
"""Width of a mistake's label (kind, probability) left of its frames, inches."""


def format_probabilities(values: Iterable[float]) -> list[str]:
    """Fixed-point strings with the fewest decimals (at least 3) that keep distinct values
    distinct and never round a value below 1 up to "1.000" or one above 0 down to "0.000".

    Format a threshold together with the probabilities shown beside it, so that p < t always
    reads as such: [0.9996, 0.99962] -> ["0.99960", "0.99962"].
    """
    values = [float(v) for v in values]
    for decimals in range(MIN_DECIMALS, MAX_DECIMALS + 1):
        texts = [f"{v:.{decimals}f}" for v in values]
        one, zero = f"{1:.{decimals}f}", f"{0:.{decimals}f}"
        rounded_to_edge = any(
            (t == one and v < 1.0) or (t == zero and v > 0.0)
            for t, v in zip(texts, values, strict=True)
        )
        if not rounded_to_edge and len(set(texts)) == len(set(values)):
            return texts
    return [repr(v) for v in values]


def mistakes(result: TrainedClassifier, examples: int) -> list[tuple[str, int]]:
    """(kind, validation index) of the most confident false positives, then false negatives."""
    labels, scores = result.val.labels, result.val_scores
    predicted = scores >= result.rule.threshold
    false_pos = np.flatnonzero(predicted & ~labels)
    false_neg = np.flatnonzero(~predicted & labels)
    false_pos = false_pos[np.argsort(-scores[false_pos], kind="stable")][:examples]
    false_neg = false_neg[np.argsort(scores[false_neg], kind="stable")][:examples]
    return [("false positive", int(i)) for i in false_pos] + [
        ("false negative", int(i)) for i in false_neg
    ]


def metrics_text(result: TrainedClassifier, threshold_text: str) -> str:
    m = result.metrics
    positives, negatives = result.val.counts()
    return (
        f"validation: {len(result.val)} frames ({positives} positive, {negatives} negative)\n"
        f"threshold {threshold_text}, {result.rule.consecutive} consecutive frame(s)\n\n"
        f"accuracy  {m['accuracy']:.3f}\nprecision {m['precision']:.3f}\n"
        f"recall    {m['recall']:.3f}\nF1        {m['f1']:.3f}\n\n"
        f"              predicted +   predicted -\n"
        f"positive      tp {m['tp']:<9} fn {m['fn']}\n"
        f"negative      fp {m['fp']:<9} tn {m['tn']}"
    )


def report_figure(result: TrainedClassifier, examples: int = 4) -> Figure:
    """PR curve and metrics on the left; the mistakes on the right, a row per frame and a
    column per view. The figure's height follows the number of rows, so nothing is empty."""
    import matplotlib.pyplot as plt

    picks = mistakes(result, examples)
    views = result.val.views
    threshold = result.rule.threshold
    texts = format_probabilities([threshold, *(result.val_scores[i] for _, i in picks)])
    rows = max(len(picks), 3)
    left_in, right_in = 4.2, LABEL_IN + CELL_IN * len(views)
    fig = plt.figure(figsize=(left_in + right_in, CELL_IN * rows + 0.4), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[left_in, right_in])
    curve_ax, text_ax = left.subplots(2, 1, height_ratios=[3, 2])
    curve = pr_curve(result.val_scores, result.val.labels)
    m = result.metrics
    curve_ax.plot(curve.recall, curve.precision, marker=".")
    curve_ax.scatter([m["recall"]], [m["precision"]], color="tab:red", zorder=3,
                     label=f"threshold {texts[0]}")  # fmt: skip
    curve_ax.set(xlabel="recall", ylabel="precision", title="validation PR curve", ylim=(0, 1.02))
    curve_ax.legend(loc="lower left")
    curve_ax.grid(alpha=0.3)
    text_ax.axis("off")
    text_ax.text(0, 1, metrics_text(result, texts[0]), va="top", family="monospace", fontsize=8)
    if not picks:
        right.suptitle("no false positives or false negatives at this threshold", fontsize=9)
        return fig
    cells = right.subplots(len(picks), len(views), squeeze=False)
    for row, ((kind, index), p_text) in enumerate(zip(picks, texts[1:], strict=True)):
        relation = ">=" if kind == "false positive" else "<"
        for col, view in enumerate(views):
            cell = cells[row, col]
            cell.imshow(result.val.frames[view][index])
            cell.set_xticks([])
            cell.set_yticks([])
            cell.set_title(view, fontsize=8)
            if col == 0:
                cell.set_ylabel(
                    f"{kind}\np = {p_text}\n{relation} t", fontsize=8, rotation=0, ha="right",
                    va="center",
                )  # fmt: skip
    return fig


def write_report(result: TrainedClassifier, out_dir: str | Path, examples: int = 4) -> dict:
    """report.json and report.png (`report_figure`) in `out_dir`; returns the JSON's dict."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = report_figure(result, examples)
    fig.savefig(out_dir / "report.png", dpi=100)
    plt.close(fig)
    m = result.metrics
    positives, negatives = result.val.counts()
    report: dict[str, Any] = {
        "threshold": result.rule.threshold,
        "consecutive": result.rule.consecutive,
        "validation_frames": len(result.val),
        "validation_positives": positives,
        "validation_negatives": negatives,
        **{k: m[k] for k in ("accuracy", "precision", "recall", "f1")},
        "confusion_matrix": [[m["tn"], m["fp"]], [m["fn"], m["tp"]]],
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
