"""MOORL: meta offline-online RL — SAC inside a Reptile loop over two data sources.

The two "tasks" of the meta-learner are the offline dataset D_off (`Batch.prior == 1`) and
the online replay D_on (`Batch.prior == 0`). One `update` call is one meta-epoch:

1. pick a source by `source_rule`;
2. start an inner SAC learner from the meta parameters θ_meta (actor, critics, target
   critics, log α);
3. take K = `inner_steps` SAC updates (Haarnoja et al. 2018; each one the `sac.utd` critic steps
   and one actor and temperature step of `SACAgent.update`) on minibatches of that source only;
4. Reptile's outer step (Nichol et al. 2018, "On First-Order Meta-Learning Algorithms",
   Alg. 1): θ_meta ← θ_meta + ε(θ_K − θ_meta), ε = `meta_step_size`.

The environment is acted in with the meta-policy (`policy_state()` ships θ_meta's actor).

Defaults and why
----------------
* K = 4 inner steps: Reptile's meta-gradient differs from joint training only from the second
  inner step on (its expected update contains the gradient inner-product term that favours
  parameters that fit both sources), so K must be > 1; a small K keeps the adapted parameters
  close to θ_meta, where the first-order approximation holds, while the critic targets move
  slowly (τ = 0.005) during the K steps.
* ε = 0.5: halfway between staying put and adopting θ_K. Each meta-epoch moves θ_meta by about
  ε·K = 2 SAC steps' worth towards one source, so alternating sources averages their updates
  instead of letting the last source overwrite the other (ε = 1 is plain sequential SAC).
* source rule "alternate" (offline, online, offline, ...): a deterministic 50/50 schedule, like
  RLPD's symmetric sampling, with no variance from drawing the source; "random" draws the
  offline source with probability `offline_probability`. A batch with only one source (the
  learner's offline phase, or a run without prior data) always uses that source.
* Inner optimizer (Adam) moments persist across meta-epochs: restarting them every K steps
  would make the first inner steps of each epoch biased-corrected jumps of full learning-rate
  size. With K = 1 and ε = 1 this makes MOORL exactly SAC, step for step.

One update consumes `batch_size` = 2·K·utd·B rows, half from each source (the learner's
symmetric sampler), and uses the K·utd·B rows of the chosen source.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from serl.agents.policy import PolicyAgentMixin
from serl.agents.sac import SACAgent, SACConfig, make_policy
from serl.agents.sac_parts import soft_update
from serl.agents.sources import prior_mask, select_rows
from serl.data.batch import Batch

OFFLINE, ONLINE = 1, 0


@dataclass(frozen=True)
class MOORLConfig:
    sac: SACConfig = field(default_factory=SACConfig)
    """The inner learner (its batch_size and utd make one inner step)."""
    inner_steps: int = 4
    """K: SAC updates on one source per meta-epoch (one meta-epoch per `update` call)."""
    meta_step_size: float = 0.5
    """ε of Reptile's outer step θ_meta += ε(θ_K − θ_meta); 1 adopts θ_K, 0 never moves."""
    source_rule: Literal["alternate", "random"] = "alternate"
    """How each meta-epoch picks its source: alternate offline/online, or draw it."""
    offline_probability: float = 0.5
    """Chance of the offline source per meta-epoch under source_rule="random"."""

    def __post_init__(self) -> None:
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps={self.inner_steps}; use at least 1")
        if not 0.0 <= self.meta_step_size <= 1.0:
            raise ValueError(f"meta_step_size={self.meta_step_size} must be in [0, 1]")
        if not 0.0 <= self.offline_probability <= 1.0:
            raise ValueError(f"offline_probability={self.offline_probability} must be in [0, 1]")

    @property
    def source_rows(self) -> int:
        """Rows of the chosen source one meta-epoch trains on (K × utd × B)."""
        return self.inner_steps * self.sac.utd * self.sac.batch_size

    @property
    def batch_size(self) -> int:
        """Rows per `update` call: K × utd × B from each of the two sources."""
        return 2 * self.source_rows

    def make_actor_policy(self, observation_space: gym.Space, action_space: gym.Space) -> nn.Module:
        """The actor side: SAC's policy network, filled with the meta parameters."""
        return make_policy(self.sac, observation_space, action_space)


class MOORLAgent(PolicyAgentMixin):
    def __init__(
        self,
        cfg: MOORLConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.inner = SACAgent(cfg.sac, observation_space, action_space, seed=seed, device=device)
        self.act_generator = self.inner.act_generator
        # The meta parameters: a second SAC parameter set; the actor side acts with it.
        self.policy = cfg.make_actor_policy(observation_space, action_space).to(self.device)
        self.policy.load_state_dict(self.inner.policy.state_dict())
        self._meta = self._meta_tensors()
        self.rng = np.random.default_rng(seed)
        self.meta_epochs = 0
        self.source_counts = [0, 0]  # [online, offline]

    def _inner_tensors(self) -> list[Tensor]:
        inner = self.inner
        return [
            *inner.policy.parameters(),
            *inner.critic.parameters(),
            *inner.target_critic.parameters(),
            inner.log_alpha,
            *(inner.target_encoder.parameters() if not inner.frozen_encoder else []),
        ]

    def _meta_tensors(self) -> list[Tensor]:
        """θ_meta: a detached copy of every inner tensor, the policy's aliased to self.policy."""
        n_policy = len(list(self.inner.policy.parameters()))
        rest = [t.detach().clone() for t in self._inner_tensors()[n_policy:]]
        return [*self.policy.parameters(), *rest]

    def choose_source(self, available: tuple[bool, bool]) -> int:
        """OFFLINE or ONLINE for this meta-epoch; `available` = (has online, has offline)."""
        if not available[OFFLINE]:
            return ONLINE
        if not available[ONLINE]:
            return OFFLINE
        if self.cfg.source_rule == "alternate":
            return OFFLINE if self.meta_epochs % 2 == 0 else ONLINE
        return OFFLINE if self.rng.random() < self.cfg.offline_probability else ONLINE

    def update(self, batch: Batch) -> dict[str, float]:
        """One meta-epoch: K inner SAC updates on one source, then the Reptile step."""
        cfg = self.cfg
        batch.check_finite()
        batch = batch.to(self.device)
        offline = prior_mask(batch)
        n_offline = int(offline.sum())
        source = self.choose_source((len(batch) - n_offline > 0, n_offline > 0))
        rows = torch.nonzero(offline if source == OFFLINE else ~offline).squeeze(1)
        if len(rows) < cfg.source_rows:
            raise ValueError(
                f"MOORL needs {cfg.source_rows} rows of the {'offline' if source else 'online'} "
                f"source per update (inner_steps × sac.utd × sac.batch_size) and the batch has "
                f"{len(rows)}; sample batch_size = {cfg.batch_size} rows"
            )
        source_batch = select_rows(batch, rows[: cfg.source_rows])

        with torch.no_grad():  # start the inner learner from θ_meta
            torch._foreach_copy_(self._inner_tensors(), self._meta)
        inner_rows = cfg.sac.utd * cfg.sac.batch_size
        for k in range(cfg.inner_steps):
            info = self.inner.update(
                select_rows(source_batch, slice(k * inner_rows, (k + 1) * inner_rows))
            )
        with torch.no_grad():  # Reptile: θ_meta += ε (θ_K − θ_meta)
            inner = self._inner_tensors()
            shift = torch._foreach_sub(inner, self._meta)
            distance = float(sum(float(s.pow(2).sum()) for s in shift) ** 0.5)
        soft_update(self._meta, inner, cfg.meta_step_size)
        self.meta_epochs += 1
        self.source_counts[source] += 1
        return {
            **info,
            "moorl/source_offline": float(source == OFFLINE),
            "moorl/offline_fraction": self.source_counts[OFFLINE] / self.meta_epochs,
            "moorl/inner_distance": distance,
        }

    def state_dict(self) -> dict[str, Any]:
        """Meta policy, inner learner (with optimizers and RNG), θ_meta, source RNG, counters."""
        return {
            "policy": self.policy.state_dict(),  # θ_meta's actor: what `serl eval` loads
            "inner": self.inner.state_dict(),
            "meta": {str(i): t.detach().clone() for i, t in enumerate(self._meta)},
            "source_rng": copy.deepcopy(self.rng.bit_generator.state),  # JSON-able ints
            "counters": {
                "meta_epochs": self.meta_epochs,
                "online_epochs": self.source_counts[ONLINE],
                "offline_epochs": self.source_counts[OFFLINE],
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        with torch.no_grad():
            for i, tensor in enumerate(self._meta):
                tensor.copy_(state["meta"][str(i)])
        self.rng.bit_generator.state = copy.deepcopy(state["source_rng"])
        counters = state["counters"]
        self.meta_epochs = int(counters["meta_epochs"])
        self.source_counts = [int(counters["online_epochs"]), int(counters["offline_epochs"])]
