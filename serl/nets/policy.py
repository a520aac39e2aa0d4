"""Tanh-squashed Gaussian policy head (SAC, Haarnoja et al. 2018, Appendix C)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from serl.nets.mlp import MLP

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Log-std clamp of SAC v2; keeps the Gaussian from collapsing or exploding."""


class TanhGaussianPolicy(nn.Module):
    """a = tanh(mu + sigma * eps): actions in (-1, 1) with the tanh log-det correction."""

    def __init__(self, in_dim: int, action_dim: int, hidden_dims: Sequence[int]) -> None:
        super().__init__()
        self.trunk = MLP(in_dim, hidden_dims, None)
        self.mean = nn.Linear(self.trunk.out_dim, action_dim)
        self.log_std = nn.Linear(self.trunk.out_dim, action_dim)

    def distribution_params(self, features: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(features)
        log_std = self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mean(h), log_std

    def sample(
        self, features: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Reparameterised sample and its log-probability (SAC Eq. 26 with the tanh Jacobian)."""
        mean, log_std = self.distribution_params(features)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        pre_tanh = mean + log_std.exp() * eps
        action = torch.tanh(pre_tanh)
        log_prob = gaussian_log_prob(eps, log_std) - tanh_log_det(pre_tanh)
        return action, log_prob

    def log_prob(self, features: Tensor, action: Tensor) -> Tensor:
        """log pi(a|s) of given actions in (-1, 1) (behaviour cloning)."""
        mean, log_std = self.distribution_params(features)
        clipped = action.clamp(-1 + 1e-6, 1 - 1e-6)
        pre_tanh = torch.atanh(clipped)
        eps = (pre_tanh - mean) * torch.exp(-log_std)
        return gaussian_log_prob(eps, log_std) - tanh_log_det(pre_tanh)

    def mode(self, features: Tensor) -> Tensor:
        mean, _ = self.distribution_params(features)
        return torch.tanh(mean)


def gaussian_log_prob(eps: Tensor, log_std: Tensor) -> Tensor:
    """Sum over action dims of log N(mu + sigma*eps; mu, sigma)."""
    return (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def tanh_log_det(pre_tanh: Tensor) -> Tensor:
    """Sum of log(1 - tanh(u)^2), computed stably as 2(log 2 - u - softplus(-2u))."""
    return (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
