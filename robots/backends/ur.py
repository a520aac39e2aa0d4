"""A Universal Robots arm (CB3 / e-Series) through ur_rtde (sdurobotics.gitlab.io/ur_rtde).

Written against ur_rtde 1.6.5. It has not run against an arm or URSim: every call it makes is
checked against the installed module's signatures, and its logic is tested with fakes
generated from that module (tests/robots/test_ur_*.py).

ur_rtde's `RTDEControlInterface` uploads a control script to the arm and `servoL` streams
Cartesian targets to it; it must be called at a steady rate (`servo_hz`), so this backend
runs a thread that sends the latest checked target every period with
``initPeriod`` / ``waitPeriod`` pacing, and `command_pose` only swaps the target. The control
interface is opened with ``frequency=servo_hz``: `waitPeriod` sleeps for one period of that
frequency (the controller's 125 or 500 Hz when not given), which must match servoL's `time`.
Poses are ``[x, y, z, rx, ry, rz]`` with a rotation vector, converted to and from the
server's quaternions. Compliance on a UR is the servo's stiffness: a profile sets servoL's
`gain` and `lookahead_time` (`ur_servo_gain`, `ur_lookahead_s`, checked against the ranges
ur_rtde documents).

Resets stop the stream and run an asynchronous `moveJ`, then wait for it (polling the
async-operation status): only an asynchronous move can be stopped (`stopJ`; ur_rtde's moveJ
documentation), and a blocking one would keep the e-stop's commands from reaching the
control script until it ends. The e-stop ends the stream (`servoStop`), stops a running reset
(`stopJ`) and the control script (`stopScript`), each step tried even if an earlier one
failed; motion is refused until `release_estop`, which reconnects what was lost, re-uploads
the control script (a fresh control interface when its connection was lost, since
ur_rtde's `reconnect` falls back to the controller's default frequency) and holds.

Driver errors become `BackendError`s naming the call: ur_rtde raises (RuntimeError for a lost
connection, ValueError for an argument out of range) or answers False when the controller
refuses a command (the control script is not running: a protective or emergency stop). A
failure of the servo stream stops it, so the arm goes no further than its last target, and is
reported by the next motion command, which then restarts the stream. A reading from a receive
interface that lost its connection is refused rather than served stale.

A gripper on a standard digital output (`gripper_digital_out`, high = closed) is driven
through `RTDEIOInterface`; other grippers (e.g. Robotiq over its URCap socket) are not
handled here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from robots.backends.base import BackendError, RobotBackend, RobotState, import_driver
from robots.config import ComplianceProfile, URBackendConfig
from robots.safety import quat_from_rotvec, quat_normalize, rotvec_from_quat

logger = logging.getLogger(__name__)

# UR joint limits are +-2 pi on every joint (+-pi on the elbow of most models).
JOINT_LIMIT_RAD = np.array([2 * np.pi, 2 * np.pi, np.pi, 2 * np.pi, 2 * np.pi, 2 * np.pi])
SERVO_GAIN_RANGE = (100.0, 2000.0)
"""servoL's proportional gain range (ur_rtde's servoL documentation)."""
SERVO_LOOKAHEAD_RANGE_S = (0.03, 0.2)
"""servoL's lookahead-time range (s)."""
RESET_POLL_S = 0.01
"""How often a reset checks its asynchronous moveJ, and the e-stop."""
RESET_TOLERANCE_RAD = 0.01
"""A reset whose move ends farther than this from the target (any joint) failed."""
RESET_TIME_FACTOR = 10.0
"""A reset may take this many times its ideal duration (the speed slider may be at 10 %)..."""
RESET_SLACK_S = 5.0
"""...plus this long, before it is stopped and reported."""


@contextlib.contextmanager
def _driver(what: str) -> Iterator[None]:
    """Turn an exception raised by ur_rtde inside the block into a BackendError naming `what`."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"ur_rtde {what} failed: {type(exc).__name__}: {exc}") from exc


def _require(accepted: bool, what: str) -> None:
    """ur_rtde answers False when the controller did not run a command."""
    if not accepted:
        raise BackendError(
            f"ur_rtde {what} was refused (returned False): the control script is not running "
            "or the arm is stopped (protective or emergency stop); see the teach pendant"
        )


class URBackend(RobotBackend):
    """A UR arm over RTDE; see the module docstring."""

    name = "ur"

    def __init__(self, cfg: URBackendConfig | None = None) -> None:
        cfg = cfg or URBackendConfig()
        self._rtde_control = import_driver("rtde_control", "ur_rtde", "ur")
        rtde_receive = import_driver("rtde_receive", "ur_rtde", "ur")
        rtde_io = (
            import_driver("rtde_io", "ur_rtde", "ur") if cfg.gripper_digital_out >= 0 else None
        )
        self.cfg = cfg
        self.joint_lower_rad = -JOINT_LIMIT_RAD
        self.joint_upper_rad = JOINT_LIMIT_RAD.copy()
        self.home_q_rad = np.asarray(cfg.home_q_rad, dtype=float)
        self.control_period_s = 0.1
        self._recv: Any = None
        self._ctrl: Any = None
        self._io: Any = None
        try:
            self._recv = rtde_receive.RTDEReceiveInterface(cfg.robot_ip)
            self._ctrl = self._rtde_control.RTDEControlInterface(cfg.robot_ip, cfg.servo_hz)
            if rtde_io is not None:
                self._io = rtde_io.RTDEIOInterface(cfg.robot_ip)
        except Exception as exc:  # ur_rtde raises RuntimeError for connection problems
            self._disconnect()
            raise BackendError(
                f"cannot connect to the UR at {cfg.robot_ip}: {exc}; check the arm is in remote "
                "control mode, powered and that --ur.robot-ip is right"
            ) from exc
        self._gain, self._lookahead = 300.0, 0.1
        self._lock = threading.Lock()  # the target and servo parameters
        self._ctrl_lock = threading.Lock()  # servoL from the thread vs. servoStop, reconnects
        self._target: list[float] | None = None
        self._fault: str | None = None
        self._streaming = threading.Event()
        self._estopped = threading.Event()
        self._resetting = threading.Event()
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
            try:
                with self._ctrl_lock:  # servoStop / reconnects from the server thread wait
                    if not self._streaming.is_set():
                        continue
                    with _driver("servoL"):
                        start = self._ctrl.initPeriod()
                        _require(self._ctrl.servoL(target, 0.0, 0.0, dt, lookahead, gain), "servoL")
                with _driver("waitPeriod"):
                    self._ctrl.waitPeriod(start)
            except BackendError as exc:
                self._streaming.clear()
                with self._lock:
                    self._fault = str(exc)
                logger.error("the UR servo stream stopped: %s", exc)
                self._best_effort("end servo mode after the failure", self._servo_stop)

    def _servo_stop(self) -> None:
        with self._ctrl_lock, _driver("servoStop"):
            _require(self._ctrl.servoStop(), "servoStop")

    def _end_stream(self) -> None:
        if self._streaming.is_set():
            self._streaming.clear()
            self._servo_stop()

    def _check_motion_allowed(self) -> None:
        """Refuse motion while e-stopped; report (once) a failure of the servo stream."""
        if self._estopped.is_set():
            raise BackendError("the UR is e-stopped; motion is refused until release_estop")
        with self._lock:
            fault, self._fault = self._fault, None
        if fault is not None:
            raise BackendError(
                f"{fault}; the servo stream stopped, the arm went no further than its last "
                "target. The next motion command restarts it; after a protective stop unlock "
                "the arm on the pendant, then estop and release_estop to re-upload the control "
                "script"
            )

    def _best_effort(self, what: str, step: Callable[[], None]) -> None:
        """Run a step of a stop or shutdown; log its failure and go on with the next."""
        try:
            step()
        except Exception:
            logger.exception("ur: could not %s", what)

    # ------------------------------------------------------------------ RobotBackend
    def read_state(self) -> RobotState:
        with _driver("reading the state"):
            if not self._recv.isConnected():
                raise BackendError(
                    f"the RTDE receive connection to the UR at {self.cfg.robot_ip} is lost; "
                    "refusing to serve a stale state (release_estop reconnects)"
                )
            pose = np.asarray(self._recv.getActualTCPPose(), dtype=float)
            width = 0.0  # no gripper configured
            if self._io is not None:  # a binary gripper: open (1) or closed (0)
                closed = self._recv.getDigitalOutState(self.cfg.gripper_digital_out)
                width = 0.0 if closed else 1.0
            ee_vel = np.asarray(self._recv.getActualTCPSpeed(), dtype=float)
            q = np.asarray(self._recv.getActualQ(), dtype=float)
            dq = np.asarray(self._recv.getActualQd(), dtype=float)
        return RobotState(
            ee_pos=pose[:3].copy(),
            ee_quat=quat_normalize(quat_from_rotvec(pose[3:])),
            ee_vel=ee_vel,
            gripper_width=width,
            q=q,
            dq=dq,
        )

    def command_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        self._check_motion_allowed()
        target = [*(float(v) for v in pos), *(float(v) for v in rotvec_from_quat(quat))]
        with self._lock:
            self._target = target
        self._streaming.set()

    def command_gripper(self, command: float) -> None:
        if self._io is not None and abs(command) >= 0.5:
            with _driver("setStandardDigitalOut"):
                _require(
                    self._io.setStandardDigitalOut(self.cfg.gripper_digital_out, bool(command > 0)),
                    "setStandardDigitalOut",
                )

    def hold(self) -> None:
        state = self.read_state()
        self.command_pose(state.ee_pos, state.ee_quat)

    def stop(self) -> None:
        self._end_stream()

    def estop(self) -> None:
        self._estopped.set()
        self._best_effort("end the servo stream", self._end_stream)
        if self._resetting.is_set():
            self._best_effort("stop the reset motion", self._stop_move)
        self._best_effort("stop the control script", self._stop_script)

    def _stop_move(self) -> None:
        with _driver("stopJ"):
            self._ctrl.stopJ()

    def _stop_script(self) -> None:
        with _driver("stopScript"):
            self._ctrl.stopScript()

    def release_estop(self) -> None:
        with _driver("reconnecting to the UR"):
            if not self._recv.isConnected():
                _require(self._recv.reconnect(), "RTDEReceiveInterface.reconnect")
            if self._io is not None and not self._io.isConnected():
                _require(self._io.reconnect(), "RTDEIOInterface.reconnect")
            with self._ctrl_lock:
                if self._ctrl.isConnected():
                    _require(self._ctrl.reuploadScript(), "reuploadScript")
                else:  # a new interface uploads the script and keeps frequency=servo_hz
                    self._ctrl.disconnect()
                    self._ctrl = self._rtde_control.RTDEControlInterface(
                        self.cfg.robot_ip, self.cfg.servo_hz
                    )
        with self._lock:
            self._fault = None
        self._estopped.clear()
        self.hold()

    def reset_joints(self, q: np.ndarray) -> None:
        self._resetting.set()  # before the e-stop check: an e-stop now sends stopJ
        try:
            self._check_motion_allowed()
            self._end_stream()
            target = [float(v) for v in q]
            speed, accel = self.cfg.reset_speed_radps, self.cfg.reset_accel_radps2
            with _driver("moveJ"):
                start_q = np.asarray(self._recv.getActualQ(), dtype=float)
                previous_op = self._ctrl.getAsyncOperationProgressEx().operationId()
                _require(self._ctrl.moveJ(target, speed, accel, True), "moveJ")
            distance = float(np.max(np.abs(np.asarray(target) - start_q)))
            self._wait_for_move(target, previous_op, distance / speed + speed / accel)
        finally:
            self._resetting.clear()

    def _wait_for_move(self, target: list[float], previous_op: int, ideal_s: float) -> None:
        """Wait for the asynchronous moveJ (a new operation id, no longer running) and check
        it reached `target`; the e-stop, a stopped control script or a timeout end it."""
        timeout_s = RESET_TIME_FACTOR * ideal_s + RESET_SLACK_S
        deadline = time.monotonic() + timeout_s
        while True:
            if self._estopped.is_set():
                raise BackendError("the reset was stopped by the e-stop")
            with _driver("waiting for moveJ"):
                status = self._ctrl.getAsyncOperationProgressEx()
                if status.operationId() != previous_op and not status.isAsyncOperationRunning():
                    break
                if not self._ctrl.isProgramRunning():
                    raise BackendError(
                        "the UR control script stopped during the reset (a protective or "
                        "emergency stop?); see the teach pendant"
                    )
            if time.monotonic() > deadline:
                self._best_effort("stop the overdue reset", self._stop_move)
                raise BackendError(
                    f"the reset did not finish within {timeout_s:.1f} s and was stopped (is the "
                    "speed slider below 10 %?)"
                )
            time.sleep(RESET_POLL_S)
        with _driver("reading the joints after moveJ"):
            reached = np.asarray(self._recv.getActualQ(), dtype=float)
        error = float(np.max(np.abs(reached - np.asarray(target))))
        if error > RESET_TOLERANCE_RAD:
            raise BackendError(
                f"the reset moveJ ended {error:.3f} rad from its target (stopped from the "
                "pendant or by a protective stop?)"
            )

    def set_compliance(self, profile: ComplianceProfile) -> None:
        for value, (low, high), field in (
            (profile.ur_servo_gain, SERVO_GAIN_RANGE, "ur_servo_gain"),
            (profile.ur_lookahead_s, SERVO_LOOKAHEAD_RANGE_S, "ur_lookahead_s"),
        ):
            if not low <= value <= high:
                raise BackendError(
                    f"compliance profile {field}={value} is outside servoL's range "
                    f"[{low}, {high}]; change the profile in the server config"
                )
        with self._lock:
            self._gain, self._lookahead = profile.ur_servo_gain, profile.ur_lookahead_s

    def close(self) -> None:
        self._closed.set()
        self._best_effort("end the servo stream", self._end_stream)
        self._thread.join(timeout=1.0)
        self._best_effort("stop the control script", self._stop_script)
        self._disconnect()

    def _disconnect(self) -> None:
        """Close whichever RTDE connections are open (also after a failed start)."""
        if self._io is not None:
            self._best_effort("disconnect RTDE IO", lambda: self._io.disconnect())
        if self._ctrl is not None:
            self._best_effort("disconnect RTDE control", lambda: self._ctrl.disconnect())
        if self._recv is not None:
            self._best_effort("disconnect RTDE receive", lambda: self._recv.disconnect())
