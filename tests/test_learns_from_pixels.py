"""A policy learned from a camera through a frozen backbone (`serl train-local`, real SAC).

The task can only be solved by looking: a point on a line must go to a target that is either
left or right, and the target's side is drawn in the camera frame only (the state holds the
point's position alone). A blind policy can do no better than stay in the middle; success
needs the frame. The randomly initialised conv backbone (the benchmark's control) suffices:
its pooled 2x2 cells see which half of the frame is lit, and only the head and MLPs train.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from serl.agents.sac import SACConfig
from serl.local import LocalTrainConfig, train_local
from serl.nets.encoders import EncoderConfig

TARGET = 0.6
SUCCESS_M = 0.15
STEPS_PER_EPISODE = 8


class LookLeftOrRight(gym.Env):
    """The point starts at 0; the target (±0.6) shows as a lit half of a 32x32 camera frame."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Dict(
            {
                "camera": gym.spaces.Box(0, 255, (32, 32, 3), np.uint8),
                "state": gym.spaces.Box(-2.0, 2.0, (1,), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.x, self.target, self.t = 0.0, TARGET, 0

    def _obs(self) -> dict[str, np.ndarray]:
        frame = np.zeros((32, 32, 3), np.uint8)
        frame[8:24, 2:14] = frame[8:24, 18:30] = 40  # both halves textured, one lit
        half = slice(18, 30) if self.target > 0 else slice(2, 14)
        frame[8:24, half] = 230
        return {"camera": frame, "state": np.array([self.x], np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        self.x, self.t = 0.0, 0
        self.target = TARGET if self.np_random.random() < 0.5 else -TARGET
        return self._obs(), {}

    def step(self, action: np.ndarray) -> Any:
        self.x = float(np.clip(self.x + 0.3 * float(action[0]), -2.0, 2.0))
        self.t += 1
        distance = abs(self.x - self.target)
        truncated = self.t >= STEPS_PER_EPISODE
        info = {"success": distance < SUCCESS_M}
        return self._obs(), -distance, False, truncated, info


@pytest.fixture
def look_env():
    gym.register("SerlTestLookLeftOrRight-v0", entry_point=LookLeftOrRight)
    yield "SerlTestLookLeftOrRight-v0"
    gym.registry.pop("SerlTestLookLeftOrRight-v0")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_frozen_backbone_policy_learns_to_use_the_camera(look_env, tmp_path, seed):
    cfg = LocalTrainConfig(
        env=look_env,
        agent="sac",
        agent_cfg=SACConfig(
            hidden_dims=(64, 64),
            batch_size=64,
            init_temperature=0.1,
            encoder=EncoderConfig(backbone="conv", feature_dim=16),
        ),
        steps=2_000,
        random_steps=200,
        start_training=200,
        eval_every=2_000,
        eval_episodes=20,
        log_every=500,
        seed=seed,
        run_dir=tmp_path / "run",
        progress=False,
        threads=1,  # two threads on a busy 2-core machine spin-wait: ~6x slower, measured
    )
    final = train_local(cfg).final_eval
    # A blind policy succeeds in at most half the episodes (it can only guess a side).
    assert final["eval/success_rate"] >= 0.9, final
