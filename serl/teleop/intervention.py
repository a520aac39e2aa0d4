"""The human overrides the policy at any step: as the actor's hook or as an env wrapper.

Two ways in, the same rule: each control step the device is read; while it says
`intervening`, the human's action (mapped by `to_env_action`) is the one executed and stored.

* `Intervention(device)` is the actor's ``action_override(obs, policy_action)`` hook
  (``Actor(cfg, action_override=Intervention(device))``): it returns the human's action or
  None, and the actor stores the human's action tagged ``intervention``.
* `InterventionWrapper(env, device)` does it inside ``env.step`` for loops that own no hook (a
  plain gymnasium loop, SERL's env-side convention): the executed human action is reported in
  ``info["intervene_action"]`` (`serl.wrappers.INTERVENE_KEY`), which the SERL wrappers in
  `serl.wrappers` already respect and which the caller should store instead of its own.

Interventions as demonstrations (HIL-SERL, Luo et al. 2024): HIL-SERL adds every intervened
transition to the demo buffer as well as the online one, so the RLPD 50/50 sampling keeps
replaying the corrections. With the wrapper pass ``copy_to=demo_buffer`` (a `ReplayBuffer`):
each intervened transition is also added there, tagged ``intervention``. With the actor hook
the transitions reach the learner tagged ``intervention``, where the same choice is the
learner's (route the tag into its demo buffer).
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np

from serl.teleop.device import TeleopCommand, TeleopDevice, to_env_action
from serl.wrappers import INTERVENE_KEY, StepResult

logger = logging.getLogger(__name__)

SUCCESS_MARK_KEY = "human_success"
"""Info key of a success (True) or failure (False) mark the human gave at this step."""


class Intervention:
    """The actor's `action_override` hook from a teleop device (module doc)."""

    def __init__(self, device: TeleopDevice, action_dim: int | None = None) -> None:
        self.device = device
        self.action_dim = action_dim
        self.last: TeleopCommand | None = None
        """The newest command read (its success and quit marks are the caller's to act on)."""
        self.steps = 0
        """Steps the human's action replaced the policy's."""

    def __call__(self, obs: Any, policy_action: np.ndarray) -> np.ndarray | None:
        command = self.device.read(obs)
        self.last = command
        if not command.intervening:
            return None
        self.steps += 1
        return to_env_action(command.action, self.action_dim or int(np.size(policy_action)))


class InterventionWrapper(gym.Wrapper):
    """Replace the agent's action by the human's while the device says so (module doc)."""

    def __init__(self, env: gym.Env, device: TeleopDevice, *, copy_to: Any | None = None) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"InterventionWrapper needs a Box action space, got {space}")
        self.device = device
        self.copy_to = copy_to
        self._obs: Any = None
        self._episode = -1
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self._obs, info = self.env.reset(seed=seed, options=options)
        self.device.reset()
        self._episode += 1
        self._t = 0
        return self._obs, info

    def step(self, action: np.ndarray) -> StepResult:
        command = self.device.read(self._obs)
        space = self.env.action_space
        human = None
        if command.intervening:
            human = to_env_action(command.action, int(np.prod(space.shape))).astype(space.dtype)
            action = human.reshape(space.shape)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if human is not None:
            info = {**info, INTERVENE_KEY: human}
            if self.copy_to is not None:
                self.copy_to.add(
                    self._obs, human, float(reward), obs, terminated, truncated,
                    source="intervention", episode_id=self._episode, t=self._t,
                )  # fmt: skip
        if command.success is not None:
            info = {**info, SUCCESS_MARK_KEY: command.success}
        self._obs = obs
        self._t += 1
        return obs, reward, terminated, truncated, info
