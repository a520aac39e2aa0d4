"""Scripted "humans" for `serl record-demos --device expert --policy tests.teleop.policies:...`."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def pendulum_expert(env: Any) -> Any:
    """An energy-pumping Pendulum controller: deterministic, so recordings are reproducible."""

    def policy(obs: np.ndarray) -> np.ndarray:
        cos, sin, velocity = obs
        return np.clip([-2.0 * sin - 0.5 * velocity + 0.1 * cos], -1.0, 1.0).astype(np.float32)

    return policy


def slow_pendulum_expert(env: Any) -> Any:
    """The same, 5 ms per step: a recording that a signal can interrupt mid-episode."""
    fast = pendulum_expert(env)

    def policy(obs: np.ndarray) -> np.ndarray:
        time.sleep(0.005)
        return fast(obs)

    return policy
