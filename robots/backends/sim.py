"""The simulated arm: the MuJoCo Panda of `sim/` and its torque controller behind the server.

This is how the whole real-robot path (client, wire, server, safety) is exercised without an
arm. The scene is `sim.panda.scene_xml` (table, Panda, the "front" and "wrist" cameras); the
controller is `sim.controller.EndEffectorController`, fed absolute targets the server already
checked, so a target means what it means on the real arm.

Two ways to pass time (`SimBackendConfig.realtime`):

* realtime: a daemon thread steps the physics in 10 ms slices to follow the wall clock, as a
  real arm moves whether or not anyone asks. If the machine cannot keep up, the sim falls
  behind (logged once a second) rather than jumping. The speed limits then measure time on
  the wall clock (see `SimBackend.clock`).
* as fast as asked: no thread; each `command_pose` advances exactly one control period
  (``1 / control_hz``), so a client stepping as fast as it can runs the sim faster than real
  time, deterministically.

The physics and the renderer share one lock; `render` runs on the caller's (the server's)
thread, which owns the GL context.
"""

from __future__ import annotations

import logging
import threading
import time

import mujoco
import numpy as np

from robots.backends.base import BackendError, RobotBackend, RobotState
from robots.config import ComplianceProfile, SimBackendConfig
from robots.kinematics import panda_tcp_position
from sim import panda
from sim.controller import ControllerConfig, EndEffectorController
from sim.rendering import CameraRenderer

logger = logging.getLogger(__name__)

SLICE_S = 0.01
"""Wall time the realtime thread advances per slice (5 physics steps at 500 Hz)."""
CAMERAS = ("front", "wrist")
_WIDE_BOX_M = ((-2.0, -2.0, -0.5), (2.0, 2.0, 2.0))
"""The controller's own clip box, wide open: the server's safety layer owns the workspace."""


class SimBackend(RobotBackend):
    """A MuJoCo Panda; see the module docstring."""

    name = "sim"

    def __init__(self, cfg: SimBackendConfig | None = None) -> None:
        cfg = cfg or SimBackendConfig()
        if cfg.control_hz <= 0 or cfg.timestep_s <= 0:
            raise ValueError(
                f"sim control_hz={cfg.control_hz} and timestep_s={cfg.timestep_s} must be > 0"
            )
        self.cfg = cfg
        self.control_period_s = 1.0 / cfg.control_hz
        self.physics_steps = max(1, round(self.control_period_s / cfg.timestep_s))
        options = panda.SceneOptions(
            timestep_s=cfg.timestep_s,
            render_width=cfg.camera_width,
            render_height=cfg.camera_height,
        )
        self.model = mujoco.MjModel.from_xml_string(panda.scene_xml("", options, name="robot"))
        self.data = mujoco.MjData(self.model)
        controller_cfg = ControllerConfig(
            workspace_low=_WIDE_BOX_M[0], workspace_high=_WIDE_BOX_M[1]
        )
        self.controller = EndEffectorController(
            self.model,
            self.data,
            site=panda.TCP_SITE,
            arm_joints=panda.ARM_JOINTS,
            arm_actuators=panda.ARM_ACTUATORS,
            gripper_actuator=panda.GRIPPER_ACTUATOR,
            rest_qpos=panda.HOME_QPOS,
            config=controller_cfg,
        )
        self._arm_qpos = np.array([self.model.joint(j).qposadr[0] for j in panda.ARM_JOINTS])
        self._arm_dofs = np.array([self.model.joint(j).dofadr[0] for j in panda.ARM_JOINTS])
        self._fingers = np.array([self.model.joint(j).qposadr[0] for j in panda.FINGER_JOINTS])
        self.joint_lower_rad = panda.JOINT_LOWER_RAD.copy()
        self.joint_upper_rad = panda.JOINT_UPPER_RAD.copy()
        self.home_q_rad = panda.HOME_QPOS.copy()
        self._lock = threading.Lock()
        self._renderer: CameraRenderer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.controller.set_gripper(-1.0)
        self.reset_joints(self.home_q_rad)
        if cfg.realtime:
            self._thread = threading.Thread(target=self._run, name="sim-physics", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ time
    def _run(self) -> None:
        steps = max(1, round(SLICE_S / self.cfg.timestep_s))
        slice_s = steps * self.cfg.timestep_s
        next_t = time.monotonic()
        last_warning = 0.0
        while not self._stop.is_set():
            with self._lock:
                self.controller.step(steps)
            next_t += slice_s
            lag = time.monotonic() - next_t
            if lag > 0.1:  # cannot keep up: drop the backlog instead of racing to catch up
                now = time.monotonic()
                if now - last_warning > 1.0:
                    logger.warning("sim physics is %.2f s behind the wall clock", lag)
                    last_warning = now
                next_t = time.monotonic()
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def clock(self) -> float:
        """Sim time when time passes per command; the wall clock in realtime mode. The physics
        there advances in `SLICE_S` jumps, so sim time would read the same for every command
        within one slice: at 100 Hz or more most commands would see dt = 0, the speed limit
        would clamp them to the measured pose, and the arm would not move."""
        if self._thread is None:
            return float(self.data.time)
        return time.monotonic()

    def _advance(self) -> None:
        """In 'as fast as asked' mode, one control period per motion command."""
        if self._thread is None:
            self.controller.step(self.physics_steps)

    # ------------------------------------------------------------------ state and commands
    def read_state(self) -> RobotState:
        with self._lock:
            return RobotState(
                ee_pos=self.controller.ee_pos(),
                ee_quat=self.controller.ee_quat(),
                ee_vel=self.controller.ee_velocity(),
                gripper_width=float(self.data.qpos[self._fingers].sum()),
                q=self.data.qpos[self._arm_qpos].copy(),
                dq=self.data.qvel[self._arm_dofs].copy(),
            )

    def command_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        with self._lock:
            self.controller.set_target_pose(pos, quat)
            self._advance()

    def command_gripper(self, command: float) -> None:
        with self._lock:
            self.controller.set_gripper(command)
            self.data.ctrl[self.controller.gripper_idx] = self.controller.gripper_ctrl

    def hold(self) -> None:
        with self._lock:
            self.controller.reset()

    def stop(self) -> None:
        self.hold()

    def estop(self) -> None:
        with self._lock:
            self.controller.reset()
            self.data.qvel[self._arm_dofs] = 0.0  # a simulated brake: the arm halts at once

    def reset_joints(self, q: np.ndarray) -> None:
        with self._lock:
            self.data.qpos[self._arm_qpos] = q
            self.data.qvel[:] = 0.0
            self.data.qpos[self._fingers] = self.controller.gripper_ctrl
            mujoco.mj_forward(self.model, self.data)
            self.controller.reset()

    def set_compliance(self, profile: ComplianceProfile) -> None:
        with self._lock:
            self.controller.set_gains(
                profile.pos_stiffness, profile.rot_stiffness, profile.damping_ratio
            )

    def tcp_position(self, q: np.ndarray) -> np.ndarray:
        return panda_tcp_position(q)  # the sim's Panda is Franka's kinematics exactly

    # ------------------------------------------------------------------ cameras
    def camera_names(self) -> tuple[str, ...]:
        return CAMERAS

    def render(self, camera: str) -> np.ndarray:
        if camera not in CAMERAS:
            raise BackendError(f"no camera {camera!r} in the sim; it has {', '.join(CAMERAS)}")
        if self._renderer is None:
            self._renderer = CameraRenderer(
                self.model, self.cfg.camera_height, self.cfg.camera_width
            )
        with self._lock:
            return self._renderer.render(self.data, camera)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
