"""Trajectory-weighted sampling: softmax of normalised returns / 0.1, per trajectory."""

import numpy as np
import pytest
from gymnasium import spaces

from serl.data.datasets import Episode, add_to_buffer
from serl.data.replay import ReplayBuffer
from serl.data.weighted import TrajectoryWeightedSampler, trajectory_weights

STATE = spaces.Box(-np.inf, np.inf, (1,), np.float32)


def test_weights_normalise_returns_first_then_softmax_at_temperature_0_1():
    w = trajectory_weights([0.0, 5.0, 10.0])
    want = np.exp([0.0, 5.0, 10.0]) / np.exp([0.0, 5.0, 10.0]).sum()  # [0, .5, 1] / 0.1
    np.testing.assert_allclose(w, want, rtol=1e-12)
    # Scaling every return does not change the weights: the normalisation comes first.
    np.testing.assert_allclose(trajectory_weights([0.0, 500.0, 1000.0]), want, rtol=1e-12)


def test_weights_with_reference_returns_and_equal_returns():
    w = trajectory_weights([0.0, 1.0], low=0.0, high=2.0)
    np.testing.assert_allclose(w, np.exp([0.0, 5.0]) / np.exp([0.0, 5.0]).sum())
    np.testing.assert_allclose(trajectory_weights([3.0, 3.0, 3.0]), [1 / 3] * 3)
    with pytest.raises(ValueError, match="temperature"):
        trajectory_weights([1.0, 2.0], temperature=0.0)


def episode(length: int, reward: float, marker: float) -> Episode:
    return Episode(
        observations=np.full((length + 1, 1), marker, np.float32),
        actions=np.zeros((length, 1), np.float32),
        rewards=np.full(length, reward, np.float32),
        terminations=np.eye(1, length, length - 1, dtype=bool)[0],
        truncations=np.zeros(length, bool),
        source="offline",
    )


def test_sampler_draws_each_trajectory_with_its_weight_whatever_its_length():
    # Returns 0, 2, 4 (lengths 10, 4, 2): normalised 0, .5, 1.
    episodes = [episode(10, 0.0, 0.0), episode(4, 0.5, 1.0), episode(2, 2.0, 2.0)]
    buffer = ReplayBuffer(STATE, 1, capacity=40)
    add_to_buffer(buffer, episodes)
    sampler = TrajectoryWeightedSampler(buffer, 200_000, seed=0)
    np.testing.assert_allclose(sorted(sampler.returns), [0.0, 2.0, 4.0])
    markers = sampler.sample().obs[:, 0].numpy()
    freq = [np.mean(markers == m) for m in (0.0, 1.0, 2.0)]
    np.testing.assert_allclose(freq, trajectory_weights([0.0, 2.0, 4.0]), atol=0.005)


def test_sampler_resumes_with_the_same_batches():
    buffer = ReplayBuffer(STATE, 1, capacity=40)
    add_to_buffer(buffer, [episode(5, 0.0, 0.0), episode(5, 1.0, 1.0)])
    first = TrajectoryWeightedSampler(buffer, 8, seed=3)
    first.sample()
    second = TrajectoryWeightedSampler(buffer, 8, seed=99)
    second.load_state_dict(first.state_dict())
    np.testing.assert_array_equal(first.sample().obs.numpy(), second.sample().obs.numpy())
