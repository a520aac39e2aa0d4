"""Evaluation GIFs: real-time delays, an episode counter, outcome marks, the whole arm in view."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from PIL import Image

import sim
from serl.evaluation import evaluate
from serl.video import HOLD_S, EpisodeRecorder, annotate, frame_period_s, save_gif
from sim import panda

STEPS = 12


def recorded_reach(episodes: int = 2) -> tuple[EpisodeRecorder, float]:
    """A push-sideways policy on Reach (it fails), `episodes` episodes of STEPS steps."""
    env = EpisodeRecorder(
        sim.make(
            "PandaReach-v0", render_mode="rgb_array", render_size=64, max_episode_steps=STEPS
        )  # fmt: skip
    )
    push = np.array([0.0, 1.0, 0.0], np.float32)
    evaluate(env, lambda obs: push, episodes=episodes, seed=0)
    period_s = frame_period_s(env)
    env.close()
    return env, period_s


def gif_delays_ms(path) -> list[int]:
    with Image.open(path) as image:
        delays = []
        for i in range(image.n_frames):
            image.seek(i)
            delays.append(image.info["duration"])
    return delays


@pytest.fixture(scope="module")
def reach() -> tuple[EpisodeRecorder, float]:
    return recorded_reach()


def test_gif_plays_in_real_time_at_the_control_period(reach, tmp_path) -> None:
    recorder, period_s = reach
    assert period_s == pytest.approx(0.1)  # Reach steps at 10 Hz
    assert [len(e.frames) for e in recorder.episodes] == [STEPS + 1] * 2  # reset + each step
    delays = gif_delays_ms(save_gif(recorder.episodes, tmp_path / "eval.gif", period_s))
    hold_ms = 2 * HOLD_S * 1000
    real_ms = 2 * (STEPS + 1) * period_s * 1000
    assert sum(delays) - hold_ms == pytest.approx(real_ms, abs=20)
    fast = gif_delays_ms(save_gif(recorder.episodes, tmp_path / "x2.gif", period_s, speed=2.0))
    assert sum(fast) - hold_ms == pytest.approx(real_ms / 2, abs=20)


def test_short_periods_are_subsampled_and_keep_real_time(reach, tmp_path) -> None:
    recorder, _ = reach
    period_s = 0.005  # 200 fps: below the 20 ms browsers honour
    delays = gif_delays_ms(save_gif(recorder.episodes, tmp_path / "eval.gif", period_s))
    steps_ms = [d for d in delays if d < HOLD_S * 1000]
    assert min(steps_ms) >= 20
    assert sum(delays) - 2 * HOLD_S * 1000 == pytest.approx(2 * (STEPS + 1) * 5, abs=20)


def test_each_episode_ends_with_a_held_frame_marked_fail(reach, tmp_path) -> None:
    recorder, period_s = reach
    assert [e.outcome for e in recorder.episodes] == [False, False]
    path = save_gif(recorder.episodes, tmp_path / "eval.gif", period_s)
    delays = gif_delays_ms(path)
    holds = [i for i, d in enumerate(delays) if d >= HOLD_S * 1000]
    assert len(holds) == 2 and holds[-1] == len(delays) - 1
    with Image.open(path) as image:
        image.seek(holds[0])
        held = np.asarray(image.convert("RGB")).astype(int)
    left_border = held[held.shape[0] // 2, 1]
    assert left_border[0] > 150 and left_border[1] < 80  # red: the episode failed


def test_counter_strip_says_which_episode_and_leaves_the_scene_uncovered() -> None:
    frame = np.full((200, 240, 3), 90, np.uint8)
    first = np.asarray(annotate(frame, 1, 2, ""))
    second = np.asarray(annotate(frame, 2, 2, ""))
    strip = first.shape[0] - frame.shape[0]
    assert strip > 0
    assert np.any(first[:strip] != second[:strip])  # "episode 1/2" vs "episode 2/2"
    assert np.array_equal(first[strip:], frame)  # the scene itself is untouched
    success = np.asarray(annotate(frame, 1, 2, True))
    assert tuple(success[strip + 100, 1]) == (40, 180, 60)  # green border after success


def top_of_arm_in_view(model, data, camera: str, width: int, height: int) -> bool:
    """Whether the highest point of the arm's geoms (centre + bounding radius) projects inside
    the camera's image."""
    arm = {model.body(b).id for b in panda.ARM_BODIES}
    geoms = [g for g in range(model.ngeom) if model.geom_bodyid[g] in arm]
    top = max(geoms, key=lambda g: data.geom_xpos[g][2] + model.geom_rbound[g])
    point = data.geom_xpos[top] + [0.0, 0.0, model.geom_rbound[top]]
    cam = model.camera(camera).id
    local = data.cam_xmat[cam].reshape(3, 3).T @ (point - data.cam_xpos[cam])
    if local[2] >= 0:  # behind the camera (it looks along its -z)
        return False
    half = np.tan(np.radians(model.cam_fovy[cam]) / 2)
    x, y = local[0] / -local[2], local[1] / -local[2]
    return abs(y) < half and abs(x) < half * width / height


@pytest.mark.parametrize("task", ["PandaReach-v0", "PandaPickCube-v0", "PandaPegInsert-v0"])
def test_render_camera_shows_the_top_of_the_arm(task: str) -> None:
    env = sim.make(task, render_mode="rgb_array")
    env.reset(seed=0)
    model, data = env.unwrapped.model, env.unwrapped.data
    assert top_of_arm_in_view(model, data, env.unwrapped.render_camera, 256, 256)
    assert not top_of_arm_in_view(model, data, "front", 256, 256)  # what videos showed before
    data.qpos[env.unwrapped._arm_qpos] = 0.0  # stretched straight up: the highest it gets
    mujoco.mj_forward(model, data)
    assert top_of_arm_in_view(model, data, env.unwrapped.render_camera, 256, 256)
    env.close()
