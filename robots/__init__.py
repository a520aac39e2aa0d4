"""Real robots: the robot server (owns the arm, enforces safety), its backends and its client.

`RobotClient` and the configs import without MuJoCo or any arm driver; the sim backend
imports `sim` and the real backends import their drivers only when selected.
"""

from robots.client import MoveResult, RobotClient, RobotServerError, RobotTimeoutError
from robots.config import (
    ComplianceProfile,
    ConfigError,
    RobotServerConfig,
    SafetyConfig,
    load_server_config,
)

__all__ = [
    "ComplianceProfile",
    "ConfigError",
    "MoveResult",
    "RobotClient",
    "RobotServerConfig",
    "RobotServerError",
    "RobotTimeoutError",
    "SafetyConfig",
    "load_server_config",
]
