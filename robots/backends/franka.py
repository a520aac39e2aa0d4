"""A Franka Panda / FR3 through franky (github.com/TimSchneider42/franky, pip `franky-panda`).

franky wraps libfranka and runs its real-time loop in C++; from Python a motion is started
with ``robot.move(motion, asynchronous=True)`` and a new asynchronous motion of the same
kind replaces the running one. Targets stream as absolute `CartesianMotion`s (Ruckig
trajectory generation inside the dynamics limits scaled by `relative_dynamics_factor`);
compliance profiles set the stiffness of libfranka's internal Cartesian impedance controller
(`set_cartesian_impedance`, which libfranka accepts only between motions, so the running
motion is stopped first). Resets are blocking `JointMotion`s.

The gripper is driven binary, as SERL drives it: a command above +0.5 grasps with
`gripper_force_n`, one below -0.5 opens fully, values in between keep the last state; a
command is sent only when that state changes (the Franka Hand takes ~1 s per move).

franky's quaternions are (x, y, z, w); this module converts to and from the server's
(w, x, y, z). Written against franky's documented API; it cannot run without an arm.
"""

from __future__ import annotations

import logging

import numpy as np

from robots.backends.base import BackendError, RobotBackend, RobotState, import_driver
from robots.config import ComplianceProfile, FrankaBackendConfig
from robots.kinematics import panda_tcp_position
from robots.safety import quat_normalize
from sim import panda

logger = logging.getLogger(__name__)

GRIPPER_THRESHOLD = 0.5
"""Gripper commands beyond +-0.5 switch the hand; values in between keep its state."""


def _xyzw(quat_wxyz: np.ndarray) -> list[float]:
    w, x, y, z = (float(v) for v in quat_wxyz)
    return [x, y, z, w]


def _wxyz(quat_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = (float(v) for v in quat_xyzw)
    return quat_normalize(np.array([w, x, y, z]))


class FrankaBackend(RobotBackend):
    """A Franka arm and hand over FCI; see the module docstring."""

    name = "franka"

    def __init__(self, cfg: FrankaBackendConfig | None = None) -> None:
        cfg = cfg or FrankaBackendConfig()
        self._franky = import_driver("franky", "franky-panda", "franka")
        self.cfg = cfg
        self.joint_lower_rad = panda.JOINT_LOWER_RAD.copy()
        self.joint_upper_rad = panda.JOINT_UPPER_RAD.copy()
        self.home_q_rad = panda.HOME_QPOS.copy()
        self.control_period_s = 0.1
        franky = self._franky
        try:
            self._robot = franky.Robot(cfg.robot_ip)
            self._robot.recover_from_errors()
            self._robot.relative_dynamics_factor = cfg.relative_dynamics_factor
            self._gripper = franky.Gripper(cfg.robot_ip)
        except Exception as exc:  # franky raises its own exception types for FCI problems
            raise BackendError(
                f"cannot connect to the Franka at {cfg.robot_ip}: {exc}; check the FCI is "
                "activated in Desk, the brakes are open and --franka.robot-ip is right"
            ) from exc
        self._gripper_closed: bool | None = None

    def read_state(self) -> RobotState:
        cartesian = self._robot.current_cartesian_state
        pose = cartesian.pose.end_effector_pose
        twist = cartesian.velocity.end_effector_twist
        joints = self._robot.current_joint_state
        return RobotState(
            ee_pos=np.asarray(pose.translation, dtype=float).copy(),
            ee_quat=_wxyz(np.asarray(pose.quaternion, dtype=float)),
            ee_vel=np.concatenate([np.asarray(twist.linear), np.asarray(twist.angular)]),
            gripper_width=float(self._gripper.width),
            q=np.asarray(joints.position, dtype=float).copy(),
            dq=np.asarray(joints.velocity, dtype=float).copy(),
        )

    def command_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        franky = self._franky
        target = franky.Affine(np.asarray(pos, dtype=float), _xyzw(quat))
        motion = franky.CartesianMotion(target, franky.ReferenceType.Absolute)
        self._robot.move(motion, asynchronous=True)

    def command_gripper(self, command: float) -> None:
        if abs(command) < GRIPPER_THRESHOLD:
            return
        close = command > 0
        if close == self._gripper_closed:
            return
        self._gripper_closed = close
        speed = self.cfg.gripper_speed_mps
        if close:
            # Any width inside (0, max) counts as a grasp: epsilons span the whole stroke.
            self._gripper.grasp_async(
                0.0, speed, self.cfg.gripper_force_n, epsilon_inner=1.0, epsilon_outer=1.0
            )
        else:
            self._gripper.move_async(self._gripper.max_width, speed)

    def hold(self) -> None:
        state = self.read_state()
        self.command_pose(state.ee_pos, state.ee_quat)

    def _stop_motion(self) -> None:
        self._robot.move(self._franky.CartesianPoseStopMotion(), asynchronous=False)

    def stop(self) -> None:
        self._stop_motion()

    def estop(self) -> None:
        try:
            self._stop_motion()
        except Exception:  # in a reflex the arm is already stopped; estop must not raise
            logger.exception("franky could not run the stop motion (arm already stopped?)")

    def release_estop(self) -> None:
        self._robot.recover_from_errors()
        self.hold()

    def reset_joints(self, q: np.ndarray) -> None:
        self._robot.recover_from_errors()
        self._robot.move(self._franky.JointMotion([float(v) for v in q]), asynchronous=False)

    def tcp_position(self, q: np.ndarray) -> np.ndarray:
        return panda_tcp_position(q)  # Panda / FR3 with the Franka Hand

    def set_compliance(self, profile: ComplianceProfile) -> None:
        self._stop_motion()
        self._robot.set_cartesian_impedance(
            [profile.pos_stiffness] * 3 + [profile.rot_stiffness] * 3
        )
        self.hold()

    def close(self) -> None:
        try:
            self._stop_motion()
        except Exception:
            logger.exception("franky could not stop the arm on close")
