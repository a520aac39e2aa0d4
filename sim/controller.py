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

from collections.abc import Callable, Sequence
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
        _check_chain(model, self.site_id, self.dofs)
        nv, arm = model.nv, self.dofs
        # Views into MuJoCo's arrays (they never move) and scratch buffers, made once. The
        # torque law runs at the physics rate, where each numpy or MuJoCo call costs up to a
        # microsecond, so the buffers are laid out for few calls (`_law` lists them).
        self._qpos, self._qvel = data.qpos[self.qpos], data.qvel[arm]
        self._bias, self._ctrl = data.qfrc_bias[arm], data.ctrl[self.acts]
        self._site_pos, self._site_mat = data.site_xpos[self.site_id], data.site_xmat[self.site_id]
        self._site_mat33 = self._site_mat.reshape(3, 3)
        # The site's orientation: its body's quaternion when the site is not rotated in its
        # body (the TCP), else converted from the site's rotation matrix at every step.
        self._site_rotated = not np.array_equal(model.site_quat[self.site_id], [1, 0, 0, 0])
        body = int(model.site_bodyid[self.site_id])
        self._quat = np.empty(4) if self._site_rotated else data.xquat[body]
        # `_rows`: 0-5 the site Jacobian J (zero outside the arm's dofs), 6 the null-space
        # torque tau_0 (on the arm's dofs, zero elsewhere), 7 the bias forces c.
        self._rows = np.zeros((8, nv))
        self._jac = self._rows[:6]
        self._jacp, self._jacr = self._jac[:3], self._jac[3:]
        self._jac_arm = self._jac[:, arm]
        self._tau0 = self._rows[6, arm]
        # `_minv_rows`: 0-6 the rows J and tau_0 times M^-1 (one `mj_solveM`), 7 the arm's
        # joint velocities on the arm's dofs. `_u` = [qvel; qpos; 1] of the arm, the input of
        # the tau_0 product, starts at that qvel and runs on through the rest of row 7 into 8
        # spare entries after it; row 7 outside the arm's dofs only meets zero columns of J.
        self._work = np.zeros(8 * nv + 8)
        self._minv_rows = self._work[: 8 * nv].reshape(8, nv)
        start = 7 * nv + arm.start
        self._u = self._work[start : start + 2 * n + 1]
        self._u_qvel, self._u_qpos = self._u[:n], self._u[n : 2 * n]
        self._u[2 * n] = 1.0
        # `_minv_rows @ J^T` (8 x 6): J M^-1 J^T (= Lambda^-1), then J M^-1 tau_0 (the row
        # tau_0^T M^-1 J^T, M being symmetric), then the twist J qvel; then the pose error
        # (position, rotation vector), so that the right-hand side is one product.
        self._prod_err = np.zeros(54)
        self._prod = self._prod_err[:48].reshape(8, 6)
        self._lambda_inv = self._prod_err[:36].reshape(6, 6)
        self._twist = self._prod_err[42:48]
        self._err_pos, self._err_rot = self._prod_err[48:51], self._prod_err[51:54]
        self._osc_in, self._imp_in = self._prod_err[36:54], self._prod_err[42:54]
        # [x; 1; 1], x the task-space force: tau = [J; tau_0; c]^T [x; 1; 1] on every dof.
        self._x11 = np.ones(8)
        self._x = self._x11[:6]
        self._torque_all = np.zeros(nv)
        self._torque_arm = self._torque_all[arm]
        self._rot_local = np.empty(3)
        self._eye = np.eye(n)
        self._null_key: tuple[float, float, bytes] | None = None
        self._null_mat = np.zeros((n, 2 * n + 1))
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
        # osc: rhs = Kp e - Kd v - J M^-1 tau_0 = [-I, -diag(Kd), diag(Kp)] @ [J M^-1 tau_0; v; e]
        # impedance: accel = Kp e - Kd v = [-diag(Kd), diag(Kp)] @ [v; e]; one product a step.
        self._osc_gains = np.hstack([-np.eye(6), -np.diag(self.kd), np.diag(self.kp)])
        self._imp_gains = np.ascontiguousarray(self._osc_gains[:, 6:])

    def compute_torques(self) -> np.ndarray:
        """Arm joint torques for the current state, written into `data.ctrl` and returned.

        Kinematics, mass matrix and bias forces must be current (after ``mj_step1`` or
        ``mj_forward``). These are the torques before the actuators' clamp.
        """
        self._law()()
        return self._ctrl.copy()

    def _null_gains(self) -> np.ndarray:
        """``tau_0 = Kn (q_rest - q) - Dn qd`` as one matrix on ``[qd; q; 1]`` (`_u`), remade
        when `null_kp`, `null_kd` or `rest_qpos` has changed."""
        kp, kd, rest = self.null_kp, self.null_kd, np.asarray(self.rest_qpos, dtype=float)
        key = (kp, kd, rest.tobytes())
        if key != self._null_key:
            eye = self._eye
            self._null_mat = np.hstack([-kd * eye, -kp * eye, kp * rest.reshape(-1, 1)])
            self._null_key = key
        return self._null_mat

    def _law(self) -> Callable[[], None]:
        """The torque law with the current targets and gains bound to it: each call writes the
        torques for the current state into `data.ctrl`. `step` makes one per action.

        osc: ``tau = J^T x + tau_0 + c`` with ``(J M^-1 J^T) x = Kp e - Kd v - J M^-1 tau_0``,
        which equals ``J^T Lambda (Kp e - Kd v) + N^T tau_0 + c`` without forming Lambda or N.
        Per physics step that is `mj_jacSite`; two copies and a product for tau_0; a copy of
        c; the pose error (a subtraction, `mju_subQuat`, a rotation); one `mj_solveM` for the
        rows J and tau_0 together; one product of those rows (and qvel) with J^T for
        Lambda^-1, J M^-1 tau_0 and the twist; one product for the right-hand side; a
        Cholesky factorisation and solve; one product for the torques on all dofs, and a copy
        of the arm's into `data.ctrl`. Each call costs 0.2-1 us, as much as its arithmetic
        at these sizes, so bound methods (``a.dot(b, out)``) and ``[...] =`` copies, which
        skip numpy's function dispatch, and closure variables are used throughout.
        """
        m, d, site_id, osc = self.model, self.data, self.site_id, self.cfg.mode == "osc"
        jac_site, jacp, jacr = mujoco.mj_jacSite, self._jacp, self._jacr
        u_qvel, u_qpos, qvel, qpos = self._u_qvel, self._u_qpos, self._qvel, self._qpos
        null_dot, u, tau0 = self._null_gains().dot, self._u, self._tau0
        bias_row, bias_all = self._rows[7], d.qfrc_bias
        subtract, site_pos, err_pos = np.subtract, self._site_pos, self._err_pos
        target_pos = np.array(self.target_pos, dtype=float)
        target_quat = np.array(self.target_quat, dtype=float)
        mat2quat, sub_quat = mujoco.mju_mat2Quat, mujoco.mju_subQuat
        quat, site_mat, rot_local, site_rotated = (
            self._quat, self._site_mat, self._rot_local, self._site_rotated
        )  # fmt: skip
        rotate, err_rot = self._site_mat33.dot, self._err_rot
        # osc
        solve_m, rows7, minv7 = mujoco.mj_solveM, self._rows[:7], self._minv_rows[:7]
        minv_dot, jac_t, prod = self._minv_rows.dot, self._jac.T, self._prod
        rhs_dot, osc_in, x = self._osc_gains.dot, self._osc_in, self._x
        chol_factor, chol_solve = mujoco.mju_cholFactor, mujoco.mju_cholSolve
        lambda_inv = self._lambda_inv
        torque_dot, rows, torque_all = self._x11.dot, self._rows, self._torque_all
        ctrl, torque_arm = self._ctrl, self._torque_arm
        # impedance
        jac, twist, eye, pinv = self._jac_arm, self._twist, self._eye, np.linalg.pinv
        imp_gains, imp_in, bias = self._imp_gains, self._imp_in, self._bias

        def law() -> None:
            jac_site(m, d, jacp, jacr, site_id)
            u_qvel[...] = qvel
            u_qpos[...] = qpos
            null_dot(u, tau0)
            subtract(target_pos, site_pos, err_pos)
            if site_rotated:
                mat2quat(quat, site_mat)
            # mju_subQuat gives the rotation vector of cur^-1 target in the current (site)
            # frame; rotate it into the world frame, the frame of the rotational Jacobian.
            sub_quat(rot_local, target_quat, quat)
            rotate(rot_local, err_rot)
            if osc:
                bias_row[...] = bias_all
                solve_m(m, d, minv7, rows7)  # rows J M^-1, tau_0^T M^-1
                minv_dot(jac_t, prod)  # Lambda^-1, J M^-1 tau_0, twist
                rhs_dot(osc_in, x)  # Kp e - Kd v - J M^-1 tau_0
                chol_factor(lambda_inv, 1e-8)
                chol_solve(x, lambda_inv, x)
                torque_dot(rows, torque_all)  # J^T x + tau_0 + c
                ctrl[...] = torque_arm
            else:  # impedance: J^T (K e - D v) + (I - J^T pinv(J^T)) tau_0 + c
                np.dot(jac, qvel, out=twist)
                null_proj = eye - jac.T @ pinv(jac.T)
                ctrl[...] = jac.T @ (imp_gains @ imp_in) + null_proj @ tau0 + bias

        return law

    def step(self, physics_steps: int) -> None:
        """Advance the physics by `physics_steps`, recomputing torques at every step.

        The actuators' control range clamps the torques (MuJoCo clamps `ctrl` of limited
        actuators), so the robot's torque limits apply without a clip here.
        """
        m, d = self.model, self.data
        if self.gripper_idx is not None:
            d.ctrl[self.gripper_idx] = self.gripper_ctrl
        law, step1, step2 = self._law(), mujoco.mj_step1, mujoco.mj_step2
        for _ in range(physics_steps):
            step1(m, d)
            law()
            step2(m, d)
        # mj_step2 leaves the kinematics of the state before the last integration; bring poses,
        # Jacobians and camera views up to date for whoever reads them next (observations).
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)


def _check_chain(model: mujoco.MjModel, site_id: int, dofs: slice) -> None:
    """The site must move with the arm's joints only, so that its Jacobian is zero outside
    the arm's dofs (the torque law multiplies whole rows of it)."""
    body, chain = int(model.site_bodyid[site_id]), set()
    while body > 0:
        adr, num = int(model.body_dofadr[body]), int(model.body_dofnum[body])
        chain.update(range(adr, adr + num))
        body = int(model.body_parentid[body])
    outside = sorted(chain - set(range(dofs.start, dofs.stop)))
    if outside:
        raise ValueError(
            f"dofs {outside} move the controlled site but are not arm joints; the arm must be "
            "the only chain of joints between the world and the site"
        )
