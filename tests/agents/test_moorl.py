"""MOORL checks of ALGORITHMS §5: the Reptile step, source isolation, K=1/ε=1 ≡ SAC, bandit."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from serl.agents.moorl import MOORLAgent, MOORLConfig
from serl.agents.sac import SACAgent, SACConfig
from serl.data.batch import Batch

STATE = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACTION = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
UNIT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
SMALL = SACConfig(hidden_dims=(32, 32), batch_size=16)


def source_rows(n: int, offline: bool, seed: int) -> Batch:
    """Rows whose reward marks their source: +1 offline, -1 online."""
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, 3, generator=g),
        action=torch.rand(n, 2, generator=g) * 2 - 1,
        reward=torch.full((n,), 1.0 if offline else -1.0),
        next_obs=torch.randn(n, 3, generator=g),
        terminated=torch.zeros(n),
        prior=torch.full((n,), 1.0 if offline else 0.0),
    )


def interleaved(online: Batch, offline: Batch) -> Batch:
    """Even rows online, odd rows offline (the learner's symmetric sampler)."""

    def mix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack((a, b), dim=1).flatten(0, 1)

    return Batch(
        *(mix(getattr(online, f), getattr(offline, f)) for f in Batch.__dataclass_fields__)
    )


def mixed(cfg: MOORLConfig, seed: int) -> Batch:
    n = cfg.source_rows
    return interleaved(source_rows(n, False, seed), source_rows(n, True, seed + 1000))


@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0])
def test_outer_step_is_meta_plus_eps_times_adapted_minus_meta(eps):
    cfg = MOORLConfig(sac=SMALL, inner_steps=3, meta_step_size=eps)
    agent = MOORLAgent(cfg, STATE, ACTION, seed=0)
    agent.update(mixed(cfg, 0))  # move away from the initial weights first
    before = [t.detach().clone() for t in agent._meta]
    agent.update(mixed(cfg, 1))
    adapted = [t.detach().clone() for t in agent._inner_tensors()]  # θ_K
    assert any(not torch.equal(a, b) for a, b in zip(adapted, before, strict=True))
    for meta, old, theta_k in zip(agent._meta, before, adapted, strict=True):
        if eps == 0.0:
            assert torch.equal(meta, old)
        elif eps == 1.0:
            assert torch.equal(meta, theta_k)
        else:
            torch.testing.assert_close(meta, old + eps * (theta_k - old), rtol=0, atol=1e-6)


def test_inner_steps_only_ever_see_rows_of_the_chosen_source():
    cfg = MOORLConfig(sac=SMALL, inner_steps=3, source_rule="random")
    agent = MOORLAgent(cfg, STATE, ACTION, seed=0)
    seen: list[set[float]] = []
    inner_update = agent.inner.update

    def spy(batch: Batch) -> dict[str, float]:
        seen.append(set(batch.reward.tolist()) | {float(v) + 10 for v in batch.prior.tolist()})
        return inner_update(batch)

    agent.inner.update = spy
    chosen = []
    for seed in range(12):
        chosen.append(agent.update(mixed(cfg, seed))["moorl/source_offline"])
    assert len(seen) == 12 * 3
    for epoch, flag in enumerate(chosen):
        want = {1.0, 11.0} if flag else {-1.0, 10.0}
        assert all(s == want for s in seen[3 * epoch : 3 * epoch + 3])
    assert 0 < sum(chosen) < 12  # both sources were drawn


def test_alternate_rule_alternates_and_a_single_source_batch_uses_that_source():
    cfg = MOORLConfig(sac=SMALL, inner_steps=1)
    agent = MOORLAgent(cfg, STATE, ACTION, seed=0)
    flags = [agent.update(mixed(cfg, s))["moorl/source_offline"] for s in range(4)]
    assert flags == [1.0, 0.0, 1.0, 0.0]
    offline_only = source_rows(cfg.batch_size, True, 9)
    assert [agent.update(offline_only)["moorl/source_offline"] for _ in range(2)] == [1.0, 1.0]


def test_k1_eps1_with_identical_sources_matches_sac_step_for_step():
    sac = SACAgent(SMALL, STATE, ACTION, seed=3)
    moorl = MOORLAgent(
        MOORLConfig(sac=SMALL, inner_steps=1, meta_step_size=1.0), STATE, ACTION, seed=3
    )
    for step in range(6):
        rows = source_rows(SMALL.batch_size, False, step)
        same = copy.copy(rows)
        same.prior = torch.ones(SMALL.batch_size)
        rows.prior = torch.zeros(SMALL.batch_size)
        sac_info = sac.update(
            Batch(rows.obs, rows.action, rows.reward, rows.next_obs, rows.terminated)
        )
        moorl_info = moorl.update(interleaved(rows, same))
        assert {k: v for k, v in moorl_info.items() if not k.startswith("moorl/")} == sac_info
    for a, b in zip(sac.policy.parameters(), moorl.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(sac.critic.parameters(), moorl.inner.critic.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_dict_round_trip_resumes_identically():
    cfg = MOORLConfig(sac=SMALL, inner_steps=2, source_rule="random")
    agent = MOORLAgent(cfg, STATE, ACTION, seed=0)
    agent.update(mixed(cfg, 0))
    clone = MOORLAgent(cfg, STATE, ACTION, seed=7)
    clone.load_state_dict(copy.deepcopy(agent.state_dict()))
    for seed in (1, 2, 3):
        assert agent.update(mixed(cfg, seed)) == clone.update(mixed(cfg, seed))
    assert all(torch.equal(a, b) for a, b in zip(agent._meta, clone._meta, strict=True))


# ------------------------------------------------------------------------------- bandit
def bandit_steps_to_optimum(agent, uses_offline: bool, seed: int, max_steps: int = 300) -> int:
    """Online steps until the deterministic action is within 0.05 of the optimum a* = 0.5."""
    rng = np.random.default_rng(seed)
    offline_actions = np.clip(rng.normal(0.5, 0.1, (2000, 1)), -1, 1).astype(np.float32)
    online_actions: list[np.ndarray] = []
    half = agent.cfg.source_rows if uses_offline else agent.cfg.batch_size
    zeros = torch.zeros(half, 1)

    def rows(actions: np.ndarray, prior: float) -> Batch:
        a = torch.from_numpy(actions)
        reward = -((a[:, 0] - 0.5) ** 2)
        return Batch(zeros, a, reward, zeros, torch.ones(half), torch.full((half,), prior))

    for step in range(1, max_steps + 1):
        obs = np.zeros(1, np.float32)
        action = agent.act(obs, deterministic=False) if step > 10 else rng.uniform(-1, 1, 1)
        online_actions.append(np.asarray(action, np.float32))
        if step < 10:
            continue
        online = rows(np.stack(online_actions)[rng.integers(0, len(online_actions), half)], 0.0)
        if uses_offline:
            offline = rows(offline_actions[rng.integers(0, len(offline_actions), half)], 1.0)
            agent.update(interleaved(online, offline))
        else:
            online.prior = None
            agent.update(online)
        if step % 10 == 0 and abs(agent.act(obs, deterministic=True)[0] - 0.5) < 0.05:
            return step
    return max_steps + 1


def test_bandit_with_offline_data_near_optimum_reaches_it_in_fewer_online_steps_than_sac():
    sac_cfg = SACConfig(
        hidden_dims=(32, 32), actor_lr=1e-3, critic_lr=1e-3, init_temperature=0.1, batch_size=32
    )
    moorl_cfg = MOORLConfig(sac=sac_cfg)
    moorl_steps, sac_steps = [], []
    for seed in range(5):
        moorl = MOORLAgent(moorl_cfg, gym.spaces.Box(-1, 1, (1,)), UNIT, seed=seed)
        sac = SACAgent(sac_cfg, gym.spaces.Box(-1, 1, (1,)), UNIT, seed=seed)
        moorl_steps.append(bandit_steps_to_optimum(moorl, True, seed))
        sac_steps.append(bandit_steps_to_optimum(sac, False, seed))
    assert np.median(moorl_steps) < np.median(sac_steps), (moorl_steps, sac_steps)
