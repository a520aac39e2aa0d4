"""The Panda tasks as gymnasium envs: API conformance, seeding, episode ends, registration."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from sim.experts import make_expert

TASKS = sorted(sim.TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_check_env_passes_in_state_mode(task: str) -> None:
    env = sim.make(task)
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_check_env_passes_in_pixel_mode(task: str) -> None:
    env = sim.make(task, obs_mode="pixels", render_mode="rgb_array")
    check_env(env)
    env.close()


def _rollout(env: gym.Env, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    observations, rewards = [obs], []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards)


@pytest.mark.parametrize("task", ["PandaPickCube-v0", "PandaPegInsert-v0"])
def test_same_seed_gives_same_trajectory(task: str) -> None:
    env_a, env_b = sim.make(task), sim.make(task)
    obs_a, rew_a = _rollout(env_a, seed=7, steps=25)
    _rollout(env_a, seed=99, steps=5)  # an unrelated episode in between changes nothing
    obs_a2, _ = _rollout(env_a, seed=7, steps=25)
    obs_b, rew_b = _rollout(env_b, seed=7, steps=25)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    np.testing.assert_array_equal(obs_a, obs_a2)


def test_different_seeds_place_the_cube_differently() -> None:
    env = sim.make("PandaPickCube-v0")
    cubes = {tuple(np.round(env.reset(seed=s)[0][env.obs_layout["cube_pos"]], 5)) for s in range(5)}
    assert len(cubes) == 5


def test_time_limit_truncates_and_does_not_terminate() -> None:
    env = sim.make("PandaReach-v0", max_episode_steps=4)
    env.reset(seed=0)
    ends = [env.step(np.zeros(3))[2:4] for _ in range(4)]
    assert ends == [(False, False)] * 3 + [(False, True)]


def test_success_terminates_with_success_in_info() -> None:
    env = sim.make("PandaReach-v0")
    expert = make_expert(env)
    obs, info = env.reset(seed=3)
    assert info["success"] is False
    for _ in range(30):
        obs, reward, terminated, truncated, info = env.step(expert(obs))
        if terminated or truncated:
            break
    assert terminated and not truncated and info["success"] is True


def test_reach_reward_is_dense_by_default_and_sparse_on_request() -> None:
    dense, sparse = sim.make("PandaReach-v0"), sim.make("PandaReach-v0", reward_type="sparse")
    dense.reset(seed=0)
    sparse.reset(seed=0)
    assert dense.step(np.zeros(3))[1] < -0.5  # -distance / 0.1 m, target far away
    assert sparse.step(np.zeros(3))[1] == 0.0


def test_state_layout_names_every_entry_of_the_observation() -> None:
    env = sim.make("PandaPickCube-v0")
    obs, _ = env.reset(seed=0)
    covered = sorted(i for s in env.obs_layout.values() for i in range(s.start, s.stop))
    assert covered == list(range(obs.shape[0]))
    np.testing.assert_allclose(obs[env.obs_layout["tcp_pos"]], env.tcp_pos(), atol=1e-6)


def test_wrong_action_shape_is_rejected_with_the_expected_shape() -> None:
    env = sim.make("PandaPickCube-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        env.step(np.zeros(3))


def test_prefixed_ids_resolve_through_serl_make_env() -> None:
    from serl.envs import make_env

    env = make_env("sim:PandaReach-v0")
    assert env.action_space.shape == (3,)
    pixels = make_env("sim:PandaPickCubePixels-v0", image_size=32)
    obs, _ = pixels.reset(seed=0)
    assert set(obs) == {"front", "wrist", "state"} and obs["front"].shape == (32, 32, 3)
    pixels.close()
    sized = make_env("sim:PandaReachPixels48-v0")  # the size in the id, for id-only tools
    assert sized.observation_space["wrist"].shape == (48, 48, 3)
    sized.close()


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="PandaPickCube-v0"):
        sim.make("PandaStack-v0")


def test_gymnasium_registration_under_sim_namespace() -> None:
    from sim.registration import register_gymnasium

    register_gymnasium()
    register_gymnasium()
    env = gym.make("sim/PandaReach-v0")
    assert env.reset(seed=0)[0].shape == env.observation_space.shape
    env.close()


def test_rotation_control_adds_a_rotation_action_and_the_tcp_quaternion() -> None:
    env = sim.make("PandaPegInsert-v0", control_rotation=True)
    obs, _ = env.reset(seed=0)
    assert env.action_space.shape == (6,) and "tcp_quat" in env.obs_layout
    quat = obs[env.obs_layout["tcp_quat"]]
    for _ in range(3):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 1.0], dtype=np.float32))  # turn about z
    turned = obs[env.obs_layout["tcp_quat"]]
    assert abs(float(np.dot(quat, turned))) < np.cos(0.1)  # turned by more than 0.2 rad
    check_env(env, skip_render_check=True)
