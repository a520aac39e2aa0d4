"""Pixel observations render offscreen on a CPU-only machine (EGL or OSMesa)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import sim


def test_pixel_observations_are_uint8_images_of_the_configured_size() -> None:
    env = sim.make("PandaPickCube-v0", obs_mode="pixels", image_size=(48, 64))
    obs, _ = env.reset(seed=0)
    for cam in ("front", "wrist"):
        assert obs[cam].dtype == np.uint8 and obs[cam].shape == (48, 64, 3)
        assert obs[cam].std() > 5  # a rendered scene, not a blank frame
    assert obs["state"].shape == (env.proprio_dim,)
    env.close()


def test_default_images_are_128_square_and_follow_the_arm() -> None:
    env = sim.make("PandaReach-v0", obs_mode="pixels")
    first, _ = env.reset(seed=0)
    assert first["front"].shape == (128, 128, 3)
    for _ in range(3):
        obs, *_ = env.step(np.array([0.0, 1.0, -1.0]))
    moved = np.abs(obs["front"].astype(int) - first["front"].astype(int)).mean()
    assert moved > 0.5
    env.close()


def test_cube_is_visible_in_the_wrist_camera() -> None:
    env = sim.make("PandaPickCube-v0", obs_mode="pixels", cameras=("wrist",))
    obs, _ = env.reset(seed=0)
    rgb = obs["wrist"].astype(int)
    red = (rgb[..., 0] > 150) & (rgb[..., 0] - rgb[..., 1] > 100)
    assert red.sum() > 20
    env.close()


def test_render_returns_the_render_camera_at_render_size() -> None:
    env = sim.make("PandaReach-v0", render_mode="rgb_array", render_size=(60, 80))
    env.reset(seed=0)
    frame = env.render()
    assert frame is not None and frame.shape == (60, 80, 3) and frame.dtype == np.uint8
    front = sim.make("PandaReach-v0", render_mode="rgb_array", render_size=(60, 80),
                     render_camera="front")  # fmt: skip
    front.reset(seed=0)
    assert not np.array_equal(front.render(), frame)  # "overview" by default
    env.close()
    front.close()


def test_an_unknown_render_camera_is_refused_naming_the_cameras() -> None:
    with pytest.raises(ValueError, match="render_camera='top'; the model has"):
        sim.make("PandaReach-v0", render_mode="rgb_array", render_camera="top")


def test_a_script_that_never_closes_its_pixel_env_exits_without_gl_errors() -> None:
    """Renderers left open are closed at exit before MuJoCo's EGL teardown, not after it
    (which printed three EGLError tracebacks at the end of every such script)."""
    script = (
        "from serl.envs import make_env\n"
        "env = make_env('sim:PandaPickCubePixels64-v0')\n"
        "env.reset(seed=0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr and "EGLError" not in done.stderr
