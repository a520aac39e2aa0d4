import gymnasium as gym
import numpy as np
import torch

from serl.agents.bc import BCAgent, BCConfig
from serl.data.batch import Batch

STATE = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACTION = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
EXPERT = torch.tensor([[0.5, -0.3], [0.2, 0.4], [-0.6, 0.1]])


def expert_batch(g: torch.Generator, n: int = 256) -> Batch:
    obs = torch.randn(n, 3, generator=g)
    action = torch.tanh(obs @ EXPERT)
    return Batch(obs, action, torch.zeros(n), obs, torch.zeros(n))


def test_bc_imitates_a_linear_expert():
    agent = BCAgent(BCConfig(hidden_dims=(64, 64), lr=1e-3), STATE, ACTION)
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        info = agent.update(expert_batch(g))
    test = expert_batch(torch.Generator().manual_seed(99), 500)
    predicted = np.stack([agent.act(o.numpy(), deterministic=True) for o in test.obs])
    assert np.mean((predicted - test.action.numpy()) ** 2) < 0.01
    assert info["bc/action_mse"] < 0.01
