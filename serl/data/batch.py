"""A minibatch of transitions as torch tensors, the only thing an agent's `update` sees.

Observations are either one tensor or a dict of tensors (camera frames stay uint8 until the
encoder). `terminated` is 1.0 only for a true terminal state: a time-limit truncation is not
termination, so the critic still bootstraps from `next_obs` there.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

Obs = Tensor | dict[str, Tensor]


class NonFiniteBatchError(ValueError):
    """A batch holds NaN or Inf; it is refused before any optimizer step."""


def map_obs(obs: Obs, fn) -> Obs:
    """Apply `fn` to a tensor observation or to every entry of a dict observation."""
    if isinstance(obs, dict):
        return {key: fn(value) for key, value in obs.items()}
    return fn(obs)


def obs_batch_size(obs: Obs) -> int:
    first = next(iter(obs.values())) if isinstance(obs, dict) else obs
    return first.shape[0]


def _all_finite(tensor: Tensor) -> bool:
    """Whether no entry is NaN or Inf. One pass: a sum is NaN or Inf whenever an entry is
    (about 3x cheaper than `isfinite().all()`, which writes a mask); a finite sum that
    overflowed is told apart by the exact check, run only then."""
    if bool(torch.isfinite(tensor.sum())):
        return True
    return bool(torch.isfinite(tensor).all())


@dataclass
class Batch:
    obs: Obs
    action: Tensor
    """(B, |A|) float32 actions in [-1, 1]."""
    reward: Tensor
    """(B,) float32."""
    next_obs: Obs
    terminated: Tensor
    """(B,) float32, 1.0 where the episode ended in a terminal state."""
    prior: Tensor | None = None
    """(B,) float32, 1.0 for rows from the prior dataset (demos, offline data, H2O's "real"
    data), 0.0 for online rows; None when the learner has no prior data. SAC ignores it."""

    def __len__(self) -> int:
        return self.action.shape[0]

    def _map(self, fn) -> Batch:
        return Batch(
            obs=map_obs(self.obs, fn),
            action=fn(self.action),
            reward=fn(self.reward),
            next_obs=map_obs(self.next_obs, fn),
            terminated=fn(self.terminated),
            prior=None if self.prior is None else fn(self.prior),
        )

    def to(self, device: torch.device | str) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=True))

    def split(self, n: int) -> list[Batch]:
        """Cut into `n` equal consecutive slices (the G minibatches of one RLPD update)."""
        if len(self) % n:
            raise ValueError(f"batch of {len(self)} does not split into {n} equal minibatches")
        size = len(self) // n
        return [self._map(lambda t, i=i: t[i * size : (i + 1) * size]) for i in range(n)]

    def check_finite(self) -> None:
        """Raise NonFiniteBatchError naming the first field that holds NaN or Inf."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            items = value.items() if isinstance(value, dict) else [("", value)]
            for key, tensor in items:
                if tensor.is_floating_point() and not _all_finite(tensor):
                    name = f"{f.name}[{key!r}]" if key else f.name
                    raise NonFiniteBatchError(
                        f"batch field {name} holds NaN or Inf; the update was skipped and no "
                        "parameter changed. Check the data source that produced it."
                    )
