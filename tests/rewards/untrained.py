"""An untrained reward classifier whose decision is fixed by its threshold: every frame is a
success at threshold 0 and none is above 1, whatever the weights (a probability is in [0, 1])."""

from __future__ import annotations

from pathlib import Path

from serl.nets.encoders import EncoderConfig
from serl.rewards.model import ClassifierConfig, DecisionRule, RewardClassifier, save_classifier


def untrained_classifier(
    path: Path, threshold: float = 0.0, views: tuple[str, ...] = ("front",)
) -> Path:
    """A tiny classifier on `views` (16x16) written to `path`."""
    cfg = ClassifierConfig(
        views=("front",),
        image_size=16,
        encoder=EncoderConfig(num_filters=4, feature_dim=4),
        hidden_dim=8,
    )
    return save_classifier(path, RewardClassifier(cfg), DecisionRule(threshold))
