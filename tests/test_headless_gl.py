"""With no display, a third-party MuJoCo env that renders works without the user setting MUJOCO_GL.

Gymnasium's Hopper-v5 stands in for any such package (gym-hil, ...): it imports mujoco when
made and renders through MuJoCo's default GLFW backend unless MUJOCO_GL says otherwise. Each
check runs in a fresh interpreter, since MuJoCo reads MUJOCO_GL once, at import.
"""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import pytest

from serl import headless_gl
from serl.envs import make_env

RENDER_HOPPER = """
from serl.envs import make_env
env = make_env("Hopper-v5", render_mode="rgb_array")
env.reset(seed=0)
frame = env.render()
env.close()
print("frame", frame.shape, frame.dtype, int(frame.max()))
"""


def headless_env(**extra: str) -> dict[str, str]:
    drop = {"DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM"}
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


@pytest.mark.timeout(120)
def test_a_mujoco_env_renders_with_no_display_and_no_mujoco_gl():
    done = subprocess.run(
        [sys.executable, "-c", RENDER_HOPPER], env=headless_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "frame (480, 480, 3) uint8" in done.stdout
    assert int(done.stdout.split()[-1]) > 0  # something was drawn, not a black frame


@pytest.mark.timeout(120)
def test_without_the_default_the_same_env_fails_as_users_saw():
    # The failure the default prevents: gymnasium alone, MUJOCO_GL unset, no display.
    code = RENDER_HOPPER.replace(
        'from serl.envs import make_env\nenv = make_env("Hopper-v5", render_mode="rgb_array")',
        'import gymnasium as gym\nenv = gym.make("Hopper-v5", render_mode="rgb_array")',
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=headless_env(), capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "OpenGL" in done.stderr or "GLFW" in done.stderr or "display" in done.stderr.lower()


def test_the_users_choice_and_a_display_are_left_alone(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert headless_gl.configure_gl_backend() == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setenv("DISPLAY", ":0")
    assert headless_gl.configure_gl_backend() == ""
    assert "MUJOCO_GL" not in os.environ
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert headless_gl.configure_gl_backend() == "egl"  # setup installs libEGL
    assert os.environ["MUJOCO_GL"] == "egl"


class _BrokenRendererEnv(gym.Env):
    def __init__(self, render_mode=None):
        raise RuntimeError(
            "an OpenGL platform library has not been loaded into this process, this most likely "
            "means that a valid OpenGL context has not been created before mjr_makeContext"
        )


def test_a_rendering_failure_names_the_backend_and_the_fix(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    gym.register("serl-test/BrokenRenderer-v0", entry_point=_BrokenRendererEnv)
    try:
        with pytest.raises(RuntimeError) as error:
            make_env("serl-test/BrokenRenderer-v0")
    finally:
        gym.registry.pop("serl-test/BrokenRenderer-v0")
    message = str(error.value)
    assert "MUJOCO_GL='egl'" in message and "libegl1" in message and "libosmesa6" in message


def test_an_error_of_the_env_itself_is_not_dressed_as_a_rendering_problem():
    def broken(render_mode=None):
        raise KeyError("no such task parameter 'mass'")

    gym.register("serl-test/BrokenTask-v0", entry_point=broken)
    try:
        with pytest.raises(KeyError, match="mass"):
            make_env("serl-test/BrokenTask-v0")
    finally:
        gym.registry.pop("serl-test/BrokenTask-v0")
