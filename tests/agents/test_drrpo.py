"""DR-RPO (ALGORITHMS §8): the exact linear version and the deep agent."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linprog

from serl.robust.linear_drrpo import (
    LinearDRRPOConfig,
    StepData,
    backward_pass,
    bonus,
    evaluate_policy,
    regularised_policy,
    ridge_inverse,
    tv_dual,
    tv_worst_case,
)


def lp_worst_case(mu: np.ndarray, values: np.ndarray, radius: float) -> float:
    """min_q qᵀV s.t. q in the simplex and ½‖q − μ‖₁ <= ρ, as an LP over (q, t), t >= |q − μ|."""
    n = len(mu)
    cost = np.concatenate([values, np.zeros(n)])
    eye = np.eye(n)
    a_ub = np.block([[eye, -eye], [-eye, -eye], [np.zeros((1, n)), np.ones((1, n))]])
    b_ub = np.concatenate([mu, -mu, [2 * radius]])
    a_eq = np.concatenate([np.ones(n), np.zeros(n)])[None]
    res = linprog(cost, a_ub, b_ub, a_eq, [1.0], bounds=[(0, None)] * (2 * n), method="highs")
    assert res.status == 0
    return float(res.fun)


def test_tv_dual_equals_the_linear_program_worst_case():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 8))
        mu = rng.dirichlet(np.ones(n) * rng.uniform(0.2, 2))
        values = rng.uniform(0, 3, n)
        radius = float(rng.uniform(0, 1))
        assert tv_worst_case(mu, values, radius) == pytest.approx(
            lp_worst_case(mu, values, radius), abs=1e-7
        )


def test_ridge_tv_dual_with_one_hot_features_is_the_worst_case_of_the_empirical_kernel():
    rng = np.random.default_rng(1)
    n_states, d, horizon = 5, 3, 4.0
    values = rng.uniform(0, horizon, n_states)
    factors = rng.integers(0, d, 600)
    next_states = rng.integers(0, n_states, 600)
    phi = np.eye(d)[factors]
    radius = np.array([0.0, 0.2, 0.7])
    nu = tv_dual(phi, values[next_states], values.min(), radius, ridge_inverse(phi, 1e-9), horizon)
    for i in range(d):
        empirical = np.bincount(next_states[factors == i], minlength=n_states).astype(float)
        empirical /= empirical.sum()
        assert nu[i] == pytest.approx(lp_worst_case(empirical, values, radius[i]), abs=1e-6)


# A two-step linear MDP. Step 1 at s0: "risky" (factor 0) reaches g (V=1) or m (V=0.5) with
# probability 1/2 each; "safe" (factor 1) reaches t (V=0.7). The adversary moves ρ mass to the
# worst state m: risky is worth 0.75 − 0.5ρ, safe 0.7 − 0.2ρ, so the robust choice switches at
# ρ* = 0.05 / 0.3 = 1/6.
S0, G, M, T = range(4)
RISKY, SAFE = 0, 1
RHO_STAR = 1.0 / 6.0


def switch_mdp() -> tuple[np.ndarray, np.ndarray, list[StepData], np.ndarray]:
    features = np.zeros((4, 2, 3))
    features[S0, RISKY, 0] = features[S0, SAFE, 1] = 1.0
    features[G:, :, 2] = 1.0  # every other pair: factor 2 (leads to m)
    rewards = np.zeros((2, 4, 2))
    rewards[1, G], rewards[1, M], rewards[1, T], rewards[1, S0] = 1.0, 0.5, 0.7, 0.5
    first = StepData(
        states=np.array([S0] * 200 + [G] * 10),
        actions=np.array([RISKY] * 100 + [SAFE] * 100 + [0] * 10),
        next_states=np.array([G] * 50 + [M] * 50 + [T] * 100 + [M] * 10),
    )
    second = StepData(np.array([G, M, T]), np.array([0, 0, 0]), np.array([M, M, M]))
    kernel = np.zeros((4, 2, 4))
    kernel[S0, RISKY, G] = kernel[S0, RISKY, M] = 0.5
    kernel[S0, SAFE, T] = 1.0
    kernel[G:, :, M] = 1.0
    return features, rewards, [first, second], kernel


def solve(radius: float, temperature: float = 1e-3):
    features, rewards, data, _ = switch_mdp()
    cfg = LinearDRRPOConfig(horizon=2, radius=(radius,) * 3, ridge=1e-8, temperature=temperature)
    return backward_pass(cfg, features, rewards, data, np.full((4, 2), 0.5))


def test_robust_q_matches_the_analytic_values():
    for radius in (0.0, 0.1, 0.4):
        q = solve(radius).q[0, S0]
        assert q[RISKY] == pytest.approx(max(0.5, 0.75 - 0.5 * radius), abs=1e-6)
        assert q[SAFE] == pytest.approx(0.7 - 0.2 * radius, abs=1e-6)


def test_robust_policy_switches_action_at_the_analytic_radius():
    assert solve(RHO_STAR - 0.01).policy[0, S0].argmax() == RISKY
    assert solve(RHO_STAR + 0.01).policy[0, S0].argmax() == SAFE
    q = solve(RHO_STAR).q[0, S0]
    assert q[RISKY] == pytest.approx(q[SAFE], abs=1e-6)


def test_robust_policy_beats_the_non_robust_one_under_a_perturbed_kernel():
    _, rewards, _, kernel = switch_mdp()
    perturbed = kernel.copy()
    perturbed[S0, RISKY] = [0, 0.2, 0.8, 0]  # 0.3 of the mass moved to m
    perturbed[S0, SAFE] = [0, 0, 0.3, 0.7]
    robust, nominal = solve(0.3).policy, solve(0.0).policy
    robust_return = evaluate_policy(perturbed, rewards, robust)
    nominal_return = evaluate_policy(perturbed, rewards, nominal)
    assert robust_return == pytest.approx(0.64, abs=1e-3)
    assert nominal_return == pytest.approx(0.60, abs=1e-3)
    # ... while on the nominal kernel the non-robust policy is the better one
    assert evaluate_policy(kernel, rewards, nominal) > evaluate_policy(kernel, rewards, robust)


def test_softmax_policy_tends_to_argmax_and_to_the_reference():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(6, 4))
    pi_ref = rng.dirichlet(np.ones(4), size=6)
    greedy = regularised_policy(q, pi_ref, 1e-6)
    np.testing.assert_allclose(greedy, np.eye(4)[q.argmax(-1)], atol=1e-6)
    np.testing.assert_allclose(regularised_policy(q, pi_ref, 1e6), pi_ref, atol=1e-5)
    middle = regularised_policy(q, pi_ref, 1.0)
    np.testing.assert_allclose(middle.sum(-1), 1.0)
    assert np.abs(middle - pi_ref).max() > 1e-2 and np.abs(middle - greedy).max() > 1e-2


def test_bonus_shrinks_like_one_over_sqrt_n_along_visited_directions():
    d, beta, ridge = 3, 2.0, 1.0
    visited, unvisited = np.eye(d)[0], np.eye(d)[2]
    previous = None
    for n in (25, 100, 400, 1600):
        phi = np.concatenate([np.tile(np.eye(d)[0], (n, 1)), np.tile(np.eye(d)[1], (n, 1))])
        lam_inv = ridge_inverse(phi, ridge)
        gamma = bonus(visited, lam_inv, beta)
        assert gamma == pytest.approx(beta / np.sqrt(n + ridge))
        if previous is not None:
            assert gamma / previous == pytest.approx(0.5, rel=0.02)  # 4x data -> half the bonus
        previous = gamma
        assert bonus(unvisited, lam_inv, beta) == pytest.approx(beta / np.sqrt(ridge))


def test_bonus_makes_q_optimistic_and_is_capped_by_the_horizon():
    features, rewards, data, _ = switch_mdp()
    base = LinearDRRPOConfig(horizon=2, radius=(0.1,) * 3, ridge=1.0)
    plain = backward_pass(base, features, rewards, data, np.full((4, 2), 0.5))
    cfg = LinearDRRPOConfig(horizon=2, radius=(0.1,) * 3, ridge=1.0, bonus_scale=100.0)
    optimistic = backward_pass(cfg, features, rewards, data, np.full((4, 2), 0.5))
    assert (optimistic.q >= plain.q - 1e-12).all()
    assert optimistic.q[0].max() == pytest.approx(2.0) and optimistic.q[1].max() == 1.0


def test_config_rejects_a_radius_outside_the_unit_interval():
    with pytest.raises(ValueError, match="radius=\\(1.5,\\)"):
        LinearDRRPOConfig(horizon=2, radius=(1.5,))


# ----------------------------------------------------------------------------- deep variant

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

from serl.agents.drrpo import DRRPOAgent, DRRPOConfig, tv_dual_loss, tv_robust_value  # noqa: E402
from serl.agents.registry import AGENTS  # noqa: E402
from serl.agents.sac import SACAgent, SACConfig  # noqa: E402
from serl.build import build_agent  # noqa: E402
from serl.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402
from serl.data.batch import Batch  # noqa: E402

STATE = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACTION = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def random_batch(n: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, 3, generator=g),
        action=torch.rand(n, 1, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g),
        next_obs=torch.randn(n, 3, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.1).float(),
    )


def bandit_batch(rng: np.random.Generator, n: int = 256) -> Batch:
    """One-step bandit r = −(a − 0.5)² on random actions, state zero (3 dims)."""
    action = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    reward = -((action[:, 0] - 0.5) ** 2)
    zeros = torch.zeros(n, 3)
    return Batch(zeros, torch.from_numpy(action), torch.from_numpy(reward), zeros, torch.ones(n))


def test_learned_dual_reaches_the_tv_worst_case_of_a_discrete_kernel():
    """Dual ascent on samples of V(s') gives η = the (1−ρ)-quantile and the robust value of
    the deep target equals the exact TV worst case (the linear module's dual)."""
    values = np.array([0.0, 1.0, 2.0, 5.0])
    mu = np.array([0.1, 0.3, 0.4, 0.2])
    radius = 0.25
    rng = np.random.default_rng(0)
    samples = torch.as_tensor(rng.choice(values, size=4000, p=mu), dtype=torch.float32)
    eta = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([eta], lr=0.05)
    for _ in range(400):
        optimizer.zero_grad()
        tv_dual_loss(samples, eta.expand_as(samples), radius).backward()
        optimizer.step()
    # The slope of the dual, P(V > η) − ρ, is 0.35 below 2 and −0.05 above: the maximiser is 2.
    assert eta.item() == pytest.approx(2.0, abs=0.05)
    robust = tv_robust_value(samples, eta.detach(), samples.min(), radius).mean().item()
    assert robust == pytest.approx(tv_worst_case(mu, values, radius), abs=0.03)


def test_zero_radius_uniform_reference_target_is_sac_with_fixed_temperature():
    lam = 0.2
    drrpo = DRRPOAgent(
        DRRPOConfig(hidden_dims=(32,), batch_size=64, kl_weight=lam, tv_radius=0.0),
        STATE,
        ACTION,
        seed=3,
    )
    sac = SACAgent(
        SACConfig(hidden_dims=(32,), batch_size=64, init_temperature=lam), STATE, ACTION, seed=3
    )
    mb = random_batch(64)
    shift = lam * np.log(2.0)  # KL(π‖U) = log π + |A| log 2
    captured = {}
    for name, agent in (("drrpo", drrpo), ("sac", sac)):
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            a2, logp2 = agent.actor.sample(mb.next_obs, g)
        agent._critic_step(mb, (a2, logp2))
        captured[name] = [p.detach().clone() for p in agent.critic.parameters()]
    # Same init, same batch, same next actions: the targets differ by γ(1−d)·λ|A|log 2 only,
    # so with that shift added to the rewards SAC takes exactly DR-RPO's critic step.
    sac2 = SACAgent(
        SACConfig(hidden_dims=(32,), batch_size=64, init_temperature=lam), STATE, ACTION, seed=3
    )
    shifted = Batch(
        mb.obs, mb.action, mb.reward - 0.99 * (1 - mb.terminated) * shift, mb.next_obs,
        mb.terminated,
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        a2, logp2 = sac2.actor.sample(mb.next_obs, g)
    sac2._critic_step(shifted, (a2, logp2))
    for ours, theirs in zip(captured["drrpo"], sac2.critic.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-5, atol=1e-6)
    assert any(
        not torch.allclose(a, b) for a, b in zip(captured["drrpo"], captured["sac"], strict=True)
    )


def test_robust_target_is_more_pessimistic_than_the_nominal_one():
    q_means = {}
    for radius in (0.0, 0.3):
        cfg = DRRPOConfig(hidden_dims=(32, 32), batch_size=128, tv_radius=radius, discount=0.9)
        agent = DRRPOAgent(cfg, STATE, ACTION, seed=0)
        for step in range(150):
            info = agent.update(random_batch(128, seed=step % 10))
        q_means[radius] = info["critic/q_mean"]
        assert all(np.isfinite(v) for v in info.values())
    assert info["critic/robust_gap"] > 0
    assert q_means[0.3] < q_means[0.0] - 0.03


def bandit_mean_action(agent: DRRPOAgent) -> float:
    with torch.no_grad():
        actions, _ = agent.actor.sample(torch.zeros(5000, 3), torch.Generator().manual_seed(0))
    return actions.mean().item()


def reference_checkpoint(tmp_path, mean_action: float) -> str:
    """A SAC checkpoint on Pendulum-v1's spaces (3-D state, 1-D action) acting near a value."""
    cfg = SACConfig(hidden_dims=(32,))
    agent = SACAgent(cfg, STATE, ACTION, seed=0)
    with torch.no_grad():
        agent.actor.mean.weight.zero_()
        agent.actor.mean.bias.fill_(float(np.arctanh(mean_action)))
        agent.actor.log_std.weight.zero_()
        agent.actor.log_std.bias.fill_(np.log(0.1))
    from serl.config import config_to_dict

    path = tmp_path / "reference.safetensors"
    config = {"env": "Pendulum-v1", "agent": "sac", "agent_cfg": config_to_dict(cfg)}
    save_checkpoint(path, agent.state_dict(), config=config, config_hash="0", metadata={})
    return str(path)


def train_bandit(cfg: DRRPOConfig, steps: int = 400) -> DRRPOAgent:
    agent = build_agent("drrpo", cfg, STATE, ACTION, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        agent.update(bandit_batch(rng))
    return agent


def test_small_kl_weight_is_greedy_and_large_weight_follows_the_reference(tmp_path):
    base = DRRPOConfig(hidden_dims=(64, 64), actor_lr=1e-3, critic_lr=1e-3)
    greedy = train_bandit(DRRPOConfig(**{**vars(base), "kl_weight": 0.01}))
    assert bandit_mean_action(greedy) == pytest.approx(0.5, abs=0.07)
    ref = reference_checkpoint(tmp_path, -0.5)
    anchored = train_bandit(
        DRRPOConfig(**{**vars(base), "kl_weight": 10.0, "reference_checkpoint": ref})
    )
    assert bandit_mean_action(anchored) == pytest.approx(-0.5, abs=0.1)


def test_a_reference_checkpoint_without_its_policy_is_refused(tmp_path):
    cfg = DRRPOConfig(hidden_dims=(32,), reference_checkpoint=tmp_path / "reference.safetensors")
    with pytest.raises(ValueError, match="no reference policy was handed in"):
        DRRPOAgent(cfg, STATE, ACTION, seed=0)


def test_a_handed_reference_equal_to_the_policy_gives_zero_kl():
    cfg = DRRPOConfig(hidden_dims=(32,), batch_size=32)
    agent = DRRPOAgent(cfg, STATE, ACTION, seed=0)
    own = DRRPOAgent(cfg, STATE, ACTION, seed=0, reference=copy.deepcopy(agent.policy))
    # Critic steps leave the actor alone, so the first actor step compares π with itself
    # (up to the round trip of log π through atanh of the sampled action).
    assert own.update(random_batch(32))["actor/kl_to_reference"] == pytest.approx(0, abs=1e-5)
    assert abs(agent.update(random_batch(32))["actor/kl_to_reference"]) > 1e-2


def test_build_agent_hands_in_the_reference_checkpoints_policy(tmp_path):
    path = reference_checkpoint(tmp_path, -0.5)
    cfg = DRRPOConfig(hidden_dims=(32,), reference_checkpoint=path)
    agent = build_agent("drrpo", cfg, STATE, ACTION, seed=0)
    saved = read_checkpoint(path)[1]["policy"]
    handed = agent.reference.policy.state_dict()
    assert handed.keys() == saved.keys()
    for key, tensor in saved.items():
        torch.testing.assert_close(handed[key], tensor, rtol=0, atol=0)


def test_the_drrpo_module_imports_no_checkpoint_or_transport_code():
    code = (
        "import sys, serl.agents.drrpo; "
        "print(sorted(m for m in sys.modules if m.startswith(('serl.checkpoint', "
        "'serl.transport', 'serl.envs'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_state_dict_round_trip_gives_identical_updates():
    cfg = DRRPOConfig(hidden_dims=(32,), batch_size=32, tv_radius=0.2)
    agent = DRRPOAgent(cfg, STATE, ACTION, seed=1)
    agent.update(random_batch(32, 0))
    clone = DRRPOAgent(cfg, STATE, ACTION, seed=99)
    clone.load_state_dict(copy.deepcopy(agent.state_dict()))  # optimizer state is not copied
    assert agent.update(random_batch(32, 1)) == clone.update(random_batch(32, 1))


def test_drrpo_is_registered_with_its_config():
    spec = AGENTS["drrpo"]
    assert spec.agent_type is DRRPOAgent and isinstance(spec.default_config(), DRRPOConfig)
    with pytest.raises(ValueError, match="tv_radius=1.5"):
        DRRPOConfig(tv_radius=1.5)
