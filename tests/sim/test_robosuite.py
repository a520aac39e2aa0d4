"""The robosuite adapter: ``robosuite:<Env>-<Robot>`` ids as gymnasium envs."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip(
    "robosuite", reason="robosuite==1.5.2 is not installed (the sim extra installs it)"
)

from sim.adapters.robosuite import RobosuiteEnv, make  # noqa: E402


def strict_check_env(env: RobosuiteEnv, *, skip_render_check: bool = True) -> None:
    """`check_env` with its warnings made errors, except the notes on unbounded Boxes and on
    render modes it cannot try without a gymnasium spec."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*is probably too (low|high)")
        warnings.filterwarnings("ignore", message=".*not having a spec")  # not gymnasium.make
        check_env(env, skip_render_check=skip_render_check)


@pytest.fixture(scope="module")
def state_env() -> Iterator[RobosuiteEnv]:
    env = make("Lift-Panda")
    yield env
    env.close()


@pytest.fixture(scope="module")
def pixel_env() -> Iterator[RobosuiteEnv]:
    env = make(
        "Lift-Panda", obs_mode="pixels", image_size=32, render_mode="rgb_array", render_size=48
    )
    yield env
    env.close()


def scripted_lift(obs: np.ndarray, layout: dict[str, slice], state: dict[str, int]) -> np.ndarray:
    """Above the cube, down, close the gripper for 8 steps, then up (OSC deltas, base frame)."""
    eef, cube = obs[layout["robot0_eef_pos"]], obs[layout["cube_pos"]]
    action = np.zeros(7, np.float32)
    action[6] = -1.0 if state["phase"] < 2 else 1.0
    if state["phase"] < 2:
        target = cube + (0.06 if state["phase"] == 0 else 0.0) * np.array([0, 0, 1])
        action[:3] = np.clip((target - eef) / 0.05, -1.0, 1.0)
        if np.linalg.norm(target - eef) < 0.01:
            state["phase"] += 1
    elif state["phase"] == 2:
        state["closed"] = state.get("closed", 0) + 1
        state["phase"] += state["closed"] > 8
    else:
        action[2] = 1.0
    return action


def test_check_env_passes_with_state_observations(state_env: RobosuiteEnv) -> None:
    assert state_env.action_space.shape == (7,)
    np.testing.assert_array_equal(state_env.action_space.high, np.ones(7))
    assert state_env.observation_space.shape == (60,)  # proprio-state 50 + object-state 10
    strict_check_env(state_env)


def test_check_env_passes_with_pixel_observations(pixel_env: RobosuiteEnv) -> None:
    strict_check_env(pixel_env, skip_render_check=False)
    obs, _ = pixel_env.reset(seed=0)
    assert set(obs) == {"agentview", "robot0_eye_in_hand", "state"}
    assert obs["agentview"].shape == (32, 32, 3) and obs["agentview"].dtype == np.uint8
    assert obs["state"].shape == (50,) and pixel_env.render().shape == (48, 48, 3)
    assert obs["agentview"].std() > 5 and not np.array_equal(
        obs["agentview"], obs["robot0_eye_in_hand"]
    )


def test_same_seed_gives_the_same_trajectory(state_env: RobosuiteEnv) -> None:
    other = make("Lift-Panda")
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 7)).astype(np.float32)

    def rollout(env: RobosuiteEnv, seed: int) -> np.ndarray:
        observations = [env.reset(seed=seed)[0]]
        observations += [env.step(a)[0] for a in actions]
        return np.array(observations)

    first = rollout(state_env, 3)
    rollout(state_env, 4)  # an unrelated episode in between changes nothing
    np.testing.assert_array_equal(first, rollout(state_env, 3))
    np.testing.assert_array_equal(first, rollout(other, 3))
    assert not np.array_equal(first[0], rollout(other, 4)[0])
    other.close()


def test_scripted_lift_succeeds_and_terminates_with_success_in_info(
    state_env: RobosuiteEnv,
) -> None:
    obs, info = state_env.reset(seed=1)
    assert info["success"] is False
    script: dict[str, int] = {"phase": 0}
    for _ in range(80):
        obs, reward, terminated, truncated, info = state_env.step(
            scripted_lift(obs, state_env.obs_layout, script)
        )
        if terminated or truncated:
            break
    assert terminated and not truncated and info["success"] is True and reward == 1.0


def test_time_limit_is_truncation_not_termination() -> None:
    env = make("Lift-Panda", max_episode_steps=3)
    env.reset(seed=0)
    ends = [env.step(np.zeros(7, np.float32))[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]
    env.close()


def test_ee_pose_is_the_observed_end_effector_position(state_env: RobosuiteEnv) -> None:
    obs, _ = state_env.reset(seed=2)
    pos, quat = state_env.ee_pose()
    np.testing.assert_allclose(pos, obs[state_env.obs_layout["robot0_eef_pos"]], atol=1e-6)
    assert quat.shape == (4,) and quat[0] >= 0 and np.linalg.norm(quat) == pytest.approx(1.0)


def test_robosuite_ids_resolve_through_serl_make_env() -> None:
    from serl.envs import make_env

    env = make_env("robosuite:Lift-Panda", flatten=False)
    obs, _ = env.reset(seed=0)
    assert obs["cube_pos"].shape == (3,) and obs["robot0_eef_pos"].shape == (3,)
    env.close()


def test_malformed_and_unknown_ids_are_explained() -> None:
    with pytest.raises(ValueError, match="<Env>-<Robot>"):
        make("Lift")
    with pytest.raises(ValueError, match="Lift"):
        make("Lfit-Panda")
    with pytest.raises(ValueError, match="Panda"):
        make("Lift-Pandas")


def test_hard_reset_every_episode_is_still_determined_by_the_seed() -> None:
    envs = [make("Lift-Panda", hard_reset=True) for _ in range(2)]
    first = [env.reset(seed=5)[0] for env in envs]
    np.testing.assert_array_equal(first[0], first[1])
    for env in envs:
        env.close()


def test_relative_frame_moves_lift_along_the_initial_end_effector_axes() -> None:
    from serl.wrappers import RelativeFrame, quat_to_matrix

    base = make("Lift-Panda")
    layout = base.obs_layout
    env = RelativeFrame(
        base, position=layout["robot0_eef_pos"], action_rotation=slice(3, 6)
    )  # the hook: RobosuiteEnv.ee_pose
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[layout["robot0_eef_pos"]], 0.0, atol=1e-6)
    start, rot0 = base.ee_pose()[0], quat_to_matrix(base.ee_pose()[1])
    for _ in range(5):
        obs, *_ = env.step(np.array([1.0, 0, 0, 0, 0, 0, -1.0], np.float32))
    moved = base.ee_pose()[0] - start
    assert moved @ rot0[:, 0] > 0.9 * np.linalg.norm(moved) > 0.02  # along the frame's x
    relative = obs[layout["robot0_eef_pos"]]
    assert relative[0] > 0.9 * np.linalg.norm(relative)
    base.close()
