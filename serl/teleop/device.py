"""The interface every teleoperation device shares, and how its command becomes an env action.

A device is read once per control step: ``device.read(obs) -> TeleopCommand``. Hardware
devices ignore `obs`; a scripted device (a test's "human", a simulator's expert) may act on it.

Device command layout
---------------------
Hardware devices report a 7-vector in [-1, 1]: end-effector translation x, y, z, rotation
roll, pitch, yaw (both in the robot's base frame, SERL's convention) and the gripper (+1 close,
-1 open, the sim tasks' convention). `to_env_action` maps it to the env's action layout by the
action's size: 3 -> xyz, 4 -> xyz + gripper, 6 -> xyz + rotation, 7 -> all. A command whose
size already equals the env's (a scripted device speaking the env's layout) passes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TWIST_GRIPPER_DIM = 7
"""Size of a hardware device's command: xyz, roll pitch yaw, gripper."""
_LAYOUTS: dict[int, tuple[int, ...]] = {
    3: (0, 1, 2),
    4: (0, 1, 2, 6),
    6: (0, 1, 2, 3, 4, 5),
    7: (0, 1, 2, 3, 4, 5, 6),
}
"""Env action size -> the entries of the device command it takes, in order."""


class DeviceUnavailableError(RuntimeError):
    """A device library is missing or the device cannot be opened (says which and the fix)."""


@dataclass(frozen=True)
class TeleopCommand:
    """What the human (or a script) says at one control step."""

    action: np.ndarray = field(default_factory=lambda: np.zeros(TWIST_GRIPPER_DIM, np.float32))
    """Action in [-1, 1]: a device's 7-vector, or directly the env's action layout."""
    intervening: bool = False
    """The human is acting now: this action replaces the policy's."""
    success: bool | None = None
    """A mark on the episode this step: True success, False failure, None no mark."""
    quit: bool = False
    """The human asked to stop (recording ends after the current episode is discarded)."""
    start: bool = False
    """The human is ready: begin the next episode (recording waits for it)."""
    discard: bool = False
    """The human throws the episode in progress away (recording ends it, unsaved)."""


class TeleopDevice:
    """A human input device read once per control step; a context manager that closes it."""

    name: str = "device"
    episode_keys: dict[str, str] = {}
    """What to press for start, success, failure, discard and quit (the recording's prompts)."""

    def read(self, obs: Any = None) -> TeleopCommand:
        """The command now; never blocks for longer than a control step."""
        raise NotImplementedError(f"{type(self).__name__} must implement read()")

    def reset(self) -> None:
        """Called at each episode start (forget per-episode state such as success marks)."""

    def close(self) -> None:
        """Release the device (threads, terminal modes, handles)."""

    def __enter__(self) -> TeleopDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def command_entries(action_dim: int) -> tuple[int, ...]:
    """The entries of a device's 7-vector that an env action of size `action_dim` takes (module
    doc); all seven for a size with no layout (a device speaking the env's own layout)."""
    return _LAYOUTS.get(action_dim, tuple(range(TWIST_GRIPPER_DIM)))


def to_env_action(action: np.ndarray, action_dim: int) -> np.ndarray:
    """A device command as an env action of size `action_dim` (module doc), clipped to [-1, 1]."""
    action = np.asarray(action, dtype=np.float32).reshape(-1)
    if action.size == action_dim:
        return np.clip(action, -1.0, 1.0)
    if action.size == TWIST_GRIPPER_DIM and action_dim in _LAYOUTS:
        return np.clip(action[list(_LAYOUTS[action_dim])], -1.0, 1.0)
    raise ValueError(
        f"a device command of size {action.size} does not map to env actions of size "
        f"{action_dim}; devices map their 7-vector to sizes {sorted(_LAYOUTS)}, otherwise give "
        "a ScriptedDevice that returns actions in the env's layout"
    )


def make_device(name: str, **kwargs: Any) -> TeleopDevice:
    """A hardware device by name: keyboard, spacemouse or gamepad."""
    factories: dict[str, Callable[..., TeleopDevice]] = {}
    if name == "keyboard":
        from serl.teleop.keyboard import KeyboardDevice

        factories[name] = KeyboardDevice
    elif name == "spacemouse":
        from serl.teleop.spacemouse import SpaceMouseDevice

        factories[name] = SpaceMouseDevice
    elif name == "gamepad":
        from serl.teleop.gamepad import GamepadDevice

        factories[name] = GamepadDevice
    else:
        raise ValueError(
            f"unknown teleop device {name!r}; expected keyboard, spacemouse or gamepad"
        )
    return factories[name](**kwargs)
