"""End-effector control of a torque-driven arm at the physics rate, from delta pose actions.

An action is a *displacement of the end-effector target from the current end-effector pose*:
``target = current + action[:3] * action_scale_m`` (clipped to a workspace box), plus an
optional rotation vector ``action[3:6] * action_scale_rad`` and a gripper command. This is
the SERL convention for the real Franka (actions relative to the measured pose, so a blocked
motion never winds up a large force), and it is what the robot server's simulated backend
reuses, so an action means the same in a task, on the server and on the robot.

Between two actions the target is held and a torque law runs at every physics step:

* ``mode="osc"`` - operational-space control (Khatib 1987, "A unified approach for motion and
  force control of robot manipulators", IEEE J. Robotics and Automation 3(1)):
  ``tau = J^T Lambda (Kp e - Kd v) + N^T tau_0 + c(q, qd)`` with ``Lambda = (J M^-1 J^T)^-1``
  and the dynamically consistent null-space projector ``N = I - Jbar J``,
  ``Jbar = M^-1 J^T Lambda``. The task-space response is that of a unit mass, so the same
  stiffness gives the same settling time anywhere in the workspace.
* ``mode="impedance"`` - Cartesian impedance (Hogan 1985, "Impedance control: an approach to
  manipulation", ASME J. Dyn. Sys. Meas. Control 107), as in franka_ros'
  ``cartesian_impedance_example_controller`` that SERL runs on the robot:
  ``tau = J^T (K e - D v) + (I - J^T pinv(J^T)) tau_0 + c(q, qd)``, stiffness in N/m.

``c(q, qd)`` (MuJoCo's ``qfrc_bias``: gravity, Coriolis and centrifugal torques) is added as
the Franka's own controller does, and the null-space torque ``tau_0`` pulls the joints towards
a rest posture. Torques are clipped to the actuators' control range.

The class depends on MuJoCo and NumPy only (no gymnasium), and drives `physics_steps` with
``mj_step1`` / ``mj_step2`` so the torque is computed from the state being integrated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import mujoco
import numpy as np


@dataclass(frozen=True)
class ControllerConfig:
    mode: Literal["osc", "impedance"] = "osc"
    """Torque law: operational-space (unit-mass task dynamics) or Cartesian impedance."""
    pos_stiffness: float = 400.0
    """Translational stiffness: 1/s^2 for osc (unit mass), N/m for impedance."""
    rot_stiffness: float = 400.0
    """Rotational stiffness: 1/s^2 for osc, N m/rad for impedance."""
    damping_ratio: float = 1.0
    """Kd = 2 * ratio * sqrt(Kp * mass): 1 is critical damping (mass 1 for osc)."""
    impedance_mass_kg: float = 3.0
    """Effective end-effector mass assumed for the impedance mode's damping."""
    nullspace_stiffness: float = 10.0
    """Joint stiffness (N m/rad) of the rest-posture pull inside the null space."""
    action_scale_m: float = 0.05
    """Metres of target displacement per unit action and control step (10 Hz -> 0.5 m/s)."""
    action_scale_rad: float = 0.2
    """Radians of target rotation per unit action and control step."""
    workspace_low: tuple[float, float, float] = (0.25, -0.35, 0.0)
    """Lower corner of the box the position target is clipped to (metres, world frame)."""
    workspace_high: tuple[float, float, float] = (0.75, 0.35, 0.55)
    """Upper corner of that box."""
    gripper_open_m: float = 0.04
    """Finger position (per finger) for gripper command -1."""
    gripper_closed_m: float = 0.0
    """Finger position for gripper command +1."""


def _consecutive(indices: Sequence[int], what: str) -> slice:
    """Consecutive indices as a slice, so the arrays they select are views, not copies."""
    if list(indices) != list(range(indices[0], indices[0] + len(indices))):
        raise ValueError(
            f"{what} indices {list(indices)} are not consecutive; write the arm as one serial "
            "chain in the model, with its actuators in joint order"
        )
    return slice(indices[0], indices[0] + len(indices))


def _quat_from_mat(mat: np.ndarray) -> np.ndarray:
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(mat).reshape(9))
    return quat


class EndEffectorController:
    """Tracks an end-effector pose target with joint torques; see the module docstring.

    Args:
        model, data: the MuJoCo model and data to drive.
        site: the site whose pose is controlled (the tool centre point).
        arm_joints: names of the arm's hinge joints, in chain order.
        arm_actuators: names of the torque actuators of those joints (gear 1).
        gripper_actuator: name of a position actuator for the fingers, or None.
        rest_qpos: the posture the null-space term pulls towards.
        config: gains, action scales and workspace.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        *,
        site: str,
        arm_joints: Sequence[str],
        arm_actuators: Sequence[str],
        gripper_actuator: str | None,
        rest_qpos: np.ndarray,
        config: ControllerConfig = ControllerConfig(),
    ) -> None:
        self.model, self.data, self.cfg = model, data, config
        self.site_id = model.site(site).id
        joints = [model.joint(j) for j in arm_joints]
        self.qpos = _consecutive([int(j.qposadr[0]) for j in joints], "arm joint qpos")
        self.dofs = _consecutive([int(j.dofadr[0]) for j in joints], "arm joint dof")
        self.acts = _consecutive([model.actuator(a).id for a in arm_actuators], "arm actuator")
        self.gripper_idx = None if gripper_actuator is None else model.actuator(gripper_actuator).id
        self.rest_qpos = np.asarray(rest_qpos, dtype=float).copy()
        self.workspace_low = np.asarray(config.workspace_low, dtype=float)
        self.workspace_high = np.asarray(config.workspace_high, dtype=float)
        n = len(joints)
        # Views into MuJoCo's arrays (they never move) and scratch buffers, made once.
        self._qpos, self._qvel = data.qpos[self.qpos], data.qvel[self.dofs]
        self._bias, self._ctrl = data.qfrc_bias[self.dofs], data.ctrl[self.acts]
        self._site_pos, self._site_mat = data.site_xpos[self.site_id], data.site_xmat[self.site_id]
        self._jac = np.zeros((6, model.nv))
        self._jacp, self._jacr = self._jac[:3], self._jac[3:]
        self._jac_arm = self._jac[:, self.dofs]
        self._jac_arm_t = self._jac_arm.T
        self._minv_jt = np.zeros((6, model.nv))
        self._j_minv = self._minv_jt[:, self.dofs]
        self._eye = np.eye(n)
        self._quat = np.empty(4)
        self._rot_local = np.empty(3)
        self._state = np.zeros(12)
        self._tau0 = np.zeros(n)
        self._torque = np.zeros(n)
        self._x = np.empty(6)
        self.set_gains()
        self.null_kp = config.nullspace_stiffness
        self.null_kd = 2.0 * np.sqrt(config.nullspace_stiffness)
        self.target_pos = np.zeros(3)
        self.target_quat = np.array([1.0, 0.0, 0.0, 0.0])
        self.gripper_ctrl = config.gripper_open_m

    # ------------------------------------------------------------------------- pose
    def ee_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.site_id].copy()

    def ee_quat(self) -> np.ndarray:
        """End-effector orientation as a unit quaternion (w, x, y, z) with w >= 0."""
        quat = _quat_from_mat(self.data.site_xmat[self.site_id])
        return quat if quat[0] >= 0 else -quat

    def ee_velocity(self) -> np.ndarray:
        """Linear (m/s) and angular (rad/s) velocity of the end-effector in the world frame."""
        mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
        return self._jac @ self.data.qvel

    # ------------------------------------------------------------------------- commands
    def reset(self) -> None:
        """Hold the current pose with the gripper where it is commanded; call after a reset."""
        self.target_pos = np.clip(self.ee_pos(), self.workspace_low, self.workspace_high)
        self.target_quat = self.ee_quat()

    def set_target_pose(self, pos: np.ndarray, quat: np.ndarray | None = None) -> None:
        """Absolute target (world frame); the position is clipped to the workspace box."""
        self.target_pos = np.clip(
            np.asarray(pos, dtype=float), self.workspace_low, self.workspace_high
        )
        if quat is not None:
            quat = np.asarray(quat, dtype=float)
            self.target_quat = quat / np.linalg.norm(quat)

    def set_gripper(self, command: float) -> None:
        """Gripper command in [-1, 1]: -1 fully open, +1 fully closed, linear in between."""
        frac = (float(np.clip(command, -1.0, 1.0)) + 1.0) / 2.0
        self.gripper_ctrl = (1 - frac) * self.cfg.gripper_open_m + frac * self.cfg.gripper_closed_m

    def apply_action(
        self,
        delta_pos: np.ndarray,
        delta_rot: np.ndarray | None = None,
        gripper: float | None = None,
    ) -> None:
        """Set the target from a normalised delta action (each entry in [-1, 1]).

        `delta_pos` moves the target from the current end-effector position by
        ``delta_pos * action_scale_m``; `delta_rot` (a rotation vector, world frame) rotates the
        current orientation by ``delta_rot * action_scale_rad``; without it the orientation
        target is kept. `gripper` is passed to `set_gripper`.
        """
        delta_pos = np.clip(np.asarray(delta_pos, dtype=float), -1.0, 1.0)
        self.target_pos = np.clip(
            self.ee_pos() + delta_pos * self.cfg.action_scale_m,
            self.workspace_low,
            self.workspace_high,
        )
        if delta_rot is not None:
            rotvec = np.clip(np.asarray(delta_rot, dtype=float), -1.0, 1.0)
            rotvec = rotvec * self.cfg.action_scale_rad
            dq = np.empty(4)
            angle = float(np.linalg.norm(rotvec))
            if angle > 1e-12:
                mujoco.mju_axisAngle2Quat(dq, rotvec / angle, angle)
                target = np.empty(4)
                mujoco.mju_mulQuat(target, dq, self.ee_quat())
                self.target_quat = target / np.linalg.norm(target)
            else:
                self.target_quat = self.ee_quat()
        if gripper is not None:
            self.set_gripper(gripper)

    # ------------------------------------------------------------------------- torque law
    def set_gains(
        self,
        pos_stiffness: float | None = None,
        rot_stiffness: float | None = None,
        damping_ratio: float | None = None,
    ) -> None:
        """Change the stiffness and damping (a compliance profile); None keeps a value."""
        cfg = self.cfg
        pos = cfg.pos_stiffness if pos_stiffness is None else pos_stiffness
        rot = cfg.rot_stiffness if rot_stiffness is None else rot_stiffness
        ratio = cfg.damping_ratio if damping_ratio is None else damping_ratio
        self.cfg = replace(cfg, pos_stiffness=pos, rot_stiffness=rot, damping_ratio=ratio)
        self.kp = np.array([pos] * 3 + [rot] * 3, dtype=float)
        mass = 1.0 if cfg.mode == "osc" else cfg.impedance_mass_kg
        self.kd = 2.0 * ratio * np.sqrt(self.kp * mass)
        # accel = [diag(Kp), -diag(Kd)] @ [pose error; twist]: one product per physics step.
        self._gains = np.hstack([np.diag(self.kp), -np.diag(self.kd)])

    def compute_torques(self) -> np.ndarray:
        """Arm joint torques for the current state, written into `data.ctrl` and returned.

        Kinematics, mass matrix and bias forces must be current (after ``mj_step1`` or
        ``mj_forward``). This runs at the physics rate, where each numpy call costs about a
        microsecond, so it works in preallocated views of the MuJoCo arrays and evaluates the
        operational-space law as ``tau = J^T x + tau_0 + c`` with
        ``(J M^-1 J^T) x = a - J M^-1 tau_0``, which equals ``J^T Lambda a + N^T tau_0 + c``
        without forming Lambda or N.
        """
        m, d = self.model, self.data
        jac, qvel, state = self._jac_arm, self._qvel, self._state
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.site_id)
        np.subtract(self.target_pos, self._site_pos, out=state[:3])
        mujoco.mju_mat2Quat(self._quat, self._site_mat)
        # mju_subQuat gives the rotation vector of cur^-1 target in the current (site) frame;
        # rotate it into the world frame, the frame of the rotational Jacobian.
        mujoco.mju_subQuat(self._rot_local, self.target_quat, self._quat)
        mujoco.mju_mulMatVec3(state[3:6], self._site_mat, self._rot_local)
        np.matmul(jac, qvel, out=state[6:])
        accel = self._gains @ state
        tau0 = self._tau0
        np.subtract(self.rest_qpos, self._qpos, out=tau0)
        tau0 *= self.null_kp
        tau0 -= self.null_kd * qvel
        torque = self._torque
        if self.cfg.mode == "osc":
            mujoco.mj_solveM(m, d, self._minv_jt, self._jac)  # rows: (M^-1 J^T)^T = J M^-1
            j_minv = self._j_minv
            lambda_inv = jac @ j_minv.T
            rhs = accel - j_minv @ tau0
            mujoco.mju_cholFactor(lambda_inv, 1e-8)
            mujoco.mju_cholSolve(self._x, lambda_inv, rhs)
            np.matmul(self._jac_arm_t, self._x, out=torque)
            torque += tau0
        else:
            null_proj = self._eye - jac.T @ np.linalg.pinv(jac.T)
            np.matmul(self._jac_arm_t, accel, out=torque)
            torque += null_proj @ tau0
        torque += self._bias
        self._ctrl[:] = torque
        return torque

    def step(self, physics_steps: int) -> None:
        """Advance the physics by `physics_steps`, recomputing torques at every step.

        The actuators' control range clamps the torques (MuJoCo clamps `ctrl` of limited
        actuators), so the robot's torque limits apply without a clip here.
        """
        m, d = self.model, self.data
        if self.gripper_idx is not None:
            d.ctrl[self.gripper_idx] = self.gripper_ctrl
        for _ in range(physics_steps):
            mujoco.mj_step1(m, d)
            self.compute_torques()
            mujoco.mj_step2(m, d)
        # mj_step2 leaves the kinematics of the state before the last integration; bring poses,
        # Jacobians and camera views up to date for whoever reads them next (observations).
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
