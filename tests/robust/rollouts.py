"""A reference measurement of the IWOCS search's V, written apart from `serl.robust.iwocs`."""

from __future__ import annotations

from typing import Any

import numpy as np

from serl.envs import make_env


def discounted_return(
    policy: Any,
    env_id: str,
    params: dict[str, float],
    *,
    episodes: int,
    seed: int,
    discount: float,
) -> float:
    """Mean Σ_t γ^t r_t of the composite's deterministic episodes `seed`, `seed+1`, ...

    The tests compare the loop's search values with this, so it is kept independent of the
    loop's own `rollout` (rewards collected first, then discounted)."""
    env = make_env(env_id, params=params)
    values = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            policy.reset_episode()
            rewards, done = [], False
            while not done:
                action = policy.act(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(action)
                rewards.append(float(reward))
                done = terminated or truncated
            values.append(sum(discount**t * r for t, r in enumerate(rewards)))
    finally:
        env.close()
    return float(np.mean(values))
