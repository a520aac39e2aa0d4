"""Batch samplers over replay buffers, each owning its random generator.

`SymmetricSampler` is RLPD's symmetric sampling (Ball et al. 2023, Sec. 3.1): half of every
batch from the prior data (demos, offline), half from the online buffer. The halves are
interleaved row by row, even rows from `first` and odd rows from `second`, so every
consecutive slice of even length is exactly 50/50 too; in particular each of the G minibatches
of `Batch.split(G)` in one high-UTD update, whenever `batch_size / G` is even.

A sampler's generator is its only source of randomness; `state_dict()` exports the bit
generator state as plain JSON-able data so a resumed run draws the same batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from serl.data.batch import Batch, Obs
from serl.data.replay import ReplayBuffer


class _SeededSampler:
    """Batch size and an owned `np.random.Generator` that can be checkpointed."""

    def __init__(self, batch_size: int, seed: int | None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; expected at least 1")
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        """The generator's bit-generator state (plain dicts, strs and ints; JSON-able)."""
        return {"rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict()`, drawing the batches the saved sampler would have."""
        rng_state = state["rng"]
        want = self.rng.bit_generator.state["bit_generator"]
        if rng_state.get("bit_generator") != want:
            raise ValueError(
                f"sampler state is for bit generator {rng_state.get('bit_generator')!r}, this "
                f"sampler uses {want!r}"
            )
        self.rng.bit_generator.state = copy.deepcopy(rng_state)


class UniformSampler(_SeededSampler):
    """Uniform batches from one buffer."""

    def __init__(self, buffer: ReplayBuffer, batch_size: int, seed: int | None) -> None:
        super().__init__(batch_size, seed)
        self.buffer = buffer

    def sample(self) -> Batch:
        return self.buffer.sample(self.batch_size, self.rng)


def _interleave(even: Tensor, odd: Tensor) -> Tensor:
    """Rows even[0], odd[0], even[1], odd[1], ..."""
    return torch.stack((even, odd), dim=1).flatten(0, 1)


def _interleave_obs(even: Obs, odd: Obs) -> Obs:
    if isinstance(even, dict) and isinstance(odd, dict):
        return {key: _interleave(even[key], odd[key]) for key in even}
    assert isinstance(even, Tensor) and isinstance(odd, Tensor)
    return _interleave(even, odd)


class SymmetricSampler(_SeededSampler):
    """RLPD symmetric sampling: even rows from `first` (online data), odd rows from `second`
    (prior data: demos, offline data), which `Batch.prior` marks with 1.0."""

    def __init__(
        self,
        first: ReplayBuffer,
        second: ReplayBuffer,
        batch_size: int,
        seed: int | None,
        *,
        draw_second: Callable[[int, np.random.Generator], Batch] | None = None,
    ) -> None:
        """`draw_second(n, rng)` replaces uniform draws from `second` (e.g. trajectory-weighted
        draws from the same buffer)."""
        if batch_size % 2:
            raise ValueError(
                f"batch_size={batch_size} is odd; symmetric sampling takes half from each "
                "buffer, so use an even batch size"
            )
        if first.observation_spec != second.observation_spec:
            raise ValueError(
                f"buffers store different observations: {first.observation_spec} vs "
                f"{second.observation_spec}"
            )
        if first.action_dim != second.action_dim:
            raise ValueError(
                f"buffers store different action sizes: {first.action_dim} vs {second.action_dim}"
            )
        super().__init__(batch_size, seed)
        self.first = first
        self.second = second
        self.draw_second = draw_second

    def sample(self) -> Batch:
        half = self.batch_size // 2
        a = self.first.sample(half, self.rng)
        b = (self.draw_second or self.second.sample)(half, self.rng)
        return Batch(
            obs=_interleave_obs(a.obs, b.obs),
            action=_interleave(a.action, b.action),
            reward=_interleave(a.reward, b.reward),
            next_obs=_interleave_obs(a.next_obs, b.next_obs),
            terminated=_interleave(a.terminated, b.terminated),
            prior=_interleave(torch.zeros_like(a.reward), torch.ones_like(b.reward)),
        )
