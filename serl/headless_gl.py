"""A headless OpenGL backend for MuJoCo when there is no display.

MuJoCo (and every package built on it: gymnasium's MuJoCo tasks, robosuite, third-party envs
such as gym-hil) picks its OpenGL backend from ``MUJOCO_GL`` once, when `mujoco` is first
imported; its default, GLFW, needs a display. `configure_gl_backend` sets a default before any
env is made: ``egl`` when libEGL is present (Debian: ``libegl1 libegl-mesa0 libgl1-mesa-dri``;
Mesa's llvmpipe renders on the CPU), else ``osmesa`` when libOSMesa is (Debian:
``libosmesa6``). A value the user set is always kept.
"""

from __future__ import annotations

import ctypes.util
import os

RENDERING_PACKAGES = (
    "libegl1 libegl-mesa0 libgl1-mesa-dri (MUJOCO_GL=egl) or libosmesa6 (MUJOCO_GL=osmesa)"
)

GL_ERROR_WORDS = ("opengl", "glfw", "egl", "osmesa", "gl context", "display")
"""Words of an exception message that say rendering (not the env itself) failed."""


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def configure_gl_backend(*, even_with_display: bool = False) -> str:
    """Set MUJOCO_GL to a headless backend unless already set; returns the backend in use.

    With a display (and `even_with_display` False) MuJoCo's default is left alone, so
    on-screen viewers keep working; offscreen-only users (the sim cameras) pass True.
    """
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    if has_display() and not even_with_display:
        return ""
    if ctypes.util.find_library("EGL"):
        backend = "egl"
    elif ctypes.util.find_library("OSMesa"):
        backend = "osmesa"
    else:
        return ""  # leave MuJoCo's default (GLFW, needs a display)
    os.environ["MUJOCO_GL"] = backend
    if backend == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    return backend


def is_gl_error(exc: BaseException) -> bool:
    """Whether `exc` reads as an OpenGL/rendering failure rather than an error of the env."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in GL_ERROR_WORDS)


def gl_error_hint() -> str:
    """What to do when rendering failed: the backend in use and the packages it needs."""
    return (
        f"rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} "
        f"(display: {'yes' if has_display() else 'none'}). Install {RENDERING_PACKAGES} and set "
        "MUJOCO_GL before anything imports mujoco (serl sets egl or osmesa by default when "
        "there is no display and the library is installed)"
    )
