"""What a learner and its actors must agree on, and the policy both sides build from it.

Both processes are started from the same three settings: the env id, the agent preset and
the agent config. Their hash is the `config_hash` of the transport handshake (an actor started
with other agent flags is refused with a message saying so) and the hash stored in learner
checkpoints (a `--resume` with other settings is refused). The env gives the observation and
action spaces, hence the transition spec; the agent config gives the policy network, which
the actor builds without critics or optimizers and fills with the learner's `policy_state()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from serl.agents.policy import ActorPolicy
from serl.agents.sac import SACConfig, make_policy
from serl.config import config_hash, config_to_dict
from serl.envs import make_env
from serl.transport.protocol import TransitionSpec


@dataclass(frozen=True)
class Agreement:
    env: str
    """Environment id (gymnasium id or prefixed id)."""
    agent: str
    """Agent preset name (sac, rlpd, drq, bc)."""
    agent_cfg: Any
    """The resolved agent config dataclass."""

    @property
    def hash(self) -> str:
        """16 hex digits identifying env, preset and every agent hyper-parameter."""
        return config_hash(self)

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """Fields of `other` (a saved config dict with env/agent/agent_cfg) that differ."""
        ours = config_to_dict(self)
        diffs = []
        for key in ("env", "agent"):
            if other.get(key) != ours[key]:
                diffs.append(f"{key}: saved {other.get(key)!r}, now {ours[key]!r}")
        saved_cfg = other.get("agent_cfg") or {}
        for key, value in ours["agent_cfg"].items():
            if saved_cfg.get(key) != value:
                diffs.append(f"agent_cfg.{key}: saved {saved_cfg.get(key)!r}, now {value!r}")
        return diffs


def env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    """Observation and action spaces of an env id (the env is made, read and closed)."""
    env = make_env(env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def transition_spec(observation_space: gym.Space, action_space: gym.Space) -> TransitionSpec:
    """The wire spec of one transition of these spaces (a Box observation is key 'state')."""
    return TransitionSpec.from_spaces(observation_space, action_space)


def actor_policy(
    agent_cfg: Any, observation_space: gym.Space, action_space: gym.Space
) -> ActorPolicy:
    """The actor-side policy network of an agent config.

    A config with a `make_actor_policy(observation_space, action_space)` method builds its own
    (e.g. a universal policy with its balance model, or a stateful composite policy); the
    module must have `act(obs, deterministic=..., generator=...)` and may have
    `reset_episode()`, which the actor calls at every episode start. Any other config with
    `hidden_dims` and `encoder` (SAC, BC) gets encoder + tanh-Gaussian head."""
    if hasattr(agent_cfg, "make_actor_policy"):
        return agent_cfg.make_actor_policy(observation_space, action_space)
    policy_cfg = SACConfig(hidden_dims=agent_cfg.hidden_dims, encoder=agent_cfg.encoder)
    return make_policy(policy_cfg, observation_space, action_space)


def policy_numpy(policy_state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """An agent's `policy_state()` as numpy arrays, ready for `publish_weights`."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in policy_state.items()}


def load_policy_weights(policy: ActorPolicy, tensors: Mapping[str, np.ndarray]) -> None:
    """Copy received weights into `policy`; raises on a missing, extra or misshaped tensor.

    The arrays may be read-only views of network buffers: they are copied, never aliased.
    """
    state = {name: torch.tensor(np.asarray(array)) for name, array in tensors.items()}
    policy.load_state_dict(state, strict=True)


def observation_for_wire(obs: Any, spec: TransitionSpec) -> dict[str, np.ndarray]:
    """A gymnasium observation as {spec key: array} (a Box observation is key 'state')."""
    if isinstance(obs, Mapping):
        return {key: np.asarray(obs[key]) for key in spec.obs}
    (key,) = spec.obs
    return {key: np.asarray(obs)}


def observation_from_wire(arrays: Mapping[str, np.ndarray], space: gym.Space) -> Any:
    """The inverse of `observation_for_wire` for a stacked batch: a Box gets its one array."""
    if isinstance(space, gym.spaces.Dict):
        return dict(arrays)
    (array,) = arrays.values()
    return array
