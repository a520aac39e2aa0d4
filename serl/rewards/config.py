"""What replaces an env's reward by a reward classifier: a plain config, kept apart from the
wrapper (which needs torch) so that command-line configs can name it without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClassifierRewardConfig:
    """Replace an env's reward with a reward classifier (off when `checkpoint` is None)."""

    checkpoint: Path | None = None
    """Classifier file written by `serl train-reward` (classifier.safetensors)."""
    success_reward: float = 1.0
    """Reward of a step the classifier calls a success."""
    failure_reward: float = 0.0
    """Reward of every other step (-1 with success 0 gives SAC a minimum-time task)."""
    keep_env_termination: bool = False
    """Also end episodes when the env itself terminates (e.g. a real robot's safety stop)."""
