"""A critic ensemble whose N members are one module with stacked weights.

All N Q-functions are evaluated by one batched matmul per layer instead of a Python loop of
small networks (DESIGN §2). `members` selects a subset without touching the others, which the
RLPD / REDQ target uses to evaluate only the `num_min_qs` members it takes the min over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class EnsembleLinear(nn.Module):
    """N independent linear layers: (N, B, in) or (B, in) -> (N, B, out)."""

    def __init__(self, num_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim))
        # Same initialisation as nn.Linear, member by member.
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, members: Tensor | None = None) -> Tensor:
        weight, bias = self.weight, self.bias
        if members is not None:
            weight, bias = weight[members], bias[members]
        if x.dim() == 2:
            return torch.matmul(x, weight) + bias  # broadcasts (B, in) over members
        return torch.baddbmm(bias, x, weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over features with a separate affine transform per member."""

    def __init__(self, num_members: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, dim))
        self.dim = dim

    def forward(self, x: Tensor, members: Tensor | None = None) -> Tensor:
        weight, bias = self.weight, self.bias
        if members is not None:
            weight, bias = weight[members], bias[members]
        return torch.addcmul(bias, F.layer_norm(x, (self.dim,)), weight)


class CriticEnsemble(nn.Module):
    """Q_1..Q_N(s, a) for N members; `forward` returns (N, B).

    With `dropout` > 0 (DroQ, Hiraoka et al. 2022) each hidden layer's units are dropped
    whenever the module is in training mode, which the agents keep it in for every use in an
    update: the critic loss, the bootstrap target (the target copy) and the actor loss. The
    masks are drawn from `generator` when one is set (the agent's update generator, saved in
    its checkpoints), so a resumed run draws the same masks as an uninterrupted one; torch's
    global RNG, which a checkpoint does not hold, is used only without one.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        num_members: int,
        *,
        layer_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_members = num_members
        self.dropout = dropout
        self.generator: torch.Generator | None = None
        self.hidden = nn.ModuleList()
        self.norms = nn.ModuleList()
        width = in_dim
        for hidden in hidden_dims:
            self.hidden.append(EnsembleLinear(num_members, width, hidden))
            if layer_norm:
                self.norms.append(EnsembleLayerNorm(num_members, hidden))
            width = hidden
        self.out = EnsembleLinear(num_members, width, 1)

    def forward(self, features: Tensor, action: Tensor, members: Tensor | None = None) -> Tensor:
        x = torch.cat([features, action], dim=-1)
        for i, layer in enumerate(self.hidden):
            x = layer(x, members)
            if self.dropout > 0 and self.training:
                x = self._drop(x)
            if self.norms:
                x = self.norms[i](x, members)
            x = F.relu(x)
        return self.out(x, members).squeeze(-1)

    def _drop(self, x: Tensor) -> Tensor:
        """Inverted dropout: zero each unit with probability p, scale the rest by 1 / (1 - p)."""
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.dropout
        return x * keep / (1.0 - self.dropout)
