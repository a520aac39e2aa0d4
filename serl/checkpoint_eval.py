"""Evaluate a checkpoint's policy in-process (`serl eval`, the end of `serl train`).

Works for checkpoints of the learner and of `serl train-local` alike: both store the resolved
config (env id, agent preset, agent config) and the agent's state, whose `policy` entry is the
actor-side network. Only that network is built; critics and optimizers are never loaded.
Optionally records the evaluation as a real-time animated GIF (`serl.video`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from serl.agents.policy import ActorPolicy
from serl.agents.registry import agent_spec
from serl.agreement import actor_policy
from serl.checkpoint import CheckpointError, read_checkpoint
from serl.config import config_from_dict
from serl.envs import make_env
from serl.evaluation import evaluate
from serl.video import EpisodeRecorder, frame_period_s, save_gif

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedPolicy:
    """A checkpoint's policy and what it was trained on."""

    policy: ActorPolicy
    env: str
    agent: str
    metadata: dict[str, Any]


def load_policy(path: str | Path, env: str | None = None) -> LoadedPolicy:
    """Build the policy network from a checkpoint's config and load its weights.

    `env` overrides the checkpoint's env id (it must have the same spaces).
    """
    header, state = read_checkpoint(path)
    config = header.get("config", {})
    if "agent" not in config or "agent_cfg" not in config or "env" not in config:
        raise CheckpointError(
            f"{path}: the stored config has no env/agent/agent_cfg; it was not written by "
            "`serl train`, `serl learner` or `serl train-local`"
        )
    agent = config["agent"]
    agent_cfg = config_from_dict(agent_spec(agent).config_type, config["agent_cfg"])
    env_id = env or config["env"]
    probe = make_env(env_id)
    try:
        policy = actor_policy(agent_cfg, probe.observation_space, probe.action_space)
    finally:
        probe.close()
    if not isinstance(state, dict) or "policy" not in state:
        raise CheckpointError(f"{path}: agent state has no 'policy' entry")
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: policy weights do not fit env {env_id!r} with agent {agent!r}: {exc}"
        ) from exc
    policy.eval()
    return LoadedPolicy(policy, env_id, agent, header.get("metadata", {}))


def evaluate_policy(
    loaded: LoadedPolicy,
    *,
    episodes: int,
    seed: int,
    video: str | Path | None = None,
    fps: float | None = None,
    speed: float = 1.0,
    success_key: str = "",
) -> dict[str, float]:
    """Mean/std return, mean length and success rate of the deterministic policy.

    With `video`, the episodes are also written as a GIF (`serl.video`): real time at the env's
    render_fps (or `fps`), played `speed` times faster."""
    env = make_env(loaded.env, render_mode="rgb_array" if video else None)
    recorder = None
    if video:
        env = recorder = EpisodeRecorder(env, success_key)
    try:
        with torch.inference_mode():
            result = evaluate(
                env,
                lambda obs: loaded.policy.act(obs, deterministic=True),
                episodes=episodes,
                seed=seed,
                on_reset=getattr(loaded.policy, "reset_episode", None),
                success_key=success_key,
            )
        period_s = frame_period_s(env, fps)
    finally:
        env.close()
    if recorder is not None:
        save_gif(recorder.episodes, Path(video), period_s, speed)
    return result
