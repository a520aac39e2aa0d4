"""Offscreen camera rendering for the sim tasks, on a CPU-only machine.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when `mujoco` is first imported, so
`configure_gl_backend` runs when `sim` is imported and only sets a default
(`serl.headless_gl`: ``egl`` when libEGL is present, else ``osmesa``); a value the user set
is kept. If mujoco was imported before that, `CameraRenderer` switches MuJoCo's context class
to the configured backend. Shadows are off in the task models (``shadowsize=0``): with
software rendering a shadow map costs about 100x a 128x128 frame.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import weakref

import numpy as np

from serl import headless_gl

logger = logging.getLogger(__name__)


def configure_gl_backend() -> str:
    """Set MUJOCO_GL to a headless backend unless already set (the sim renders offscreen only,
    so even with a display); returns the backend in use."""
    return headless_gl.configure_gl_backend(even_with_display=True)


def _use_configured_backend() -> None:
    """Make MuJoCo use the backend MUJOCO_GL names even if mujoco was imported before it was set.

    `mujoco.gl_context` fixes its context class at import; when something imported mujoco
    before `sim` set MUJOCO_GL (a test module, a user script), it holds the GLFW class, which
    needs a display. `mujoco.Renderer` looks the class up at construction, so swapping it in is
    enough (the EGL/OSMesa modules set PYOPENGL_PLATFORM themselves).
    """
    from mujoco import gl_context

    wanted = {"egl": "mujoco.egl", "osmesa": "mujoco.osmesa"}.get(
        os.environ.get("MUJOCO_GL", "").lower()
    )
    current = getattr(gl_context, "GLContext", None)
    if wanted and (current is None or current.__module__ != wanted):
        gl_context.GLContext = importlib.import_module(wanted).GLContext
        logger.debug("MuJoCo GL context class switched to %s", wanted)


_LIVE: weakref.WeakSet[CameraRenderer] = weakref.WeakSet()


def _close_live_renderers() -> None:
    # GL contexts left to the garbage collector at interpreter exit are freed after EGL has
    # been torn down, which fails noisily; close them while everything still works.
    for renderer in list(_LIVE):
        renderer.close()


def _track(renderer: CameraRenderer) -> None:
    """Close `renderer` at exit if nobody did. The hook is registered after the first GL
    context exists: atexit runs hooks last-in first-out, and MuJoCo's EGL module registers
    its own teardown when it is first imported, so ours must come later to run before it."""
    if not _LIVE:
        atexit.unregister(_close_live_renderers)
        atexit.register(_close_live_renderers)
    _LIVE.add(renderer)


class CameraRenderer:
    """Renders named cameras of a model to uint8 RGB arrays of one size.

    One `mujoco.Renderer` (one GL context) serves every camera of the same size. Call
    `close` when done (the env's `close` does); any still open at exit are closed then.
    """

    def __init__(self, model: object, height: int, width: int) -> None:
        import mujoco

        self._renderer = None
        try:
            _use_configured_backend()
            self._renderer = mujoco.Renderer(model, height=height, width=width)
        except Exception as exc:  # the GL stack is missing or unusable: say what to install
            raise RuntimeError(
                f"offscreen rendering failed: {exc}. {headless_gl.gl_error_hint()}"
            ) from exc
        self.height, self.width = height, width
        _track(self)

    def render(self, data: object, camera: str) -> np.ndarray:
        self._renderer.update_scene(data, camera=camera)
        return self._renderer.render()  # a fresh (H, W, 3) uint8 array each call

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
