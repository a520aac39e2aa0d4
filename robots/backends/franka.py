"""A Franka Panda / FR3 through franky (github.com/TimSchneider42/franky, pip `franky-control`).

Written against franky-control 2.0.0 (libfranka 0.21) and run against franky-sim 1.0.4, a
MuJoCo server that speaks the libfranka network protocol (tests/robots/test_franka_sim.py).

franky wraps libfranka and runs its 1 kHz loop in C++; from Python a motion is started with
``robot.move(motion, asynchronous=True)`` and a new motion of the same control-signal type
takes over the running one. Targets stream as absolute `CartesianMotion`s with
``return_when_finished=False``: the arm keeps tracking the last target (Ruckig trajectories
inside the dynamics limits scaled by `relative_dynamics_factor`) until the next target or a
stop motion replaces it, so no control loop restarts between 10 Hz commands.

libfranka accepts neither a change of control-signal type (Cartesian pose <-> joint
positions) nor `set_cartesian_impedance` while a motion runs, so resets and compliance
switches first end the running motion with the stop motion of its own type. Compliance
profiles set the stiffness of libfranka's internal Cartesian impedance controller, which is
the controller in use only with ``controller_mode="cartesian_impedance"`` (the default here).

Driver errors become the server's error replies: every franky call goes through `_call`,
which turns franky's exceptions into `BackendError` naming what failed. A `ControlException`
(a reflex: collision, limit violation, a preempted motion) has already ended the motion and
the arm stands still; `_call` runs ``recover_from_errors`` so the next command moves again,
and the reply says so. A lost connection is final: every later call is refused with a
message saying so (franky would go on answering reads with the last state it had). The
e-stop uses ``robot.stop()``, which preempts any running motion
(including a reset running on the server's worker thread, whose reply then reports it);
`release_estop` recovers libfranka's error state and holds.

The gripper is driven binary, as SERL drives it: a command above +0.5 grasps with
`gripper_force_n`, one below -0.5 opens fully, values in between keep the last state; a
command is sent only when that state changes (the Franka Hand takes ~1 s per move).

franky's quaternions are (x, y, z, w); this module converts to and from the server's
(w, x, y, z).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from robots.backends.base import BackendError, RobotBackend, RobotState, import_driver
from robots.config import ComplianceProfile, FrankaBackendConfig
from robots.kinematics import panda_tcp_position
from robots.safety import quat_normalize
from sim import panda

logger = logging.getLogger(__name__)

T = TypeVar("T")

GRIPPER_THRESHOLD = 0.5
"""Gripper commands beyond +-0.5 switch the hand; values in between keep its state."""
TRANSLATIONAL_STIFFNESS_RANGE = (10.0, 3000.0)
"""libfranka's accepted range for `set_cartesian_impedance` x, y, z (N/m)."""
ROTATIONAL_STIFFNESS_RANGE = (1.0, 300.0)
"""libfranka's accepted range for `set_cartesian_impedance` roll, pitch, yaw (N m/rad)."""


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
        self._franky: Any = import_driver("franky", "franky-control", "franka")
        self.cfg = cfg
        self.joint_lower_rad = panda.JOINT_LOWER_RAD.copy()
        self.joint_upper_rad = panda.JOINT_UPPER_RAD.copy()
        self.home_q_rad = panda.HOME_QPOS.copy()
        self.control_period_s = 0.1
        self._gripper_closed: bool | None = None
        self._gripper_future: Any = None
        self._lost: str | None = None
        """Why the connection is gone; every call is then refused with it."""
        franky = self._franky
        realtime = {
            "enforce": franky.RealtimeConfig.Enforce,
            "ignore": franky.RealtimeConfig.Ignore,
        }
        mode = {
            "cartesian_impedance": franky.ControllerMode.CartesianImpedance,
            "joint_impedance": franky.ControllerMode.JointImpedance,
        }
        try:
            self._robot = franky.Robot(
                cfg.robot_ip,
                realtime_config=realtime[cfg.realtime_config],
                controller_mode=mode[cfg.controller_mode],
            )
        except franky.RealtimeException as exc:
            raise BackendError(
                f"libfranka refuses to run without a real-time kernel ({exc}). On the robot PC "
                "boot a PREEMPT_RT kernel (launch/README.md); only against franky-sim or for a "
                "dry run set --franka.realtime-config ignore"
            ) from None
        except Exception as exc:  # NetworkException, IncompatibleVersionException, ...
            raise BackendError(
                f"cannot connect to the Franka at {cfg.robot_ip} ({type(exc).__name__}: {exc}); "
                "check that the arm is on and reachable, FCI is activated in Desk, the brakes "
                "are open, --franka.robot-ip is right and franky-control matches the robot's "
                "firmware (launch/README.md)"
            ) from None
        try:
            self._robot.recover_from_errors()
            self._robot.relative_dynamics_factor = cfg.relative_dynamics_factor
            self._gripper = franky.Gripper(cfg.robot_ip)
        except Exception as exc:
            raise BackendError(
                f"connected to the Franka at {cfg.robot_ip} but could not set it up "
                f"({type(exc).__name__}: {exc}); is the Franka Hand attached and enabled in Desk?"
            ) from None

    # ------------------------------------------------------------------ driver calls
    def _call(
        self, what: str, fn: Callable[..., T], *args: Any, read: bool = False, **kwargs: Any
    ) -> T:
        """Run a franky call; its exceptions become `BackendError`s (reflexes recovered).

        A lost connection (a `NetworkException`, or any failure of a state read, which has no
        other way to fail) is final: franky afterwards answers reads with the last state it
        had, instantly and without an error, so every later call is refused instead."""
        franky = self._franky
        if self._lost is not None:
            raise BackendError(self._lost)
        try:
            return fn(*args, **kwargs)
        except franky.NetworkException as exc:
            raise self._connection_lost(what, exc) from None
        except franky.ControlException as exc:
            recovered = self._recover()
            state = (
                "errors recovered, the arm stands still; the next command moves again"
                if recovered
                else "automatic error recovery FAILED; check the arm (Desk) before going on"
            )
            raise BackendError(f"{what}: the arm stopped with a reflex ({exc}); {state}") from None
        except Exception as exc:  # franky's other exception types share no base class
            if read:  # reads fail only when the state stream stops (RuntimeError "Net ...")
                raise self._connection_lost(what, exc) from None
            raise BackendError(f"{what} failed ({type(exc).__name__}: {exc})") from None

    def _connection_lost(self, what: str, exc: Exception) -> BackendError:
        self._lost = (
            f"the connection to the Franka at {self.cfg.robot_ip} was lost ({what}: "
            f"{type(exc).__name__}: {exc}); the arm stops itself when its controller misses "
            "commands. Check the network and the arm (Desk), then restart serl robot-server"
        )
        logger.error("%s", self._lost)
        return BackendError(self._lost)

    def _recover(self) -> bool:
        if self._lost is not None:
            raise BackendError(self._lost)
        try:
            return bool(self._robot.recover_from_errors())
        except Exception:
            logger.exception("franky recover_from_errors failed")
            return False

    def _stop_motion(self) -> None:
        """End the running motion with the stop motion of its control-signal type."""
        franky = self._franky
        stops = {
            franky.ControlSignalType.CartesianPose: franky.CartesianStopMotion,
            franky.ControlSignalType.JointPositions: franky.JointStopMotion,
            franky.ControlSignalType.CartesianVelocities: franky.CartesianVelocityStopMotion,
            franky.ControlSignalType.JointVelocities: franky.JointVelocityStopMotion,
        }
        signal = self._robot.current_control_signal_type
        if signal is None:
            return  # no motion is running
        stop = stops.get(signal)
        if stop is None:  # a torque controller: only libfranka's stop ends it
            self._call("stop", self._robot.stop)
        else:
            self._call("stop motion", self._robot.move, stop(), asynchronous=False)

    # ------------------------------------------------------------------ the interface
    def read_state(self) -> RobotState:
        cartesian = self._call("read state", lambda: self._robot.current_cartesian_state, read=True)
        pose = cartesian.pose.end_effector_pose
        twist = cartesian.velocity.end_effector_twist
        joints = self._call("read joints", lambda: self._robot.current_joint_state, read=True)
        width = self._call("read gripper", lambda: self._gripper.width, read=True)
        return RobotState(
            ee_pos=np.asarray(pose.translation, dtype=float).copy(),
            ee_quat=_wxyz(np.asarray(pose.quaternion, dtype=float)),
            ee_vel=np.concatenate([np.asarray(twist.linear), np.asarray(twist.angular)]),
            gripper_width=float(width),
            q=np.asarray(joints.position, dtype=float).copy(),
            dq=np.asarray(joints.velocity, dtype=float).copy(),
        )

    def command_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        franky = self._franky
        target = franky.Affine(np.asarray(pos, dtype=float), _xyzw(quat))
        motion = franky.CartesianMotion(
            target, franky.ReferenceType.Absolute, return_when_finished=False
        )
        self._call("pose command", self._robot.move, motion, asynchronous=True)

    def command_gripper(self, command: float) -> None:
        if abs(command) < GRIPPER_THRESHOLD:
            return
        close = command > 0
        if close == self._gripper_closed:
            return
        self._report_gripper_failure()
        speed = self.cfg.gripper_speed_mps
        if close:
            # Any width inside (0, max) counts as a grasp: epsilons span the whole stroke.
            future = self._call(
                "grasp",
                self._gripper.grasp_async,
                0.0,
                speed,
                self.cfg.gripper_force_n,
                epsilon_inner=1.0,
                epsilon_outer=1.0,
            )
        else:
            max_width = self._call("read gripper", lambda: self._gripper.max_width)
            future = self._call("open gripper", self._gripper.move_async, max_width, speed)
        self._gripper_closed = close
        self._gripper_future = future

    def _report_gripper_failure(self) -> None:
        """Log a failed previous gripper move (its future holds the GripperException)."""
        future, self._gripper_future = self._gripper_future, None
        if future is None or not future.wait(0.0):
            return
        try:
            if not future.get():
                logger.warning("the last gripper move did not reach its goal (no object?)")
        except Exception as exc:
            logger.warning("the last gripper move failed: %s: %s", type(exc).__name__, exc)

    def hold(self) -> None:
        state = self.read_state()
        self.command_pose(state.ee_pos, state.ee_quat)

    def stop(self) -> None:
        self._stop_motion()

    def _clear_preempted_motion(self) -> None:
        """Collect the error a preempted motion left behind (franky raises it at the next
        move otherwise): ``robot.stop()`` ends the motion with "Move command preempted"."""
        try:
            self._robot.join_motion(0.0)
        except self._franky.ControlException as exc:
            logger.info("the motion the e-stop preempted ended with: %s", exc)
        except Exception:
            logger.exception("franky join_motion failed")

    def estop(self) -> None:
        try:
            self._robot.stop()
        except Exception:  # in a reflex the arm is already stopped; estop must not raise
            logger.exception("franky could not stop the arm (already stopped?)")

    def release_estop(self) -> None:
        self._clear_preempted_motion()
        if not self._recover():
            raise BackendError(
                "libfranka's automatic error recovery failed after the e-stop; check the arm "
                "in Desk (released user stop? brakes?) and call release_estop again"
            )
        self.hold()

    def reset_joints(self, q: np.ndarray) -> None:
        self._stop_motion()
        self._recover()
        motion = self._franky.JointMotion([float(v) for v in q])
        self._call("reset", self._robot.move, motion, asynchronous=False)

    def tcp_position(self, q: np.ndarray) -> np.ndarray:
        return panda_tcp_position(q)  # Panda / FR3 with the Franka Hand

    def set_compliance(self, profile: ComplianceProfile) -> None:
        pos = _clip_stiffness("pos_stiffness", profile.pos_stiffness, TRANSLATIONAL_STIFFNESS_RANGE)
        rot = _clip_stiffness("rot_stiffness", profile.rot_stiffness, ROTATIONAL_STIFFNESS_RANGE)
        stiffness = [pos] * 3 + [rot] * 3
        self._stop_motion()
        self._call("set compliance", self._robot.set_cartesian_impedance, stiffness)
        self.hold()

    def close(self) -> None:
        try:
            self._stop_motion()
        except Exception:
            logger.exception("franky could not stop the arm on close")


def _clip_stiffness(name: str, value: float, bounds: tuple[float, float]) -> float:
    """libfranka refuses stiffness outside its range; the sim's profiles use other units."""
    low, high = bounds
    clipped = min(max(value, low), high)
    if clipped != value:
        logger.warning(
            "compliance %s=%g is outside libfranka's range [%g, %g]; using %g",
            name,
            value,
            low,
            high,
            clipped,
        )
    return clipped
