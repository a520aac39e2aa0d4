"""Deep DR-RPO: SAC with a KL-to-reference regulariser and a TV-robust critic target.

The deep counterpart of the linear DR-RPO (Gu, He, Liu & Xu 2025, arXiv:2510.14246; the
exact version is `serl.robust.linear_drrpo`), for robots where features are learned:

* The entropy bonus of SAC is replaced by the reference regulariser of the paper's
  policy-constrained RMDP: actor loss E[λ(log π(ã|s) − log π_ref(ã|s)) − Q(s,ã)], and the soft
  value V(s') = min_j Q̄_j(s',a') − λ(log π(a'|s') − log π_ref(a'|s')), a' ~ π(·|s').
  λ = `kl_weight` is fixed (no temperature tuning). π_ref is a policy handed to the agent:
  the policy of the serl checkpoint `reference_checkpoint` names (e.g. BC from demos or SAC
  trained on the nominal sim; `serl.build.build_agent` loads it, the agent reads no files), or,
  without one, the uniform distribution on the action box (then KL(π‖U) = −H(π) + |A| log 2 and
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
from torch import Tensor

from serl.agents.policy import ActorPolicy
from serl.agents.sac import SACAgent, SACConfig, action_dim_of
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
    """serl checkpoint whose policy is π_ref (BC, nominal SAC); None: uniform on the action box.
    Loaded by `serl.build.build_agent` and handed to the agent."""

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

    def __init__(self, policy: ActorPolicy | None, action_dim: int, device: torch.device) -> None:
        self.policy = policy
        self.uniform_log_prob = -action_dim * math.log(2.0)
        if policy is not None:
            if policy.encoder.image_keys:
                raise ValueError(
                    "the reference policy has an image encoder; DR-RPO's reference must act on "
                    "state observations"
                )
            policy.to(device).requires_grad_(False)
            policy.eval()

    def log_prob(self, features: Tensor, action: Tensor) -> Tensor:
        if self.policy is None:
            return torch.full(action.shape[:-1], self.uniform_log_prob, device=action.device)
        return self.policy.head.log_prob(self.policy.encoder(features), action)


class DRRPOAgent(SACAgent):
    """SAC with λ·KL(π‖π_ref) for α log π and a TV-robust bootstrap (module docstring).

    `reference` is π_ref, handed in by whoever builds the agent (`serl.build.build_agent`
    loads it from `cfg.reference_checkpoint`); None means uniform on the action box. A config
    that names a reference checkpoint must come with its policy: silently falling back to the
    uniform reference would train another objective than the config says.
    """

    cfg: DRRPOConfig

    def __init__(
        self,
        cfg: DRRPOConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        reference: ActorPolicy | None = None,
    ) -> None:
        if cfg.reference_checkpoint is not None and reference is None:
            raise ValueError(
                f"reference_checkpoint={cfg.reference_checkpoint} but no reference policy was "
                "handed in; build the agent with serl.build.build_agent (which loads it) or "
                "pass reference=<the checkpoint's policy>"
            )
        super().__init__(cfg, observation_space, action_space, seed=seed, device=device)
        if self.encoder.image_keys:
            raise ValueError("DR-RPO takes state observations; use a state (not pixel) env id")
        action_dim = action_dim_of(action_space)
        self.dual = MLP(self.encoder.out_dim + action_dim, cfg.hidden_dims, 1).to(self.device)
        self.dual_optimizer = torch.optim.Adam(self.dual.parameters(), lr=cfg.dual_lr)
        self.reference = ReferencePolicy(reference, action_dim, self.device)

    def _kl_term(self, features: Tensor, action: Tensor, log_prob: Tensor) -> Tensor:
        """log π(a|s) − log π_ref(a|s): a one-sample estimate of KL(π‖π_ref)."""
        return log_prob - self.reference.log_prob(features, action)

    def _soft_value(
        self, next_q: Tensor, features: Tensor, action: Tensor, log_prob: Tensor
    ) -> Tensor:
        """V(s') = min Q̄(s',a') − λ(log π(a'|s') − log π_ref(a'|s'))."""
        return next_q - self.cfg.kl_weight * self._kl_term(features, action, log_prob)

    def _bootstrap_value(
        self, value: Tensor, obs_features: Tensor, action: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """One ascent step of the dual η(s,a), then the TV worst case of V at η."""
        radius = self.cfg.tv_radius
        sa = torch.cat([obs_features.detach(), action], dim=-1)
        dual_loss = tv_dual_loss(value, self.dual(sa).squeeze(-1), radius)
        self.dual_optimizer.zero_grad(set_to_none=True)
        dual_loss.backward()
        self.dual_optimizer.step()
        with torch.no_grad():
            eta = self.dual(sa).squeeze(-1)
            if radius > 0:
                robust = tv_robust_value(value, eta, value.min(), radius)
            else:  # no uncertainty: the nominal soft value, exactly
                robust = value
        info = {
            "critic/dual_eta": eta.mean().item(),
            "critic/dual_loss": dual_loss.item(),
            "critic/robust_gap": (value - robust).mean().item(),
        }
        return robust, info

    def _policy_penalty(
        self, features: Tensor, action: Tensor, log_prob: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """λ(log π(ã|s) − log π_ref(ã|s)) per row, in place of SAC's α log π(ã|s)."""
        kl = self._kl_term(features, action, log_prob)
        return self.cfg.kl_weight * kl, {"actor/kl_to_reference": kl.detach().mean().item()}

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
