"""IWOCS (ALGORITHMS §7): exact tabular checks, the worst-case search, the deep agent."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

from serl.robust.search import cmaes_search, grid_search
from serl.robust.tabular import (
    policy_q,
    robust_value_iteration,
    tabular_iwocs,
    value_iteration,
)

GAMMA = 0.9
CHAIN = 6
SLIP = (0.0, 0.3)


def chain_kernel(params: dict[str, float]) -> np.ndarray:
    """A chain: action 0 left, 1 right; with probability `slip` the robot falls back to 0."""
    p = params["slip"]
    kernel = np.zeros((CHAIN, 2, CHAIN))
    for s in range(CHAIN):
        kernel[s, 0, max(s - 1, 0)] += 1 - p
        kernel[s, 1, min(s + 1, CHAIN - 1)] += 1 - p
        kernel[s, :, 0] += p
    return kernel


def chain_reward() -> np.ndarray:
    reward = np.zeros((CHAIN, 2))
    reward[CHAIN - 1] = 1.0
    return reward


def run_chain_iwocs(**kw):
    kw.setdefault("epsilon", 1e-6)
    return tabular_iwocs(chain_kernel, chain_reward(), GAMMA, {"slip": SLIP}, {"slip": 0.0}, **kw)


def robust_chain_q() -> np.ndarray:
    grid = np.linspace(*SLIP, 61)
    return robust_value_iteration([chain_kernel({"slip": p}) for p in grid], chain_reward(), GAMMA)


def test_tabular_iwocs_stops_after_finding_the_worst_model():
    result = run_chain_iwocs()
    assert result.converged
    assert len(result.models) == 2  # nominal, then the worst model; then the rule stops it
    assert result.models[1]["slip"] == pytest.approx(SLIP[1])


def test_tabular_iwocs_value_equals_robust_value_iteration():
    result = run_chain_iwocs()
    robust_v = robust_chain_q().max(axis=1)
    np.testing.assert_allclose(result.q_functions[-1].max(axis=1), robust_v, atol=1e-7)
    assert result.worst_value == pytest.approx(robust_v[0], abs=1e-7)


def test_iwocs_q_functions_bound_the_robust_q_and_decrease():
    result = run_chain_iwocs(epsilon=-1.0, max_models=4)  # never stops early: 4 models
    q_robust = robust_chain_q()
    assert len(result.q_functions) == 4
    for q in result.q_functions:
        assert (q >= q_robust - 1e-8).all()
    for earlier, later in zip(result.q_functions, result.q_functions[1:], strict=False):
        assert (later <= earlier + 1e-12).all()
    assert (result.q_functions[0] > result.q_functions[1] + 1e-3).any()  # it did tighten


def test_tabular_iwocs_with_cmaes_search_finds_the_same_worst_model():
    result = run_chain_iwocs(method="cmaes", budget=60)
    assert result.converged
    assert result.models[-1]["slip"] == pytest.approx(SLIP[1], abs=1e-3)


def test_policy_q_of_the_optimal_policy_is_q_star():
    kernel, reward = chain_kernel({"slip": 0.1}), chain_reward()
    q_star = value_iteration(kernel, reward, GAMMA)
    np.testing.assert_allclose(policy_q(kernel, reward, GAMMA, q_star.argmax(1)), q_star, atol=1e-8)


# ----------------------------------------------------------------------------- search


class PointMass(gym.Env):
    """1-D point mass held at the origin by a fixed PD law against a sinusoidal push.

    Friction and mass are set per episode; the closed loop resonates with the push near
    mass 1.7, so the worst mass is inside the box and the worst friction is its low edge."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    dt = 0.05

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        params = (options or {}).get("params", {})
        self.friction = params.get("friction", 1.0)
        self.mass = params.get("mass", 1.0)
        self.state = np.array([0.0, 0.0])
        self.t = 0
        return self.state.copy(), {}

    def step(self, action):
        x, v = self.state
        push = 0.5 * np.sin(1.9 * self.t * self.dt)
        force = 4.0 * float(action[0]) - self.friction * v + push
        v = v + self.dt * force / self.mass
        x = x + self.dt * v
        self.state = np.array([x, v])
        self.t += 1
        return self.state.copy(), -(x**2), False, self.t >= 200, {}


def fixed_policy(obs: np.ndarray) -> np.ndarray:
    return np.clip([-1.5 * obs[0] - 0.3 * obs[1]], -1.0, 1.0)


@functools.cache
def _episode_return(friction: float, mass: float) -> float:
    return _rollout({"friction": friction, "mass": mass})


def episode_return(params: dict[str, float]) -> float:
    return _episode_return(params["friction"], params["mass"])


def _rollout(params: dict[str, float]) -> float:
    env = PointMass()
    obs, _ = env.reset(seed=0, options={"params": params})
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(fixed_policy(obs))
        total, done = total + reward, terminated or truncated
    return total


BOX = {"friction": (0.2, 2.0), "mass": (0.5, 3.0)}
FINE = 31


def fine_grid_minimum() -> dict[str, float]:
    return grid_search(episode_return, BOX, FINE).params


def within_one_cell(found: dict[str, float], best: dict[str, float], cells: int) -> bool:
    return all(
        abs(found[k] - best[k]) <= (hi - lo) / (cells - 1) + 1e-9 for k, (lo, hi) in BOX.items()
    )


def test_cmaes_search_finds_the_grid_minimum_within_one_cell():
    best = fine_grid_minimum()
    found = cmaes_search(episode_return, BOX, evaluations=120, seed=0)
    assert within_one_cell(found.params, best, FINE), (found.params, best)
    grid_value = grid_search(episode_return, BOX, FINE).value
    assert found.value <= grid_value + 0.01 * abs(grid_value)


def test_coarse_grid_search_lands_within_one_coarse_cell_of_the_fine_minimum():
    best = fine_grid_minimum()
    coarse = grid_search(episode_return, BOX, 11)
    assert len(coarse.evaluations) == 121
    assert within_one_cell(coarse.params, best, 11)


def test_grid_search_rejects_an_inverted_range():
    with pytest.raises(ValueError, match="low 2.0 > high 1.0"):
        grid_search(episode_return, {"mass": (2.0, 1.0)}, 3)


# ----------------------------------------------------------------------------- deep IWOCS

import copy  # noqa: E402

import torch  # noqa: E402

from serl.agents.iwocs import IWOCSAgent, IWOCSConfig  # noqa: E402
from serl.agents.iwocs_policy import CompositePolicy, ModelComponent  # noqa: E402
from serl.agents.registry import AGENTS  # noqa: E402
from serl.checkpoint import save_checkpoint  # noqa: E402
from serl.config import config_to_dict  # noqa: E402
from serl.data.batch import Batch  # noqa: E402

STATE = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
ACTION = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def fixed_component(q_value: float, action: float, drift: float, radius: float) -> ModelComponent:
    """A model whose Q head is constant, policy constant and predictor s' = s + drift."""
    c = ModelComponent(STATE, ACTION, (8,), num_params=1)
    with torch.no_grad():
        for p in c.parameters():
            p.zero_()
        c.q_head.net[-1].bias.fill_(q_value)
        c.predictor.net[-1].bias.fill_(drift)
        c.policy.head.mean.bias.fill_(float(np.arctanh(action)))
        c.radius.fill_(radius)
    return c


def test_composite_acts_with_the_lowest_value_valid_model_and_falls_back():
    high = fixed_component(q_value=5.0, action=0.5, drift=0.0, radius=0.1)
    low = fixed_component(q_value=1.0, action=-0.5, drift=1.0, radius=0.1)
    fallback = copy.deepcopy(high.policy)
    with torch.no_grad():
        fallback.head.mean.bias.fill_(float(np.arctanh(0.9)))
    policy = CompositePolicy([high, low], fallback)
    s0 = np.zeros(2, np.float32)
    # First step: every model is valid, the lowest value (model 1) acts.
    assert policy.act(s0, deterministic=True)[0] == pytest.approx(-0.5, abs=1e-5)
    assert policy.last_choice == 1
    # s' = s: only model 0 (no drift) explains it.
    assert policy.act(s0, deterministic=True)[0] == pytest.approx(0.5, abs=1e-5)
    assert policy.last_choice == 0
    # s' = s + 3: neither model explains it -> the domain-randomised fallback.
    assert policy.act(s0 + 3.0, deterministic=True)[0] == pytest.approx(0.9, abs=1e-5)
    assert policy.last_choice == -1
    # s' = s + 1: model 1 is valid again.
    policy.act(s0 + 4.0, deterministic=True)
    assert policy.last_choice == 1
    policy.reset_episode()
    assert policy.valid_models(torch.zeros(1, 2)).all()


def test_start_value_is_the_min_over_models_and_keeps_the_policy_memory():
    high = fixed_component(q_value=5.0, action=0.5, drift=0.0, radius=0.1)
    low = fixed_component(q_value=1.0, action=-0.5, drift=1.0, radius=0.1)
    policy = CompositePolicy([high, low])
    s0 = np.zeros(2, np.float32)
    policy.act(s0, deterministic=True)
    assert policy.start_value(s0 + 7.0) == pytest.approx(1.0)  # Q_i = min_j Q_j
    assert not policy.valid_models(torch.full((1, 2), 7.0)).any()  # memory of s0 kept


def test_exploration_uses_the_newest_models_own_policy():
    older = fixed_component(q_value=-5.0, action=0.5, drift=0.0, radius=1e9)
    newest = fixed_component(q_value=5.0, action=-0.5, drift=0.0, radius=1e9)
    with torch.no_grad():
        newest.policy.head.log_std.bias.fill_(-10.0)  # nearly deterministic samples
    policy = CompositePolicy([older, newest])
    action = policy.act(np.zeros(2, np.float32), deterministic=False)
    assert action[0] == pytest.approx(-0.5, abs=1e-3) and policy.last_choice == 1


def linear_system_batch(rng: np.random.Generator, n: int = 128) -> Batch:
    """s' = s + 0.2·a (both state dims), reward 1, every step terminal."""
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    action = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    next_obs = obs + 0.2 * action
    return Batch(
        torch.from_numpy(obs),
        torch.from_numpy(action),
        torch.ones(n),
        torch.from_numpy(next_obs),
        torch.ones(n),
    )


def iwocs_config(**kw) -> IWOCSConfig:
    base = dict(
        hidden_dims=(32, 32),
        batch_size=128,
        param_names=("friction",),
        model_params=(0.5,),
        predictor_lr=3e-3,
        q_head_lr=3e-3,
        validity_ema=0.1,
    )
    return IWOCSConfig(**{**base, **kw})


def test_agent_learns_the_dynamics_predictor_and_the_unregularised_q_head():
    agent = IWOCSAgent(iwocs_config(), STATE, ACTION, seed=0)
    rng = np.random.default_rng(0)
    first = agent.update(linear_system_batch(rng))
    for _ in range(300):
        info = agent.update(linear_system_batch(rng))
    assert info["iwocs/predictor_l1"] < 0.2 * first["iwocs/predictor_l1"]
    assert info["iwocs/q_head_mean"] == pytest.approx(1.0, abs=0.1)  # r = 1, terminal: Q = 1
    radius = agent.composite.newest.radius.item()
    assert 0 < radius < 0.5 and radius == pytest.approx(info["iwocs/validity_radius"])


def test_policy_state_loads_into_the_actor_side_composite_and_acts_the_same():
    cfg = iwocs_config()
    agent = IWOCSAgent(cfg, STATE, ACTION, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(5):
        agent.update(linear_system_batch(rng))
    actor = cfg.make_actor_policy(STATE, ACTION)
    actor.load_state_dict(agent.policy_state(), strict=True)
    obs = rng.normal(size=2).astype(np.float32)
    np.testing.assert_array_equal(
        actor.act(obs, deterministic=True), agent.act(obs, deterministic=True)
    )
    assert actor.newest.params.tolist() == [0.5]


def save_agent(agent: IWOCSAgent, path) -> None:
    config = {"env": "test", "agent": "iwocs", "agent_cfg": config_to_dict(agent.cfg)}
    save_checkpoint(path, agent.state_dict(), config=config, config_hash="0", metadata={})


def test_next_iteration_carries_the_previous_models_and_their_registry(tmp_path):
    rng = np.random.default_rng(2)
    first = IWOCSAgent(iwocs_config(), STATE, ACTION, seed=0)
    for _ in range(5):
        first.update(linear_system_batch(rng))
    save_agent(first, tmp_path / "model0.safetensors")
    cfg = iwocs_config(
        prior_models=1, previous_checkpoint=tmp_path / "model0.safetensors", model_params=(1.5,)
    )
    second = IWOCSAgent(cfg, STATE, ACTION, seed=1)
    assert len(second.composite.components) == 2
    prior, newest = second.composite.components
    assert prior.params.tolist() == [0.5] and newest.params.tolist() == [1.5]
    for a, b in zip(prior.parameters(), first.composite.newest.parameters(), strict=True):
        assert torch.equal(a, b)
    frozen = [p.detach().clone() for p in prior.parameters()]
    for _ in range(3):
        second.update(linear_system_batch(rng))
    for a, b in zip(prior.parameters(), frozen, strict=True):
        assert torch.equal(a, b)  # earlier models are not trained again
    actor = cfg.make_actor_policy(STATE, ACTION)
    actor.load_state_dict(second.policy_state(), strict=True)


def test_iwocs_state_dict_round_trip_gives_identical_updates():
    rng = np.random.default_rng(3)
    agent = IWOCSAgent(iwocs_config(), STATE, ACTION, seed=0)
    agent.update(linear_system_batch(rng))
    clone = IWOCSAgent(iwocs_config(), STATE, ACTION, seed=7)
    clone.load_state_dict(copy.deepcopy(agent.state_dict()))
    batch = linear_system_batch(rng)
    assert agent.update(batch) == clone.update(batch)


def test_iwocs_is_registered_and_refuses_priors_without_a_checkpoint():
    assert AGENTS["iwocs"].agent_type is IWOCSAgent
    with pytest.raises(ValueError, match="prior_models=2 needs previous_checkpoint"):
        IWOCSConfig(prior_models=2)
