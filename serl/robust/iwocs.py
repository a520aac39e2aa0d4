"""The deep IWOCS outer loop as an orchestrator of actor-learner runs.

Zouitine et al. 2024, "Solving robust MDPs as a sequence of static RL problems", Alg. 1:
1. solve model T_0 (the centre of the box unless `nominal` is given): one `serl train` run
   with `--agent iwocs` and the actors' `env_params` = T_0;
2. π_i = the composite of every model solved so far (min over the models' unregularised Q
   heads among the valid ones, Eq. 5; `serl.agents.iwocs_policy`);
3. T_{i+1} = argmin_T V^{π_i}_T(s0) by CMA-ES or grid search over the box, V estimated by
   the mean discounted return of `search_episodes` seeded episodes in
   `make_env(env, params=T)` (`rollout`);
4. stop when |V^{π_i}_{T_{i+1}}(s0) − Q_i(s0, π_i(s0))| <= ε (Eq. 6), else train on T_{i+1}
   (the new run loads all earlier models from the previous run's checkpoint) and repeat.
After each run the validity radius of the new model is chosen from `validity_scales` (the
scale whose composite has the best worst-case value over the models found so far, V measured
by the same `rollout` as the search), and written into that run's checkpoint. The registry of
found models (their parameters, search values and checkpoints) is `run_dir/iwocs.json`; the
last checkpoint holds every model with its parameters (`components.<j>.params`) and is what
`serl eval-robust` evaluates.

Decisions: s0 is not one state but the start distribution, so both sides of Eq. 6 are means
over the first states of the search episodes at T_{i+1}: V as their mean discounted return,
Q_i(s0, π_i(s0)) as the mean of the composite's start value over the same states. V uses the
same discount as the agent, so both sides are discounted values (episodes are time-limited,
so Q, which bootstraps through truncation, reads somewhat higher: choose ε with that in mind).
Each model gets the same env-step budget (`train.steps`). The default box, `actuation-wide`
(motor constant × joint damping), is one that changes Reach; friction and object mass do not.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serl.agents.iwocs import IWOCSConfig
from serl.agents.iwocs_policy import CompositePolicy
from serl.checkpoint import read_checkpoint, save_checkpoint
from serl.checkpoint_eval import load_policy
from serl.envs import make_env
from serl.robust.search import Bounds, SearchResult, search
from serl.robust.uncertainty import uncertainty_bounds
from serl.train import TrainConfig, train

logger = logging.getLogger(__name__)

REGISTRY_NAME = "iwocs.json"
SEARCH_SEED_OFFSET = 20_000
"""Search episodes use seeds apart from the training and final-evaluation ones."""


@dataclass(frozen=True)
class IWOCSRunConfig:
    env: str = "sim:PandaReach-v0"
    """Environment id whose `make_env(..., params=...)` sets dynamics parameters."""
    uncertainty: str = "actuation-wide"
    """Named set of the env's package or a box name=low:high,...; actuation-wide changes Reach."""
    nominal: dict[str, float] = field(default_factory=dict)
    """T_0; empty: the centre of the box."""
    max_models: int = 3
    """Most models solved (the loop also stops by the rule of Eq. 6)."""
    epsilon: float = 1.0
    """Stopping tolerance on |V^π(worst) − Q_i(s0, π_i(s0))|, in discounted-return units."""
    search: str = "cmaes"
    """Worst-case search: cmaes or grid."""
    search_budget: int = 16
    """Objective evaluations per search (grid: about this many points)."""
    search_episodes: int = 2
    """Seeded episodes per objective evaluation."""
    validity_scales: tuple[float, ...] = (1.0, 2.0, 4.0)
    """Grid of ρ_j scales (× the calibrated predictor error) tried for each new model."""
    fallback_checkpoint: Path | None = None
    """Domain-randomised SAC checkpoint for states where no model is valid."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Settings of each model's actor-learner run (steps, actors, agent_cfg hyper-parameters)."""
    run_dir: Path = Path("runs/iwocs")
    """model-<i>/ run directories and iwocs.json go here."""
    seed: int = 0
    """Seed of the searches and of the evaluation episodes."""


@dataclass
class IWOCSRecord:
    params: dict[str, float]
    """T_i: the dynamics this model was trained on."""
    checkpoint: str
    """The run's checkpoint (holds models 0..i)."""
    validity_scale: float
    """The ρ_i scale chosen from `validity_scales`."""
    search_params: dict[str, float] | None = None
    """T_{i+1}: the worst model the search found for π_i."""
    search_value: float | None = None
    """V^{π_i}_{T_{i+1}}(s0): mean discounted return of the search episodes there."""
    predicted_value: float | None = None
    """Q_i(s0, π_i(s0)): mean over the same episodes' first states (Eq. 6 compares the two)."""


@dataclass(frozen=True)
class Rollout:
    value: float
    """Mean discounted return Σ_t γ^t r_t over the episodes: the estimate of V^{π_i}_T(s0)."""
    start_value: float
    """Mean of Q_i(s0, π_i(s0)) over the same episodes' first states (Eq. 6's other side)."""


def rollout(
    policy: CompositePolicy,
    env_id: str,
    params: dict[str, float],
    *,
    episodes: int,
    seed: int,
    discount: float,
) -> Rollout:
    """The composite's deterministic episodes `seed`, `seed+1`, ... in `make_env(params=...)`.

    The one estimate of V that the worst-case search, the validity-scale choice and the
    stopping rule all use, so the three compare like with like.
    """
    returns, start_values = [], []
    env = make_env(env_id, params=params)
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            policy.reset_episode()
            start_values.append(policy.start_value(obs))
            done, t, ret = False, 0, 0.0
            while not done:
                obs, reward, terminated, truncated, _ = env.step(
                    policy.act(obs, deterministic=True)
                )
                ret += discount**t * float(reward)
                t += 1
                done = terminated or truncated
            returns.append(ret)
    finally:
        env.close()
    return Rollout(float(np.mean(returns)), float(np.mean(start_values)))


def set_validity_scale(checkpoint: Path, index: int, factor: float) -> None:
    """Multiply model `index`'s validity radius in a checkpoint by `factor`, in place."""
    header, state = read_checkpoint(checkpoint)
    key = f"components.{index}.radius"
    state["policy"][key] = state["policy"][key] * factor
    save_checkpoint(
        checkpoint,
        state,
        config=header["config"],
        config_hash=header["config_hash"],
        metadata=header["metadata"],
    )


def _composite(checkpoint: Path, env_id: str) -> CompositePolicy:
    policy = load_policy(checkpoint, env=env_id).policy
    if not isinstance(policy, CompositePolicy):
        raise TypeError(f"{checkpoint} is not an IWOCS checkpoint")
    return policy


def run_iwocs(
    cfg: IWOCSRunConfig,
    *,
    train_fn: Callable[[TrainConfig], Any] = train,
) -> list[IWOCSRecord]:
    """The outer loop; returns the registry (also written to run_dir/iwocs.json)."""
    bounds = uncertainty_bounds(cfg.env, cfg.uncertainty)
    names = sorted(bounds)
    nominal = {n: cfg.nominal.get(n, 0.5 * (lo + hi)) for n, (lo, hi) in sorted(bounds.items())}
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    base = cfg.train.agent_cfg
    base_fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    base_fields = {k: v for k, v in base_fields.items() if k in IWOCSConfig.__dataclass_fields__}
    registry: list[IWOCSRecord] = []
    params, previous = nominal, None
    for i in range(cfg.max_models):
        agent_cfg = IWOCSConfig(
            **{
                **base_fields,
                "prior_models": i,
                "previous_checkpoint": previous,
                "fallback_checkpoint": cfg.fallback_checkpoint,
                "param_names": tuple(names),
                "model_params": tuple(params[n] for n in names),
            }
        )
        train_cfg = dataclasses.replace(
            cfg.train,
            env=cfg.env,
            env_params=params,
            agent="iwocs",
            agent_cfg=agent_cfg,
            run_dir=run_dir / f"model-{i}",
        )
        logger.info("IWOCS: solving model %d at %s", i, params)
        result = train_fn(train_cfg)
        checkpoint = Path(result.checkpoint)
        scale = _choose_validity_scale(cfg, checkpoint, i, registry, params, agent_cfg)
        record = IWOCSRecord(params, str(checkpoint), scale)
        registry.append(record)
        previous = checkpoint

        found, predicted = _search_worst(
            cfg, _composite(checkpoint, cfg.env), bounds, agent_cfg.discount
        )
        record.search_params, record.search_value = found.params, found.value
        record.predicted_value = predicted
        _write_registry(run_dir, registry)
        logger.info(
            "IWOCS: worst model %s, V=%.3f, Q_i predicts %.3f", found.params, found.value, predicted
        )
        if abs(found.value - predicted) <= cfg.epsilon:
            logger.info("IWOCS: stopping rule met after %d models", i + 1)
            break
        params = found.params
    return registry


def _search_worst(
    cfg: IWOCSRunConfig, policy: CompositePolicy, bounds: Bounds, discount: float
) -> tuple[SearchResult, float]:
    """T_{i+1} = argmin_T V^{π_i}_T(s0), and Q_i(s0, π_i(s0)) averaged over the first states
    of the very search episodes that measured V at T_{i+1}."""
    rollouts: dict[tuple[tuple[str, float], ...], Rollout] = {}

    def objective(params: dict[str, float]) -> float:
        result = rollout(
            policy,
            cfg.env,
            params,
            episodes=cfg.search_episodes,
            seed=cfg.seed + SEARCH_SEED_OFFSET,
            discount=discount,
        )
        rollouts[tuple(sorted(params.items()))] = result
        return result.value

    found = search(objective, bounds, method=cfg.search, budget=cfg.search_budget, seed=cfg.seed)
    return found, rollouts[tuple(sorted(found.params.items()))].start_value


def _choose_validity_scale(
    cfg: IWOCSRunConfig,
    checkpoint: Path,
    index: int,
    registry: list[IWOCSRecord],
    params: dict[str, float],
    agent_cfg: IWOCSConfig,
) -> float:
    """The scale of ρ_index with the best worst-case value (`rollout`, as in the search) over
    the models found so far."""
    models = [r.params for r in registry] + [params]
    best_scale, best_worst = 1.0, -np.inf
    current = agent_cfg.validity_scale
    for scale in cfg.validity_scales:
        set_validity_scale(checkpoint, index, scale / current)
        current = scale
        policy = _composite(checkpoint, cfg.env)
        worst = min(
            rollout(
                policy,
                cfg.env,
                p,
                episodes=cfg.search_episodes,
                seed=cfg.seed,
                discount=agent_cfg.discount,
            ).value
            for p in models
        )
        if worst > best_worst:
            best_scale, best_worst = scale, worst
    set_validity_scale(checkpoint, index, best_scale / current)
    return best_scale


def _write_registry(run_dir: Path, registry: list[IWOCSRecord]) -> None:
    data = {"models": [dataclasses.asdict(r) for r in registry]}
    (run_dir / REGISTRY_NAME).write_text(json.dumps(data, indent=2) + "\n")


def read_registry(run_dir: str | Path) -> list[dict[str, Any]]:
    """The models an IWOCS run found, in order (parameters, search results, checkpoints)."""
    return json.loads((Path(run_dir) / REGISTRY_NAME).read_text())["models"]
