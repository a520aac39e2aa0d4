"""Trajectory-weighted sampling for offline data of mixed quality.

Uniform sampling from a dataset that mixes a few good trajectories with many poor ones trains
mostly on the poor ones. Following the return-based re-weighting of mixed-quality offline data
(e.g. Hong et al. 2023, "Harnessing Mixed Offline Reinforcement Learning Datasets via
Trajectory Weighting"), each transition is drawn with its trajectory's weight

    w_j = softmax_j(R̃_j / T),   R̃_j = (R_j − R_low) / (R_high − R_low),

with R_j the undiscounted return of trajectory j, normalised FIRST (by default R_low, R_high =
the smallest and largest return in the data; or a random and an expert reference, as for TQ)
and only then put through a softmax of temperature T = 0.1. A transition's probability is its
trajectory's w_j divided by that trajectory's number of transitions, so every trajectory is
drawn with probability w_j as a whole, whatever its length.

The sampler serves fixed prior data: weights are computed once from the buffer's complete
episodes (`refresh()` recomputes them after more episodes are added).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from serl.data.batch import Batch
from serl.data.replay import ReplayBuffer

TEMPERATURE = 0.1
"""Softmax temperature over normalised returns (0.1: a trajectory 0.1 better in normalised
return is e ≈ 2.7 times as likely)."""


def trajectory_weights(
    returns: ArrayLike,
    temperature: float = TEMPERATURE,
    *,
    low: float | None = None,
    high: float | None = None,
) -> np.ndarray:
    """softmax((R − low) / (high − low) / temperature) over trajectories; sums to 1.

    `low`/`high` default to the min/max of `returns`; if they are equal every trajectory gets
    the same weight."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}; use a positive value such as 0.1")
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"returns have shape {r.shape}; expected one return per trajectory")
    low = float(r.min()) if low is None else float(low)
    high = float(r.max()) if high is None else float(high)
    if high == low:
        return np.full(r.size, 1.0 / r.size)
    logits = (r - low) / (high - low) / temperature
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


class TrajectoryWeightedSampler:
    """Batches from `buffer` with transition probabilities set by trajectory weights."""

    def __init__(
        self,
        buffer: ReplayBuffer,
        batch_size: int,
        seed: int | None,
        *,
        temperature: float = TEMPERATURE,
        low: float | None = None,
        high: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; expected at least 1")
        self.buffer = buffer
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(seed)
        self.temperature, self.low, self.high = temperature, low, high
        self.refresh()

    def refresh(self) -> None:
        """Recompute trajectories, returns and per-transition probabilities from the buffer."""
        arrays = self.buffer.state_arrays()
        slots = np.flatnonzero(arrays["valid"])
        if slots.size == 0:
            raise ValueError("the buffer holds no complete transition; add the dataset first")
        keys = np.stack([arrays["actor_id"][slots], arrays["episode_id"][slots]], axis=1)
        _, trajectory, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        trajectory = trajectory.reshape(-1)
        returns = np.bincount(trajectory, weights=arrays["reward"][slots].astype(np.float64))
        weights = trajectory_weights(returns, self.temperature, low=self.low, high=self.high)
        self.slots = slots
        self.returns = returns
        self.weights = weights
        self.probabilities = weights[trajectory] / counts[trajectory]

    def sample(self) -> Batch:
        return self.draw(self.batch_size, self.rng)

    def draw(self, n: int, rng: np.random.Generator) -> Batch:
        """`n` weighted transitions drawn with `rng` (the prior half of a symmetric batch)."""
        rows = rng.choice(self.slots.size, size=n, p=self.probabilities)
        return self.buffer.gather(self.slots[rows])

    def state_dict(self) -> dict[str, Any]:
        """The generator's bit-generator state (JSON-able), for an identical resume."""
        return {"rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
