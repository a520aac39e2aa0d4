"""`serl bench hybrid`: dynamics parameters reach the real env, and a tiny run gives every key."""

import math

import numpy as np
import pytest

from serl.agents.famo2o import FamO2OConfig
from serl.agents.h2o import H2OConfig
from serl.bench import BENCHMARKS
from serl.bench.hybrid import make_dynamics_env, parse_params, run_seed

KEYS = ("h2o_real_return", "sim_only_real_return", "offline_only_real_return",
        "famo2o_return", "moorl_return", "rlpd_return")  # fmt: skip


def test_real_params_are_parsed_and_set_on_the_env():
    assert parse_params("m=1.5, l=1.2") == {"m": 1.5, "l": 1.2}
    with pytest.raises(ValueError, match="name=value"):
        parse_params("m1.5")
    env = make_dynamics_env("Pendulum-v1", {"m": 1.5})
    assert env.unwrapped.m == 1.5
    with pytest.raises(ValueError, match="no dynamics attribute 'mass'"):
        make_dynamics_env("Pendulum-v1", {"mass": 2.0})


@pytest.mark.timeout(60)
def test_a_tiny_run_reports_every_issue_key_as_a_finite_return():
    size = {"steps": 60, "warmup": 30, "dataset_steps": 200, "offline_updates": 5,
            "eval_episodes": 1}  # fmt: skip
    out = run_seed("Pendulum-v1", {"m": 1.5}, 0, size, "cpu")
    for key in KEYS:
        assert math.isfinite(out[key]) and -3000 < out[key] <= 0, (key, out[key])
    assert np.isfinite(out["dataset_return_per_step"])
    cfg = H2OConfig()
    assert cfg.ratio_min <= out["h2o_importance_weight_mean"] <= cfg.ratio_max
    assert 0.0 <= out["h2o_discriminator_accuracy"] <= 1.0
    assert FamO2OConfig().beta_min <= out["famo2o_beta_mean"] <= FamO2OConfig().beta_max
    assert BENCHMARKS["hybrid"] == "serl.bench.hybrid"


def test_friction_and_mass_scale_a_gymnasium_mujoco_model():
    nominal = make_dynamics_env("HalfCheetah-v5", {}).unwrapped.model
    real = make_dynamics_env("HalfCheetah-v5", {"friction": 0.5, "mass": 1.5}).unwrapped.model
    np.testing.assert_allclose(real.geom_friction[:, 0], 0.5 * nominal.geom_friction[:, 0])
    np.testing.assert_allclose(real.body_mass, 1.5 * nominal.body_mass)
    np.testing.assert_allclose(real.body_inertia, 1.5 * nominal.body_inertia)
    np.testing.assert_allclose(real.geom_friction[:, 1:], nominal.geom_friction[:, 1:])
    with pytest.raises(ValueError, match="MuJoCo envs take friction, mass"):
        make_dynamics_env("HalfCheetah-v5", {"gravity": 2.0})
