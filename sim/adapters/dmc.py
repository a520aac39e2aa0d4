"""``dmc:<domain>-<task>``: DeepMind Control Suite tasks as gymnasium envs.

`make("cheetah-run")` loads ``suite.load("cheetah", "run")`` (Tassa et al. 2018, "DeepMind
Control Suite"). Observations: ``obs_mode="state"`` gives the suite's observation dict
flattened into one float32 vector in the suite's key order (``flatten=False`` keeps a Dict of
Boxes), ``obs_mode="pixels"`` a Dict with a uint8 ``pixels`` image from `camera_id` (DrQ
convention: camera 0, 2 for quadruped), plus ``state`` when ``pixels_with_state=True``.
Actions keep the suite's bounds (``serl.envs.make_env`` rescales them to [-1, 1]);
`action_repeat` repeats each action and sums the rewards, the usual frame skip of pixel-based
DMC benchmarks. The suite's 1000-step time limit ends episodes as truncation; a zero discount
(a true terminal state) as termination. A seeded reset reloads the task with that seed (the
suite seeds a task only when it is built).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from sim.rendering import configure_gl_backend


def _split(name: str) -> tuple[str, str]:
    domain, sep, task = name.partition("-")
    if not sep or not task:
        raise ValueError(f"dmc id {name!r} must be <domain>-<task>, e.g. cheetah-run")
    return domain, task


class DMCEnv(gym.Env):
    """One DeepMind Control Suite task; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        obs_mode: Literal["state", "pixels"] = "state",
        image_size: int = 84,
        camera_id: int | None = None,
        pixels_with_state: bool = False,
        flatten: bool = True,
        action_repeat: int = 1,
        render_mode: str | None = None,
        render_size: int = 256,
        task_kwargs: dict[str, Any] | None = None,
    ) -> None:
        configure_gl_backend()
        from dm_control import suite

        if (domain, task) not in suite.ALL_TASKS:
            known = ", ".join(f"{d}-{t}" for d, t in sorted(suite.ALL_TASKS))
            raise ValueError(f"unknown dm_control task {domain}-{task}; known: {known}")
        if obs_mode not in ("state", "pixels"):
            raise ValueError(f"obs_mode={obs_mode!r}; use 'state' or 'pixels'")
        if action_repeat < 1:
            raise ValueError(f"action_repeat={action_repeat} must be >= 1")
        self._suite, self.domain, self.task = suite, domain, task
        self.obs_mode, self.flatten, self.action_repeat = obs_mode, flatten, action_repeat
        self.image_size = image_size
        self.camera_id = camera_id if camera_id is not None else (2 if domain == "quadruped" else 0)
        self.pixels_with_state = pixels_with_state
        self.render_mode, self.render_size = render_mode, render_size
        self._task_kwargs = dict(task_kwargs or {})
        self._env = self._load(seed=None)
        fps = 1.0 / (self._env.control_timestep() * action_repeat)
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": fps}

        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(
            spec.minimum.astype(np.float32), spec.maximum.astype(np.float32), dtype=np.float32
        )
        self._state_shapes = OrderedDict(
            (k, (int(np.prod(v.shape)),)) for k, v in self._env.observation_spec().items()
        )
        state_dim = sum(s[0] for s in self._state_shapes.values())
        state_space = gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
        if obs_mode == "pixels":
            spaces = {"pixels": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)}
            if pixels_with_state:
                spaces["state"] = state_space
            self.observation_space: gym.Space = gym.spaces.Dict(spaces)
        elif flatten:
            self.observation_space = state_space
        else:
            self.observation_space = gym.spaces.Dict(
                {k: gym.spaces.Box(-np.inf, np.inf, s, np.float32)
                 for k, s in self._state_shapes.items()}
            )  # fmt: skip

    def _load(self, seed: int | None) -> Any:
        kwargs = {**self._task_kwargs, "random": seed}
        return self._suite.load(self.domain, self.task, task_kwargs=kwargs)

    def _state(self, observation: dict[str, Any]) -> np.ndarray:
        parts = [
            np.asarray(observation[k], dtype=np.float32).reshape(-1) for k in self._state_shapes
        ]
        return np.concatenate(parts)

    def _observation(self, observation: dict[str, Any]) -> Any:
        if self.obs_mode == "pixels":
            obs = {"pixels": self._render(self.image_size)}
            if self.pixels_with_state:
                obs["state"] = self._state(observation)
            return obs
        if self.flatten:
            return self._state(observation)
        return {
            k: np.asarray(observation[k], dtype=np.float32).reshape(s)
            for k, s in self._state_shapes.items()
        }

    def _render(self, size: int) -> np.ndarray:
        return self._env.physics.render(height=size, width=size, camera_id=self.camera_id)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._env = self._load(seed)
        timestep = self._env.reset()
        return self._observation(timestep.observation), {}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            timestep = self._env.step(action)
            reward += float(timestep.reward or 0.0)
            if timestep.last():
                terminated = timestep.discount == 0.0
                truncated = not terminated
                break
        return self._observation(timestep.observation), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render(self.render_size)

    def close(self) -> None:
        self._env.close()


def make(name: str, render_mode: str | None = None, **kwargs: Any) -> DMCEnv:
    """``dmc:cheetah-run`` -> the suite's cheetah/run task (the serl.envs entry point)."""
    domain, task = _split(name)
    return DMCEnv(domain, task, render_mode=render_mode, **kwargs)
