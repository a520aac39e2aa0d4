"""Evaluation reports a success rate only for envs that report success, under the key they use."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from serl.envs import episode_success, make_env
from serl.evaluation import describe, evaluate


class CountdownEnv(gym.Env):
    """Three steps per episode; success on even seeds, reported under `key` (none if empty)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, key: str = "", render_mode=None) -> None:
        self.key, self.t, self.won = key, 0, False

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.won = 0, seed % 2 == 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        info = {self.key: self.won and self.t == 3} if self.key else {}
        return np.zeros(1, np.float32), -1.0, False, self.t == 3, info


def zero(obs):
    return np.zeros(1, np.float32)


@pytest.mark.parametrize("key", ["success", "is_success", "succeed"])
def test_every_known_key_gives_a_success_rate(key):
    summary = evaluate(CountdownEnv(key), zero, episodes=4, seed=0)  # seeds 0..3: 2 successes
    assert summary["eval/success_rate"] == 0.5
    assert summary["eval/return_mean"] == -3.0 and summary["eval/length_mean"] == 3.0
    assert describe(summary) == "return -3.0 ± 0.0, success rate 50%"


def test_an_env_without_success_gets_no_success_rate():
    summary = evaluate(CountdownEnv(""), zero, episodes=4, seed=0)
    assert "eval/success_rate" not in summary
    assert describe(summary) == "return -3.0 ± 0.0"
    pendulum = make_env("Pendulum-v1")
    assert "eval/success_rate" not in evaluate(pendulum, zero, episodes=1, seed=0)


def test_a_configured_key_is_the_only_one_read():
    summary = evaluate(CountdownEnv("task_done"), zero, episodes=4, seed=1, success_key="task_done")
    assert summary["eval/success_rate"] == 0.5
    assert "eval/success_rate" not in evaluate(CountdownEnv("task_done"), zero, episodes=2, seed=0)
    # a configured key the env does not use is not silently replaced by another one
    assert episode_success({"success": True}, key="task_done") is None
    assert episode_success({"succeed": False}) is False
