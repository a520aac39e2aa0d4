"""The safety layer's pure functions and filter, without a server."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robots.config import ConfigError, SafetyConfig
from robots.safety import (
    SafetyFilter,
    allowed_step,
    clamp_to_box,
    limit_rotation,
    limit_translation,
    quat_from_rotvec,
    quat_mul,
    rotation_difference,
)

DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # the Panda's hand pointing down: roll = pi


def yaw_quat(yaw: float) -> np.ndarray:
    return quat_from_rotvec(np.array([0.0, 0.0, yaw]))


def test_clamp_to_box_moves_an_outside_point_onto_the_nearest_face() -> None:
    low, high = np.array([0.0, -1.0, 0.0]), np.array([1.0, 1.0, 0.5])
    clamped, hit = clamp_to_box(np.array([1.7, 0.2, -0.3]), low, high)
    np.testing.assert_allclose(clamped, [1.0, 0.2, 0.0])
    assert hit
    inside, hit = clamp_to_box(np.array([0.5, 0.0, 0.2]), low, high)
    np.testing.assert_allclose(inside, [0.5, 0.0, 0.2])
    assert not hit


def test_translation_step_is_shortened_along_its_own_direction() -> None:
    current = np.array([0.5, 0.0, 0.3])
    target, hit = limit_translation(current, current + [0.3, 0.4, 0.0], 0.05)
    np.testing.assert_allclose(target - current, [0.03, 0.04, 0.0])
    assert hit
    small, hit = limit_translation(current, current + [0.01, 0.0, 0.0], 0.05)
    np.testing.assert_allclose(small - current, [0.01, 0.0, 0.0])
    assert not hit


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_rotation_difference_across_pi_is_the_short_way(sign: float) -> None:
    # Yaw pi - 0.05 to -pi + 0.05: Euler angles differ by 6.18 rad, the rotation is 0.1 rad.
    q_from, q_to = yaw_quat(sign * (math.pi - 0.05)), yaw_quat(-sign * (math.pi - 0.05))
    np.testing.assert_allclose(rotation_difference(q_from, q_to), [0, 0, sign * 0.1], atol=1e-9)


def test_rotation_difference_ignores_the_quaternion_sign() -> None:
    q = quat_mul(yaw_quat(0.3), DOWN)
    np.testing.assert_allclose(rotation_difference(q, -q), np.zeros(3), atol=1e-9)
    np.testing.assert_allclose(
        rotation_difference(q, -quat_mul(yaw_quat(0.2), q)), [0, 0, 0.2], atol=1e-9
    )


def test_rotation_limit_keeps_the_axis_and_caps_the_angle() -> None:
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    target = quat_mul(quat_from_rotvec(axis * 0.9), DOWN)
    limited, hit = limit_rotation(DOWN, target, 0.1)
    assert hit
    np.testing.assert_allclose(rotation_difference(DOWN, limited), axis * 0.1, atol=1e-9)


def test_rotation_limit_across_roll_pi_does_not_clamp_a_small_step() -> None:
    # DOWN has roll = pi; 0.05 rad more about x crosses to roll = -pi + 0.05.
    target = quat_mul(quat_from_rotvec([0.05, 0.0, 0.0]), DOWN)
    limited, hit = limit_rotation(DOWN, target, 0.1)
    assert not hit
    np.testing.assert_allclose(rotation_difference(DOWN, limited), [0.05, 0, 0], atol=1e-9)


def test_velocity_limit_shrinks_the_step_when_commands_come_fast() -> None:
    assert allowed_step(0.02, 0.25, 0.1) == (0.02, "step")  # 10 Hz: the step limit rules
    step, which = allowed_step(0.02, 0.25, 0.01)  # 100 Hz: 0.25 m/s * 0.01 s
    assert which == "speed" and step == pytest.approx(0.0025)


def test_filter_rejects_nonfinite_targets_and_sends_nothing() -> None:
    safety = SafetyFilter(SafetyConfig(), nominal_period_s=0.1)
    pos = np.array([0.5, 0.0, 0.3])
    for bad_pos, bad_quat, grip in [
        ([np.nan, 0, 0.3], DOWN, None),
        (pos, [np.inf, 0, 0, 0], None),
        (pos, DOWN, float("nan")),
    ]:
        decision = safety.check(pos, DOWN, np.array(bad_pos), np.array(bad_quat), grip, 0.0)
        assert decision.rejected == "nonfinite" and decision.pos is None


def test_filter_names_every_limit_it_applied() -> None:
    safety = SafetyFilter(SafetyConfig(), nominal_period_s=0.1)
    pos = np.array([0.7, 0.0, 0.3])
    target_quat = quat_mul(quat_from_rotvec([0.0, 0.0, 1.0]), DOWN)
    decision = safety.check(pos, DOWN, np.array([1.5, 0.0, 0.3]), target_quat, 3.0, 10.0)
    assert decision.clamped == ["workspace", "step_m", "step_rad", "gripper"]
    np.testing.assert_allclose(decision.pos, [0.72, 0.0, 0.3])
    assert decision.gripper == 1.0
    # 10 ms later the speed limit, not the step limit, bounds the next step.
    decision = safety.check(pos, DOWN, pos + [0.02, 0, 0], DOWN, None, 10.01)
    assert decision.clamped == ["speed_mps"]
    np.testing.assert_allclose(decision.pos - pos, [0.0025, 0, 0], atol=1e-12)


def test_reset_pose_outside_the_joint_limits_is_refused_with_the_joint_named() -> None:
    safety = SafetyFilter(SafetyConfig(joint_margin_rad=0.05), nominal_period_s=0.1)
    lower, upper = -np.ones(3), np.ones(3)
    assert safety.check_joints(np.zeros(3), lower, upper) is None
    problem = safety.check_joints(np.array([0.0, 0.98, 0.0]), lower, upper)
    assert problem is not None and "joint 2" in problem
    assert "NaN" in (safety.check_joints(np.array([0.0, np.nan, 0.0]), lower, upper) or "")


def test_safety_config_refuses_an_inverted_box() -> None:
    with pytest.raises(ConfigError, match="low 0.8 is not below high 0.75"):
        SafetyConfig(workspace_low_m=(0.8, -0.3, 0.0))
