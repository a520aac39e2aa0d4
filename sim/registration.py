"""Task ids and the factory the learning core calls for ``sim:<Name>`` ids.

``serl.envs.make_env("sim:PandaPickCube-v0", obs_mode="pixels")`` finds `make` through the
``serl.envs`` entry-point group (``sim = "sim.registration:make"`` in pyproject.toml) and calls
``make("PandaPickCube-v0", render_mode=None, obs_mode="pixels")``. Ids ending in
``Pixels-v0`` (``PandaReachPixels-v0``) are the same tasks with ``obs_mode="pixels"``, for
tools that take an id and no keyword arguments; ``Pixels<N>-v0`` (``PandaReachPixels64-v0``)
also sets the cameras' image size to N x N (128 by default). `register_gymnasium` also
registers every id under the ``sim/`` namespace of `gymnasium.make`.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym

from sim.tasks import PandaEnv, PandaPegInsertEnv, PandaPickCubeEnv, PandaReachEnv

TASKS: dict[str, type[PandaEnv]] = {
    "PandaReach-v0": PandaReachEnv,
    "PandaPickCube-v0": PandaPickCubeEnv,
    "PandaPegInsert-v0": PandaPegInsertEnv,
}
PIXEL_SUFFIX = "Pixels-v0"
_PIXEL_ID = re.compile(r"(?P<task>\w+)Pixels(?P<size>[0-9]*)-v0")


def make(name: str, render_mode: str | None = None, **kwargs: Any) -> PandaEnv:
    """Build the task `name` (``PandaReach-v0``, ``PandaReachPixels-v0``, ...)."""
    if pixel := _PIXEL_ID.fullmatch(name):
        name = pixel["task"] + "-v0"
        kwargs.setdefault("obs_mode", "pixels")
        if pixel["size"]:
            kwargs.setdefault("image_size", int(pixel["size"]))
    if name not in TASKS:
        raise ValueError(
            f"unknown sim task {name!r}; known: {sorted(TASKS)} (add {PIXEL_SUFFIX!r} in place "
            "of '-v0' for pixel observations)"
        )
    return TASKS[name](render_mode=render_mode, **kwargs)


def register_gymnasium() -> None:
    """Register ``sim/<Name>-v0`` (and the pixel ids) with gymnasium; safe to call twice."""
    for name in TASKS:
        for env_name in (name, name[: -len("-v0")] + PIXEL_SUFFIX):
            env_id = f"sim/{env_name}"
            if env_id not in gym.registry:
                gym.register(env_id, entry_point=make, kwargs={"name": env_name})
