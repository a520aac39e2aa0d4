"""The part of an agent that an actor needs: observation encoder + tanh-Gaussian head.

An actor process builds this module from the config and the spaces alone and loads the
learner's `policy_state()` into it, so it can act without critics, targets or optimizers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from serl.data.batch import Obs
from serl.nets.encoders import ObservationEncoder
from serl.nets.policy import TanhGaussianPolicy


def obs_to_tensor(obs: np.ndarray | Mapping[str, np.ndarray], device: torch.device) -> Obs:
    """One unbatched gymnasium observation -> a batch of one on `device`."""
    if isinstance(obs, Mapping):
        return {k: torch.as_tensor(np.asarray(v), device=device)[None] for k, v in obs.items()}
    return torch.as_tensor(np.asarray(obs), device=device)[None]


class ActorPolicy(nn.Module):
    def __init__(self, encoder: ObservationEncoder, head: TanhGaussianPolicy) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, obs: Obs) -> Tensor:
        """Deterministic (mode) actions for a batch; what evaluation and export use."""
        return self.head.mode(self.encoder(obs))

    @torch.inference_mode()
    def act(
        self,
        obs: np.ndarray | Mapping[str, np.ndarray],
        *,
        deterministic: bool,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Action in [-1, 1] for one observation, as float32 numpy."""
        device = next(self.parameters()).device
        features = self.encoder(obs_to_tensor(obs, device))
        if deterministic:
            action = self.head.mode(features)
        else:
            action, _ = self.head.sample(features, generator)
        return action[0].cpu().numpy().astype(np.float32)


class PolicyAgentMixin:
    """`act` and `policy_state` for agents whose actor side is an `ActorPolicy`."""

    policy: ActorPolicy
    act_generator: torch.Generator

    def act(self, obs: np.ndarray | Mapping[str, np.ndarray], *, deterministic: bool) -> np.ndarray:
        return self.policy.act(obs, deterministic=deterministic, generator=self.act_generator)

    def policy_state(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu() for k, v in self.policy.state_dict().items()}
