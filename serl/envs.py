"""Make an environment from its id, whatever package provides it.

* `prefix:Name` ids (`sim:PandaPickCube-v0`, `dmc:cartpole-swingup`, `robosuite:Lift-Panda`,
  `robot:franka-peg`) are resolved through the `serl.envs` entry-point group: the package that
  owns the prefix declares `prefix = "module:make"` in its pyproject, so the learning core never
  imports `sim` or `robots` itself and third-party packages can add prefixes.
* Any other id goes to `gymnasium.make` (including ids registered by third-party packages).

Every env gets its continuous actions rescaled to [-1, 1], the range all agents act in. Before
the first env is made on a machine with no display, MuJoCo is pointed at a headless OpenGL
backend (`serl.headless_gl`), so third-party MuJoCo envs that render work without the user
setting MUJOCO_GL.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any

import gymnasium as gym
import numpy as np

from serl import headless_gl


class UnknownEnvError(ValueError):
    """An env id that no package provides; the message says which kinds of ids exist."""


class EnvUnreachableError(RuntimeError):
    """An env that drives hardware through a server (``robot:`` ids) cannot reach it; the
    message names the address and how to start the server. Raised by the env package, caught
    by the `serl` command, which prints it as one line."""


def env_factories() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="serl.envs")}


def env_factory_parameters(env_id: str) -> tuple[str, ...]:
    """The parameter names of the `serl.envs` factory that makes a ``prefix:name`` id (empty
    for ids that `gymnasium.make` handles); imports the factory's module, makes nothing."""
    prefix, sep, _ = env_id.partition(":")
    entry = env_factories().get(prefix) if sep else None
    if entry is None:
        return ()
    return tuple(inspect.signature(entry.load()).parameters)


def make_env(env_id: str, *, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    headless_gl.configure_gl_backend()  # before the env's package imports mujoco
    prefix, sep, name = env_id.partition(":")
    factories = env_factories()
    try:
        if sep and prefix in factories:
            env = factories[prefix].load()(name, render_mode=render_mode, **kwargs)
        else:
            env = gym.make(env_id, render_mode=render_mode, **kwargs)
    except gym.error.Error as exc:
        raise _unknown_env(env_id, exc, factories) from exc
    except Exception as exc:
        if headless_gl.is_gl_error(exc):
            raise RuntimeError(
                f"cannot make env {env_id!r}: {exc}. {headless_gl.gl_error_hint()}"
            ) from exc
        raise
    return rescale_actions(env)


def check_env_id(env_id: str) -> None:
    """Raise UnknownEnvError for an id nothing provides, without making the env (which for a
    `robot:` id would connect to an arm): `serl train` checks before it starts processes."""
    prefix, sep, name = env_id.partition(":")
    factories = env_factories()
    if sep and prefix in factories:
        return  # the owning package checks the name when it makes the env
    try:
        if sep:  # gymnasium's "module:EnvName": the module registers the env when imported
            importlib.import_module(prefix)
        gym.spec(name if sep else env_id)
    except (ImportError, gym.error.Error) as exc:
        raise _unknown_env(env_id, exc, factories) from None


def _unknown_env(env_id: str, exc: Exception, factories: dict[str, Any]) -> UnknownEnvError:
    """The error for an id nothing provides, naming the kinds of ids that exist."""
    known = ", ".join(f"{p}:..." for p in sorted(factories)) or "none installed"
    return UnknownEnvError(
        f"cannot make env {env_id!r}: {exc}. Ids are gymnasium ids (e.g. Pendulum-v1) "
        f"or prefixed ids ({known})"
    )


def rescale_actions(env: gym.Env) -> gym.Env:
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"{env}: action space {space} is not continuous (a Box)")
    if np.all(space.low == -1.0) and np.all(space.high == 1.0):
        return env
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError(f"{env}: action space {space} is unbounded; agents need finite bounds")
    low = np.full(space.shape, -1.0, dtype=space.dtype)
    return gym.wrappers.RescaleAction(env, low, -low)


SUCCESS_KEYS = ("success", "is_success", "succeed")
"""Info keys envs report success under: this suite and gymnasium-robotics (`success`,
`is_success`), gym-hil (`succeed`). Another env's key is given with `success_key`."""


def episode_success(info: dict[str, Any], key: str = "") -> bool | None:
    """The env's success flag in `info` (`key`, or the first of SUCCESS_KEYS present); None
    when the env does not report success (Pendulum, HalfCheetah: no success to speak of)."""
    for name in (key,) if key else SUCCESS_KEYS:
        if name in info:
            return bool(info[name])
    return None
