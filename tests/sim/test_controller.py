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


def test_controller_module_does_not_import_gymnasium() -> None:
    code = "import sys, sim.controller; print('gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
