"""Deep DR-RPO: SAC with a KL-to-reference regulariser and a TV-robust critic target.

The deep counterpart of the linear DR-RPO (Gu, He, Liu & Xu 2025, arXiv:2510.14246; the
exact version is `serl.robust.linear_drrpo`), for robots where features are learned:

* The entropy bonus of SAC is replaced by the reference regulariser of the paper's
  policy-constrained RMDP: actor loss E[λ(log π(ã|s) − log π_ref(ã|s)) − Q(s,ã)], and the soft
  value V(s') = min_j Q̄_j(s',a') − λ(log π(a'|s') − log π_ref(a'|s')), a' ~ π(·|s').
  λ = `kl_weight` is fixed (no temperature tuning). π_ref is the policy of a serl checkpoint
  (`reference_checkpoint`: e.g. BC from demos or SAC trained on the nominal sim), or, without
  one, the uniform distribution on the action box (then KL(π‖U) = −H(π) + |A| log 2 and
  DR-RPO is robust SAC with a fixed temperature λ).
* Critic target, TV-robust with radius ρ: the dual of inf_{TV(P',P)<=ρ} E_{P'}[V] is
  max_η E_P[min(V, η)] − ρ(η − min_s V(s)) (see the linear module). A dual network η(s,a) is
  learned by maximising E[min(V(s'), η(s,a))] − ρ η(s,a) over the batch (a pinball loss whose
  maximiser is the (1−ρ)-quantile of V(s') given (s,a); the same dual-function approach as
  RFQI, Panaganti et al. 2022), and
  y = r + γ(1−d)[min(V(s'), η(s,a)) − ρ(η(s,a) − V_min)], V_min = the batch minimum of V(s')
  (our stand-in for min over all states, which a deep learner cannot enumerate).

Decisions beyond the paper, which is linear and tabular-action: the dual variable is a
function of (s,a) rather than one scalar per factor; η is clamped to >= V_min so the penalty
term stays non-negative; the optional ensemble-disagreement exploration bonus of §8 is left
out. The SAC fields `init_temperature`, `temperature_lr`, `target_entropy_per_dim` and
`backup_entropy` are unused by this agent (λ replaces α).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor

from serl.agents.policy import ActorPolicy
from serl.agents.sac import SACAgent, SACConfig, action_dim_of
from serl.data.batch import Batch
from serl.nets.mlp import MLP


@dataclass(frozen=True)
class DRRPOConfig(SACConfig):
    kl_weight: float = 0.1
    """λ: weight of KL(π‖π_ref) in the actor loss and the soft value (replaces SAC's α)."""
    tv_radius: float = 0.1
    """ρ: total-variation radius of the transition uncertainty set, in [0, 1)."""
    dual_lr: float = 3e-4
    """Adam learning rate of the dual network η(s,a)."""
    reference_checkpoint: Path | None = None
    """serl checkpoint whose policy is π_ref (BC, nominal SAC); None: uniform on the action box."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.tv_radius < 1.0:
            raise ValueError(f"tv_radius={self.tv_radius}; use a TV radius in [0, 1)")
        if self.kl_weight <= 0:
            raise ValueError(f"kl_weight={self.kl_weight}; λ must be > 0 (small for near-greedy)")


def tv_dual_loss(value: Tensor, eta: Tensor, radius: float) -> Tensor:
    """−(E[min(V, η)] − ρ η): minimised by η = the (1−ρ)-quantile of V (ascent on the dual)."""
    return -(torch.minimum(value, eta) - radius * eta).mean()


def tv_robust_value(value: Tensor, eta: Tensor, v_min: Tensor, radius: float) -> Tensor:
    """min(V, η) − ρ(η − V_min), η clamped to >= V_min: the TV worst case at the dual optimum."""
    eta = torch.maximum(eta, v_min)
    return torch.minimum(value, eta) - radius * (eta - v_min)


class ReferencePolicy:
    """log π_ref(a|s) from features of a state observation; uniform when no policy is given."""

    def __init__(self, policy: ActorPolicy | None, action_dim: int) -> None:
        self.policy = policy
        self.uniform_log_prob = -action_dim * math.log(2.0)
        if policy is not None:
            policy.requires_grad_(False)
            policy.eval()

    def log_prob(self, features: Tensor, action: Tensor) -> Tensor:
        if self.policy is None:
            return torch.full(action.shape[:-1], self.uniform_log_prob, device=action.device)
        return self.policy.head.log_prob(self.policy.encoder(features), action)


def load_reference(cfg: DRRPOConfig, action_dim: int, device: torch.device) -> ReferencePolicy:
    if cfg.reference_checkpoint is None:
        return ReferencePolicy(None, action_dim)
    from serl.checkpoint_eval import load_policy  # lazy: it imports the agent registry

    policy = load_policy(cfg.reference_checkpoint).policy.to(device)
    if policy.encoder.image_keys:
        raise ValueError(
            f"reference_checkpoint {cfg.reference_checkpoint} has an image encoder; DR-RPO's "
            "reference must act on state observations"
        )
    return ReferencePolicy(policy, action_dim)


class DRRPOAgent(SACAgent):
    cfg: DRRPOConfig

    def __init__(
        self,
        cfg: DRRPOConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(cfg, observation_space, action_space, seed=seed, device=device)
        if self.encoder.image_keys:
            raise ValueError("DR-RPO takes state observations; use a state (not pixel) env id")
        action_dim = action_dim_of(action_space)
        self.dual = MLP(self.encoder.out_dim + action_dim, cfg.hidden_dims, 1).to(self.device)
        self.dual_optimizer = torch.optim.Adam(self.dual.parameters(), lr=cfg.dual_lr)
        self.reference = load_reference(cfg, action_dim, self.device)

    def _kl_term(self, features: Tensor, action: Tensor, log_prob: Tensor) -> Tensor:
        """log π(a|s) − log π_ref(a|s): a one-sample estimate of KL(π‖π_ref)."""
        return log_prob - self.reference.log_prob(features, action)

    def _critic_step(
        self, mb: Batch, next_action: tuple[Tensor, Tensor] | None = None
    ) -> tuple[dict[str, float], Tensor]:
        cfg = self.cfg
        obs, next_obs = self._encode(mb.obs), self._encode(mb.next_obs, target=True)
        with torch.no_grad():
            if next_action is None:
                next_action = self.actor.sample(self._encode(mb.next_obs), self.generator)
            action2, log_prob2 = next_action
            members = None
            if cfg.num_min_qs < cfg.num_qs:
                members = torch.randperm(cfg.num_qs, generator=self.generator, device=self.device)
                members = members[: cfg.num_min_qs]
            next_q = self.target_critic(next_obs, action2, members).min(dim=0).values
            value = next_q - cfg.kl_weight * self._kl_term(next_obs, action2, log_prob2)
            v_min = value.min()

        sa = torch.cat([obs.detach(), mb.action], dim=-1)
        dual_loss = tv_dual_loss(value, self.dual(sa).squeeze(-1), cfg.tv_radius)
        self.dual_optimizer.zero_grad(set_to_none=True)
        dual_loss.backward()
        self.dual_optimizer.step()

        with torch.no_grad():
            eta = self.dual(sa).squeeze(-1)
            if cfg.tv_radius > 0:
                robust = tv_robust_value(value, eta, v_min, cfg.tv_radius)
            else:  # no uncertainty: the nominal soft value, exactly
                robust = value
            target = mb.reward + cfg.discount * (1.0 - mb.terminated) * robust

        q = self.critic(obs, mb.action)
        loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self._target, self._online, cfg.tau)
        self.critic_steps += 1
        info = {
            "critic/loss": loss.item(),
            "critic/q_mean": q.detach().mean().item(),
            "critic/dual_eta": eta.mean().item(),
            "critic/dual_loss": dual_loss.item(),
            "critic/robust_gap": (value - robust).mean().item(),
        }
        return info, obs

    def _actor_step(self, features: Tensor) -> tuple[dict[str, float], Tensor]:
        action, log_prob = self.actor.sample(features, self.generator)
        self.critic.requires_grad_(False)
        q = self.critic(features, action)
        self.critic.requires_grad_(True)
        q = q.mean(dim=0) if self.cfg.actor_q == "mean" else q.min(dim=0).values
        kl = self._kl_term(features, action, log_prob)
        loss = (self.cfg.kl_weight * kl - q).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        self.actor_steps += 1
        info = {
            "actor/loss": loss.item(),
            "actor/kl_to_reference": kl.detach().mean().item(),
            "actor/entropy": -log_prob.detach().mean().item(),
        }
        return info, log_prob.detach()

    def _temperature_step(self, log_prob: Tensor) -> dict[str, float]:
        """No temperature: λ is fixed (`kl_weight`)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["dual"] = self.dual.state_dict()
        state["optim"]["dual"] = self.dual_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.dual.load_state_dict(state["dual"])
        self.dual_optimizer.load_state_dict(state["optim"]["dual"])
