"""TQ and SACo on hand-made data, where the right numbers can be counted by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serl.cli import main
from serl.data.datasets import Episode, append_episode
from serl.data.diagnostics import (
    discretise,
    episode_returns,
    state_action_coverage,
    trajectory_quality,
    unique_state_actions,
)


def test_tq_is_the_mean_return_between_the_random_and_the_expert_return() -> None:
    assert trajectory_quality([1.0, 3.0], random_return=0.0, expert_return=4.0) == 0.5
    assert trajectory_quality([-50.0], random_return=-100.0, expert_return=0.0) == 0.5
    assert trajectory_quality([10.0, 10.0], random_return=2.0, expert_return=10.0) == 1.0
    with pytest.raises(ValueError, match="two different"):
        trajectory_quality([1.0], 3.0, 3.0)


def test_discretisation_cells_clip_values_outside_the_bounds_to_the_edge_cells() -> None:
    x = np.array([[-0.5], [0.0], [0.099], [0.1], [0.55], [1.0], [7.0]])
    assert discretise(x, 0.0, 1.0, 10)[:, 0].tolist() == [0, 0, 0, 1, 5, 9, 9]


def test_unique_pairs_count_distinct_cells_of_state_and_action() -> None:
    states = np.array([[0.05], [0.07], [0.15], [0.95], [1.5], [0.05]])
    actions = np.array([[0.0], [0.0], [0.0], [0.0], [0.0], [0.9]])
    # cells (0,0) (0,0) (1,0) (9,0) (9,0) (0,9): four distinct
    assert unique_state_actions(states, actions, low=0.0, high=1.0, bins=10) == 4
    assert state_action_coverage(4, 8) == 0.5


def test_episode_returns_are_undiscounted_sums() -> None:
    assert episode_returns([[1.0, 2.0], [0.5], []]).tolist() == [3.0, 0.5, 0.0]


def line_episode(values: list[float], reward: float) -> Episode:
    n = len(values)
    return Episode(
        observations=np.array([[v] for v in [*values, values[-1]]], np.float32),
        actions=np.zeros((n, 1), np.float32),
        rewards=np.full(n, reward),
        terminations=np.zeros(n, bool),
        truncations=np.ones(n, bool),
        success=reward > 0,
    )


def test_inspect_dataset_prints_tq_and_saco_against_a_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # dataset: states 0, 1 (+ 1, 2) -> returns 2 and 3; reference: states 0..3, one each
    append_episode(tmp_path / "d", line_episode([0.0, 1.0], 1.0))
    append_episode(tmp_path / "d", line_episode([1.0, 2.0, 2.0], 1.0))
    append_episode(tmp_path / "r", line_episode([0.0, 1.0, 2.0, 3.0], 0.0))
    args = ["inspect-dataset", str(tmp_path / "d"), "--random-return", "0", "--expert-return",
            "5", "--reference", str(tmp_path / "r"), "--bins", "4"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "episodes:          2" in out and "total transitions: 5" in out
    assert "success rate:      100.0%" in out
    assert "TQ:                0.5000" in out  # mean return 2.5 between 0 and 5
    assert "unique (s, a):     3 (reference 4" in out and "SACo:              0.7500" in out


def test_buffer_diagnostics_use_complete_episodes_and_vector_state_actions() -> None:
    from gymnasium import spaces

    from serl.data.diagnostics import buffer_episode_returns, buffer_state_actions
    from serl.data.replay import ReplayBuffer

    buffer = ReplayBuffer(spaces.Box(-10, 10, (2,), np.float32), 1, capacity=20)
    # Episode 0: 3 steps, reward 1 each, truncated. Episode 1: 2 steps, reward -2, terminated.
    # Episode 2: still running (1 step) -> no return yet.
    for episode, steps, reward, terminal in (
        (0, 3, 1.0, False),
        (1, 2, -2.0, True),
        (2, 1, 5.0, None),
    ):
        for t in range(steps):
            last = t == steps - 1
            buffer.add(
                np.float32([episode, t]), np.float32([0.5 * episode]), reward,
                np.float32([episode, t + 1]),
                bool(last and terminal), bool(last and terminal is False),
                episode_id=episode, t=t,
            )  # fmt: skip
    np.testing.assert_array_equal(buffer_episode_returns(buffer), [3.0, -4.0])
    assert trajectory_quality(buffer_episode_returns(buffer), -4.0, 3.0) == pytest.approx(3.5 / 7)
    states, actions = buffer_state_actions(buffer)
    assert states.shape == (6, 2) and actions.shape == (6, 1)
    # Cells of width 1 over [0, 10): states [episode, t] are all distinct; actions 0, .5, 1.
    assert unique_state_actions(states, actions, 0, 10, 10) == 6
    assert unique_state_actions(states[:, :1], actions, 0, 10, 10) == 3
