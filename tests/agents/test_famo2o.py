"""FamO2O checks of ALGORITHMS §6: β encoding, AWR closed form, balance model, β range."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from serl.agents.famo2o import (
    ENCODING_DIM,
    FamO2OAgent,
    FamO2OConfig,
    awr_loss,
    awr_weights,
    beta_from_x,
    encode_beta,
)
from serl.agreement import load_policy_weights, policy_numpy
from serl.data.batch import Batch

STATE = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACTION = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
UNIT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def test_encoding_is_the_sinusoidal_formula():
    beta = torch.tensor([1.0, 2.5, 10.0], dtype=torch.float64)
    got = encode_beta(beta)
    assert got.shape == (3, ENCODING_DIM)
    for row, b in zip(got, beta.tolist(), strict=True):
        want = []
        for i in range(ENCODING_DIM // 2):
            angle = b / 10000 ** (2 * i / ENCODING_DIM)
            want += [np.sin(angle), np.cos(angle)]
        np.testing.assert_allclose(row.numpy(), want, rtol=0, atol=1e-12)


def test_encoding_is_injective_over_the_balance_range():
    cfg = FamO2OConfig()
    beta = torch.linspace(cfg.beta_min, cfg.beta_max, 901, dtype=torch.float64)  # step 0.01
    codes = encode_beta(beta)
    distance = torch.cdist(codes, codes)
    distance.fill_diagonal_(float("inf"))
    # Distinct β 0.01 apart stay apart: no two β of the range share (or nearly share) a code.
    assert distance.min().item() > 0.005


def fit_tabular_awr(mu: torch.Tensor, advantage: torch.Tensor, beta: float) -> torch.Tensor:
    """Minimise the AWR loss over a tabular policy, with the exact expectation over a ~ μ."""
    logits = torch.zeros(len(mu), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    weights = awr_weights(advantage, torch.zeros(()), torch.tensor(beta), 100.0)
    for _ in range(1500):
        log_pi = torch.log_softmax(logits, 0)
        loss = awr_loss(log_pi, weights * mu * len(mu))  # mean over actions = Σ μ w log π
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.softmax(logits.detach(), 0)


def test_tabular_awr_minimiser_is_mu_times_exp_beta_a_and_mean_advantage_rises_with_beta():
    g = torch.Generator().manual_seed(0)
    mu = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64), 0)
    advantage = torch.randn(6, generator=g, dtype=torch.float64)
    expected_advantage = []
    for beta in (0.5, 1.0, 2.0):
        pi = fit_tabular_awr(mu, advantage, beta)
        closed = mu * torch.exp(beta * advantage)
        closed = closed / closed.sum()
        kl = (closed * (closed / pi).log()).sum().item()
        assert kl < 1e-2, (beta, kl)
        expected_advantage.append((pi * advantage).sum().item())
    assert expected_advantage[0] < expected_advantage[1] < expected_advantage[2]


def test_awr_weight_is_clipped_at_100():
    q = torch.tensor([0.0, 1.0, 50.0])
    w = awr_weights(q, torch.zeros(3), torch.tensor(10.0), 100.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 100.0, 100.0]))


def test_balance_model_recovers_the_per_state_optimal_beta():
    """Frozen π_u(s, β) = −1.1 + 0.2·β (a ∈ [−0.9, 0.9]) and Q = −(a − a*(s))²: a* = −1 wants
    β_min, a* = 1 wants β_max, a* = 0 wants β = 5.5. The balance entropy target is lowered to
    −2 here so the entropy bonus does not hold the modes away from the bounds."""
    cfg = FamO2OConfig(
        hidden_dims=(32, 32),
        balance_lr=1e-2,
        balance_target_entropy=-2.0,
        beta_min=1.0,
        beta_max=10.0,
    )
    agent = FamO2OAgent(cfg, STATE, UNIT, seed=0)
    kinds = torch.eye(3)  # one-hot state types
    a_star = torch.tensor([-1.0, 1.0, 0.0])
    optimal = torch.tensor([1.0, 10.0, 5.5])

    def frozen_universal(features: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return (-1.1 + 0.2 * beta)[:, None]

    def q_value(features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return -((action[:, 0] - a_star[features.argmax(1)]) ** 2)

    rows = kinds.repeat(64, 1)
    for _ in range(1500):
        agent._balance_step(rows, frozen_universal, q_value)
    with torch.no_grad():
        beta = agent.policy.deterministic_beta(kinds)
    assert torch.all((beta - optimal).abs() <= 0.05 * (cfg.beta_max - cfg.beta_min)), beta


def test_beta_never_leaves_its_range():
    cfg = FamO2OConfig(hidden_dims=(16,), beta_min=0.5, beta_max=4.0)
    x = torch.tensor([-1.0, -0.3, 0.0, 0.7, 1.0])
    torch.testing.assert_close(
        beta_from_x(x, cfg.beta_min, cfg.beta_max), torch.tensor([0.5, 1.725, 2.25, 3.475, 4.0])
    )
    agent = FamO2OAgent(cfg, STATE, ACTION, seed=0)
    features = torch.randn(2000, 3) * 100
    for bias in (-50.0, 0.0, 50.0):  # push the balance model's mean to either bound
        with torch.no_grad():
            agent.policy.balance.mean.bias.fill_(bias)
            x, _ = agent.policy.balance.sample(features, agent.generator)
            betas = torch.cat(
                [agent.policy.beta(x[:, 0]), agent.policy.deterministic_beta(features)]
            )
        assert betas.min() >= cfg.beta_min and betas.max() <= cfg.beta_max


def random_batch(n: int, seed: int, prior: float | None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, 3, generator=g),
        action=torch.rand(n, 2, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g),
        next_obs=torch.randn(n, 3, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.1).float(),
        prior=None if prior is None else torch.full((n,), prior),
    )


@pytest.mark.parametrize(("prior", "online"), [(1.0, 0.0), (0.0, 1.0), (None, 1.0)])
def test_update_reports_phase_and_finite_beta_metrics(prior, online):
    cfg = FamO2OConfig(hidden_dims=(32, 32), batch_size=32)
    agent = FamO2OAgent(cfg, STATE, ACTION, seed=0)
    info = agent.update(random_batch(32, 0, prior))
    assert info["famo2o/online_phase"] == online
    for key in (
        "famo2o/beta_mean",
        "famo2o/beta_std",
        "value/loss",
        "critic/loss",
        "universal/loss",
        "balance/loss",
        "balance/temperature",
    ):
        assert np.isfinite(info[key]), key
    assert cfg.beta_min <= info["famo2o/beta_min"] <= info["famo2o/beta_max"] <= cfg.beta_max


def test_actor_module_with_shipped_weights_acts_like_the_agent():
    cfg = FamO2OConfig(hidden_dims=(32, 32), batch_size=32)
    agent = FamO2OAgent(cfg, STATE, ACTION, seed=0)
    for step in range(3):
        agent.update(random_batch(32, step, 0.0))
    actor = cfg.make_actor_policy(STATE, ACTION)
    load_policy_weights(actor, policy_numpy(agent.policy_state()))
    assert any(k.startswith("balance.") for k in agent.policy_state())
    assert any(k.startswith("universal.") for k in agent.policy_state())
    obs = np.array([0.3, -1.0, 2.0], np.float32)
    np.testing.assert_array_equal(
        actor.act(obs, deterministic=True), agent.act(obs, deterministic=True)
    )


def test_state_dict_round_trip_resumes_identically():
    cfg = FamO2OConfig(hidden_dims=(32, 32), batch_size=32)
    agent = FamO2OAgent(cfg, STATE, ACTION, seed=0)
    agent.update(random_batch(32, 0, 1.0))
    clone = FamO2OAgent(cfg, STATE, ACTION, seed=9)
    clone.load_state_dict(copy.deepcopy(agent.state_dict()))
    for seed in (1, 2):
        batch = random_batch(32, seed, 0.0)
        assert agent.update(batch) == clone.update(batch)
