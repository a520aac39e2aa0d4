"""The operator's live view: camera frames (else the env's rendered frame) as a PNG that is
rewritten at its rate, and the status line."""

from __future__ import annotations

import io
import os
import pty
from pathlib import Path

import cv2
import numpy as np
import pytest

from serl.envs import make_env
from serl.teleop.live_view import MIN_HEIGHT_PX, LiveView, status_line

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def png_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not an image"
    return image[..., ::-1]


def cameras(front: int, wrist: int) -> dict[str, np.ndarray]:
    """A robot-env observation: state plus two 64x64 cameras of one colour each."""
    return {
        "state": np.zeros(14, np.float32),
        "front": np.full((64, 64, 3), front, np.uint8),
        "wrist": np.full((64, 64, 3), wrist, np.uint8),
    }


def test_camera_frames_go_to_a_png_side_by_side_and_it_is_rewritten_at_the_rate(
    tmp_path: Path,
) -> None:
    clock = Clock()
    png = tmp_path / "live.png"
    view = LiveView(png, io.StringIO(), hz=4.0, clock=clock)
    view.show(cameras(front=10, wrist=200), "episode 1/2")
    image = png_rgb(png)
    assert image.shape == (MIN_HEIGHT_PX, 2 * MIN_HEIGHT_PX, 3)  # 64 rows scaled up 4x
    assert (image[:, :MIN_HEIGHT_PX] == 10).all() and (image[:, MIN_HEIGHT_PX:] == 200).all()
    clock.now += 0.1  # within 1/4 s: the control loop is not slowed by another write
    view.show(cameras(front=50, wrist=50), "episode 1/2")
    assert (png_rgb(png)[:, :MIN_HEIGHT_PX] == 10).all() and view.frames_shown == 1
    clock.now += 0.2
    view.show(cameras(front=50, wrist=90), "episode 1/2")
    image = png_rgb(png)
    assert (image[:, :MIN_HEIGHT_PX] == 50).all() and (image[:, MIN_HEIGHT_PX:] == 90).all()
    assert view.frames_shown == 2 and not list(tmp_path.glob("*.tmp"))


def test_a_state_only_env_is_shown_by_its_rendered_frame(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    env = make_env("sim:PandaReach-v0", render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=0)
        assert isinstance(obs, np.ndarray)  # no camera in the observation
        view = LiveView(tmp_path / "live.png", io.StringIO())
        view.show(obs, "episode 1/1", env.render)
        frame = env.render()
    finally:
        env.close()
    image = png_rgb(tmp_path / "live.png")
    assert image.shape == frame.shape and image.std() > 0  # a real picture, not a blank
    np.testing.assert_array_equal(image, frame)


def test_an_env_without_cameras_or_rendering_gets_no_file_and_messages_still_show(
    tmp_path: Path,
) -> None:
    stream = io.StringIO()
    view = LiveView(tmp_path / "live.png", stream)
    view.show({"state": np.zeros(14, np.float32)}, "episode 1/1", render=lambda: None)
    view.say("episode 1/1: press ENTER to start")
    assert not (tmp_path / "live.png").exists() and view.frames_shown == 0
    assert stream.getvalue() == "episode 1/1: press ENTER to start\n"


def test_the_status_line_shows_the_way_to_the_goal_and_the_mark() -> None:
    info = {"goal_distance_m": 0.0539, "goal_offset_m": np.array([0.05, -0.02, 0.0]),
            "success": False}  # fmt: skip
    line = status_line("episode 2/10", 14, -1.0, info, mark=None)
    assert line == (
        "episode 2/10 | step 14 | reward -1.00 | goal 0.054 m away (x +0.050 y -0.020 z +0.000)"
        " | env success no | mark none"
    )
    assert status_line("episode 1/1", 3, 0.0, {}, mark=True).endswith("mark success")


def test_on_a_terminal_the_status_line_is_rewritten_in_place_and_messages_get_their_own(
    tmp_path: Path,
) -> None:
    leader, follower = pty.openpty()
    clock = Clock()
    with os.fdopen(follower, "w") as terminal:
        view = LiveView(tmp_path / "live.png", terminal, clock=clock)
        view.show({}, "step 1")
        clock.now += 1.0
        view.show({}, "step 2")
        view.say("episode 1/1: 2 steps, saved as a success")
        view.close()
        shown = os.read(leader, 4096).decode()
    os.close(leader)
    assert shown == (
        "\rstep 1\x1b[K\rstep 2\x1b[K\r\x1b[Kepisode 1/1: 2 steps, saved as a success\r\n"
    )  # the terminal turns \n into \r\n
