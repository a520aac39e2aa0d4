"""`serl bench hybrid`: dynamics parameters reach the real env, and a tiny run gives every key."""

import numpy as np
import pytest

from serl.agents.famo2o import FamO2OAgent
from serl.agents.h2o import H2OAgent
from serl.bench import BENCHMARKS, hybrid
from serl.bench.hybrid import make_dynamics_env, parse_params, run_seed
from serl.bench.units import write_json_atomic
from serl.envs import make_env

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


def recording(agent_type: type) -> type:
    """`agent_type` whose instances keep every `update`'s metrics in `self.infos`."""

    class Recording(agent_type):
        def update(self, batch):
            info = super().update(batch)
            self.infos = [*getattr(self, "infos", []), info]
            return info

    return Recording


def pendulum_return(agent, episodes: int, seed: int) -> float:
    """The mean deterministic return on a separately made Pendulum with mass 1.5, on the
    episode seeds the module documents (10_000 + 100·seed + i)."""
    env = make_env("Pendulum-v1")
    env.unwrapped.m = 1.5
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + 100 * seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


@pytest.mark.timeout(180)
def test_a_tiny_run_evaluates_every_learner_on_the_real_env_and_reports_its_metrics(monkeypatch):
    evaluations = []  # (mass of the env evaluated on, reported return, independent return)
    original_evaluate = hybrid.evaluate

    def spy(env, agent, episodes, seed):
        value = original_evaluate(env, agent, episodes, seed)
        evaluations.append((env.unwrapped.m, value, pendulum_return(agent, episodes, seed)))
        return value

    agents = {}

    def keep(agent_type):
        def make(*args, **kwargs):
            agents[agent_type.__name__] = recording(agent_type)(*args, **kwargs)
            return agents[agent_type.__name__]

        return make

    monkeypatch.setattr(hybrid, "evaluate", spy)
    monkeypatch.setattr(hybrid, "H2OAgent", keep(H2OAgent))
    monkeypatch.setattr(hybrid, "FamO2OAgent", keep(FamO2OAgent))
    size = {"steps": 60, "warmup": 30, "dataset_steps": 200, "offline_updates": 5,
            "eval_episodes": 1}  # fmt: skip
    out = run_seed("Pendulum-v1", {"m": 1.5}, 0, size, "cpu")

    # Evaluation order in run_seed: sim-only, offline-only, H2O, FamO2O, MOORL, RLPD.
    order = ("sim_only_real_return", "offline_only_real_return", "h2o_real_return",
             "famo2o_return", "moorl_return", "rlpd_return")  # fmt: skip
    assert set(order) == set(KEYS)
    assert [m for m, _, _ in evaluations] == [1.5] * 6  # the real env, never the simulator
    assert [out[key] for key in order] == [value for _, value, _ in evaluations]
    for key, (_, value, independent) in zip(order, evaluations, strict=True):
        assert value == pytest.approx(independent, rel=1e-6), key

    # The metrics are means over the last tenth of training (the last 6 of 60 steps, one
    # update each once the 30-step warmup has passed).
    def tail_mean(name: str, key: str) -> float:
        return float(np.mean([info[key] for info in agents[name].infos[-6:]]))

    h2o = "h2o/importance_weight_mean"
    assert out["h2o_importance_weight_mean"] == pytest.approx(tail_mean("H2OAgent", h2o))
    accuracy = "h2o/discriminator_sas_accuracy"
    assert out["h2o_discriminator_accuracy"] == pytest.approx(tail_mean("H2OAgent", accuracy))
    beta = "famo2o/beta_mean"
    assert out["famo2o_beta_mean"] == pytest.approx(tail_mean("FamO2OAgent", beta))
    assert np.isfinite(out["dataset_return_per_step"])
    assert BENCHMARKS["hybrid"] == "serl.bench.hybrid"


def test_figures_are_the_mean_and_std_over_the_saved_per_seed_results(tmp_path):
    per_seed = [
        {key: -100.0 * (i + 1) for i, key in enumerate(KEYS)},
        {key: -300.0 * (i + 1) for i, key in enumerate(KEYS)},
    ]
    per_seed[0]["h2o_importance_weight_mean"] = 0.2
    per_seed[1]["h2o_importance_weight_mean"] = 0.6
    for seed, result in enumerate(per_seed):  # as finished units left them: nothing trains
        write_json_atomic(tmp_path / "units" / f"seed{seed}.json", result)
    figures = hybrid.run(quick=True, device="cpu", seeds=2, out=tmp_path)
    # h2o_real_return: seeds −100 and −300 -> mean −200, std over seeds 100.
    assert figures["h2o_real_return"] == pytest.approx(-200.0)
    assert figures["h2o_real_return_std"] == pytest.approx(100.0)
    # rlpd_return, the 6th key: −600 and −1800 -> −1200 ± 600.
    assert figures["rlpd_return"] == pytest.approx(-1200.0)
    assert figures["rlpd_return_std"] == pytest.approx(600.0)
    assert figures["h2o_importance_weight_mean"] == pytest.approx(0.4)
    assert figures["h2o_importance_weight_mean_std"] == pytest.approx(0.2)
    assert figures["seeds"] == 2 and (tmp_path / "hybrid.png").exists()


def test_friction_and_mass_scale_a_gymnasium_mujoco_model():
    nominal = make_dynamics_env("HalfCheetah-v5", {}).unwrapped.model
    real = make_dynamics_env("HalfCheetah-v5", {"friction": 0.5, "mass": 1.5}).unwrapped.model
    np.testing.assert_allclose(real.geom_friction[:, 0], 0.5 * nominal.geom_friction[:, 0])
    np.testing.assert_allclose(real.body_mass, 1.5 * nominal.body_mass)
    np.testing.assert_allclose(real.body_inertia, 1.5 * nominal.body_inertia)
    np.testing.assert_allclose(real.geom_friction[:, 1:], nominal.geom_friction[:, 1:])
    with pytest.raises(ValueError, match="MuJoCo envs take friction, mass"):
        make_dynamics_env("HalfCheetah-v5", {"gravity": 2.0})
