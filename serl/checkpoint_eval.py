"""Evaluate a checkpoint's policy in-process (`serl eval`, the end of `serl train`).

Works for checkpoints of the learner and of `serl train-local` alike: both store the resolved
config (env id, agent preset, agent config) and the agent's state, whose `policy` entry is the
actor-side network. Only that network is built; critics and optimizers are never loaded.
Optionally records the evaluation as an animated GIF (Pillow, from `render_mode="rgb_array"`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from serl.agents.policy import ActorPolicy
from serl.agents.registry import agent_spec
from serl.agreement import actor_policy
from serl.checkpoint import CheckpointError, read_checkpoint
from serl.config import config_from_dict
from serl.envs import make_env
from serl.evaluation import evaluate

logger = logging.getLogger(__name__)


class VideoError(RuntimeError):
    """The env cannot render frames for a video; the message says what is missing."""


MAX_GIF_FRAMES = 2_000
"""Frames kept for a GIF (about 1 min at 30 fps); later frames are not recorded."""


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
    fps: int = 30,
    success_key: str = "",
) -> dict[str, float]:
    """Mean/std return, mean length and success rate of the deterministic policy."""
    env = make_env(loaded.env, render_mode="rgb_array" if video else None)
    frames: list[np.ndarray] = []
    if video:
        env = _FrameRecorder(env, frames)
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
    finally:
        env.close()
    if video:
        save_gif(frames, Path(video), fps=fps)
    return result


class _FrameRecorder(gym.Wrapper):
    """Keeps the rendered frame after every reset and step (up to MAX_GIF_FRAMES)."""

    def __init__(self, env: gym.Env, frames: list[np.ndarray]) -> None:
        super().__init__(env)
        self.frames = frames

    def _grab(self) -> None:
        if len(self.frames) < MAX_GIF_FRAMES:
            try:
                frame = self.env.render()
            except gym.error.DependencyNotInstalled as exc:
                raise VideoError(f"cannot render this env for a video: {exc}") from exc
            if frame is None:
                raise VideoError("the env rendered nothing; does it support rgb_array?")
            self.frames.append(np.asarray(frame, np.uint8))

    def reset(self, **kwargs: Any) -> Any:
        out = self.env.reset(**kwargs)
        self._grab()
        return out

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        self._grab()
        return out


def save_gif(frames: list[np.ndarray], path: Path, fps: int = 30) -> Path:
    """Write RGB frames as an animated GIF (looping)."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame[..., :3]) for frame in frames]
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=max(1, round(1000 / fps)),
        loop=0,
    )
    logger.info("wrote %d frames to %s", len(frames), path)
    return path
