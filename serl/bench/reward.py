"""Reward-classifier quality and speed on rendered PandaReach frames: `serl bench reward`.

Frames: the front and wrist cameras of `sim:PandaReach-v0` (64x64 pixel observations), labelled
with the task's ground truth ``info["success"]`` (TCP within 5 cm of the target). Episodes are
driven by a proportional controller on the state's ``target_minus_tcp`` slice with Gaussian
action noise: half aim at the target (positives, hovering on it), half at a point 7-15 cm
beside it (hard negatives near the target); one in five episodes is random actions. Episodes
last 15 steps and do not end on success, so both classes have many frames. (The front camera
alone at 64x64 was tried: the 2 cm target is a few pixels and held-out precision stayed far
below 0.9; the wrist camera sees it large.) The controller reads the task's true positions
(`target_pos`, `tcp_pos` of the unwrapped env), as the scripted experts do. The classifier is
trained and calibrated (target precision 0.99) on some episodes and measured on frames of other,
held-out episodes. `classifier_inference_ms` is the CPU time of one decision (one frame set,
batch 1), the cost per control step on the actor.

`--smoke` trains on 20 episodes for 2 epochs and measures on 5: what CI runs to catch a broken
benchmark. Its figures are not measurements.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from serl.envs import make_env
from serl.rewards.calibrate import binary_metrics
from serl.rewards.dataset import FrameSet
from serl.rewards.model import ClassifierConfig
from serl.rewards.record import info_success, record
from serl.rewards.train import RewardTrainConfig, train_classifier

ENV_ID = "sim:PandaReach-v0"
VIEWS = ("front", "wrist")
EPISODE_STEPS = 15
"""Short episodes: many targets, few near-copies of one hovering frame."""
GAIN = 10.0
"""Action per metre of error: the controller saturates farther than 10 cm from its aim."""
SIZES = {"full": (300, 100, 15), "quick": (120, 40, 15), "smoke": (20, 5, 2)}
"""(training episodes, test episodes, epochs) of each size."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds-long run of every measurement, for CI (figures are not measurements)",
    )


def reach_frames(
    episodes: int, seed: int, size: int = 64, noise: float = 0.3, views: tuple[str, ...] = VIEWS
) -> FrameSet:
    """Labelled camera frames of PandaReach episodes (see the module docstring)."""
    env = make_env(ENV_ID, obs_mode="pixels", image_size=size, max_episode_steps=EPISODE_STEPS,
                   terminate_on_success=False)  # fmt: skip
    task = env.unwrapped
    rng = np.random.default_rng(seed)
    offset = np.zeros(3)
    mode = "aim"

    def act(obs: np.ndarray) -> np.ndarray:
        if mode == "random":
            return rng.uniform(-1, 1, 3).astype(np.float32)
        error = task.target_pos() - task.tcp_pos() + offset
        return np.clip(GAIN * error + rng.normal(0, noise, 3), -1, 1).astype(np.float32)

    sets = []
    for episode in range(episodes):
        mode = ("aim", "beside", "aim", "beside", "random")[episode % 5]
        direction = rng.normal(size=3)
        distance = rng.uniform(0.07, 0.15) if mode == "beside" else 0.0
        offset = direction / np.linalg.norm(direction) * distance
        part = record(env, act, info_success, episodes=1, views=views, size=size,
                      seed=seed + episode)  # fmt: skip
        part.episodes[:] = episode
        sets.append(part)
    env.close()
    return FrameSet(
        {v: np.concatenate([s.frames[v] for s in sets]) for v in views},
        np.concatenate([s.labels for s in sets]),
        np.concatenate([s.episodes for s in sets]),
    )


def run(quick: bool, device: str, smoke: bool = False) -> dict[str, float | bool]:
    size = "smoke" if smoke else "quick" if quick else "full"
    train_episodes, test_episodes, epochs = SIZES[size]
    data = reach_frames(train_episodes, seed=0)
    test = reach_frames(test_episodes, seed=100_000)
    cfg = RewardTrainConfig(
        classifier=ClassifierConfig(views=VIEWS, image_size=64),
        epochs=epochs,
        device=device,
        progress=False,
    )
    trained = train_classifier(data, cfg)
    model = trained.model
    scores = model.probabilities(test.frames)
    metrics = binary_metrics(scores, test.labels, trained.rule.threshold)
    one = {v: f[:1] for v, f in test.frames.items()}
    model.to("cpu")
    for _ in range(5):
        model.probabilities(one)
    calls, start = 200, time.perf_counter()
    for _ in range(calls):
        model.probabilities(one)
    inference_ms = (time.perf_counter() - start) / calls * 1e3
    positives, negatives = test.counts()
    return {
        **({"smoke": True} if smoke else {}),
        "classifier_accuracy": metrics["accuracy"],
        "classifier_precision": metrics["precision"],
        "classifier_recall": metrics["recall"],
        "classifier_inference_ms": inference_ms,
        "threshold": trained.rule.threshold,
        "test_positives": positives,
        "test_negatives": negatives,
    }
