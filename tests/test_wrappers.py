"""SERL-style wrappers: what each does to observations, actions and rewards, and that the
wrapped envs keep exact spaces (gymnasium's `check_env`, with its warnings made errors)."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from serl.wrappers import (
    ActionChunking,
    ActionRepeat,
    CropResize,
    FrameStack,
    GripperPenalty,
    RelativeFrame,
    quat_multiply,
    quat_to_matrix,
    resize_image,
)

BENIGN_WARNINGS = (
    "different from the unwrapped version",  # check_env notes any wrapper
    "is probably too (low|high)",  # an unbounded Box, as the sim tasks' state vectors are
)


def strict_check_env(env: gym.Env) -> None:
    """`check_env`, failing on any warning (an observation outside its space, a
    non-deterministic seeded reset, ...) but `BENIGN_WARNINGS`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for message in BENIGN_WARNINGS:
            warnings.filterwarnings("ignore", message=f".*{message}")
        check_env(env, skip_render_check=True)


def axis_angle_quat(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


class FakeArm(gym.Env):
    """A floating end effector: pose (3 + 4 wxyz) and velocity (3) in one vector; the action
    [dx dy dz drx dry drz] moves it by 0.05 * action (m) and rotates it by 0.2 * action (rad,
    a world-frame rotation vector). Each reset draws a random initial pose."""

    step_m, step_rad, dt_s = 0.05, 0.2, 0.1

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (10,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
        self.pos, self.quat, self.vel = np.zeros(3), np.array([1.0, 0, 0, 0]), np.zeros(3)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pos.copy(), self.quat.copy()

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.quat, self.vel]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.5, 0.5, 3)
        quat = self.np_random.normal(size=4)
        self.quat = quat / np.linalg.norm(quat) * np.sign(quat[0])
        self.vel = np.zeros(3)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> Any:
        action = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        delta = action[:3] * self.step_m
        self.pos, self.vel = self.pos + delta, delta / self.dt_s
        rotvec = action[3:] * self.step_rad
        angle = np.linalg.norm(rotvec)
        if angle > 0:
            self.quat = quat_multiply(axis_angle_quat(rotvec, angle), self.quat)
        return self._obs(), 0.0, False, False, {}


def relative_fake_arm(**kwargs: Any) -> RelativeFrame:
    return RelativeFrame(
        FakeArm(),
        position=slice(0, 3),
        quaternion=slice(3, 7),
        vectors=[slice(7, 10)],
        action_rotation=slice(3, 6),
        **kwargs,
    )


# ---------------------------------------------------------------------------- relative frame
def test_relative_frame_starts_each_episode_at_origin_with_identity_orientation() -> None:
    env = relative_fake_arm()
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        np.testing.assert_allclose(obs[:3], 0.0, atol=1e-6)
        np.testing.assert_allclose(obs[3:7], [1, 0, 0, 0], atol=1e-6)


def test_relative_frame_action_moves_along_the_initial_frame_axes() -> None:
    env = relative_fake_arm()
    env.reset(seed=0)
    arm = env.unwrapped
    start, rot0 = arm.pos.copy(), quat_to_matrix(arm.quat)
    obs, *_ = env.step(np.array([1.0, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(arm.pos - start, rot0 @ [FakeArm.step_m, 0, 0], atol=1e-9)
    np.testing.assert_allclose(obs[:3], [FakeArm.step_m, 0, 0], atol=1e-6)
    np.testing.assert_allclose(obs[7:10], [FakeArm.step_m / FakeArm.dt_s, 0, 0], atol=1e-5)


def test_relative_frame_rotation_action_turns_about_the_frame_axis() -> None:
    env = relative_fake_arm()
    env.reset(seed=1)
    obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0.5]))
    np.testing.assert_allclose(obs[3:7], axis_angle_quat([0, 0, 1], 0.1), atol=1e-6)


def test_relative_frame_scales_a_rotated_action_back_into_the_box_keeping_direction() -> None:
    env = relative_fake_arm()
    env.reset(seed=2)
    moved = env.env_action(np.array([1.0, 1.0, 1.0, 0, 0, 0], dtype=np.float32))
    assert np.max(np.abs(moved[:3])) == pytest.approx(1.0, abs=1e-6)
    rot0 = quat_to_matrix(env.unwrapped.quat)
    expected = rot0 @ np.ones(3)
    np.testing.assert_allclose(moved[:3], expected / np.max(np.abs(expected)), atol=1e-6)


def test_relative_frame_current_frame_follows_the_end_effector_rotation() -> None:
    env = relative_fake_arm(frame="current")
    env.reset(seed=3)
    env.step(np.array([0, 0, 0, 0, 0, 1.0]))  # turn 0.2 rad about the end effector's z
    arm = env.unwrapped
    start, rot_now = arm.pos.copy(), quat_to_matrix(arm.quat)
    obs, *_ = env.step(np.array([1.0, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(arm.pos - start, rot_now @ [FakeArm.step_m, 0, 0], atol=1e-9)
    np.testing.assert_allclose(obs[7:10], [FakeArm.step_m / FakeArm.dt_s, 0, 0], atol=1e-5)


def test_relative_frame_reads_the_pose_through_ee_pose_fn_and_dict_parts() -> None:
    class DictArm(FakeArm):
        ee_pose = None  # no method: the hook must be passed

        def __init__(self) -> None:
            super().__init__()
            self.observation_space = gym.spaces.Dict(
                {"state": gym.spaces.Box(-np.inf, np.inf, (10,), np.float32)}
            )

        def _obs(self) -> Any:
            return {"state": super()._obs()}

    with pytest.raises(ValueError, match="ee_pose_fn"):
        RelativeFrame(DictArm(), position=("state", slice(0, 3)))
    env = RelativeFrame(
        DictArm(),
        lambda e: (e.unwrapped.pos, e.unwrapped.quat),
        position=("state", slice(0, 3)),
        vectors=[("state", slice(7, 10))],
    )
    obs, _ = env.reset(seed=4)
    np.testing.assert_allclose(obs["state"][:3], 0.0, atol=1e-6)
    obs, *_ = env.step(np.array([0, 1.0, 0, 0, 0, 0]))
    np.testing.assert_allclose(obs["state"][:3], [0, FakeArm.step_m, 0], atol=1e-6)


def test_relative_frame_rotates_a_human_override_back_into_the_frame() -> None:
    class Override(gym.Wrapper):
        def step(self, action: np.ndarray) -> Any:
            human = np.array([0, 0, 1.0, 0, 0, 0], dtype=np.float32)  # world +z
            obs, reward, terminated, truncated, info = self.env.step(human)
            return obs, reward, terminated, truncated, {**info, "intervene_action": human}

    env = RelativeFrame(Override(FakeArm()), action_rotation=slice(3, 6))
    env.reset(seed=5)
    rot0 = quat_to_matrix(env.unwrapped.quat)
    _, _, _, _, info = env.step(np.zeros(6, dtype=np.float32))
    np.testing.assert_allclose(info["intervene_action"][:3], rot0.T @ [0, 0, 1.0], atol=1e-6)


def test_relative_frame_passes_check_env() -> None:
    strict_check_env(relative_fake_arm())


def test_relative_frame_rejects_parts_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="3 entries"):
        RelativeFrame(FakeArm(), position=slice(0, 4))
    with pytest.raises(ValueError, match="multiple of 3"):
        RelativeFrame(FakeArm(), vectors=[slice(0, 4)])


# ---------------------------------------------------------------------------- repeat and chunks
class Counter(gym.Env):
    """Reward = the action's first entry; terminates after `length` steps; logs actions."""

    def __init__(self, length: int = 10) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray) -> Any:
        self.actions.append(np.asarray(action).copy())
        self.t += 1
        obs = np.array([self.t], np.float32)
        return obs, float(action[0]), self.t >= self.length, False, {"t": self.t}


def test_action_repeat_sums_rewards_and_stops_at_the_episode_end() -> None:
    env = ActionRepeat(Counter(length=5), repeat=3)
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(np.array([0.5, 0.0], np.float32))
    assert (obs[0], reward, terminated, info["env_steps"]) == (3, 1.5, False, 3)
    obs, reward, terminated, _, info = env.step(np.array([0.5, 0.0], np.float32))
    assert (obs[0], reward, terminated, info["env_steps"]) == (5, 1.0, True, 2)


def test_action_chunking_executes_actions_in_order_and_sums_rewards() -> None:
    inner = Counter()
    env = ActionChunking(inner, chunk=3)
    assert env.action_space.shape == (6,)
    np.testing.assert_array_equal(env.action_space.low, -np.ones(6))
    env.reset(seed=0)
    chunk = np.array([0.1, 1, 0.2, 2, 0.3, 3], np.float32) * np.array([1, 0.1] * 3, np.float32)
    _, reward, _, _, info = env.step(chunk)
    np.testing.assert_allclose(np.array(inner.actions), chunk.reshape(3, 2))
    assert reward == pytest.approx(0.6) and info["env_steps"] == 3


def test_action_chunking_stops_early_on_termination_and_discounts_with_gamma() -> None:
    env = ActionChunking(Counter(length=2), chunk=4, gamma=0.5)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.full(8, 1.0, np.float32))
    assert terminated and info["env_steps"] == 2 and reward == pytest.approx(1.0 + 0.5)


def test_action_repeat_and_chunking_pass_check_env() -> None:
    strict_check_env(ActionRepeat(Counter(length=50), repeat=2))
    strict_check_env(ActionChunking(Counter(length=50), chunk=3))


# ---------------------------------------------------------------------------- gripper penalty
def test_gripper_penalty_charges_each_change_of_the_binary_command_only() -> None:
    env = GripperPenalty(Counter(length=100), penalty=0.25)
    env.reset(seed=0)
    grips = [-1.0, 1.0, 0.8, 0.0, -0.2, -0.9, -1.0, 1.0]  # open, close, ..., open, close
    penalties = [env.step(np.array([0.0, g], np.float32))[4]["grasp_penalty"] for g in grips]
    assert penalties == [0.0, -0.25, 0.0, 0.0, 0.0, -0.25, 0.0, -0.25]


def test_gripper_penalty_lowers_the_reward_unless_kept_apart() -> None:
    charged = GripperPenalty(Counter(), penalty=0.1)
    apart = GripperPenalty(Counter(), penalty=0.1, add_to_reward=False)
    for env in (charged, apart):
        env.reset(seed=0)
    close = np.array([0.5, 1.0], np.float32)
    assert charged.step(close)[1] == pytest.approx(0.4)
    assert apart.step(close)[1] == pytest.approx(0.5)


def test_gripper_penalty_restarts_from_open_at_reset() -> None:
    env = GripperPenalty(Counter(), penalty=1.0)
    env.reset(seed=0)
    env.step(np.array([0.0, 1.0], np.float32))
    env.reset(seed=0)
    assert env.step(np.array([0.0, 1.0], np.float32))[4]["grasp_penalty"] == -1.0
    assert GripperPenalty(Counter(), initially_closed=True).closed is True


def test_gripper_penalty_passes_check_env() -> None:
    strict_check_env(GripperPenalty(Counter(length=50)))


# ---------------------------------------------------------------------------- images
class Camera(gym.Env):
    """Dict observations: a 40x60 uint8 image whose pixels encode (row, col, t), plus state."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict({
            "cam": gym.spaces.Box(0, 255, (40, 60, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        })  # fmt: skip
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        rows, cols = np.mgrid[0:40, 0:60]
        image = np.stack([rows, cols, np.full_like(rows, self.t)], axis=-1).astype(np.uint8)
        return {"cam": image, "state": np.array([self.t, 0.0], np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> Any:
        self.t += 1
        return self._obs(), 0.0, False, self.t >= 100, {}


def test_crop_takes_the_box_top_left_height_width() -> None:
    env = CropResize(Camera(), crops={"cam": (5, 10, 20, 30)})
    obs, _ = env.reset(seed=0)
    assert obs["cam"].shape == (20, 30, 3) and env.observation_space["cam"].shape == (20, 30, 3)
    assert (obs["cam"][0, 0, 0], obs["cam"][0, 0, 1]) == (5, 10)
    assert (obs["cam"][-1, -1, 0], obs["cam"][-1, -1, 1]) == (24, 39)
    np.testing.assert_array_equal(obs["state"], [0, 0])


def test_resize_matches_pillow_bilinear_within_one_level() -> None:
    pil = pytest.importorskip("PIL.Image")
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for height, width in [(24, 32), (17, 29), (96, 80)]:
        ours = resize_image(image, height, width).astype(int)
        theirs = np.asarray(pil.fromarray(image).resize((width, height), pil.BILINEAR)).astype(int)
        assert np.max(np.abs(ours - theirs)) <= 1, (height, width)


def test_resize_keeps_a_constant_image_and_leading_axes() -> None:
    frames = np.full((2, 30, 40, 3), 77, dtype=np.uint8)
    out = resize_image(frames, 15, 10)
    assert out.shape == (2, 15, 10, 3) and out.dtype == np.uint8 and np.all(out == 77)


def test_crop_box_outside_the_image_is_refused() -> None:
    with pytest.raises(ValueError, match="not inside"):
        CropResize(Camera(), crops={"cam": (30, 0, 20, 10)})


def test_frame_stack_fills_with_the_first_frame_then_keeps_the_newest_last() -> None:
    env = FrameStack(Camera(), num_frames=3)
    obs, _ = env.reset(seed=0)
    assert obs["cam"].shape == (3, 40, 60, 3) and obs["state"].shape == (2,)
    assert [int(f[0, 0, 2]) for f in obs["cam"]] == [0, 0, 0]
    env.step(np.zeros(1, np.float32))
    obs, *_ = env.step(np.zeros(1, np.float32))
    assert [int(f[0, 0, 2]) for f in obs["cam"]] == [0, 1, 2]
    obs, *_ = env.step(np.zeros(1, np.float32))
    assert [int(f[0, 0, 2]) for f in obs["cam"]] == [1, 2, 3]
    obs, _ = env.reset(seed=0)
    assert [int(f[0, 0, 2]) for f in obs["cam"]] == [0, 0, 0]


def test_image_wrappers_pass_check_env_on_a_fake_camera() -> None:
    strict_check_env(FrameStack(CropResize(Camera(), 16, crops={"cam": (0, 10, 40, 40)}), 2))


def test_sim_panda_pixels_with_crop_resize_and_frame_stack_pass_check_env() -> None:
    pytest.importorskip("mujoco")
    from serl.envs import make_env

    base = make_env("sim:PandaPickCube-v0", obs_mode="pixels", image_size=64)
    env = FrameStack(CropResize(base, 32, crops={"front": (8, 8, 48, 48)}), num_frames=3)
    try:
        strict_check_env(env)
        obs, _ = env.reset(seed=0)
        assert obs["front"].shape == (3, 32, 32, 3) and obs["wrist"].shape == (3, 32, 32, 3)
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
    finally:
        env.close()


def test_sim_panda_state_relative_frame_uses_the_task_layout() -> None:
    pytest.importorskip("mujoco")
    import sim

    task = sim.make("PandaPickCube-v0")
    layout = task.obs_layout
    env = GripperPenalty(
        RelativeFrame(
            task,
            lambda e: (e.unwrapped.tcp_pos(), e.unwrapped.controller.ee_quat()),
            position=layout["tcp_pos"],
            vectors=[layout["tcp_vel"]],
        )
    )
    strict_check_env(env)
    obs, _ = env.reset(seed=0)
    raw_obs, _ = sim.make("PandaPickCube-v0").reset(seed=0)
    np.testing.assert_allclose(obs[layout["tcp_pos"]], 0.0, atol=1e-5)
    np.testing.assert_array_equal(obs[layout["cube_pos"]], raw_obs[layout["cube_pos"]])
