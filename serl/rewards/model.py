"""The reward classifier: camera frames -> P(success), and its checkpoint file.

Each view (a camera key of a Dict observation, or ``"render"`` for `env.render()`) is
resized to one square size and encoded by the observation encoder of `serl.nets.encoders`
(the DrQ conv trunk or the small ResNet, one per view, Linear -> LayerNorm -> tanh); the
features go through a one-hidden-layer MLP to one logit. Because the encoder is the agents'
`ObservationEncoder`, an encoder weights file saved from an agent with the same views and
image size initialises it (`EncoderConfig.weights_path`).

The checkpoint follows `serl.checkpoint`: one safetensors file with the weights, the config,
its hash and the decision rule (threshold, k consecutive frames) in the JSON metadata,
written atomically; loading checks the checksum, the kind of file, the config hash and every
tensor's shape before anything is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from serl.checkpoint import CheckpointError, check_compatible, read_checkpoint, save_checkpoint
from serl.config import config_from_dict, config_hash, config_to_dict
from serl.nets.encoders import EncoderConfig, ObservationEncoder

KIND = "serl.reward_classifier"
"""The `metadata["kind"]` of a classifier checkpoint (agent checkpoints have none)."""


def _default_encoder() -> EncoderConfig:
    # Half the agents' DrQ width: classifier frames are small and CPU training must be quick.
    return EncoderConfig(kind="drq", num_filters=16, feature_dim=32, augment_pad=4)


@dataclass(frozen=True)
class ClassifierConfig:
    """What the classifier looks at and how big it is."""

    views: tuple[str, ...] = ("front",)
    """Camera keys of the observation to classify ("render" takes `env.render()`)."""
    image_size: int = 64
    """Frames are resized to image_size x image_size before the encoder."""
    encoder: EncoderConfig = field(default_factory=_default_encoder)
    """Conv encoder per view (kind, width, random-shift padding, optional local weights file)."""
    hidden_dim: int = 64
    """Width of the hidden layer of the head."""


def views_space(cfg: ClassifierConfig) -> gym.spaces.Dict:
    frame = gym.spaces.Box(0, 255, (cfg.image_size, cfg.image_size, 3), np.uint8)
    return gym.spaces.Dict({view: frame for view in cfg.views})


class RewardClassifier(nn.Module):
    """Frames {view: (B, H, W, 3) uint8} -> success logits (B,)."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        if not cfg.views:
            raise ValueError("ClassifierConfig.views is empty; name at least one camera view")
        self.cfg = cfg
        self.encoder = ObservationEncoder(views_space(cfg), cfg.encoder)
        self.head = nn.Sequential(
            nn.Linear(self.encoder.out_dim, cfg.hidden_dim), nn.ReLU(), nn.Linear(cfg.hidden_dim, 1)
        )

    def forward(self, frames: dict[str, Tensor]) -> Tensor:
        return self.head(self.encoder(frames)).squeeze(-1)

    @torch.no_grad()
    def probabilities(self, frames: dict[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
        """P(success) of each frame set, (N,) float; frames are uint8 arrays (N, H, W, 3)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        n = len(next(iter(frames.values())))
        out = []
        for start in range(0, n, batch_size):
            batch = {
                k: torch.as_tensor(v[start : start + batch_size], device=device)
                for k, v in frames.items()
            }
            out.append(torch.sigmoid(self(batch)).cpu().numpy())
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0, np.float32)


@dataclass(frozen=True)
class DecisionRule:
    """When the classifier says "success"."""

    threshold: float
    """Success when P(success) >= threshold (calibrated for a target precision)."""
    consecutive: int = 1
    """... for this many consecutive frames of an episode."""


@dataclass
class LoadedClassifier:
    model: RewardClassifier
    rule: DecisionRule
    header: dict[str, Any]

    @property
    def cfg(self) -> ClassifierConfig:
        return self.model.cfg


def save_classifier(
    path: str | Path,
    model: RewardClassifier,
    rule: DecisionRule,
    *,
    report: dict[str, Any] | None = None,
) -> Path:
    """Write the classifier, its config and decision rule to one safetensors file (atomic)."""
    path = Path(path)
    save_checkpoint(
        path,
        model.state_dict(),
        config=config_to_dict(model.cfg),
        config_hash=config_hash(model.cfg),
        metadata={
            "kind": KIND,
            "threshold": rule.threshold,
            "consecutive": rule.consecutive,
            "report": report or {},
        },
    )
    return path


def load_classifier(path: str | Path, device: str = "cpu") -> LoadedClassifier:
    """Read a classifier checkpoint; a corrupt, foreign or mismatched file is a CheckpointError."""
    header, state = read_checkpoint(path)
    meta = header.get("metadata", {})
    if meta.get("kind") != KIND:
        raise CheckpointError(
            f"{path}: not a reward-classifier checkpoint (metadata kind {meta.get('kind')!r}); "
            "give the file `serl train-reward` wrote (classifier.safetensors)"
        )
    try:
        cfg = config_from_dict(ClassifierConfig, header["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its classifier config does not fit: {exc}") from exc
    if config_hash(cfg) != header["config_hash"]:
        raise CheckpointError(
            f"{path}: config hash {header['config_hash']} does not match its config "
            f"({config_hash(cfg)}); the file was edited or written by another serl version"
        )
    model = RewardClassifier(cfg)
    check_compatible(path, state, model.state_dict())
    model.load_state_dict(state)
    rule = DecisionRule(float(meta["threshold"]), int(meta.get("consecutive", 1)))
    return LoadedClassifier(model.to(device).eval(), rule, header)


def check_classifier(path: str | Path, flag: str) -> None:
    """Load the classifier at `path` once, so that a missing, corrupt or foreign file stops a
    command before it starts any process or run; the ValueError names `flag` and the problem."""
    try:
        load_classifier(path)
    except (OSError, CheckpointError) as exc:
        raise ValueError(f"{flag}: {exc}") from exc
