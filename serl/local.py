"""Single-process training on any environment id, for quick experiments (`serl train-local`).

The same agents, buffer and checkpoints as the actor-learner path, in one loop: act, store,
update (the agent's own update-to-data ratio), evaluate every `eval_every` env steps, and
write metrics.jsonl, TensorBoard scalars, a learning-curve PNG and a final checkpoint.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from serl.agents.sac import SACConfig, action_dim_of
from serl.build import build_agent, frame_features
from serl.checkpoint import save_checkpoint
from serl.config import config_hash, config_to_dict
from serl.data.replay import ReplayBuffer
from serl.data.samplers import UniformSampler
from serl.evaluation import evaluate
from serl.metrics import MetricsLogger
from serl.plots import plot_learning_curve
from serl.rewards.config import ClassifierRewardConfig
from serl.rewards.wrapper import make_classified_env

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalTrainConfig:
    env: str = "Pendulum-v1"
    """Environment id: a gymnasium id or a prefixed one (sim:..., dmc:...)."""
    agent: str = "sac"
    """Agent preset (sets the defaults of --agent-cfg.*): sac, rlpd, drq, bc, h2o, famo2o, moorl,
    drrpo or iwocs (serl/agents/registry.py says what each is)."""
    agent_cfg: SACConfig = field(default_factory=SACConfig)
    """Agent hyper-parameters (defaults come from the --agent preset)."""
    steps: int = 20_000
    """Environment steps to train for."""
    random_steps: int = 1_000
    """Uniformly random actions for the first steps (exploration warm-up)."""
    start_training: int = 1_000
    """Replay size before the first update."""
    buffer_capacity: int = 1_000_000
    """Replay capacity in observation slots (one per transition plus one per episode)."""
    eval_every: int = 2_000
    """Evaluate the deterministic policy every this many env steps (and at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    log_every: int = 250
    """Write training metrics every this many env steps."""
    seed: int = 0
    """Seed of the env, the agent and the sampler."""
    run_dir: Path | None = None
    """Where metrics.jsonl, tensorboard/, curve.png and checkpoint.safetensors go; default
    runs/local/<env>-<agent>-<date-time>. A directory that already holds a run is refused."""
    device: str = "cpu"
    """Torch device of the learner (cpu, cuda, cuda:1)."""
    threads: int = 1
    """torch CPU threads (0: torch's default, one per core). One, as `serl train` uses per
    process: on an idle 2-core machine two threads were 11 % faster on Reach, but with
    anything else running they wait for each other and were 7-15 times slower
    (docs/readme-costs.md)."""
    progress: bool = True
    """Show a progress bar."""
    reward: ClassifierRewardConfig = field(default_factory=ClassifierRewardConfig)
    """Reward classifier (serl train-reward) whose decision replaces the env's reward and
    termination in training and evaluation; off unless --reward.checkpoint is given."""
    success_key: str = ""
    """Info key the env reports success under (e.g. gym-hil's succeed); empty: success,
    is_success or succeed, whichever the env has. Envs without one get no success rate."""


@dataclass(frozen=True)
class LocalTrainResult:
    final_eval: dict[str, float]
    run_dir: Path
    checkpoint: Path
    curve_png: Path


class RunDirError(RuntimeError):
    """The run directory already holds another run; the message says what to do."""


def fresh_run_dir(cfg: LocalTrainConfig) -> Path:
    """cfg.run_dir, or a new runs/local/<env>-<agent>-<date-time>; never a directory that
    holds a run already (its metrics would mix with this run's and its checkpoint be lost)."""
    if cfg.run_dir is None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cfg.env}-{cfg.agent}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs/local") / f"{name}-{stamp}"
        suffix = 1
        while run_dir.exists():  # two runs started in the same second
            suffix += 1
            run_dir = Path("runs/local") / f"{name}-{stamp}-{suffix}"
        return run_dir
    run_dir = Path(cfg.run_dir)
    held = [n for n in ("metrics.jsonl", "checkpoint.safetensors") if (run_dir / n).exists()]
    if held:
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(held)}); choose another --run-dir or "
            "leave it out (a new runs/local/<env>-<agent>-<date-time> is made)"
        )
    return run_dir


def train_local(cfg: LocalTrainConfig) -> LocalTrainResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = make_classified_env(cfg.env, cfg.reward)
    eval_env = make_classified_env(cfg.env, cfg.reward)
    agent = build_agent(
        cfg.agent,
        cfg.agent_cfg,
        env.observation_space,
        env.action_space,
        seed=cfg.seed,
        device=cfg.device,
    )
    buffer = ReplayBuffer(
        env.observation_space,
        action_dim_of(env.action_space),
        min(cfg.buffer_capacity, 2 * cfg.steps),
        frame_features=frame_features(agent),
    )
    rows = cfg.agent_cfg.utd * cfg.agent_cfg.batch_size
    sampler = UniformSampler(buffer, rows, seed=cfg.seed)
    env.action_space.seed(cfg.seed)
    run_dir = fresh_run_dir(cfg)
    metrics = MetricsLogger(run_dir)
    logger.info(
        "training %s with %s for %d steps; logs in %s", cfg.env, cfg.agent, cfg.steps, run_dir
    )

    obs, _ = env.reset(seed=cfg.seed)
    episode_id, t, episode_return = 0, 0, 0.0
    final_eval: dict[str, Any] = {}
    start = time.perf_counter()
    bar = tqdm(range(1, cfg.steps + 1), disable=not cfg.progress, unit="step", dynamic_ncols=True)
    for step in bar:
        if step <= cfg.random_steps:
            action = env.action_space.sample()
        else:
            action = agent.act(obs, deterministic=False)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(
            obs, action, reward, next_obs, terminated, truncated,
            source="online", episode_id=episode_id, t=t,
        )  # fmt: skip
        obs, t, episode_return = next_obs, t + 1, episode_return + float(reward)
        if terminated or truncated:
            metrics.log(step, {"train/episode_return": episode_return, "train/episode_length": t})
            bar.set_postfix(ret=f"{episode_return:.1f}", refresh=False)
            obs, _ = env.reset()
            episode_id, t, episode_return = episode_id + 1, 0, 0.0

        if len(buffer) >= cfg.start_training:
            info = agent.update(sampler.sample())
            if step % cfg.log_every == 0:
                elapsed = time.perf_counter() - start
                metrics.log(step, {**info, "time/env_steps_per_s": step / elapsed})
        if step % cfg.eval_every == 0 or step == cfg.steps:
            final_eval = evaluate(
                eval_env,
                lambda o: agent.act(o, deterministic=True),
                episodes=cfg.eval_episodes,
                seed=cfg.seed + 10_000,
                success_key=cfg.success_key,
            )
            metrics.log(step, {**final_eval, "time/wall_s": time.perf_counter() - start})
            bar.set_description(f"eval {final_eval['eval/return_mean']:.1f}")
    metrics.close()

    checkpoint = run_dir / "checkpoint.safetensors"
    save_checkpoint(
        checkpoint,
        agent.state_dict(),
        config=config_to_dict(cfg),
        config_hash=config_hash(cfg.agent_cfg),
        metadata={"env": cfg.env, "agent": cfg.agent, "env_steps": cfg.steps},
    )
    curve = plot_learning_curve(
        metrics.path, run_dir / "curve.png", title=f"{cfg.agent} on {cfg.env}"
    )
    return LocalTrainResult(final_eval, run_dir, checkpoint, curve)
