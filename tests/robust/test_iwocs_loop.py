"""The deep IWOCS outer loop (`serl.robust.iwocs`) around a hand-set policy, without training.

`train_fn` is replaced by one that writes a checkpoint of a fixed composite: a proportional
reaching controller for Reach, a Q head that reads the target's x coordinate (so Q differs
from one start state to the next) and a predictor that accepts everything. The real outer
loop then runs its worst-case search, its validity-scale choice and its stopping rule on the
default uncertainty box, so these tests pin down the loop itself: that it finds the worst
model (not the best), compares V with the mean of Q over the search episodes' start states,
and stops exactly when the gap is within ε.

The search is the 4 × 4 grid: deterministic, and on this box CMA-ES with a small budget often
stops short of the worst corner (the return falls off a cliff below actuator_gain 0.6, far from
CMA-ES's start at the centre). CMA-ES itself is checked in tests/agents/test_iwocs.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from serl.agents.iwocs import IWOCSConfig
from serl.agents.iwocs_policy import ModelComponent
from serl.agents.sac import SACConfig
from serl.checkpoint import read_checkpoint, save_checkpoint
from serl.checkpoint_eval import load_policy
from serl.config import config_to_dict
from serl.envs import make_env
from serl.robust.iwocs import SEARCH_SEED_OFFSET, IWOCSRunConfig, run_iwocs
from serl.robust.search import grid_points
from serl.robust.uncertainty import uncertainty_bounds
from serl.train import TrainConfig
from tests.robust.rollouts import discounted_return

REACH = "sim:PandaReach-v0"
TCP, TARGET, TARGET_MINUS_TCP = slice(0, 3), slice(7, 10), slice(10, 13)
"""Reach's state layout: tcp_pos, tcp_vel, gripper_width, target_pos, target_minus_tcp."""
ACTION_SCALE_M = 0.05
"""Reach's controller moves the TCP target by action × this per step."""
Q_SLOPE, Q_BIAS = 100.0, -20.0
"""Hand-set Q(s, a) = Q_SLOPE · target_x + Q_BIAS: 15 to 40 over Reach's targets (x in
0.35-0.6 m), far from the returns (about -5 to -35), so ε = 1 never stops the loop."""
HIDDEN = (6,)
SEARCH_EPISODES = 3


def hand_set(component: ModelComponent) -> None:
    """a = tanh((target − tcp) / ACTION_SCALE_M), Q as above, predictor s' = s, valid always."""
    with torch.no_grad():
        for p in [*component.policy.parameters(), *component.q_head.parameters()]:
            p.zero_()
        for p in component.predictor.parameters():
            p.zero_()
        trunk, mean = component.policy.head.trunk.net[0], component.policy.head.mean
        for i in range(3):  # ReLU pairs carry ±(target − tcp)_i through the hidden layer
            trunk.weight[i, TARGET_MINUS_TCP.start + i] = 1.0 / ACTION_SCALE_M
            trunk.weight[3 + i, TARGET_MINUS_TCP.start + i] = -1.0 / ACTION_SCALE_M
            mean.weight[i, i], mean.weight[i, 3 + i] = 1.0, -1.0
        component.q_head.net[0].weight[0, TARGET.start] = 1.0  # relu(target_x), x > 0
        component.q_head.net[-1].weight[0, 0] = Q_SLOPE
        component.q_head.net[-1].bias.fill_(Q_BIAS)


class HandSetTraining:
    """Stands in for `serl train`: writes the fixed composite and records what it was asked."""

    def __init__(self) -> None:
        self.models: list[dict[str, float]] = []

    def __call__(self, train_cfg: TrainConfig) -> SimpleNamespace:
        cfg: IWOCSConfig = train_cfg.agent_cfg
        self.models.append(dict(train_cfg.env_params))
        env = make_env(train_cfg.env)
        try:
            composite = cfg.make_actor_policy(env.observation_space, env.action_space)
        finally:
            env.close()
        if cfg.prior_models:
            _, previous = read_checkpoint(cfg.previous_checkpoint)
            composite.load_state_dict(previous["policy"], strict=False)
        hand_set(composite.newest)
        composite.newest.params.copy_(torch.tensor(cfg.model_params))
        config = {"env": train_cfg.env, "agent": "iwocs", "agent_cfg": config_to_dict(cfg)}
        path = Path(train_cfg.run_dir) / "checkpoint.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"policy": composite.state_dict()}
        save_checkpoint(path, state, config=config, config_hash="0", metadata={})
        return SimpleNamespace(checkpoint=path)


def loop_config(run_dir: Path, **kw) -> IWOCSRunConfig:
    base = IWOCSRunConfig(
        env=REACH,
        max_models=2,
        epsilon=1.0,
        search="grid",
        search_budget=16,
        search_episodes=SEARCH_EPISODES,
        validity_scales=(1.0,),
        train=TrainConfig(agent_cfg=SACConfig(hidden_dims=HIDDEN)),
        run_dir=run_dir,
    )
    return dataclasses.replace(base, **kw)


@pytest.fixture(scope="module")
def continued(tmp_path_factory) -> tuple[IWOCSRunConfig, list, HandSetTraining]:
    """A loop whose gap (about 40) exceeds ε = 1, so it solves both of its models."""
    cfg = loop_config(tmp_path_factory.mktemp("continued"))
    training = HandSetTraining()
    return cfg, run_iwocs(cfg, train_fn=training), training


def search_value_at(policy: Any, params: dict[str, float], cfg: IWOCSRunConfig) -> float:
    """V at `params` as the loop's search measures it (its seeds, episodes and discount)."""
    return discounted_return(
        policy,
        cfg.env,
        params,
        episodes=cfg.search_episodes,
        seed=cfg.seed + SEARCH_SEED_OFFSET,
        discount=cfg.train.agent_cfg.discount,
    )


@pytest.mark.timeout(600)
def test_default_box_changes_reach_for_a_reaching_controller(continued) -> None:
    cfg, registry, _ = continued
    bounds = uncertainty_bounds(cfg.env, IWOCSRunConfig().uncertainty)
    policy = load_policy(registry[0].checkpoint, env=REACH).policy
    corners = [search_value_at(policy, p, cfg) for p in grid_points(bounds, 2)]
    assert max(corners) - min(corners) > 10.0, corners  # friction-mass: within 0.02


@pytest.mark.timeout(600)
def test_search_finds_the_worst_cell_of_a_grid_not_the_best(continued) -> None:
    cfg, registry, _ = continued
    first = registry[0]
    bounds = uncertainty_bounds(cfg.env, cfg.uncertainty)
    policy = load_policy(first.checkpoint, env=REACH).policy
    grid = [search_value_at(policy, p, cfg) for p in grid_points(bounds, 7)]  # ⊃ the 4 × 4
    worst, best = min(grid), max(grid)
    assert best - worst > 10.0, grid  # a box that matters, or this test proves nothing
    assert first.search_value == pytest.approx(
        search_value_at(policy, first.search_params, cfg), abs=1e-6
    )  # the value reported is the return at the parameters reported
    assert first.search_value <= worst + 0.1 * (best - worst), (first.search_params, grid)


@pytest.mark.timeout(600)
def test_predicted_value_is_q_averaged_over_the_search_episodes_start_states(continued) -> None:
    cfg, registry, _ = continued
    env = make_env(REACH, params=registry[0].search_params)
    starts = [
        env.reset(seed=cfg.seed + SEARCH_SEED_OFFSET + e)[0] for e in range(cfg.search_episodes)
    ]
    env.close()
    q_starts = [Q_SLOPE * float(s[TARGET.start]) + Q_BIAS for s in starts]
    assert max(q_starts) - min(q_starts) > 1.0, q_starts  # one start would read differently
    assert registry[0].predicted_value == pytest.approx(float(np.mean(q_starts)), abs=1e-3)


@pytest.mark.timeout(600)
def test_loop_continues_on_the_worst_model_while_the_gap_exceeds_epsilon(continued) -> None:
    cfg, registry, training = continued
    gap = abs(registry[0].search_value - registry[0].predicted_value)
    assert gap > cfg.epsilon
    assert len(registry) == cfg.max_models == 2
    assert training.models[1] == registry[0].search_params == registry[1].params
    _, state = read_checkpoint(registry[1].checkpoint)
    names = sorted(registry[1].params)
    expected = [registry[1].params[n] for n in names]
    assert state["policy"]["components.1.params"].tolist() == pytest.approx(expected)


@pytest.mark.timeout(600)
def test_loop_stops_after_one_model_when_the_gap_is_within_epsilon(
    continued, tmp_path: Path
) -> None:
    cfg, registry, _ = continued
    gap = abs(registry[0].search_value - registry[0].predicted_value)
    training = HandSetTraining()
    stopped = run_iwocs(
        dataclasses.replace(cfg, epsilon=gap + 1e-6, max_models=3, run_dir=tmp_path),
        train_fn=training,
    )
    assert len(stopped) == len(training.models) == 1
    assert stopped[0].search_params == registry[0].search_params
