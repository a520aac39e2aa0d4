"""FamO2O: a family of policies with a state-adaptive balance (Wang et al. 2023, "Train Once,
Get a Family: State-Adaptive Balances for Offline-to-Online Reinforcement Learning").

On an IQL base (Kostrikov et al. 2022) it learns a *universal policy* π_u(a | s, enc(β)), one
policy per balance coefficient β between improvement (large β) and staying close to the data
(small β), and a *balance model* π_b(β | s) that picks β per state (FamO2O Sec. 4):

* enc(β): sinusoidal encoding, d = 6 entries sin/cos(β / 10000^{2i/d}), i = 0..2, concatenated
  to the state features (the positional encoding of Vaswani et al. 2017, applied to β).
* π_b: a 1-D tanh-Gaussian over x ∈ [−1, 1], mapped to β = (x+1)/2·(β_max−β_min) + β_min so β
  never leaves [β_min, β_max] (the x·(max−min)+min mapping of one public version does).
* V (IQL Eq. 5): expectile regression with τ_e on min_k Q̄_k(s,a) − V(s).
* Q (IQL Eq. 6): (r + γ(1−d)V(s') − Q_k(s,a))² for each of the N critics; Q̄ Polyak-averaged.
* π_u (FamO2O Eq. 5, IQL's advantage-weighted regression with a per-sample β):
  L_u = −E[min(exp(β(min Q̄(s,a) − V(s))), 100) · log π_u(a | s, enc(β))],
  β ~ U[β_min, β_max] per row offline, β ~ π_b(s) (sampled, no gradient) online.
* π_b (FamO2O Eq. 7): L_b = E[T_b log π_b(x|s) − min Q̄(s, a)], a ~ π_u(·|s, enc(β(x))) with
  the gradient flowing through β → π_u → a → Q̄ (only π_b's weights step); T_b is tuned like
  SAC's temperature towards the entropy `balance_target_entropy` (−0.5). π_b trains in both
  phases.

Phases: a batch whose rows all come from the prior dataset (`Batch.prior == 1`, the learner's
offline pre-training) is the offline phase; a batch with online rows (or without prior data at
all) is the online fine-tuning phase. Acting: β from the deterministic balance model, then
a ~ π_u(·|s, enc(β)) — both networks are in `policy_state()` and the actor-side module.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from serl.agents.policy import obs_to_tensor
from serl.agents.sac import action_dim_of
from serl.agents.sac_parts import Temperature, soft_update
from serl.agents.sources import prior_mask
from serl.data.batch import Batch, Obs
from serl.nets.encoders import ObservationEncoder
from serl.nets.ensemble import CriticEnsemble
from serl.nets.mlp import MLP
from serl.nets.policy import TanhGaussianPolicy

ENCODING_DIM = 6
"""Size of enc(β) (FamO2O's d)."""
AWR_ACTION_LIMIT = 1.0 - 1e-4
"""Dataset actions are clipped to ±this before the tanh-Gaussian log-likelihood (atanh(±1)
is infinite; scripted experts and demos often command the action bound exactly)."""


@dataclass(frozen=True)
class FamO2OConfig:
    hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden layer widths of every network (critics, V, π_u, π_b)."""
    num_qs: int = 2
    """Critic ensemble size; V and the policies use the min over all targets."""
    beta_min: float = 1.0
    """Smallest balance coefficient (weights close to behaviour cloning)."""
    beta_max: float = 10.0
    """Largest balance coefficient (IQL uses 3 on locomotion, 10 on AntMaze: both inside)."""
    expectile: float = 0.7
    """τ_e of V's expectile regression: 0.7 for dense (locomotion), 0.9 for sparse rewards."""
    max_weight: float = 100.0
    """Clip of the advantage weight exp(β A)."""
    balance_target_entropy: float = -0.5
    """Entropy the balance model's temperature T_b is tuned towards."""
    balance_init_temperature: float = 1.0
    """T_b at the start."""
    lr: float = 3e-4
    """Adam learning rate of the critics, V and π_u."""
    balance_lr: float = 3e-4
    """Adam learning rate of π_b and log T_b."""
    discount: float = 0.99
    """γ."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    batch_size: int = 256
    """Rows per update."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta_min < self.beta_max:
            raise ValueError(
                f"balance range [{self.beta_min}, {self.beta_max}] must satisfy 0 <= min < max"
            )
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile={self.expectile} must be in (0, 1), e.g. 0.7 or 0.9")

    def make_actor_policy(
        self, observation_space: gym.Space, action_space: gym.Space
    ) -> FamO2OPolicy:
        """The actor side: universal policy and balance model (both ship to actors)."""
        return FamO2OPolicy(self, observation_space, action_space)


def encode_beta(beta: Tensor, dim: int = ENCODING_DIM) -> Tensor:
    """(B,) β -> (B, dim) [sin(β/10000^{0/d}), cos(β/10000^{0/d}), sin(β/10000^{2/d}), ...]."""
    i = torch.arange(dim // 2, device=beta.device, dtype=beta.dtype)
    angle = beta[:, None] / torch.pow(10000.0, 2 * i / dim)
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)


def beta_from_x(x: Tensor, beta_min: float, beta_max: float) -> Tensor:
    """x ∈ [−1, 1] -> β = (x+1)/2·(β_max−β_min) + β_min ∈ [β_min, β_max]."""
    return (x + 1.0) * 0.5 * (beta_max - beta_min) + beta_min


def awr_weights(q: Tensor, v: Tensor, beta: Tensor, max_weight: float) -> Tensor:
    """min(exp(β (Q − V)), max_weight), computed without overflow."""
    return torch.exp((beta * (q - v)).clamp(max=math.log(max_weight)))


def awr_loss(log_prob: Tensor, weights: Tensor) -> Tensor:
    """−E[w · log π(a|s)] (advantage-weighted regression)."""
    return -(weights.detach() * log_prob).mean()


class FamO2OPolicy(nn.Module):
    """Observation encoder + universal policy π_u(a|s, enc β) + balance model π_b(x|s)."""

    def __init__(
        self, cfg: FamO2OConfig, observation_space: gym.Space, action_space: gym.Space
    ) -> None:
        super().__init__()
        self.beta_min, self.beta_max = cfg.beta_min, cfg.beta_max
        self.encoder = ObservationEncoder(observation_space)
        features = self.encoder.out_dim
        self.universal = TanhGaussianPolicy(
            features + ENCODING_DIM, action_dim_of(action_space), cfg.hidden_dims
        )
        self.balance = TanhGaussianPolicy(features, 1, cfg.hidden_dims)

    def beta(self, x: Tensor) -> Tensor:
        return beta_from_x(x, self.beta_min, self.beta_max)

    def universal_input(self, features: Tensor, beta: Tensor) -> Tensor:
        return torch.cat([features, encode_beta(beta)], dim=-1)

    def deterministic_beta(self, features: Tensor) -> Tensor:
        return self.beta(self.balance.mode(features)[:, 0])

    def forward(self, obs: Obs) -> Tensor:
        """Deterministic actions: β from the balance model's mode, then π_u's mode."""
        features = self.encoder(obs)
        beta = self.deterministic_beta(features)
        return self.universal.mode(self.universal_input(features, beta))

    @torch.inference_mode()
    def act(
        self,
        obs: np.ndarray | Mapping[str, np.ndarray],
        *,
        deterministic: bool,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """β from the deterministic balance model, then a ~ π_u (its mode if deterministic)."""
        device = next(self.parameters()).device
        features = self.encoder(obs_to_tensor(obs, device))
        inputs = self.universal_input(features, self.deterministic_beta(features))
        if deterministic:
            action = self.universal.mode(inputs)
        else:
            action, _ = self.universal.sample(inputs, generator)
        return action[0].cpu().numpy().astype(np.float32)


class FamO2OAgent:
    def __init__(
        self,
        cfg: FamO2OConfig,
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
        self.policy = cfg.make_actor_policy(observation_space, action_space).to(self.device)
        if self.policy.encoder.has_images:
            raise ValueError(
                f"FamO2O takes state observations; {observation_space} holds camera images"
            )
        features = self.policy.encoder.out_dim
        action_dim = action_dim_of(action_space)
        self.critic = CriticEnsemble(features + action_dim, cfg.hidden_dims, cfg.num_qs)
        self.critic.to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = MLP(features, cfg.hidden_dims, 1).to(self.device)
        self.balance_temperature = Temperature(
            cfg.balance_init_temperature, cfg.balance_target_entropy, cfg.balance_lr, self.device
        )
        adam = {"fused": True}
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, **adam)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=cfg.lr, **adam)
        self.universal_optimizer = torch.optim.Adam(
            self.policy.universal.parameters(), lr=cfg.lr, **adam
        )
        self.balance_optimizer = torch.optim.Adam(
            self.policy.balance.parameters(), lr=cfg.balance_lr, **adam
        )
        self.steps = 0

    # ----------------------------------------------------------------------------- acting
    def act(self, obs: np.ndarray | Mapping[str, np.ndarray], *, deterministic: bool) -> np.ndarray:
        return self.policy.act(obs, deterministic=deterministic, generator=self.act_generator)

    def policy_state(self) -> dict[str, Tensor]:
        """Encoder, universal policy and balance model: everything an actor acts with."""
        return {k: v.detach().cpu() for k, v in self.policy.state_dict().items()}

    # ----------------------------------------------------------------------------- learning
    def update(self, batch: Batch) -> dict[str, float]:
        """One IQL step (V, Q, π_u) and one balance-model step (module docstring)."""
        if len(batch) != self.cfg.batch_size:
            raise ValueError(
                f"update got {len(batch)} rows; FamO2O's batch_size is {self.cfg.batch_size}"
            )
        batch.check_finite()
        batch = batch.to(self.device)
        online = not bool(prior_mask(batch).all())
        features = self.policy.encoder(batch.obs)
        next_features = self.policy.encoder(batch.next_obs)
        with torch.no_grad():
            target_q = self.target_critic(features, batch.action).min(dim=0).values
        info = self._value_step(features, target_q)
        info |= self._critic_step(features, batch, next_features)
        info |= self._universal_step(features, batch.action, target_q, online)
        info |= self._balance_step(features, self._sample_universal, self._min_q)
        self.steps += 1
        return {**info, "famo2o/online_phase": float(online)}

    def _value_step(self, features: Tensor, target_q: Tensor) -> dict[str, float]:
        diff = target_q - self.value(features)[:, 0]
        weight = torch.where(diff > 0, self.cfg.expectile, 1.0 - self.cfg.expectile)
        loss = (weight * diff.pow(2)).mean()
        self.value_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.value_optimizer.step()
        return {"value/loss": loss.item(), "value/mean": (target_q - diff).mean().item()}

    def _critic_step(
        self, features: Tensor, batch: Batch, next_features: Tensor
    ) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            next_v = self.value(next_features)[:, 0]
            target = batch.reward + cfg.discount * (1.0 - batch.terminated) * next_v
        q = self.critic(features, batch.action)
        loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        soft_update(self.target_critic.parameters(), self.critic.parameters(), cfg.tau)
        return {"critic/loss": loss.item(), "critic/q_mean": q.detach().mean().item()}

    def _universal_step(
        self, features: Tensor, action: Tensor, target_q: Tensor, online: bool
    ) -> dict[str, float]:
        cfg, policy = self.cfg, self.policy
        with torch.no_grad():
            if online:  # β ~ π_b(s), no gradient
                x, _ = policy.balance.sample(features, self.generator)
                beta = policy.beta(x[:, 0])
            else:  # β ~ U[β_min, β_max] per row
                u = torch.rand(len(features), generator=self.generator, device=self.device)
                beta = cfg.beta_min + u * (cfg.beta_max - cfg.beta_min)
            advantage = target_q - self.value(features)[:, 0]
            weights = awr_weights(target_q, self.value(features)[:, 0], beta, cfg.max_weight)
        inputs = policy.universal_input(features, beta)
        log_prob = policy.universal.log_prob(
            inputs, action.clamp(-AWR_ACTION_LIMIT, AWR_ACTION_LIMIT)
        )
        loss = awr_loss(log_prob, weights)
        self.universal_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.universal_optimizer.step()
        return {
            "universal/loss": loss.item(),
            "universal/weight_mean": weights.mean().item(),
            "famo2o/advantage_mean": advantage.mean().item(),
            "famo2o/train_beta_mean": beta.mean().item(),
        }

    def _sample_universal(self, features: Tensor, beta: Tensor) -> Tensor:
        """a ~ π_u(·|s, enc β), reparameterised so the gradient reaches β."""
        action, _ = self.policy.universal.sample(
            self.policy.universal_input(features, beta), self.generator
        )
        return action

    def _min_q(self, features: Tensor, action: Tensor) -> Tensor:
        return self.target_critic(features, action).min(dim=0).values

    def _balance_step(
        self,
        features: Tensor,
        sample_action: Callable[[Tensor, Tensor], Tensor],
        q_value: Callable[[Tensor, Tensor], Tensor],
    ) -> dict[str, float]:
        """L_b = E[T_b log π_b(x|s) − Q(s, a)], a = sample_action(s, β(x)); then T_b's step."""
        policy = self.policy
        features = features.detach()
        x, log_prob = policy.balance.sample(features, self.generator)
        beta = policy.beta(x[:, 0])
        q = q_value(features, sample_action(features, beta))
        temperature = self.balance_temperature.value
        loss = (temperature * log_prob - q).mean()
        self.balance_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=list(policy.balance.parameters()))  # only π_b steps
        self.balance_optimizer.step()
        self.balance_temperature.step(log_prob.detach())
        with torch.no_grad():
            beta_det = policy.deterministic_beta(features)
        return {
            "balance/loss": loss.item(),
            "balance/temperature": temperature.item(),
            "balance/entropy": -log_prob.detach().mean().item(),
            "famo2o/beta_mean": beta_det.mean().item(),
            "famo2o/beta_std": beta_det.std().item() if len(beta_det) > 1 else 0.0,
            "famo2o/beta_min": beta_det.min().item(),
            "famo2o/beta_max": beta_det.max().item(),
        }

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Networks, target, optimizers, RNG and the step counter (identical resume)."""
        return {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "value": self.value.state_dict(),
            "log_temperature": self.balance_temperature.log_value.detach().clone(),
            "optim": {
                **{name: opt.state_dict() for name, opt in self._optimizers().items()},
                "temperature": self.balance_temperature.optimizer.state_dict(),
            },
            "rng": {"update": self.generator.get_state(), "act": self.act_generator.get_state()},
            "counters": {"steps": self.steps},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.value.load_state_dict(state["value"])
        self.balance_temperature.load(state["log_temperature"], state["optim"]["temperature"])
        for name, optimizer in self._optimizers().items():
            optimizer.load_state_dict(state["optim"][name])
        self.generator.set_state(state["rng"]["update"])
        self.act_generator.set_state(state["rng"]["act"])
        self.steps = int(state["counters"]["steps"])

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "critic": self.critic_optimizer,
            "value": self.value_optimizer,
            "universal": self.universal_optimizer,
            "balance": self.balance_optimizer,
        }
