"""What the robot server needs from an arm: the `RobotBackend` interface and `make_backend`.

A backend executes targets that the server's safety layer already checked; it does no
safety of its own beyond what its driver does. Every call comes from the server's thread
(a backend may run its own control thread inside). Real-arm drivers are imported inside the
backend constructors, so `robots` imports on a machine without them, and selecting a
backend whose driver is missing raises `MissingDriverError` naming the package.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from robots.config import ComplianceProfile, RobotServerConfig


class MissingDriverError(ImportError):
    """A real-arm backend was selected but its driver package is not installed."""


class BackendError(RuntimeError):
    """The backend cannot do what was asked (no such camera, driver error, ...)."""


def import_driver(module: str, package: str, backend: str) -> ModuleType:
    """Import a driver module or raise `MissingDriverError` saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDriverError(
            f"the {backend!r} backend needs the Python package {package!r} (module "
            f"{module!r}), which is not importable here ({exc}). Install it on the robot PC: "
            f"`pip install serl-suite[robots,{backend}]` (or `pip install {package}`; see "
            "launch/README.md)"
        ) from None


@dataclass(frozen=True)
class RobotState:
    """One reading of the arm, in the base frame."""

    ee_pos: np.ndarray
    """Tool centre point position (m), shape (3,)."""
    ee_quat: np.ndarray
    """TCP orientation, unit quaternion (w, x, y, z), w >= 0, shape (4,)."""
    ee_vel: np.ndarray
    """TCP linear (m/s) and angular (rad/s) velocity, shape (6,)."""
    gripper_width: float
    """Opening between the fingers (m)."""
    q: np.ndarray
    """Joint positions (rad)."""
    dq: np.ndarray
    """Joint velocities (rad/s)."""


class RobotBackend(ABC):
    """One arm. Subclasses: `SimBackend`, `FrankaBackend`, `URBackend`."""

    name: str = "base"
    joint_lower_rad: np.ndarray
    joint_upper_rad: np.ndarray
    home_q_rad: np.ndarray
    control_period_s: float = 0.1

    @abstractmethod
    def read_state(self) -> RobotState:
        """The current state of the arm."""

    @abstractmethod
    def command_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        """Track this (already checked) TCP target from now on."""

    @abstractmethod
    def command_gripper(self, command: float) -> None:
        """Gripper command in [-1, 1]: -1 open, +1 closed."""

    @abstractmethod
    def hold(self) -> None:
        """Keep the arm where it is now (the watchdog's first response; NaN commands)."""

    @abstractmethod
    def stop(self) -> None:
        """End the running motion (the watchdog's second response)."""

    @abstractmethod
    def estop(self) -> None:
        """Stop now, as hard as the driver allows; must not raise if the arm is already stopped."""

    def release_estop(self) -> None:
        """Make the arm accept motion again after `estop` (errors recovered, pose held)."""
        self.hold()

    @abstractmethod
    def reset_joints(self, q: np.ndarray) -> None:
        """Go to this (already checked) joint pose; returns when it is reached."""

    @abstractmethod
    def set_compliance(self, profile: ComplianceProfile) -> None:
        """Change the controller's stiffness."""

    def tcp_position(self, q: np.ndarray) -> np.ndarray | None:
        """Where the TCP would be at joint angles `q` (forward kinematics), or None when this
        backend has no kinematic model; the server then refuses resets to client joint
        vectors (named poses from the config still work)."""
        return None

    def clock(self) -> float:
        """Seconds on the arm's clock (sim time for the simulator), for the speed limits."""
        import time

        return time.monotonic()

    def camera_names(self) -> tuple[str, ...]:
        """Cameras `render` knows; real arms have none (use robots.cameras on the client)."""
        return ()

    def render(self, camera: str) -> np.ndarray:
        """A uint8 (H, W, 3) frame of a named camera."""
        raise BackendError(
            f"the {self.name!r} backend has no cameras (asked for {camera!r}); real cameras are "
            "read on the client side (OpenCV/RealSense in robots.cameras)"
        )

    def close(self) -> None:  # noqa: B027 - optional hook; backends without resources skip it
        """Release the arm (end motions, close connections)."""


def make_backend(cfg: RobotServerConfig) -> RobotBackend:
    """The backend `cfg.backend` names, built from its section of the config."""
    if cfg.backend == "sim":
        from robots.backends.sim import SimBackend

        return SimBackend(cfg.sim)
    if cfg.backend == "franka":
        from robots.backends.franka import FrankaBackend

        return FrankaBackend(cfg.franka)
    if cfg.backend == "ur":
        from robots.backends.ur import URBackend

        return URBackend(cfg.ur)
    raise ValueError(f"backend={cfg.backend!r}; use 'sim', 'franka' or 'ur'")
