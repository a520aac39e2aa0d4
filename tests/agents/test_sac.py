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
    after = params(agent.critic) + params(agent.actor)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert agent.critic_steps == 0


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
