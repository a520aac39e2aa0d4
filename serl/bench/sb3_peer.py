"""Stable-Baselines3's SAC as the peer of the learning benchmarks, with our settings.

Same networks (256x256 actor and critics), batch, learning rates, discount, Polyak rate,
initial temperature, target entropy (−|A|), replay size and random warm-up as `SACConfig()`
and `serl train`, so the comparison is between implementations, not hyper-parameters. SB3
trains in one process (one env step, one gradient step); it is evaluated every
`eval_every` env steps with deterministic actions, and its evaluations go to a metrics.jsonl
in the same format as our learner's, so one reader draws both curves. The evaluation pauses
SB3's training (our actors evaluate beside the learner), so its wall-clock includes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from serl.agents.sac import SACConfig
from serl.envs import make_env
from serl.evaluation import evaluate
from serl.metrics import MetricsLogger


@dataclass(frozen=True)
class PeerRun:
    env: str
    """Environment id (as for `serl train`)."""
    steps: int
    """Env steps."""
    random_steps: int
    """Uniformly random actions before learning starts."""
    seed: int
    """Seed of SB3 and of the env."""
    eval_every: int
    """Env steps between evaluations."""
    eval_episodes: int
    """Deterministic episodes per evaluation."""
    threads: int
    """torch threads (the whole machine, as our learner and actors share it)."""


def evaluate_sb3(model, env_id: str, episodes: int, seed: int) -> dict[str, float]:
    env = make_env(env_id)
    try:
        return evaluate(
            env, lambda obs: model.predict(obs, deterministic=True)[0], episodes=episodes, seed=seed
        )
    finally:
        env.close()


def train_sb3_sac(run: PeerRun, run_dir: Path) -> float:
    """Train SB3's SAC, logging evaluations to `run_dir/metrics.jsonl`; returns the start time."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(run.threads)
    cfg = SACConfig()
    env = make_env(run.env)
    action_dim = int(np.prod(env.action_space.shape))
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=cfg.critic_lr,
        buffer_size=max(run.steps, 1),
        learning_starts=run.random_steps,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.discount,
        ent_coef=f"auto_{cfg.init_temperature}",
        target_entropy=cfg.target_entropy_per_dim * action_dim,
        policy_kwargs={"net_arch": list(cfg.hidden_dims)},
        seed=run.seed,
        device="cpu",
    )
    start = time.time()
    logger = MetricsLogger(run_dir, tensorboard=False)

    class EvaluateEvery(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % run.eval_every == 0:
                logger.log(
                    self.num_timesteps,
                    evaluate_sb3(self.model, run.env, run.eval_episodes, run.seed + 10_000),
                )
            return True

    with logger:
        model.learn(run.steps, callback=EvaluateEvery())
    env.close()
    return start
