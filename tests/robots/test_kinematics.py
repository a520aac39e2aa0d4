"""Panda forward kinematics (Franka's DH parameters) against the MuJoCo Panda of `sim/`."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from robots.kinematics import panda_tcp_position
from sim import panda


def test_dh_kinematics_match_mujoco_over_the_joint_range():
    model = mujoco.MjModel.from_xml_string(panda.scene_xml("", panda.SceneOptions(), name="r"))
    data = mujoco.MjData(model)
    arm = np.array([model.joint(j).qposadr[0] for j in panda.ARM_JOINTS])
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = rng.uniform(panda.JOINT_LOWER_RAD, panda.JOINT_UPPER_RAD)
        data.qpos[arm] = q
        mujoco.mj_kinematics(model, data)
        np.testing.assert_allclose(panda_tcp_position(q), data.site(panda.TCP_SITE).xpos, atol=1e-9)


def test_the_zero_pose_is_the_documented_stretched_arm():
    # All joints 0: the arm points up, the flange and hand point down beside it:
    # x = 0.0825 - 0.0825 + 0.088, z = 0.333 + 0.316 + 0.384 - 0.107 - 0.1034.
    np.testing.assert_allclose(panda_tcp_position(np.zeros(7)), [0.088, 0.0, 0.8226], atol=1e-12)


def test_a_wrong_joint_count_is_refused():
    with pytest.raises(ValueError, match="7 joints"):
        panda_tcp_position(np.zeros(6))
