"""The composite, stateful IWOCS policy that actors run (ALGORITHMS §7, deep version).

Zouitine et al. 2024 ("Solving robust MDPs as a sequence of static RL problems", §4 and
Alg. 2): the policy π_i of the i-th IWOCS iteration acts with the model T_j that has the
lowest value among the models "valid" at the current state, where model j is valid at s_t if
its next-state predictor agrees with what happened: ‖T̂_j(s_{t−1}, a_{t−1}) − s_t‖₁ <= ρ_j.
Values come from each model's unregularised Q head (so different SAC temperatures do not
distort the min), the action from that model's SAC policy. When no model is valid the
domain-randomised fallback policy acts (if the run has one; else the min-Q model over all).

Decisions: at the first step of an episode there is no transition yet, so every model is
valid; `act(..., deterministic=False)` (training exploration) samples from the newest
model's own SAC policy, because each IWOCS iteration is plain SAC on its static model; the
composite decision is `deterministic=True` (evaluation, worst-case search, deployment).
`model_params` holds each model's dynamics parameters, so the registry of the models found
travels with the weights and the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from serl.agents.policy import ActorPolicy, obs_to_tensor
from serl.agents.sac import SACConfig, action_dim_of, make_policy
from serl.nets.mlp import MLP

UNCALIBRATED_RADIUS = 1e6
"""ρ of a model before its predictor is calibrated: valid everywhere. Finite, because actors
refuse weights that hold NaN/Inf."""


def state_dim_of(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"IWOCS needs a flat state observation (a 1-D Box), got {space}; use a state env id"
        )
    return int(space.shape[0])


class ModelComponent(nn.Module):
    """One solved model T_j: its SAC policy, unregularised Q head and next-state predictor."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_dims: Sequence[int],
        num_params: int,
        policy: ActorPolicy | None = None,
    ) -> None:
        super().__init__()
        obs_dim, action_dim = state_dim_of(observation_space), action_dim_of(action_space)
        if policy is None:
            policy = make_policy(
                SACConfig(hidden_dims=tuple(hidden_dims)), observation_space, action_space
            )
        self.policy = policy
        self.q_head = MLP(obs_dim + action_dim, hidden_dims, 1)
        """Q^π without entropy terms: the value used for the min over models."""
        self.predictor = MLP(obs_dim + action_dim, hidden_dims, obs_dim)
        """T̂_j: predicts s' − s from (s, a); trained with an L1 loss."""
        self.register_buffer("radius", torch.tensor(UNCALIBRATED_RADIUS))
        """ρ_j of the validity test (calibrated while training)."""
        self.register_buffer("params", torch.zeros(num_params))
        """This model's dynamics parameters (names in the config's `param_names`)."""

    def q_value(self, obs: Tensor, action: Tensor) -> Tensor:
        return self.q_head(torch.cat([obs, action], dim=-1)).squeeze(-1)

    def predict_next(self, obs: Tensor, action: Tensor) -> Tensor:
        return obs + self.predictor(torch.cat([obs, action], dim=-1))


class CompositePolicy(nn.Module):
    """π_i: models 0..i (the last one is being trained), an optional fallback policy."""

    def __init__(
        self,
        components: Sequence[ModelComponent],
        fallback: ActorPolicy | None = None,
    ) -> None:
        super().__init__()
        if not components:
            raise ValueError("a composite policy needs at least one model")
        self.components = nn.ModuleList(components)
        self.fallback = fallback
        self._previous: tuple[Tensor, Tensor] | None = None
        self.last_choice = -1
        """Index of the model that chose the last action; −1 for the fallback."""

    @property
    def newest(self) -> ModelComponent:
        return self.components[-1]

    def reset_episode(self) -> None:
        """Forget the last transition: the actor calls this at every episode start."""
        self._previous = None

    def valid_models(self, obs: Tensor) -> Tensor:
        """(K,) bool: ‖T̂_j(s_{t−1}, a_{t−1}) − s_t‖₁ <= ρ_j (all True at an episode start)."""
        if self._previous is None:
            return torch.ones(len(self.components), dtype=torch.bool, device=obs.device)
        prev_obs, prev_action = self._previous
        errors = torch.stack(
            [(c.predict_next(prev_obs, prev_action) - obs).abs().sum() for c in self.components]
        )
        radii = torch.stack([c.radius for c in self.components])
        return errors <= radii

    @torch.inference_mode()
    def act(
        self,
        obs: np.ndarray,
        *,
        deterministic: bool,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Action in [-1, 1] for one state observation; remembers (s, a) for the next check."""
        device = self.newest.radius.device
        state = obs_to_tensor(np.asarray(obs, dtype=np.float32), device)
        if not deterministic:
            action = torch.as_tensor(
                self.newest.policy.act(obs, deterministic=False, generator=generator),
                device=device,
            )[None]
            self.last_choice = len(self.components) - 1
        else:
            action = self._composite_action(state)
        self._previous = (state, action)
        return action[0].cpu().numpy().astype(np.float32)

    def _composite_action(self, state: Tensor) -> Tensor:
        valid = self.valid_models(state)
        if not bool(valid.any()) and self.fallback is not None:
            self.last_choice = -1
            return self.fallback.head.mode(self.fallback.encoder(state))
        candidates = valid if bool(valid.any()) else torch.ones_like(valid)
        actions = [c.policy.head.mode(c.policy.encoder(state)) for c in self.components]
        values = torch.stack(
            [c.q_value(state, a)[0] for c, a in zip(self.components, actions, strict=True)]
        )
        values = torch.where(candidates, values, torch.full_like(values, float("inf")))
        self.last_choice = int(values.argmin())
        return actions[self.last_choice]

    @torch.inference_mode()
    def start_value(self, obs: np.ndarray) -> float:
        """Q_i(s, π_i(s)) at an episode start: min over the models' Q heads of the composite's
        action (every model valid). The memory of the last transition is left untouched."""
        state = obs_to_tensor(np.asarray(obs, dtype=np.float32), self.newest.radius.device)
        saved, self._previous = self._previous, None
        try:
            action = self._composite_action(state)
        finally:
            self._previous = saved
        return min(float(c.q_value(state, action)[0]) for c in self.components)

    def forward(self, obs: Tensor) -> Tensor:
        """Deterministic actions of the newest model for a batch (export; not the composite)."""
        policy = self.newest.policy
        return policy.head.mode(policy.encoder(obs))
