"""Samplers: RLPD symmetric batches are exactly half and half, row-interleaved, and
checkpointable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from serl.data.batch import Batch
from serl.data.replay import ReplayBuffer
from serl.data.samplers import SymmetricSampler, UniformSampler
from serl.data.tags import source_code

SPACE = spaces.Dict(
    {
        "front": spaces.Box(0, 255, (4, 4, 3), np.uint8),
        "state": spaces.Box(-np.inf, np.inf, (2,), np.float32),
    }
)


def tagged_buffer(source: str, episodes: int = 5, steps: int = 8) -> ReplayBuffer:
    """A buffer whose every observation, action and reward carries its source's code."""
    code = source_code(source)
    buf = ReplayBuffer(SPACE, 1, capacity=episodes * (steps + 1))
    for episode in range(episodes):
        for t in range(steps):

            def obs(step: int, episode: int = episode) -> dict[str, np.ndarray]:
                return {
                    "front": np.full((4, 4, 3), code, np.uint8),
                    "state": np.array([episode, step], np.float32),
                }

            buf.add(
                obs(t), [code], code, obs(t + 1), t == steps - 1, False,
                source=source, episode_id=episode, t=t,
            )  # fmt: skip
    return buf


def row_sources(batch: Batch) -> np.ndarray:
    """Source code of each row, read from the frames, action, reward and next frames."""
    codes = batch.obs["front"][:, 0, 0, 0].numpy().astype(np.int64)
    np.testing.assert_array_equal(batch.next_obs["front"][:, 0, 0, 0].numpy(), codes)
    np.testing.assert_array_equal(batch.action[:, 0].numpy(), codes)
    np.testing.assert_array_equal(batch.reward.numpy(), codes)
    return codes


def test_symmetric_batch_has_even_rows_from_first_and_odd_rows_from_second() -> None:
    sampler = SymmetricSampler(tagged_buffer("demo"), tagged_buffer("online"), 256, seed=0)
    codes = row_sources(sampler.sample())

    assert len(codes) == 256
    assert (codes[0::2] == source_code("demo")).all()
    assert (codes[1::2] == source_code("online")).all()


def test_symmetric_rows_keep_obs_and_next_obs_of_one_transition_together() -> None:
    sampler = SymmetricSampler(tagged_buffer("demo"), tagged_buffer("online"), 64, seed=1)
    batch = sampler.sample()
    np.testing.assert_array_equal(
        batch.next_obs["state"].numpy(), batch.obs["state"].numpy() + [0, 1]
    )


@pytest.mark.parametrize("num_minibatches", [1, 2, 4, 8, 16])
def test_every_minibatch_of_split_is_half_and_half(num_minibatches: int) -> None:
    sampler = SymmetricSampler(tagged_buffer("offline"), tagged_buffer("online"), 256, seed=2)
    for minibatch in sampler.sample().split(num_minibatches):
        codes = row_sources(minibatch)
        assert (codes == source_code("offline")).sum() == len(codes) // 2
        assert (codes == source_code("online")).sum() == len(codes) // 2


def test_odd_batch_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="batch_size=255 is odd"):
        SymmetricSampler(tagged_buffer("demo"), tagged_buffer("online"), 255, seed=0)


def test_buffers_with_different_observations_are_rejected() -> None:
    other = ReplayBuffer(spaces.Box(-1, 1, (2,), np.float32), 1, capacity=4)
    with pytest.raises(ValueError, match="different observations"):
        SymmetricSampler(tagged_buffer("demo"), other, 8, seed=0)


def test_restored_sampler_state_draws_the_same_batches_after_a_json_round_trip() -> None:
    first, second = tagged_buffer("demo"), tagged_buffer("online")
    sampler = SymmetricSampler(first, second, 32, seed=3)
    sampler.sample()
    state = json.loads(json.dumps(sampler.state_dict()))
    expected = sampler.sample()

    resumed = SymmetricSampler(first, second, 32, seed=999)
    resumed.load_state_dict(state)
    got = resumed.sample()
    for name in ("front", "state"):
        assert torch.equal(got.obs[name], expected.obs[name])
    assert torch.equal(got.reward, expected.reward)


def test_uniform_samplers_with_the_same_seed_draw_the_same_batch() -> None:
    buf = tagged_buffer("online")
    a, b = UniformSampler(buf, 16, seed=4).sample(), UniformSampler(buf, 16, seed=4).sample()
    assert len(a) == 16
    assert torch.equal(a.obs["state"], b.obs["state"])
    assert not torch.equal(a.obs["state"], UniformSampler(buf, 16, seed=5).sample().obs["state"])
