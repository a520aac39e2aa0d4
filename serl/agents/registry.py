"""The Agent contract (DESIGN §2) and the table of agents by name.

Every learner — SAC and its presets, BC, and the hybrid and robust learners of later modules —
implements `Agent`, so the single-process loop, the learner process and checkpoints treat them
alike. An actor needs only `make_policy` and `policy_state()`, never the agent itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from torch import Tensor

from serl.agents.bc import BCAgent, BCConfig
from serl.agents.drrpo import DRRPOAgent, DRRPOConfig
from serl.agents.famo2o import FamO2OAgent, FamO2OConfig
from serl.agents.h2o import H2OAgent, H2OConfig
from serl.agents.iwocs import IWOCSAgent, IWOCSConfig
from serl.agents.moorl import MOORLAgent, MOORLConfig
from serl.agents.sac import SACAgent, SACConfig
from serl.data.batch import Batch


class Agent(Protocol):
    cfg: Any

    def update(self, batch: Batch) -> dict[str, float]:
        """One learner step; returns namespaced metrics ("critic/loss", ...)."""

    def act(self, obs: Any, *, deterministic: bool) -> np.ndarray:
        """Action in [-1, 1] for one unbatched observation."""

    def policy_state(self) -> dict[str, Tensor]:
        """Only what an actor needs to act (loaded into `make_policy(...)`)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything, for an identical resume."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class AgentSpec:
    config_type: type
    agent_type: type
    default_config: Callable[[], Any]
    summary: str


AGENTS: dict[str, AgentSpec] = {
    "sac": AgentSpec(SACConfig, SACAgent, SACConfig, "SAC v2 with automatic temperature"),
    "rlpd": AgentSpec(
        SACConfig, SACAgent, SACConfig.rlpd, "SAC with 10 LayerNorm critics, G = 20 (RLPD)"
    ),
    "drq": AgentSpec(
        SACConfig,
        SACAgent,
        lambda: SACConfig(
            critic_layer_norm=True, backup_entropy=False, target_entropy_per_dim=-0.5
        ),
        "SAC on pixels with random-shift augmentation (DrQ, SERL's settings)",
    ),
    "bc": AgentSpec(BCConfig, BCAgent, BCConfig, "behaviour cloning (tanh-Gaussian likelihood)"),
    "h2o": AgentSpec(
        H2OConfig, H2OAgent, H2OConfig, "H2O: sim data weighted by learned dynamics ratios"
    ),
    "moorl": AgentSpec(
        MOORLConfig, MOORLAgent, MOORLConfig, "MOORL: SAC in a Reptile loop over offline/online"
    ),
    "famo2o": AgentSpec(
        FamO2OConfig,
        FamO2OAgent,
        FamO2OConfig,
        "FamO2O: IQL universal policy with a state-adaptive balance model",
    ),
    "drrpo": AgentSpec(
        DRRPOConfig, DRRPOAgent, DRRPOConfig, "SAC with KL-to-reference and a TV-robust target"
    ),
    "iwocs": AgentSpec(
        IWOCSConfig, IWOCSAgent, IWOCSConfig, "one IWOCS model: SAC + Q head + dynamics predictor"
    ),
}


class UnknownAgentError(ValueError):
    """`--agent` names no registered agent; the message lists them."""


def agent_spec(name: str) -> AgentSpec:
    if name not in AGENTS:
        raise UnknownAgentError(f"unknown agent {name!r}; choose one of {sorted(AGENTS)}")
    return AGENTS[name]
