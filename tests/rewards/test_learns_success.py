"""The classifier learns PandaReach success from rendered frames (ground truth info["success"])."""

from __future__ import annotations

import pytest

from serl.bench.reward import VIEWS, reach_frames
from serl.rewards.calibrate import binary_metrics
from serl.rewards.model import ClassifierConfig, load_classifier, save_classifier
from serl.rewards.report import write_report
from serl.rewards.train import RewardTrainConfig, train_classifier


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_classifier_reaches_95_accuracy_and_98_precision_on_held_out_reach_frames(tmp_path):
    data, test = reach_frames(120, seed=0), reach_frames(40, seed=100_000)
    cfg = RewardTrainConfig(
        classifier=ClassifierConfig(views=VIEWS, image_size=64), epochs=15, progress=False
    )
    trained = train_classifier(data, cfg)
    assert trained.metrics["precision"] >= cfg.target_precision  # on the validation split
    report = write_report(trained, tmp_path)
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    path = save_classifier(tmp_path / "c.safetensors", trained.model, trained.rule, report=report)
    classifier = load_classifier(path)
    scores = classifier.model.probabilities(test.frames)
    held_out = binary_metrics(scores, test.labels, classifier.rule.threshold)
    assert held_out["accuracy"] >= 0.95
    assert held_out["precision"] >= 0.98
