"""The reward classifier's report.png: every view of each mistake, readable numbers, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serl.rewards.dataset import FrameSet
from serl.rewards.model import ClassifierConfig
from serl.rewards.report import format_probabilities, report_figure, write_report
from serl.rewards.train import RewardTrainConfig, TrainedClassifier, train_classifier

VIEWS = ("front", "wrist")


def noisy_frames(episodes: int = 40, length: int = 5) -> FrameSet:
    """Success is a bright frame in both views in an episode's last two steps; every fourth
    episode has one bright negative and one dark positive, so validation has mistakes."""
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(length) >= length - 2, episodes)
    bright = labels.copy()
    for e in range(0, episodes, 4):
        bright[e * length + 1] = True  # a negative that looks like success
        bright[e * length + length - 1] = False  # a success that looks like failure
    frames = {}
    for shade, view in ((255, "front"), (180, "wrist")):
        base = np.where(bright[:, None, None, None], shade, 0).astype(np.int16)
        noise = rng.integers(-20, 20, (len(labels), 16, 16, 3))
        frames[view] = np.clip(base + noise, 0, 255).astype(np.uint8)
    return FrameSet(frames, labels, np.repeat(np.arange(episodes), length))


@pytest.fixture(scope="module")
def trained() -> TrainedClassifier:
    cfg = RewardTrainConfig(
        classifier=ClassifierConfig(views=VIEWS, image_size=16),
        epochs=20,
        target_precision=0.5,
        progress=False,
    )
    return train_classifier(noisy_frames(), cfg)


def test_report_shows_every_view_of_every_mistake_and_the_metrics(trained, tmp_path) -> None:
    m = trained.metrics
    mistakes = m["fp"] + m["fn"]
    assert mistakes > 0  # the data makes some
    fig = report_figure(trained, examples=4)
    images = [ax for ax in fig.axes if ax.images]
    shown = min(m["fp"], 4) + min(m["fn"], 4)
    assert len(images) == shown * len(VIEWS)
    assert [ax.get_title() for ax in images] == list(VIEWS) * shown
    labels = [ax.get_ylabel() for ax in images if ax.get_ylabel()]
    assert len(labels) == shown
    assert all(lab.startswith(("false positive", "false negative")) for lab in labels)
    text = "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)
    for expected in (
        f"accuracy  {m['accuracy']:.3f}",
        f"precision {m['precision']:.3f}",
        f"recall    {m['recall']:.3f}",
        f"F1        {m['f1']:.3f}",
        f"tp {m['tp']}",
        f"fn {m['fn']}",
    ):
        assert expected in text
    report = write_report(trained, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["f1"] == report["f1"] == m["f1"]
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_near_one_probability_and_threshold_print_apart() -> None:
    p, t = format_probabilities([0.9996, 0.99962])
    assert p != t and p == "0.99960" and t == "0.99962"
    assert format_probabilities([0.9996]) == ["0.9996"]  # never "1.000" below 1
    assert format_probabilities([1.0, 0.25]) == ["1.000", "0.250"]
    assert format_probabilities([2e-5]) == ["0.00002"]  # never "0.000" above 0
