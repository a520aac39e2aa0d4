"""A Universal Robots arm (CB3 / e-Series) through ur_rtde (sdurobotics.gitlab.io/ur_rtde).

ur_rtde's `RTDEControlInterface` uploads a control script to the arm and `servoL` streams
Cartesian targets to it; it must be called at a steady rate (`servo_hz`), so this backend
runs a thread that sends the latest checked target every period with
``initPeriod`` / ``waitPeriod`` pacing, and `command_pose` only swaps the target. Poses are
``[x, y, z, rx, ry, rz]`` with a rotation vector, converted to and from the server's
quaternions. Compliance on a UR is the servo's stiffness: a profile sets servoL's `gain` and
`lookahead_time` (`ur_servo_gain`, `ur_lookahead_s`). Resets stop the stream and run a
blocking `moveJ`; the e-stop stops the stream and calls `servoStop` then `stopScript`.

A gripper on a standard digital output (`gripper_digital_out`, high = closed) is driven
through `RTDEIOInterface`; other grippers (e.g. Robotiq over its URCap socket) are not
handled here. Written against ur_rtde's documented API; it cannot run without an arm.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from robots.backends.base import BackendError, RobotBackend, RobotState, import_driver
from robots.config import ComplianceProfile, URBackendConfig
from robots.safety import quat_from_rotvec, quat_normalize, rotvec_from_quat

logger = logging.getLogger(__name__)

# UR joint limits are +-2 pi on every joint (+-pi on the elbow of most models).
JOINT_LIMIT_RAD = np.array([2 * np.pi, 2 * np.pi, np.pi, 2 * np.pi, 2 * np.pi, 2 * np.pi])


class URBackend(RobotBackend):
    """A UR arm over RTDE; see the module docstring."""

    name = "ur"

    def __init__(self, cfg: URBackendConfig | None = None) -> None:
        cfg = cfg or URBackendConfig()
        control = import_driver("rtde_control", "ur_rtde", "ur")
        receive = import_driver("rtde_receive", "ur_rtde", "ur")
        self.cfg = cfg
        self.joint_lower_rad = -JOINT_LIMIT_RAD
        self.joint_upper_rad = JOINT_LIMIT_RAD.copy()
        self.home_q_rad = np.asarray(cfg.home_q_rad, dtype=float)
        self.control_period_s = 0.1
        try:
            self._recv = receive.RTDEReceiveInterface(cfg.robot_ip)
            self._ctrl = control.RTDEControlInterface(cfg.robot_ip)
            self._io = None
            if cfg.gripper_digital_out >= 0:
                io = import_driver("rtde_io", "ur_rtde", "ur")
                self._io = io.RTDEIOInterface(cfg.robot_ip)
        except Exception as exc:  # ur_rtde raises RuntimeError for connection problems
            raise BackendError(
                f"cannot connect to the UR at {cfg.robot_ip}: {exc}; check the arm is in remote "
                "control mode, powered and that --ur.robot-ip is right"
            ) from exc
        self._gain, self._lookahead = 300.0, 0.1
        self._lock = threading.Lock()
        self._ctrl_lock = threading.Lock()
        self._target: list[float] | None = None
        self._streaming = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._servo_loop, name="ur-servo", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the servo stream
    def _servo_loop(self) -> None:
        dt = 1.0 / self.cfg.servo_hz
        while not self._closed.is_set():
            if not self._streaming.wait(timeout=0.1):
                continue
            with self._lock:
                target, gain, lookahead = self._target, self._gain, self._lookahead
            if target is None:
                continue
            with self._ctrl_lock:  # servoStop / moveJ from the server thread wait for this
                if not self._streaming.is_set():
                    continue
                start = self._ctrl.initPeriod()
                self._ctrl.servoL(target, 0.0, 0.0, dt, lookahead, gain)
            self._ctrl.waitPeriod(start)

    def _end_stream(self) -> None:
        if self._streaming.is_set():
            self._streaming.clear()
            with self._ctrl_lock:
                self._ctrl.servoStop()

    # ------------------------------------------------------------------ RobotBackend
    def read_state(self) -> RobotState:
        pose = np.asarray(self._recv.getActualTCPPose(), dtype=float)
        width = 0.0
        if self._io is not None:
            closed = self._recv.getDigitalOutState(self.cfg.gripper_digital_out)
            width = 0.0 if closed else 1.0  # a binary gripper reports open (1) or closed (0)
        return RobotState(
            ee_pos=pose[:3].copy(),
            ee_quat=quat_normalize(quat_from_rotvec(pose[3:])),
            ee_vel=np.asarray(self._recv.getActualTCPSpeed(), dtype=float),
            gripper_width=width,
            q=np.asarray(self._recv.getActualQ(), dtype=float),
            dq=np.asarray(self._recv.getActualQd(), dtype=float),
        )

    def command_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        target = [*(float(v) for v in pos), *(float(v) for v in rotvec_from_quat(quat))]
        with self._lock:
            self._target = target
        self._streaming.set()

    def command_gripper(self, command: float) -> None:
        if self._io is not None and abs(command) >= 0.5:
            self._io.setStandardDigitalOut(self.cfg.gripper_digital_out, command > 0)

    def hold(self) -> None:
        state = self.read_state()
        self.command_pose(state.ee_pos, state.ee_quat)

    def stop(self) -> None:
        self._end_stream()

    def estop(self) -> None:
        try:
            self._end_stream()
            self._ctrl.stopScript()
        except Exception:  # the arm may already be in a protective stop; estop must not raise
            logger.exception("ur_rtde could not stop the control script")

    def release_estop(self) -> None:
        if not self._ctrl.isConnected():
            self._ctrl.reconnect()
        self._ctrl.reuploadScript()
        self.hold()

    def reset_joints(self, q: np.ndarray) -> None:
        self._end_stream()
        self._ctrl.moveJ(
            [float(v) for v in q], self.cfg.reset_speed_radps, self.cfg.reset_accel_radps2
        )

    def set_compliance(self, profile: ComplianceProfile) -> None:
        with self._lock:
            self._gain, self._lookahead = profile.ur_servo_gain, profile.ur_lookahead_s

    def close(self) -> None:
        self._closed.set()
        try:
            self._end_stream()
            self._ctrl.stopScript()
        except Exception:
            logger.exception("ur_rtde could not stop the arm on close")
        self._thread.join(timeout=1.0)
