"""The end-effector controller on the bare Panda model (no gymnasium env around it)."""

from __future__ import annotations

import subprocess
import sys

import mujoco
import numpy as np
import pytest

from sim import panda
from sim.controller import ControllerConfig, EndEffectorController


def _arm(mode: str = "osc", **cfg: object) -> EndEffectorController:
    model = mujoco.MjModel.from_xml_string(panda.scene_xml())
    data = mujoco.MjData(model)
    data.qpos[:7] = panda.HOME_QPOS
    mujoco.mj_forward(model, data)
    controller = EndEffectorController(
        model,
        data,
        site=panda.TCP_SITE,
        arm_joints=panda.ARM_JOINTS,
        arm_actuators=panda.ARM_ACTUATORS,
        gripper_actuator=panda.GRIPPER_ACTUATOR,
        rest_qpos=panda.HOME_QPOS,
        config=ControllerConfig(mode=mode, **cfg),  # type: ignore[arg-type]
    )
    controller.reset()
    return controller


def test_home_pose_matches_franka_kinematics() -> None:
    # Franka's "ready" pose puts the TCP at about (0.307, 0, 0.487) pointing down.
    ctl = _arm()
    ctl.data.qpos[:7] = [0, -np.pi / 4, 0, -3 * np.pi / 4, 0, np.pi / 2, np.pi / 4]
    mujoco.mj_forward(ctl.model, ctl.data)
    np.testing.assert_allclose(ctl.ee_pos(), [0.3069, 0.0, 0.4869], atol=1e-3)
    z_axis = ctl.data.site_xmat[ctl.site_id].reshape(3, 3)[:, 2]
    np.testing.assert_allclose(z_axis, [0, 0, -1], atol=1e-6)


def test_holds_its_pose_against_gravity() -> None:
    ctl = _arm()
    start = ctl.ee_pos()
    ctl.step(500)  # 1 s
    assert np.linalg.norm(ctl.ee_pos() - start) < 1e-4


@pytest.mark.parametrize(("mode", "tolerance_m"), [("osc", 1e-3), ("impedance", 5e-3)])
def test_reaches_a_target_20_cm_away_within_1_s(mode: str, tolerance_m: float) -> None:
    ctl = _arm(mode, pos_stiffness=400.0 if mode == "osc" else 1500.0,
               rot_stiffness=400.0 if mode == "osc" else 60.0)  # fmt: skip
    quat = ctl.ee_quat()
    goal = ctl.ee_pos() + np.array([0.08, 0.12, -0.15])
    ctl.set_target_pose(goal)
    ctl.step(500)
    assert np.linalg.norm(ctl.ee_pos() - goal) < tolerance_m
    assert abs(abs(float(np.dot(ctl.ee_quat(), quat))) - 1.0) < 1e-3  # orientation held


def test_delta_action_moves_by_the_action_scale() -> None:
    ctl = _arm(action_scale_m=0.05)
    start = ctl.ee_pos()
    ctl.apply_action(np.array([0.0, 0.0, -1.0]))
    np.testing.assert_allclose(ctl.target_pos, start + [0, 0, -0.05], atol=1e-9)
    ctl.step(250)
    assert abs(ctl.ee_pos()[2] - (start[2] - 0.05)) < 2e-3


def test_target_is_clipped_to_the_workspace_box() -> None:
    ctl = _arm(workspace_low=(0.3, -0.2, 0.3), workspace_high=(0.7, 0.2, 0.5))
    for _ in range(20):
        ctl.apply_action(np.array([0.0, 0.0, -1.0]))
        ctl.step(50)
    assert ctl.ee_pos()[2] > 0.3 - 2e-3


def test_rotation_action_turns_the_hand_about_world_z() -> None:
    ctl = _arm(action_scale_rad=0.2)
    x_before = ctl.data.site_xmat[ctl.site_id].reshape(3, 3)[:, 0].copy()
    ctl.apply_action(np.zeros(3), delta_rot=np.array([0.0, 0.0, 1.0]))
    ctl.step(500)
    x_after = ctl.data.site_xmat[ctl.site_id].reshape(3, 3)[:, 0]
    angle = np.arctan2(np.cross(x_before, x_after)[2], np.dot(x_before, x_after))
    assert abs(angle - 0.2) < 5e-3


def test_gripper_command_opens_and_closes_the_fingers() -> None:
    ctl = _arm()
    fingers = [ctl.model.joint(j).qposadr[0] for j in panda.FINGER_JOINTS]
    ctl.set_gripper(-1.0)
    ctl.step(200)
    np.testing.assert_allclose(ctl.data.qpos[fingers], [0.04, 0.04], atol=1e-3)
    ctl.set_gripper(1.0)
    ctl.step(200)
    np.testing.assert_allclose(ctl.data.qpos[fingers], [0.0, 0.0], atol=1e-3)


def test_torques_stay_within_the_franka_limits() -> None:
    ctl = _arm(pos_stiffness=4000.0)
    ctl.set_target_pose(ctl.ee_pos() + np.array([0.2, 0.2, -0.2]))
    ctl.step(5)
    torque = ctl.data.actuator_force[:7]
    assert np.all(np.abs(torque) <= panda.TORQUE_LIMIT_NM + 1e-9)


def _textbook_torques(ctl: EndEffectorController) -> np.ndarray:
    """The module docstring's laws written out with dense matrices (full M inverse, Lambda,
    N, pinv) and the rotation error taken in the world frame directly."""
    m, d, cfg = ctl.model, ctl.data, ctl.cfg
    jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
    mujoco.mj_jacSite(m, d, jacp, jacr, ctl.site_id)
    jac = np.vstack([jacp, jacr])
    cur, cur_inv, diff = np.empty(4), np.empty(4), np.empty(4)
    mujoco.mju_mat2Quat(cur, d.site_xmat[ctl.site_id])
    mujoco.mju_negQuat(cur_inv, cur)
    mujoco.mju_mulQuat(diff, ctl.target_quat, cur_inv)
    rot_err = np.empty(3)
    mujoco.mju_quat2Vel(rot_err, diff, 1.0)
    err = np.concatenate([ctl.target_pos - d.site_xpos[ctl.site_id], rot_err])
    accel = ctl.kp * err - ctl.kd * (jac @ d.qvel)
    tau0 = np.zeros(m.nv)
    tau0[:7] = ctl.null_kp * (ctl.rest_qpos - d.qpos[:7]) - ctl.null_kd * d.qvel[:7]
    if cfg.mode == "osc":
        mass = np.zeros((m.nv, m.nv))
        mujoco.mj_fullM(m, mass, d.qM)
        minv = np.linalg.inv(mass)
        lam = np.linalg.inv(jac @ minv @ jac.T)
        null = np.eye(m.nv) - minv @ jac.T @ lam @ jac
        tau = jac.T @ lam @ accel + null.T @ tau0
    else:
        tau = jac.T @ accel + (np.eye(m.nv) - jac.T @ np.linalg.pinv(jac.T)) @ tau0
    return (tau + d.qfrc_bias)[:7]


@pytest.mark.parametrize("mode", ["osc", "impedance"])
def test_torques_equal_the_textbook_law(mode: str) -> None:
    # compute_torques evaluates the law with few numpy calls; it must equal the plain formula.
    ctl = _arm(mode)
    m, d = ctl.model, ctl.data
    rng = np.random.default_rng(0)
    for i in range(10):
        if i >= 5:  # null-space gains and rest posture changed in place take effect too
            ctl.null_kp, ctl.null_kd = 10.0 + 5 * i, 2.0 + i
            ctl.rest_qpos[i - 5] += 0.1
        d.qpos[:7] = panda.HOME_QPOS + rng.uniform(-0.4, 0.4, 7)
        d.qvel[:7] = rng.normal(0.0, 0.5, 7)
        d.qpos[7:9] = rng.uniform(0.0, 0.04, 2)
        mujoco.mj_forward(m, d)
        axis = rng.normal(size=3)
        turn = np.empty(4)
        mujoco.mju_axisAngle2Quat(turn, axis / np.linalg.norm(axis), rng.uniform(-0.5, 0.5))
        target_quat = np.empty(4)
        mujoco.mju_mulQuat(target_quat, turn, ctl.ee_quat())
        ctl.set_target_pose(ctl.ee_pos() + rng.uniform(-0.05, 0.05, 3), target_quat)
        expected = _textbook_torques(ctl)
        torque = ctl.compute_torques()
        np.testing.assert_allclose(torque, expected, rtol=1e-8, atol=1e-8 * np.abs(expected).max())
        np.testing.assert_array_equal(d.ctrl[:7], torque)


def test_controller_module_does_not_import_gymnasium() -> None:
    code = "import sys, sim.controller; print('gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
