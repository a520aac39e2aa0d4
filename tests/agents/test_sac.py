import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from serl.agents.sac import SACAgent, SACConfig
from serl.data.batch import Batch, NonFiniteBatchError

UNIT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
STATE = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACTION = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def random_batch(n: int, seed: int = 0, obs_dim: int = 5, action_dim: int = 2) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, obs_dim, generator=g),
        action=torch.rand(n, action_dim, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g),
        next_obs=torch.randn(n, obs_dim, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.1).float(),
    )


def bandit_batch(rng: np.random.Generator, n: int = 256) -> Batch:
    """One-step bandit r = -(a - 0.5)^2 on uniformly random actions."""
    action = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    reward = -((action[:, 0] - 0.5) ** 2)
    zeros = torch.zeros(n, 1)
    return Batch(zeros, torch.from_numpy(action), torch.from_numpy(reward), zeros, torch.ones(n))


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_quadratic_bandit_mean_action_and_entropy_reach_their_targets():
    """ALGORITHMS §1: mean action -> 0.5 ± 0.05 and policy entropy -> H̄ ± 0.1 (H̄ = -1)."""
    cfg = SACConfig(
        hidden_dims=(64, 64),
        actor_lr=1e-3,
        critic_lr=1e-3,
        temperature_lr=3e-3,
        init_temperature=0.1,
    )
    agent = SACAgent(cfg, UNIT, UNIT, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2500):
        agent.update(bandit_batch(rng))
    with torch.no_grad():
        actions, log_prob = agent.actor.sample(
            torch.zeros(20_000, 1), torch.Generator().manual_seed(0)
        )
    assert abs(actions.mean().item() - 0.5) < 0.05
    assert abs(-log_prob.mean().item() - agent.target_entropy) < 0.1


def test_one_update_takes_g_critic_steps_and_one_actor_step():
    cfg = SACConfig.rlpd(hidden_dims=(32, 32), batch_size=16, utd=5)
    agent = SACAgent(cfg, STATE, ACTION)
    agent.update(random_batch(5 * 16))
    critic_steps = {int(s["step"]) for s in agent.critic_optimizer.state.values()}
    actor_steps = {int(s["step"]) for s in agent.actor_optimizer.state.values()}
    temperature_steps = {int(s["step"]) for s in agent.temperature_optimizer.state.values()}
    assert critic_steps == {5} and agent.critic_steps == 5
    assert actor_steps == {1} and agent.actor_steps == 1
    assert temperature_steps == {1}


def test_target_uses_exactly_num_min_qs_distinct_members(monkeypatch):
    cfg = SACConfig(hidden_dims=(16,), num_qs=10, num_min_qs=2, utd=4, batch_size=8)
    agent = SACAgent(cfg, STATE, ACTION)
    seen = []
    original = agent.target_critic.forward

    def spy(features, action, members=None):
        seen.append(members)
        out = original(features, action, members)
        assert out.shape[0] == 2
        return out

    monkeypatch.setattr(agent.target_critic, "forward", spy)
    agent.update(random_batch(32))
    assert len(seen) == 4
    for members in seen:
        assert len(set(members.tolist())) == 2
        assert all(0 <= m < 10 for m in members.tolist())
    assert len({tuple(m.tolist()) for m in seen}) > 1  # a new random subset each step


def test_critic_target_follows_sac_with_and_without_entropy_backup():
    for backup in (True, False):
        cfg = SACConfig(hidden_dims=(16,), backup_entropy=backup, batch_size=8, tau=1.0)
        agent = SACAgent(cfg, STATE, ACTION, seed=3)
        batch = random_batch(8, seed=1)
        gen_state = agent.generator.get_state()
        with torch.no_grad():
            g = torch.Generator().set_state(gen_state)
            next_a, next_lp = agent.actor.sample(batch.next_obs, g)
            next_q = agent.target_critic(batch.next_obs, next_a).min(0).values
            if backup:
                next_q = next_q - agent.alpha * next_lp
            target = batch.reward + 0.99 * (1 - batch.terminated) * next_q
            q = agent.critic(batch.obs, batch.action)
            expected_loss = ((q - target) ** 2).mean(1).sum().item()
        info = agent.update(batch)
        assert info["critic/loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_nan_batch_is_rejected_before_any_parameter_changes():
    agent = SACAgent(SACConfig(hidden_dims=(16,), batch_size=8), STATE, ACTION)
    before = params(agent.critic) + params(agent.actor)
    batch = random_batch(8)
    batch.reward[3] = float("nan")
    with pytest.raises(NonFiniteBatchError, match="reward"):
        agent.update(batch)
    batch = random_batch(8)
    batch.next_obs[0, 0] = float("inf")
    with pytest.raises(NonFiniteBatchError, match="next_obs"):
        agent.update(batch)
    batch = random_batch(8)
    batch.obs[1, 2], batch.obs[2, 2] = float("inf"), float("-inf")  # their sum is NaN
    with pytest.raises(NonFiniteBatchError, match="obs"):
        agent.update(batch)
    after = params(agent.critic) + params(agent.actor)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert agent.critic_steps == 0


def test_finite_values_whose_sum_overflows_are_not_taken_for_inf():
    batch = random_batch(8)
    batch.obs[:, 0] = 3e38  # finite; their float32 sum is inf
    batch.check_finite()


def test_same_seed_gives_the_same_actions_and_losses():
    runs = []
    for _ in range(2):
        agent = SACAgent(
            SACConfig.rlpd(hidden_dims=(32,), utd=2, batch_size=8), STATE, ACTION, seed=7
        )
        losses = [agent.update(random_batch(16, seed=i)) for i in range(3)]
        actions = [agent.act(np.ones(5, np.float32), deterministic=False) for _ in range(3)]
        runs.append((losses, actions))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_wrong_batch_size_is_refused_with_the_expected_rows():
    agent = SACAgent(SACConfig(utd=2, batch_size=8, hidden_dims=(8,)), STATE, ACTION)
    with pytest.raises(ValueError, match="utd × batch_size = 2 × 8 = 16"):
        agent.update(random_batch(8))


def test_unscaled_action_space_is_refused_with_a_fix():
    with pytest.raises(ValueError, match="RescaleAction"):
        SACAgent(SACConfig(), STATE, gym.spaces.Box(-2.0, 2.0, (1,), np.float32))


def test_policy_state_alone_reproduces_the_agents_actions():
    from serl.agents.sac import make_policy

    cfg = SACConfig(hidden_dims=(16,), batch_size=8)
    agent = SACAgent(cfg, STATE, ACTION, seed=1)
    agent.update(random_batch(8))
    policy = make_policy(cfg, STATE, ACTION)
    policy.load_state_dict(agent.policy_state())
    obs = np.linspace(-1, 1, 5).astype(np.float32)
    np.testing.assert_array_equal(
        policy.act(obs, deterministic=True), agent.act(obs, deterministic=True)
    )


# A hand-made SAC whose numbers are worked out on paper. Observations and actions are
# 1-D and positive. The actor's weights are zero, so every state gets mean atanh(0.6) and
# log-std -20 (the clamp's floor): the sample tanh(atanh(0.6) + e^-20·ε) rounds to 0.6 in
# float32, and only the Gaussian term of log π depends on the noise ε:
#   log π = -ε²/2 - log σ - log(2π)/2 - log(1 - 0.6²) = -ε²/2 + 20 - 0.918939 + 0.446287
#         = 19.527348 - ε²/2.
# Each critic member is Q(s, a) = u·s + v·a + c: an identity hidden layer (inputs > 0, so
# the ReLU passes them), then output weights (u, v) and bias c.
LOG_PI_AT_ZERO_NOISE = 20.0 - 0.5 * math.log(2 * math.pi) - math.log(1 - 0.6**2)
HAND_BATCH = Batch(
    obs=torch.tensor([[0.2], [0.4]]),
    action=torch.tensor([[0.3], [0.1]]),
    reward=torch.tensor([1.0, -1.0]),
    next_obs=torch.tensor([[0.5], [1.0]]),
    terminated=torch.tensor([0.0, 1.0]),
)
ONLINE_MEMBERS = [(1.0, 2.0, 0.0), (1.0, 0.0, 2.0)]  # Q1 = s + 2a, Q2 = s + 2
TARGET_MEMBERS = [(1.0, 2.0, 0.5), (2.0, 1.0, 0.0)]  # Q̄1 = s + 2a + 0.5, Q̄2 = 2s + a


def set_linear_members(critic: torch.nn.Module, members: list[tuple[float, float, float]]) -> None:
    n = len(members)
    critic.load_state_dict(
        {
            "hidden.0.weight": torch.eye(2).repeat(n, 1, 1),
            "hidden.0.bias": torch.zeros(n, 1, 2),
            "out.weight": torch.tensor([[[u], [v]] for u, v, _ in members]),
            "out.bias": torch.tensor([[[c]] for _, _, c in members]),
        }
    )


def hand_made_agent(**overrides) -> SACAgent:
    """γ = 0.5, α = 0.5, two members; the critics do not learn (lr 0), so the actor step sees
    the same Q functions as the critic step."""
    cfg = SACConfig(
        hidden_dims=(2,),
        batch_size=2,
        discount=0.5,
        init_temperature=0.5,
        critic_lr=0.0,
        **overrides,
    )
    agent = SACAgent(cfg, gym.spaces.Box(-np.inf, np.inf, (1,), np.float32), UNIT, seed=0)
    with torch.no_grad():
        for p in agent.actor.parameters():
            p.zero_()
        agent.actor.mean.bias.fill_(math.atanh(0.6))
        agent.actor.log_std.bias.fill_(-20.0)
    set_linear_members(agent.critic, ONLINE_MEMBERS)
    set_linear_members(agent.target_critic, TARGET_MEMBERS)
    return agent


def noise_of_next_update(agent: SACAgent) -> tuple[list[float], list[float]]:
    """ε of a' ~ π(·|s') and then of the actor's ã ~ π(·|s), drawn from the agent's generator."""
    g = torch.Generator().set_state(agent.generator.get_state())
    next_eps = torch.randn((2, 1), generator=g)[:, 0].tolist()
    actor_eps = torch.randn((2, 1), generator=g)[:, 0].tolist()
    return next_eps, actor_eps


@pytest.mark.parametrize("backup_entropy", [True, False])
def test_critic_loss_matches_a_hand_computed_sac_target(backup_entropy):
    agent = hand_made_agent(backup_entropy=backup_entropy)
    (eps0, _), _ = noise_of_next_update(agent)
    # Row 0: a' = 0.6; Q̄1(0.5, 0.6) = 0.5 + 1.2 + 0.5 = 2.2, Q̄2(0.5, 0.6) = 1.0 + 0.6 = 1.6;
    # min 1.6. y0 = 1 + 0.5·(1.6 − 0.5·log π) with the entropy term, 1 + 0.5·1.6 = 1.8 without.
    # Row 1 ends the episode: y1 = r = −1.
    log_pi = LOG_PI_AT_ZERO_NOISE - 0.5 * eps0**2
    y0 = 1.8 - 0.25 * log_pi if backup_entropy else 1.8
    y1 = -1.0
    # Online Q on (s, a): Q1 = 0.2 + 0.6 = 0.8 and 0.4 + 0.2 = 0.6; Q2 = 2.2 and 2.4.
    # The reported loss is the sum over members of each member's mean squared error.
    loss1 = ((0.8 - y0) ** 2 + (0.6 - y1) ** 2) / 2
    loss2 = ((2.2 - y0) ** 2 + (2.4 - y1) ** 2) / 2
    if not backup_entropy:  # (1 + 2.56)/2 + (0.16 + 11.56)/2
        assert loss1 + loss2 == pytest.approx(1.78 + 5.86)
    info = agent.update(HAND_BATCH)
    assert info["critic/loss"] == pytest.approx(loss1 + loss2, rel=1e-5)
    assert info["critic/q_mean"] == pytest.approx((0.8 + 0.6 + 2.2 + 2.4) / 4, rel=1e-6)


@pytest.mark.parametrize(("actor_q", "mean_q"), [("min", 1.5), ("mean", 1.9)])
def test_actor_loss_matches_a_hand_computed_case(actor_q, mean_q):
    # ã = 0.6 at s = 0.2 and 0.4: Q1 = s + 1.2 = 1.4, 1.6; Q2 = s + 2 = 2.2, 2.4.
    # min over members: 1.4, 1.6 (batch mean 1.5); mean over members: 1.8, 2.0 (batch mean 1.9).
    agent = hand_made_agent(actor_q=actor_q)
    _, actor_eps = noise_of_next_update(agent)
    log_pi = [LOG_PI_AT_ZERO_NOISE - 0.5 * e**2 for e in actor_eps]
    info = agent.update(HAND_BATCH)
    # L = mean_b(α log π_b − Q_b) with α = 0.5.
    assert info["actor/loss"] == pytest.approx(0.5 * np.mean(log_pi) - mean_q, rel=1e-5)
    assert info["actor/entropy"] == pytest.approx(-np.mean(log_pi), rel=1e-5)


def test_temperature_loss_matches_a_hand_computed_case():
    agent = hand_made_agent()
    _, actor_eps = noise_of_next_update(agent)
    log_pi = [LOG_PI_AT_ZERO_NOISE - 0.5 * e**2 for e in actor_eps]
    info = agent.update(HAND_BATCH)
    # L(α) = mean_b(−α (log π_b + H̄)) with α = 0.5 before the step and H̄ = −|A| = −1.
    assert info["temperature/loss"] == pytest.approx(-0.5 * (np.mean(log_pi) - 1.0), rel=1e-5)
    # Entropy −log π ≈ −19.5 is below the target −1, so the step raises α.
    assert info["temperature/alpha"] > 0.5


def test_actor_gradient_flows_through_the_reparameterised_action():
    # Per row, dL/dμ = α·d(−log(1 − tanh²u))/du − dQ1/da·(1 − tanh²u) = 0.5·2·0.6 − 2·0.64
    # = −0.68 (Q1 is the min member at ã = 0.6): Adam's first step raises μ by its learning
    # rate. An actor that saw Q of a detached action would get +0.6 and lower μ.
    agent = hand_made_agent(actor_lr=1e-3)
    before = agent.actor.mean.bias.item()
    agent.update(HAND_BATCH)
    assert agent.actor.mean.bias.item() - before == pytest.approx(1e-3, rel=1e-2)


def dropout_probe_agent(dropout: float) -> SACAgent:
    """One hidden unit whose pre-activation is 1, passed to the output unchanged: Q is 1/(1 − p)
    where dropout keeps the unit in training (inverted dropout), 0 where it drops it."""
    cfg = SACConfig(hidden_dims=(1,), critic_dropout=dropout, batch_size=8)
    agent = SACAgent(cfg, STATE, ACTION, seed=0)
    n = cfg.num_qs
    agent.critic.load_state_dict(
        {
            "hidden.0.weight": torch.zeros(n, 7, 1),
            "hidden.0.bias": torch.ones(n, 1, 1),
            "out.weight": torch.ones(n, 1, 1),
            "out.bias": torch.zeros(n, 1, 1),
        }
    )
    return agent


def test_critic_dropout_drops_that_fraction_of_units_in_training_and_none_in_eval():
    p = 0.2
    agent = dropout_probe_agent(p)
    batch = random_batch(1024)
    with torch.no_grad():
        q = agent.critic(batch.obs, batch.action)  # (2 members, 1024 rows): 2048 masks
        agent.critic.eval()
        q_eval = agent.critic(batch.obs, batch.action)
    dropped = q == 0
    torch.testing.assert_close(q[~dropped], torch.full_like(q[~dropped], 1 / (1 - p)))
    assert dropped.float().mean().item() == pytest.approx(p, abs=0.04)  # 0.2 ± 0.009 (1 std)
    torch.testing.assert_close(q_eval, torch.ones_like(q_eval))


def test_zero_critic_dropout_keeps_every_unit_in_training():
    agent = dropout_probe_agent(0.0)
    batch = random_batch(1024)
    with torch.no_grad():
        q = agent.critic(batch.obs, batch.action)
    torch.testing.assert_close(q, torch.ones_like(q))
