"""Training a reward classifier: `serl train-reward`.

The frames are split by episode into train and validation (`FrameSet.split`). Training draws
class-balanced batches (each class half of every batch in expectation, sampled with
replacement), applies the DrQ random shift (`serl.nets.augment`, padding from the encoder
config) to every view, and minimises binary cross-entropy with Adam. The threshold is then
calibrated on the validation split for the target precision (`calibrate.choose_threshold`);
`serl.rewards.report` writes the validation report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from serl.nets.augment import random_shift
from serl.nets.weights import load_encoder_weights
from serl.rewards.calibrate import binary_metrics, choose_threshold
from serl.rewards.dataset import FrameSet, balance_warning
from serl.rewards.model import ClassifierConfig, DecisionRule, RewardClassifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RewardTrainConfig:
    """How to train and calibrate a reward classifier."""

    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    """Views, image size and network."""
    epochs: int = 15
    """Passes over the training split (in frames drawn, with class balancing)."""
    batch_size: int = 64
    """Frames per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""
    val_fraction: float = 0.25
    """Share of episodes held out to calibrate the threshold and report the metrics."""
    target_precision: float = 0.99
    """Precision the threshold must reach on the validation split."""
    consecutive: int = 1
    """Frames in a row the classifier must call positive before it says "success"."""
    balance: bool = True
    """Draw batches half positive, half negative (in expectation)."""
    seed: int = 0
    """Seed of the split, the initial weights, the batches and the augmentation."""
    device: str = "cpu"
    """Torch device (cpu, cuda)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class TrainedClassifier:
    model: RewardClassifier
    rule: DecisionRule
    metrics: dict[str, float]
    """Validation metrics at the calibrated threshold."""
    val_scores: np.ndarray
    val: FrameSet


def _batch(data: FrameSet, index: np.ndarray, device: str) -> dict[str, torch.Tensor]:
    return {v: torch.as_tensor(f[index], device=device) for v, f in data.frames.items()}


def check_class_balance(data: FrameSet, train: FrameSet, val: FrameSet) -> None:
    """Refuse, before any training, a split that lacks a class on either side: training needs
    both, and calibrating the threshold needs positives (and negatives) it has not trained on."""
    (train_pos, train_neg), (val_pos, val_neg) = train.counts(), val.counts()
    if train_pos and train_neg and val_pos and val_neg:
        return
    positives, negatives = data.counts()
    successful = len(np.unique(data.episodes[data.labels]))
    raise ValueError(
        f"{positives} positive frames (in {successful} episodes) and {negatives} negatives split "
        f"by episode into train {train_pos}+/{train_neg}- and validation {val_pos}+/{val_neg}-; "
        "both splits need both classes, so record more episodes that succeed (sim: `serl "
        "record-rewards --label info` drives the scripted expert; robot: hold SPACE with "
        "--label key while the task is solved) into the same --out, which adds to it"
    )


def train_classifier(data: FrameSet, cfg: RewardTrainConfig) -> TrainedClassifier:
    if set(data.views) != set(cfg.classifier.views):
        raise ValueError(
            f"the frames have views {data.views}, the config asks for {cfg.classifier.views}"
        )
    if warning := balance_warning(*data.counts()):
        logger.warning(warning)
    train, val = data.split(cfg.val_fraction, cfg.seed)
    check_class_balance(data, train, val)
    positives, negatives = train.counts()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = RewardClassifier(cfg.classifier)
    if cfg.classifier.encoder.weights_path is not None:
        load_encoder_weights(model.encoder, cfg.classifier.encoder.weights_path)
    model.to(cfg.device).train()
    params = model.head.parameters() if cfg.classifier.encoder.freeze else model.parameters()
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    labels = torch.as_tensor(train.labels)
    weights = torch.where(labels, 1.0 / positives, 1.0 / negatives) if cfg.balance else None
    steps = max(1, cfg.epochs * len(train) // cfg.batch_size)
    pad = cfg.classifier.encoder.augment_pad
    bar = tqdm(range(steps), disable=not cfg.progress, unit="step", dynamic_ncols=True)
    for _ in bar:
        if weights is not None:
            index = torch.multinomial(weights, cfg.batch_size, True, generator=generator)
        else:
            index = torch.randint(0, len(train), (cfg.batch_size,), generator=generator)
        frames = _batch(train, index.numpy(), cfg.device)
        frames = {v: random_shift(f, pad, generator) for v, f in frames.items()}
        target = labels[index].float().to(cfg.device)
        loss = F.binary_cross_entropy_with_logits(model(frames), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    scores = model.probabilities(val.frames)
    threshold = choose_threshold(scores, val.labels, cfg.target_precision)
    metrics = binary_metrics(scores, val.labels, threshold)
    logger.info("validation at threshold %.4f: %s", threshold, metrics)
    return TrainedClassifier(model, DecisionRule(threshold, cfg.consecutive), metrics, scores, val)
