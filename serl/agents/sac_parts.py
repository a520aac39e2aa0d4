"""The two pieces SAC's relatives share: a tuned temperature and soft parameter updates.

* `Temperature`: α = exp(log α) with its own Adam, tuned by the SAC v2 temperature loss
  L(α) = E[−α(log π(a|s) + H̄)] (Haarnoja et al. 2018, "SAC: Algorithms and Applications",
  Eq. 18), taken on log α so α stays positive. SAC, H2O, IWOCS and MOORL's inner learner tune
  their α with it; FamO2O tunes its balance model's T_b the same way.
* `soft_update`: θ̄ ← θ̄ + r(θ − θ̄) in place, one fused op over all tensors. With r = τ it
  is the Polyak average of target networks (SAC, Eq. 3's Q̄); with r = ε it is Reptile's outer
  step θ_meta ← θ_meta + ε(θ_K − θ_meta) (Nichol et al. 2018, Alg. 1), used by MOORL.

The agents keep their checkpoint layout: they store `log_value` and `optimizer.state_dict()`
under their own keys ("log_alpha", "optim/temperature"), so old checkpoints still load.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor


class Temperature:
    """A positive weight α = exp(log α), stepped by Adam on E[−α(log π + H̄)] (Eq. 18)."""

    def __init__(self, init: float, target_entropy: float, lr: float, device: torch.device) -> None:
        self.log_value = torch.tensor(float(np.log(init)), device=device, requires_grad=True)
        """log α, the trained tensor (a leaf, so it can be copied into and checkpointed)."""
        self.target_entropy = target_entropy
        """H̄: the policy entropy α is tuned towards (α grows while the entropy is below it)."""
        # Fused Adam: one kernel instead of a dozen small ops (see SACAgent's optimizers).
        self.optimizer = torch.optim.Adam([self.log_value], lr=lr, fused=True)

    @property
    def value(self) -> Tensor:
        """α, detached: the weight the actor and critic losses use."""
        return self.log_value.detach().exp()

    def step(self, log_prob: Tensor) -> Tensor:
        """One Adam step on L(α) = E[−α(log π(a|s) + H̄)]; `log_prob` must be detached."""
        loss = -(self.log_value.exp() * (log_prob + self.target_entropy)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def load(self, log_value: Tensor, optimizer_state: dict) -> None:
        """Restore log α and its Adam moments (from an agent's checkpoint)."""
        with torch.no_grad():
            self.log_value.copy_(log_value)
        self.optimizer.load_state_dict(optimizer_state)


def soft_update(targets: Iterable[Tensor], sources: Iterable[Tensor], rate: float) -> None:
    """targets ← targets + rate·(sources − targets), in place and without gradient.

    Polyak averaging of target networks (rate τ) and Reptile's outer step (rate ε). The two
    sequences pair up in order and must have equal length and matching shapes.
    """
    targets, sources = list(targets), list(sources)
    if len(targets) != len(sources):
        raise ValueError(f"soft_update got {len(targets)} targets and {len(sources)} sources")
    with torch.no_grad():
        torch._foreach_lerp_(targets, sources, rate)
