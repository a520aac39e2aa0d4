"""Arm backends of the robot server: sim (MuJoCo Panda), franka (franky), ur (ur_rtde)."""

from robots.backends.base import (
    BackendError,
    MissingDriverError,
    RobotBackend,
    RobotState,
    make_backend,
)

__all__ = ["BackendError", "MissingDriverError", "RobotBackend", "RobotState", "make_backend"]
