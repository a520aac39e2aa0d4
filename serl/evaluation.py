"""Run a policy for whole episodes and summarise return, length and success."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from serl.envs import episode_success


def evaluate(
    env: gym.Env,
    act: Callable[[Any], np.ndarray],
    *,
    episodes: int,
    seed: int,
    on_reset: Callable[[], None] | None = None,
    success_key: str = "",
) -> dict[str, float]:
    """Mean/std return, mean length and success rate over `episodes` seeded episodes.

    The success rate is left out when the env reports no success (`serl.envs.episode_success`
    with `success_key`). `on_reset` runs at every episode start (a stateful policy's
    `reset_episode`)."""
    returns, lengths, successes = [], [], []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        if on_reset is not None:
            on_reset()
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
        successes.append(episode_success(info, success_key))
    summary = {
        "eval/return_mean": float(np.mean(returns)),
        "eval/return_std": float(np.std(returns)),
        "eval/length_mean": float(np.mean(lengths)),
    }
    reported = [s for s in successes if s is not None]
    if reported:
        summary["eval/success_rate"] = float(np.mean(reported))
    return summary


def describe(summary: dict[str, float]) -> str:
    """'return -150.2 ± 20.1' and ', success rate 90%' when the env reports success."""
    text = f"return {summary['eval/return_mean']:.1f} ± {summary['eval/return_std']:.1f}"
    if "eval/success_rate" in summary:
        text += f", success rate {summary['eval/success_rate']:.0%}"
    return text
