"""MuJoCo simulation suite: Panda tasks, dynamics parameters, scripted experts, registration.

Tasks are made by id through the learning core (`serl.envs.make_env("sim:PandaReach-v0")`),
which finds `sim.registration:make` through the `serl.envs` entry-point group, or directly
with `sim.make("PandaReach-v0", obs_mode="pixels")`. `make` and `TASKS` are imported lazily,
so `import sim.controller` (reused by the robot server) pulls in MuJoCo and NumPy only.
"""

from typing import Any

from sim.rendering import configure_gl_backend

configure_gl_backend()  # before anything imports mujoco: MuJoCo reads MUJOCO_GL at import

__all__ = ["TASKS", "make"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sim import registration

        return getattr(registration, name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
