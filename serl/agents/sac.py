"""Soft actor-critic with the RLPD options and DrQ image observations.

* SAC v2 (Haarnoja et al. 2018, "SAC: Algorithms and Applications"): critic target
  y = r + γ(1−d)(min_j Q̄_j(s',a') − α log π(a'|s')) (Eq. 3 / 5), reparameterised actor loss
  E[α log π(ã|s) − Q(s,ã)] (Eq. 7), temperature loss E[−α(log π(a|s) + H̄)] (Eq. 18).
* RLPD (Ball et al. 2023, Alg. 1): one `update` call takes a batch of G×B rows, runs G critic
  steps on its G consecutive slices, then ONE actor and ONE temperature step on the last slice.
  The target takes the min over a random subset of `num_min_qs` of the N target critics (REDQ,
  Chen et al. 2021); the actor uses the mean over all N (`actor_q="mean"`); LayerNorm after each
  hidden critic layer bounds Q off the data. Use `SACConfig.rlpd()` for the paper's settings.
* DrQ (Kostrikov et al. 2021): image keys go through a conv encoder shared by critic and actor,
  trained only by the critic loss (the actor sees detached features); obs and next_obs are
  randomly shifted independently on the learner. With a frozen encoder, features are computed
  once per `update` call for the whole G×B batch.

Relatives change SAC in three places only, by overriding a method each: the soft value of s'
(`_soft_value`), what the target bootstraps from (`_bootstrap_value`, e.g. a robust value) and
the actor's regulariser (`_policy_penalty`); DR-RPO (`serl.agents.drrpo`) overrides all three.
The temperature and the Polyak update are `serl.agents.sac_parts`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from serl.agents.policy import ActorPolicy, PolicyAgentMixin
from serl.agents.sac_parts import Temperature, soft_update
from serl.data.batch import Batch, Obs
from serl.nets.augment import shift_image_keys
from serl.nets.encoders import EncoderConfig, ObservationEncoder
from serl.nets.ensemble import CriticEnsemble
from serl.nets.policy import TanhGaussianPolicy
from serl.nets.weights import load_encoder_weights


@dataclass(frozen=True)
class SACConfig:
    hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor and of each critic."""
    num_qs: int = 2
    """Critic ensemble size (RLPD uses 10)."""
    num_min_qs: int = 2
    """Target critics drawn at random for the min in the target (REDQ subset)."""
    utd: int = 1
    """Critic steps per `update` call (update-to-data ratio G); the batch holds G minibatches."""
    critic_layer_norm: bool = False
    """LayerNorm after each hidden critic layer; bounds Q off the data (RLPD)."""
    critic_dropout: float = 0.0
    """Dropout in the critics (DroQ); 0 disables it. Active in the critic loss, the target and
    the actor loss (masks from the agent's seeded update generator)."""
    actor_q: Literal["min", "mean"] = "min"
    """How the actor reduces the ensemble's Q values: min (SAC) or mean (RLPD)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics (and of the image encoder)."""
    temperature_lr: float = 3e-4
    """Adam learning rate of log α."""
    discount: float = 0.99
    """γ."""
    tau: float = 0.005
    """Polyak rate of the target critics, applied after every critic step."""
    init_temperature: float = 1.0
    """α at the start."""
    target_entropy_per_dim: float = -1.0
    """H̄ = this × |A|: −1 for SAC, −0.5 for RLPD."""
    backup_entropy: bool = True
    """Keep the −α log π(a'|s') term in the critic target."""
    batch_size: int = 256
    """Rows per critic minibatch; one update call consumes utd × batch_size rows."""
    encoder: EncoderConfig = EncoderConfig()
    """Image encoder settings (used only when observations contain uint8 images)."""

    @classmethod
    def rlpd(cls, **overrides: Any) -> SACConfig:
        """The RLPD paper's settings: 10 LayerNorm critics, subset min of 2, G = 20, H̄ = −|A|/2."""
        base = cls(
            num_qs=10,
            num_min_qs=2,
            utd=20,
            critic_layer_norm=True,
            actor_q="mean",
            target_entropy_per_dim=-0.5,
        )
        return replace(base, **overrides)

    def __post_init__(self) -> None:
        if not 1 <= self.num_min_qs <= self.num_qs:
            raise ValueError(
                f"num_min_qs={self.num_min_qs} must be between 1 and num_qs={self.num_qs}"
            )
        if self.utd < 1 or self.batch_size < 1:
            raise ValueError(f"utd={self.utd} and batch_size={self.batch_size} must be >= 1")


def action_dim_of(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"action space {space} must be a 1-D Box (continuous control)")
    if not (np.all(space.low == -1) and np.all(space.high == 1)):
        raise ValueError(
            f"action space bounds {space.low}..{space.high} are not [-1, 1]; wrap the env with "
            "gymnasium.wrappers.RescaleAction(env, -1, 1)"
        )
    return int(space.shape[0])


def make_policy(
    cfg: SACConfig, observation_space: gym.Space, action_space: gym.Space
) -> ActorPolicy:
    """The actor-side network of SAC, BC and their relatives."""
    encoder = ObservationEncoder(observation_space, cfg.encoder)
    if cfg.encoder.weights_path is not None:
        load_encoder_weights(encoder, cfg.encoder.weights_path)
    head = TanhGaussianPolicy(encoder.out_dim, action_dim_of(action_space), cfg.hidden_dims)
    return ActorPolicy(encoder, head)


class SACAgent(PolicyAgentMixin):
    def __init__(
        self,
        cfg: SACConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(seed)  # parameter initialisation only; sampling uses self.generator
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.act_generator = torch.Generator(device=self.device).manual_seed(seed + 1)

        self.policy = make_policy(cfg, observation_space, action_space).to(self.device)
        self.encoder = self.policy.encoder
        self.actor = self.policy.head
        self.frozen_encoder = cfg.encoder.freeze or not any(
            p.requires_grad for p in self.encoder.parameters()
        )
        if cfg.encoder.freeze:
            self.encoder.requires_grad_(False)
        action_dim = action_dim_of(action_space)
        self.critic = CriticEnsemble(
            self.encoder.out_dim + action_dim,
            cfg.hidden_dims,
            cfg.num_qs,
            layer_norm=cfg.critic_layer_norm,
            dropout=cfg.critic_dropout,
        ).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic.generator = self.target_critic.generator = self.generator  # dropout masks
        # A trainable encoder needs its own Polyak-averaged copy for the target.
        self.target_encoder = (
            self.encoder
            if self.frozen_encoder
            else copy.deepcopy(self.encoder).requires_grad_(False)
        )
        self.temperature = Temperature(
            cfg.init_temperature,
            cfg.target_entropy_per_dim * action_dim,
            cfg.temperature_lr,
            self.device,
        )
        # The names tests, MOORL and checkpoints have always used for the temperature's parts.
        self.log_alpha = self.temperature.log_value
        self.target_entropy = self.temperature.target_entropy

        critic_params = list(self.critic.parameters())
        if not self.frozen_encoder:
            critic_params += list(self.encoder.parameters())
        # Fused Adam: one kernel per parameter group instead of a dozen ops per tensor
        # (about 3x faster steps on CPU, where an update is dominated by small-op overhead).
        adam = {"fused": True}
        self.critic_optimizer = torch.optim.Adam(critic_params, lr=cfg.critic_lr, **adam)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, **adam)
        self.temperature_optimizer = self.temperature.optimizer
        self._online = [*self.critic.parameters()]
        self._target = [*self.target_critic.parameters()]
        if not self.frozen_encoder:
            self._online += list(self.encoder.parameters())
            self._target += list(self.target_encoder.parameters())
        self.critic_steps = 0
        self.actor_steps = 0

    # ----------------------------------------------------------------------------- learning
    @property
    def alpha(self) -> Tensor:
        return self.temperature.value

    def _augment(self, obs: Obs) -> Obs:
        return shift_image_keys(
            obs, self.encoder.image_keys, self.cfg.encoder.augment_pad, self.generator
        )

    def update(self, batch: Batch) -> dict[str, float]:
        """G critic steps on the G slices of `batch`, then one actor and temperature step."""
        expected = self.cfg.utd * self.cfg.batch_size
        if len(batch) != expected:
            raise ValueError(
                f"update got {len(batch)} rows; utd × batch_size = {self.cfg.utd} × "
                f"{self.cfg.batch_size} = {expected}"
            )
        batch.check_finite()
        batch = batch.to(self.device)
        obs, next_obs = self._augment(batch.obs), self._augment(batch.next_obs)
        minibatches = self.cfg.utd
        next_actions: list[tuple[Tensor, Tensor] | None] = [None] * minibatches
        if self.frozen_encoder:  # no encoder gradient: encode the whole G×B batch once
            with torch.no_grad():
                obs, next_obs = self.encoder(obs), self.encoder(next_obs)
                # The actor only changes after the G critic steps, so the next actions of all
                # G minibatches come from one batched forward pass (same distribution).
                action, log_prob = self.actor.sample(next_obs, self.generator)
            size = self.cfg.batch_size
            next_actions = list(zip(action.split(size), log_prob.split(size), strict=True))
        features = Batch(obs, batch.action, batch.reward, next_obs, batch.terminated)

        for minibatch, next_action in zip(features.split(minibatches), next_actions, strict=True):
            critic_info, obs_features = self._critic_step(minibatch, next_action)
        actor_info, log_prob = self._actor_step(obs_features.detach())
        temperature_info = self._temperature_step(log_prob)
        return {**critic_info, **actor_info, **temperature_info}

    def _encode(self, obs: Obs | Tensor, *, target: bool = False) -> Tensor:
        if self.frozen_encoder:
            return obs  # already features
        return (self.target_encoder if target else self.encoder)(obs)

    def _critic_step(
        self, mb: Batch, next_action: tuple[Tensor, Tensor] | None = None
    ) -> tuple[dict[str, float], Tensor]:
        """One TD step on all N critics; `next_action` = (a', log pi(a'|s')) if precomputed."""
        cfg = self.cfg
        obs_features = self._encode(mb.obs)
        with torch.no_grad():
            if next_action is None:
                next_action = self.actor.sample(self._encode(mb.next_obs), self.generator)
            next_action, next_log_prob = next_action
            members = None
            if cfg.num_min_qs < cfg.num_qs:
                members = torch.randperm(cfg.num_qs, generator=self.generator, device=self.device)
                members = members[: cfg.num_min_qs]
            target_features = self._encode(mb.next_obs, target=True)
            next_q = self.target_critic(target_features, next_action, members).min(dim=0).values
            value = self._soft_value(next_q, target_features, next_action, next_log_prob)
        value, value_info = self._bootstrap_value(value, obs_features, mb.action)
        target = mb.reward + cfg.discount * (1.0 - mb.terminated) * value

        q = self.critic(obs_features, mb.action)
        loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        soft_update(self._target, self._online, cfg.tau)
        self.critic_steps += 1
        info = {"critic/loss": loss.item(), "critic/q_mean": q.detach().mean().item()}
        return {**info, **value_info}, obs_features

    def _soft_value(
        self, next_q: Tensor, features: Tensor, action: Tensor, log_prob: Tensor
    ) -> Tensor:
        """V(s') = min Q̄(s',a') − α log π(a'|s') (Eq. 3); without the α term if not
        `backup_entropy`. `features` are the target encoder's features of s'."""
        if self.cfg.backup_entropy:
            return next_q - self.alpha * log_prob
        return next_q

    def _bootstrap_value(
        self, value: Tensor, obs_features: Tensor, action: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """What the target bootstraps from, given V(s') of the batch: SAC takes V as it is."""
        return value, {}

    def _policy_penalty(
        self, features: Tensor, action: Tensor, log_prob: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """The actor loss's regulariser per row, α log π(ã|s) (Eq. 7), and its metrics."""
        return self.alpha * log_prob, {}

    def _actor_step(self, features: Tensor) -> tuple[dict[str, float], Tensor]:
        action, log_prob = self.actor.sample(features, self.generator)
        self.critic.requires_grad_(False)  # gradient flows to the action, not the critic
        q = self.critic(features, action)
        self.critic.requires_grad_(True)
        q = q.mean(dim=0) if self.cfg.actor_q == "mean" else q.min(dim=0).values
        penalty, penalty_info = self._policy_penalty(features, action, log_prob)
        loss = (penalty - q).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        self.actor_steps += 1
        entropy = -log_prob.detach().mean()
        info = {"actor/loss": loss.item(), "actor/entropy": entropy.item(), **penalty_info}
        return info, log_prob.detach()

    def _temperature_step(self, log_prob: Tensor) -> dict[str, float]:
        loss = self.temperature.step(log_prob)
        return {"temperature/alpha": self.alpha.item(), "temperature/loss": loss.item()}

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume identically: networks, targets, optimizers, RNG, counters."""
        state: dict[str, Any] = {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "optim": {
                "critic": self.critic_optimizer.state_dict(),
                "actor": self.actor_optimizer.state_dict(),
                "temperature": self.temperature_optimizer.state_dict(),
            },
            "rng": {"update": self.generator.get_state(), "act": self.act_generator.get_state()},
            "counters": {"critic_steps": self.critic_steps, "actor_steps": self.actor_steps},
        }
        if not self.frozen_encoder:
            state["target_encoder"] = self.target_encoder.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        if not self.frozen_encoder:
            self.target_encoder.load_state_dict(state["target_encoder"])
        self.temperature.load(state["log_alpha"], state["optim"]["temperature"])
        self.critic_optimizer.load_state_dict(state["optim"]["critic"])
        self.actor_optimizer.load_state_dict(state["optim"]["actor"])
        self.generator.set_state(state["rng"]["update"])
        self.act_generator.set_state(state["rng"]["act"])
        self.critic_steps = int(state["counters"]["critic_steps"])
        self.actor_steps = int(state["counters"]["actor_steps"])
