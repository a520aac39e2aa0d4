"""Agents from configs: the one place that turns a config's file references into objects.

An agent reads no files (DESIGN §2: no I/O inside an agent); it is handed what it needs.
Some configs name such inputs by path so that the learner, `serl train-local` and the
benchmarks can be driven from a config alone — today DR-RPO's `reference_checkpoint`, whose
policy is the agent's π_ref. `build_agent` loads them (through `serl.checkpoint_eval`, the
same loader `serl eval` uses, so the reference is checked against its own stored config) and
passes them to the agent's constructor.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from serl.agents.drrpo import DRRPOConfig
from serl.agents.registry import Agent, agent_spec
from serl.checkpoint_eval import load_policy
from serl.data.replay import FrameFeatures
from serl.nets.encoders import ObservationEncoder


def build_agent(
    name: str,
    agent_cfg: Any,
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Agent:
    """The registered agent `name` for `agent_cfg`, with the inputs its config names loaded."""
    handed: dict[str, Any] = {}
    if isinstance(agent_cfg, DRRPOConfig) and agent_cfg.reference_checkpoint is not None:
        handed["reference"] = load_policy(agent_cfg.reference_checkpoint).policy
    return agent_spec(name).agent_type(
        agent_cfg, observation_space, action_space, seed=seed, device=device, **handed
    )


def frame_features(agent: Agent) -> dict[str, FrameFeatures]:
    """Per camera with a frozen backbone, how a replay buffer stores the agent's features of
    each frame once (empty for agents without one: their batches carry the frames)."""
    encoder = getattr(agent, "encoder", None)
    return encoder.frame_features() if isinstance(encoder, ObservationEncoder) else {}
