"""The dm_control adapter: ``dmc:<domain>-<task>`` ids as gymnasium envs."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("dm_control")

from sim.adapters.dmc import make  # noqa: E402


def test_check_env_passes_with_state_observations() -> None:
    env = make("cheetah-run")
    assert env.observation_space.shape == (17,) and env.action_space.shape == (6,)
    check_env(env, skip_render_check=True)


def test_check_env_passes_with_pixel_observations() -> None:
    env = make("cartpole-swingup", obs_mode="pixels", image_size=64, render_mode="rgb_array")
    check_env(env)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8


def test_dict_observations_are_kept_when_not_flattened() -> None:
    env = make("walker-walk", flatten=False)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"height", "orientations", "velocity"} and obs["height"].shape == (1,)


def test_same_seed_gives_the_same_trajectory() -> None:
    def rollout(seed: int) -> np.ndarray:
        env = make("cheetah-run")
        obs = [env.reset(seed=seed)[0]]
        for _ in range(20):
            obs.append(env.step(np.full(6, 0.3, dtype=np.float32))[0])
        return np.array(obs)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_time_limit_is_truncation_and_action_repeat_shortens_episodes() -> None:
    env = make("cartpole-balance", action_repeat=8)  # 1000 physics-control steps / 8
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(np.zeros(1, dtype=np.float32))
        steps += 1
    assert (steps, terminated, truncated) == (125, False, True)


def test_dmc_ids_resolve_through_serl_make_env() -> None:
    from serl.envs import make_env

    env = make_env("dmc:cheetah-run")
    assert env.reset(seed=0)[0].shape == (17,)


def test_malformed_and_unknown_ids_are_explained() -> None:
    with pytest.raises(ValueError, match="<domain>-<task>"):
        make("cheetah")
    with pytest.raises(ValueError, match="cheetah-run"):
        make("cheetah-fly")
