"""The robot server's configuration: safety limits, compliance profiles, reset poses, backends.

The safety limits live here and nowhere else: the server reads them once, from this dataclass
(built from flags or from `--config server.json`), and no wire request can change them
(DESIGN §5). To change a limit, edit the file on the robot PC and restart the server.

Defaults suit a Franka Panda driven at 10 Hz on a table in front of its base, the SERL setup:
2 cm and 0.1 rad per step (0.2 m/s, 1 rad/s at 10 Hz), a 0.3 s watchdog (three missed
commands) that holds, and a 2 s one that stops the motion.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from serl.config import config_from_dict

Backend = Literal["sim", "franka", "ur"]


class ConfigError(ValueError):
    """The server configuration is inconsistent or unreadable; the message names the field."""


@dataclass(frozen=True)
class SafetyConfig:
    """Limits the server enforces on every motion command, whoever sends it."""

    workspace_low_m: tuple[float, float, float] = (0.25, -0.35, 0.02)
    """Lower corner of the box every position target is clamped into (m, robot base frame)."""
    workspace_high_m: tuple[float, float, float] = (0.75, 0.35, 0.55)
    """Upper corner of that box (m)."""
    max_step_m: float = 0.02
    """Largest translation of the target from the measured pose per command (10 Hz -> 0.2 m/s)."""
    max_step_rad: float = 0.1
    """Largest rotation of the target from the measured orientation per command."""
    max_speed_mps: float = 0.25
    """Largest commanded speed: step / time since the previous accepted command."""
    max_angular_speed_radps: float = 1.0
    """Largest commanded angular speed, likewise."""
    watchdog_timeout_s: float = 0.3
    """Hold the pose when no motion command arrived for this long (3 missed 10 Hz commands)."""
    watchdog_stop_s: float = 2.0
    """Stop the motion (real arms: end the motion generator) after this long without commands."""
    joint_margin_rad: float = 0.05
    """A reset pose must lie this far inside the arm's joint limits."""

    def __post_init__(self) -> None:
        for name in ("workspace_low_m", "workspace_high_m"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ConfigError(f"safety.{name}={value!r} must have 3 entries (x, y, z)")
        for axis, low, high in zip("xyz", self.workspace_low_m, self.workspace_high_m, strict=True):
            if not low < high:
                raise ConfigError(
                    f"safety workspace {axis}: low {low} is not below high {high}; swap them"
                )
        positive = (
            "max_step_m",
            "max_step_rad",
            "max_speed_mps",
            "max_angular_speed_radps",
            "watchdog_timeout_s",
            "watchdog_stop_s",
        )
        for name in positive:
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"safety.{name}={value!r} must be > 0")
        if self.watchdog_stop_s < self.watchdog_timeout_s:
            raise ConfigError(
                f"safety.watchdog_stop_s={self.watchdog_stop_s} is shorter than "
                f"watchdog_timeout_s={self.watchdog_timeout_s}; the arm holds before it stops"
            )
        if self.joint_margin_rad < 0:
            raise ConfigError(f"safety.joint_margin_rad={self.joint_margin_rad} must be >= 0")


@dataclass(frozen=True)
class ComplianceProfile:
    """One named stiffness setting of the Cartesian controller."""

    pos_stiffness: float = 400.0
    """Translational stiffness (N/m on Franka; 1/s^2 for the sim's unit-mass OSC)."""
    rot_stiffness: float = 400.0
    """Rotational stiffness (N m/rad on Franka; 1/s^2 in the sim)."""
    damping_ratio: float = 1.0
    """Damping relative to critical (sim and Franka's controller)."""
    ur_servo_gain: float = 300.0
    """UR only: proportional gain of servoL (100..2000; lower is softer)."""
    ur_lookahead_s: float = 0.1
    """UR only: servoL lookahead time (0.03..0.2 s; longer is smoother and softer)."""


def default_profiles() -> dict[str, ComplianceProfile]:
    """'default' for free motion, 'compliant' for contact-rich insertion, 'stiff' for precision."""
    return {
        "default": ComplianceProfile(),
        "compliant": ComplianceProfile(
            pos_stiffness=150.0, rot_stiffness=150.0, ur_servo_gain=150.0, ur_lookahead_s=0.2
        ),
        "stiff": ComplianceProfile(
            pos_stiffness=900.0, rot_stiffness=900.0, ur_servo_gain=600.0, ur_lookahead_s=0.05
        ),
    }


@dataclass(frozen=True)
class SimBackendConfig:
    """The MuJoCo Panda backend (`sim/`), how the real path is tested without an arm."""

    realtime: bool = True
    """Step the physics to follow the wall clock (a background thread); False: each motion
    command advances exactly one control period ("as fast as asked")."""
    control_hz: float = 10.0
    """Command rate the sim is paced for (one control period per command when not realtime)."""
    timestep_s: float = 0.002
    """Physics step (the torque law runs at every one)."""
    camera_height: int = 128
    """Height of rendered camera frames (px)."""
    camera_width: int = 128
    """Width of rendered camera frames (px)."""


RealtimeConfig = Literal["enforce", "ignore"]
FrankaControllerMode = Literal["cartesian_impedance", "joint_impedance"]


@dataclass(frozen=True)
class FrankaBackendConfig:
    """A Franka Panda / FR3 through franky (libfranka); see robots/backends/franka.py."""

    robot_ip: str = "172.16.0.2"
    """Address of the arm's FCI interface (franky-sim: the address it prints, e.g. 127.0.0.1)."""
    realtime_config: RealtimeConfig = "enforce"
    """libfranka's real-time check: 'enforce' refuses to start on a kernel without real-time
    scheduling (PREEMPT_RT), as a real arm needs; 'ignore' only for franky-sim or a dry run
    on a non-RT kernel (the 1 kHz loop may then miss deadlines and trip reflexes)."""
    controller_mode: FrankaControllerMode = "cartesian_impedance"
    """The arm's internal controller under the motion generator; compliance profiles change
    its stiffness only in 'cartesian_impedance'."""
    relative_dynamics_factor: float = 0.1
    """Fraction of the arm's velocity, acceleration and jerk limits motions may use."""
    gripper_speed_mps: float = 0.1
    """Finger speed of gripper moves."""
    gripper_force_n: float = 20.0
    """Grasp force when closing."""

    def __post_init__(self) -> None:
        if self.realtime_config not in ("enforce", "ignore"):
            raise ConfigError(
                f"franka.realtime_config={self.realtime_config!r}; use 'enforce' (a real arm) "
                "or 'ignore' (franky-sim, a dry run on a non-RT kernel)"
            )
        if self.controller_mode not in ("cartesian_impedance", "joint_impedance"):
            raise ConfigError(
                f"franka.controller_mode={self.controller_mode!r}; use 'cartesian_impedance' "
                "or 'joint_impedance'"
            )
        if not 0 < self.relative_dynamics_factor <= 1:
            raise ConfigError(
                f"franka.relative_dynamics_factor={self.relative_dynamics_factor} must be in (0, 1]"
            )


@dataclass(frozen=True)
class URBackendConfig:
    """A Universal Robots arm through ur_rtde; see robots/backends/ur.py."""

    robot_ip: str = "192.168.1.10"
    """Address of the UR control box."""
    servo_hz: float = 125.0
    """Rate of the servoL stream towards the latest target (CB3: 125, e-Series: up to 500)."""
    reset_speed_radps: float = 0.5
    """Joint speed of moveJ resets."""
    reset_accel_radps2: float = 0.5
    """Joint acceleration of moveJ resets."""
    gripper_digital_out: int = -1
    """Standard digital output driving a gripper (high = closed); -1: no gripper."""
    home_q_rad: tuple[float, ...] = (0.0, -1.571, 1.571, -1.571, -1.571, 0.0)
    """The 'home' reset pose of the six joints."""

    def __post_init__(self) -> None:
        if not 0 < self.servo_hz <= 500:
            raise ConfigError(
                f"ur.servo_hz={self.servo_hz} must be in (0, 500] (RTDE runs at up to 125 Hz on "
                "a CB3, 500 Hz on an e-Series)"
            )
        if not -1 <= self.gripper_digital_out <= 7:
            raise ConfigError(
                f"ur.gripper_digital_out={self.gripper_digital_out}; use a standard digital "
                "output 0..7, or -1 for no gripper"
            )
        if len(self.home_q_rad) != 6:
            raise ConfigError(f"ur.home_q_rad={self.home_q_rad!r} must have 6 joint angles")


@dataclass(frozen=True)
class RobotServerConfig:
    """Everything `serl robot-server` needs; `--config server.json` fills any subset."""

    backend: Backend = "sim"
    """Which arm the server owns: sim (MuJoCo Panda), franka (franky) or ur (ur_rtde)."""
    endpoint: str = "tcp://127.0.0.1:5560"
    """Where the server binds; anything but loopback needs --keys-dir or --insecure."""
    keys_dir: Path | None = None
    """CURVE key directory (server.key_secret and authorized/*.key, `serl keys generate`)."""
    insecure: bool = False
    """Allow a non-loopback bind without CURVE keys (trusted networks only)."""
    safety: SafetyConfig = SafetyConfig()
    """The limits; changeable here only, never over the wire."""
    profiles: dict[str, ComplianceProfile] = field(default_factory=default_profiles)
    """Named compliance profiles `set_compliance` may select."""
    initial_profile: str = "default"
    """Profile applied at start."""
    reset_poses_rad: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Named joint poses `reset` may go to; 'home' defaults to the backend's home pose."""
    max_message_bytes: int = 64 << 10
    """Cap on one inbound request (requests are a few hundred bytes); larger ones are dropped
    unread, and a frame over `robots.protocol.SERVER_LIMITS.max_frame_bytes` ends the
    connection."""
    sim: SimBackendConfig = SimBackendConfig()
    """Settings of the sim backend."""
    franka: FrankaBackendConfig = FrankaBackendConfig()
    """Settings of the franka backend."""
    ur: URBackendConfig = URBackendConfig()
    """Settings of the ur backend."""

    def __post_init__(self) -> None:
        if self.backend not in ("sim", "franka", "ur"):
            raise ConfigError(f"backend={self.backend!r}; use 'sim', 'franka' or 'ur'")
        if self.initial_profile not in self.profiles:
            raise ConfigError(
                f"initial_profile={self.initial_profile!r} is not one of the profiles "
                f"{sorted(self.profiles)}; add it under 'profiles' or pick another"
            )


def config_from_json(data: dict[str, Any]) -> RobotServerConfig:
    """A server config from parsed JSON (any subset of the fields); unknown keys are errors."""
    data = dict(data)
    try:
        if "profiles" in data:
            data["profiles"] = {
                name: config_from_dict(ComplianceProfile, value)
                for name, value in dict(data["profiles"]).items()
            }
        if "reset_poses_rad" in data:
            data["reset_poses_rad"] = {
                name: tuple(float(v) for v in value)
                for name, value in dict(data["reset_poses_rad"]).items()
            }
        return config_from_dict(RobotServerConfig, data)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"robot server config: {exc}") from None


def load_server_config(path: Path | str) -> RobotServerConfig:
    """Read a server config JSON file (what `serl robot-server --config FILE` does)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read robot server config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object of config fields")
    try:
        return config_from_json(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_json(cfg: RobotServerConfig) -> dict[str, Any]:
    """The config as JSON-able data (paths as strings, tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
