"""Deep IWOCS, one iteration: SAC on one static model, plus what the composite policy needs.

Zouitine et al. 2024, "Solving robust MDPs as a sequence of static RL problems" (deep
version, §4): every model T_j found by the worst-case search is solved by SAC; beside it the
agent learns
* an unregularised Q head, Q_u(s,a) <- r + γ(1−d) Q̄_u(s', a'), a' ~ π(·|s') (SAC's critic
  target without the −α log π term), used for the min over models (Eq. 5) so that different
  temperatures do not distort it;
* a next-state predictor T̂_j(s,a) = s + f(s,a), trained with an L1 loss, for the validity test
  ‖T̂_j(s_{t−1},a_{t−1}) − s_t‖₁ <= ρ_j of the composite policy (`serl.agents.iwocs_policy`).
ρ_j is calibrated here: `validity_scale` times a running (EMA) `validity_quantile` of the
predictor's L1 error on its own model's transitions, so a model accepts most of its own
dynamics; the outer loop (`serl.robust.iwocs`) chooses `validity_scale` from a small grid.

The models solved before this one come from `previous_checkpoint` (the checkpoint of the
last iteration, which holds all of them) and the domain-randomised fallback from
`fallback_checkpoint` (a SAC checkpoint trained with randomised dynamics, same hidden sizes).
The actor builds the same composite from the config alone (`make_actor_policy`) and gets
every model's weights from `policy_state()`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from serl.agents.iwocs_policy import CompositePolicy, ModelComponent, state_dim_of
from serl.agents.sac import SACAgent, SACConfig, make_policy
from serl.agents.sac_parts import soft_update
from serl.data.batch import Batch
from serl.nets.mlp import MLP


@dataclass(frozen=True)
class IWOCSConfig(SACConfig):
    prior_models: int = 0
    """Models solved before this one (their networks come from `previous_checkpoint`)."""
    previous_checkpoint: Path | None = None
    """Checkpoint of the previous IWOCS iteration (needed when prior_models > 0)."""
    fallback_checkpoint: Path | None = None
    """SAC checkpoint of a domain-randomised policy used where no model is valid; None: none."""
    param_names: tuple[str, ...] = ()
    """Names of the dynamics parameters of the uncertainty set (e.g. friction, object_mass)."""
    model_params: tuple[float, ...] = ()
    """This model's parameter values, in `param_names` order (stored with the weights)."""
    validity_quantile: float = 0.95
    """Quantile of the predictor's own L1 errors that calibrates ρ_j."""
    validity_scale: float = 2.0
    """ρ_j = this × the calibrated error quantile."""
    validity_ema: float = 0.01
    """EMA rate of the calibrated error quantile (per update)."""
    q_head_lr: float = 3e-4
    """Adam learning rate of the unregularised Q head."""
    predictor_lr: float = 1e-3
    """Adam learning rate of the next-state predictor."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.model_params) != len(self.param_names):
            raise ValueError(
                f"model_params {self.model_params} and param_names {self.param_names} differ in "
                "length; give one value per named parameter"
            )
        if self.prior_models > 0 and self.previous_checkpoint is None:
            raise ValueError(
                f"prior_models={self.prior_models} needs previous_checkpoint (the last "
                "iteration's checkpoint, which holds those models)"
            )

    def make_actor_policy(
        self, observation_space: gym.Space, action_space: gym.Space
    ) -> CompositePolicy:
        """The composite policy with untrained networks (weights come from the learner)."""
        components = [
            ModelComponent(observation_space, action_space, self.hidden_dims, len(self.param_names))
            for _ in range(self.prior_models + 1)
        ]
        fallback = None
        if self.fallback_checkpoint is not None:
            fallback = make_policy(
                SACConfig(hidden_dims=self.hidden_dims), observation_space, action_space
            )
        return CompositePolicy(components, fallback)


def _load_policy_state(path: Path) -> dict[str, Tensor]:
    from serl.checkpoint import read_checkpoint  # lazy: keeps the agent import light

    _, state = read_checkpoint(path)
    if not isinstance(state, dict) or "policy" not in state:
        raise ValueError(f"{path}: not a serl agent checkpoint (no 'policy' entry)")
    return state["policy"]


class IWOCSAgent(SACAgent):
    cfg: IWOCSConfig

    def __init__(
        self,
        cfg: IWOCSConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(cfg, observation_space, action_space, seed=seed, device=device)
        state_dim_of(observation_space)
        self.composite = cfg.make_actor_policy(observation_space, action_space).to(self.device)
        self._load_priors()
        # The newest component is this agent's own SAC policy and heads (shared modules).
        current = self.composite.newest
        current.policy = self.policy
        current.params.copy_(torch.tensor(cfg.model_params, dtype=torch.float32))
        self.q_head: MLP = current.q_head
        self.predictor: MLP = current.predictor
        self.target_q_head = copy.deepcopy(self.q_head).requires_grad_(False)
        self.q_head_optimizer = torch.optim.Adam(self.q_head.parameters(), lr=cfg.q_head_lr)
        self.predictor_optimizer = torch.optim.Adam(
            self.predictor.parameters(), lr=cfg.predictor_lr
        )
        self.error_quantile = -1.0
        """Running quantile of the predictor's L1 error; −1 before the first update."""

    def _load_priors(self) -> None:
        cfg = self.cfg
        if cfg.prior_models > 0:
            assert cfg.previous_checkpoint is not None
            saved = _load_policy_state(cfg.previous_checkpoint)
            prefixes = tuple(f"components.{j}." for j in range(cfg.prior_models))
            priors = {k: v for k, v in saved.items() if k.startswith(prefixes)}
            found = {k.split(".")[1] for k in priors}
            if len(found) != cfg.prior_models:
                raise ValueError(
                    f"{cfg.previous_checkpoint} holds models {sorted(found)}; prior_models="
                    f"{cfg.prior_models} asks for {cfg.prior_models} (is it the last iteration's?)"
                )
            missing = self.composite.load_state_dict(priors, strict=False)
            if missing.unexpected_keys:
                raise ValueError(f"unexpected prior tensors {missing.unexpected_keys[:3]}")
            for component in list(self.composite.components)[: cfg.prior_models]:
                component.requires_grad_(False)
        if cfg.fallback_checkpoint is not None:
            assert self.composite.fallback is not None
            self.composite.fallback.load_state_dict(_load_policy_state(cfg.fallback_checkpoint))
            self.composite.fallback.requires_grad_(False)

    # ----------------------------------------------------------------------------- learning
    def update(self, batch: Batch) -> dict[str, float]:
        """SAC's update, then one Q-head and one predictor step on the last minibatch."""
        info = super().update(batch)
        last = batch.split(self.cfg.utd)[-1].to(self.device)
        return {**info, **self._q_head_step(last), **self._predictor_step(last)}

    def _q_head_step(self, mb: Batch) -> dict[str, float]:
        with torch.no_grad():
            next_action, _ = self.actor.sample(mb.next_obs, self.generator)
            next_q = self.target_q_head(torch.cat([mb.next_obs, next_action], -1)).squeeze(-1)
            target = mb.reward + self.cfg.discount * (1.0 - mb.terminated) * next_q
        q = self.q_head(torch.cat([mb.obs, mb.action], -1)).squeeze(-1)
        loss = F.mse_loss(q, target)
        self.q_head_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.q_head_optimizer.step()
        soft_update(self.target_q_head.parameters(), self.q_head.parameters(), self.cfg.tau)
        return {"iwocs/q_head_loss": loss.item(), "iwocs/q_head_mean": q.detach().mean().item()}

    def _predictor_step(self, mb: Batch) -> dict[str, float]:
        component = self.composite.newest
        predicted = component.predict_next(mb.obs, mb.action)
        errors = (predicted - mb.next_obs).abs().sum(-1)
        loss = errors.mean()
        self.predictor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.predictor_optimizer.step()
        quantile = float(torch.quantile(errors.detach(), self.cfg.validity_quantile))
        if self.error_quantile < 0:
            self.error_quantile = quantile
        else:
            self.error_quantile += self.cfg.validity_ema * (quantile - self.error_quantile)
        component.radius.fill_(self.cfg.validity_scale * self.error_quantile)
        return {"iwocs/predictor_l1": loss.item(), "iwocs/validity_radius": component.radius.item()}

    # ----------------------------------------------------------------------------- acting, state
    def act(self, obs: Any, *, deterministic: bool) -> np.ndarray:
        return self.composite.act(obs, deterministic=deterministic, generator=self.act_generator)

    def policy_state(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu() for k, v in self.composite.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["policy"] = self.composite.state_dict()  # what `serl eval` and actors load
        state["target_q_head"] = self.target_q_head.state_dict()
        state["optim"]["q_head"] = self.q_head_optimizer.state_dict()
        state["optim"]["predictor"] = self.predictor_optimizer.state_dict()
        state["error_quantile"] = torch.tensor(self.error_quantile)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.composite.load_state_dict(state["policy"])
        super().load_state_dict({**state, "policy": self.policy.state_dict()})
        self.target_q_head.load_state_dict(state["target_q_head"])
        self.q_head_optimizer.load_state_dict(state["optim"]["q_head"])
        self.predictor_optimizer.load_state_dict(state["optim"]["predictor"])
        self.error_quantile = float(state["error_quantile"])
