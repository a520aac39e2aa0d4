"""Dynamics parameters: set, reset options, relative scales, uncertainty sets, randomisation."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from sim.dynamics import NOMINAL, UNCERTAINTY_SETS, DomainRandomization, UncertaintySet
from sim.tasks import PandaPickCubeEnv


def _slide_distance(env: PandaPickCubeEnv, push_n: float = 0.7) -> float:
    """How far the cube moves under a constant horizontal push for 0.5 s (arm at rest).

    The 100 g cube weighs 0.98 N: a 0.7 N push overcomes friction 0.5 but not 1.0."""
    cube = env.model.body("cube").id
    start = env.cube_pos()
    env.data.xfrc_applied[cube, 0] = push_n
    env.controller.step(250)
    env.data.xfrc_applied[cube] = 0.0
    return float(np.linalg.norm(env.cube_pos() - start))


def test_lower_friction_lets_a_pushed_cube_slide_further() -> None:
    env = sim.make("PandaPickCube-v0")
    env.reset(seed=0, options={"params": {"friction": 1.0}})
    nominal = _slide_distance(env)
    env.reset(seed=0, options={"params": {"friction": 0.5}})
    slippery = _slide_distance(env)
    assert nominal < 0.002 and slippery > 0.05


def test_heavier_cube_slides_less_under_the_same_push() -> None:
    env = sim.make("PandaPickCube-v0")
    env.reset(seed=0, options={"params": {"friction": 0.5, "object_mass": 1.0}})
    light = _slide_distance(env)
    env.reset(seed=0, options={"params": {"object_mass": 2.0}})
    heavy = _slide_distance(env)
    assert env.model.body("cube").mass[0] == pytest.approx(0.2)
    assert heavy < 0.002 and light > 0.05


def test_actuator_gain_changes_the_arm_trajectory() -> None:
    def final_tcp(gain: float) -> np.ndarray:
        env = sim.make("PandaReach-v0", params={"actuator_gain": gain})
        env.reset(seed=0)
        for _ in range(3):
            env.step(np.array([1.0, 0.0, -1.0]))
        return env.tcp_pos()

    assert np.linalg.norm(final_tcp(1.0) - final_tcp(0.6)) > 0.005


def test_gravity_parameter_changes_how_fast_a_dropped_cube_falls() -> None:
    env = sim.make("PandaPickCube-v0")

    def fall(gravity: float) -> float:
        env.reset(seed=0, options={"params": {"gravity": gravity}})
        adr = env.model.joint("cube").qposadr[0]
        env.data.qpos[adr + 2] = 0.3
        env.controller.step(50)  # 0.1 s of free fall
        return 0.3 - env.cube_pos()[2]

    assert fall(-9.81) == pytest.approx(0.5 * 9.81 * 0.1**2, rel=0.05)
    assert fall(-4.0) == pytest.approx(0.5 * 4.0 * 0.1**2, rel=0.05)


def test_reset_options_params_are_applied_and_reported() -> None:
    env = sim.make("PandaPickCube-v0")
    nominal = env.model.geom_friction[:, 0].copy()
    _, info = env.reset(seed=0, options={"params": {"friction": 0.5, "joint_damping": 2.0}})
    assert info["params"]["friction"] == 0.5 and env.get_params()["joint_damping"] == 2.0
    np.testing.assert_allclose(env.model.geom_friction[:, 0], 0.5 * nominal)
    assert env.model.dof_damping[0] == pytest.approx(2.0 * 1.0)


def test_scales_are_relative_to_the_nominal_model_not_compounded() -> None:
    env = sim.make("PandaPickCube-v0")
    nominal_mass = env.model.body_mass.copy()
    env.set_params({"link_mass": 1.5})
    env.set_params({"link_mass": 1.5})
    assert env.model.body("link2").mass[0] == pytest.approx(
        1.5 * nominal_mass[env.model.body("link2").id]
    )
    env.reset_params()
    np.testing.assert_array_equal(env.model.body_mass, nominal_mass)
    assert env.get_params() == NOMINAL


def test_unknown_or_negative_parameters_are_rejected() -> None:
    env = sim.make("PandaReach-v0")
    with pytest.raises(KeyError, match="friction"):
        env.set_params({"frction": 1.0})
    with pytest.raises(ValueError, match="object_mass=-1"):
        env.set_params({"object_mass": -1.0})


def test_observation_noise_perturbs_state_reproducibly() -> None:
    clean, noisy = sim.make("PandaReach-v0"), sim.make("PandaReach-v0", params={"obs_noise": 0.01})
    a, _ = clean.reset(seed=0)
    b, _ = noisy.reset(seed=0)
    b2, _ = noisy.reset(seed=0)
    assert 0.001 < np.abs(a - b).mean() < 0.05
    np.testing.assert_array_equal(b, b2)


def test_action_noise_changes_the_outcome_of_the_same_action() -> None:
    env = sim.make("PandaReach-v0")
    env.reset(seed=0)
    clean = env.step(np.zeros(3))[0]
    env.reset(seed=0, options={"params": {"action_noise": 0.5}})
    noisy = env.step(np.zeros(3))[0]
    assert np.linalg.norm(clean[:3] - noisy[:3]) > 0.005


def test_domain_randomization_draws_seeded_params_inside_the_box() -> None:
    env = DomainRandomization(sim.make("PandaPickCube-v0"), "friction-mass")
    box = UNCERTAINTY_SETS["friction-mass"]
    _, first = env.reset(seed=3)
    _, again = env.reset(seed=3)
    _, other = env.reset(seed=4)
    _, unseeded = env.reset()
    assert first["params"] == again["params"] != other["params"] != unseeded["params"]
    for info in (first, other, unseeded):
        assert box.contains(info["params"])
    assert env.unwrapped.get_params() == unseeded["params"]


def test_uncertainty_set_corners_center_and_clip() -> None:
    box = UncertaintySet({"friction": (0.5, 1.5), "object_mass": (1.0, 2.0)})
    assert len(box.corners()) == 4 and {"friction": 0.5, "object_mass": 2.0} in box.corners()
    assert box.center() == {"friction": 1.0, "object_mass": 1.5}
    assert box.clip({"friction": 3.0, "gravity": -9.0}) == {"friction": 1.5, "gravity": -9.0}
    with pytest.raises(ValueError, match="empty"):
        UncertaintySet({"friction": (2.0, 1.0)})
