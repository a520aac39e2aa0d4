"""Dataset diagnostics TQ and SACo: how good and how varied an offline dataset is.

Schweighofer et al. 2022 ("A Dataset Perspective on Offline Reinforcement Learning")
characterise a dataset by two numbers that predict which offline algorithm does well on it:

* TQ, trajectory quality: the average episode return normalised between a random policy's
  return (0) and an expert's (1), ``TQ = (mean_return - random_return) / (expert_return -
  random_return)`` (the D4RL normalised score of the behaviour policy).
* SACo, state-action coverage: the number of unique (state, action) pairs in the dataset
  relative to a reference dataset's number (the paper uses the replay data of an online run).

Discretisation for SACo: each dimension of the concatenated vector ``[state, action]`` is cut
into `bins` equal-width cells over ``[low, high]`` (per-dimension bounds the caller gives, so
two datasets are counted on the same grid); the cell of value x is
``clip(floor((x - low) / (high - low) * bins), 0, bins - 1)``, so values outside the bounds
fall in the edge cells. Two pairs are the same when every cell index matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def trajectory_quality(
    returns: Sequence[float] | ArrayLike, random_return: float, expert_return: float
) -> float:
    """TQ: the mean of `returns` mapped so that `random_return` -> 0 and `expert_return` -> 1."""
    if expert_return == random_return:
        raise ValueError(
            f"expert_return == random_return == {expert_return}; TQ needs two different "
            "reference returns"
        )
    returns = np.asarray(returns, dtype=np.float64)
    if returns.size == 0:
        raise ValueError("TQ of no episodes is undefined; the dataset has no episodes")
    return float((returns.mean() - random_return) / (expert_return - random_return))


def discretise(
    vectors: ArrayLike, low: ArrayLike, high: ArrayLike, bins: int | ArrayLike
) -> np.ndarray:
    """(N, D) int64 cell indices of (N, D) `vectors` on the grid described in the module doc."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"vectors have shape {x.shape}; expected (N, D)")
    low = np.broadcast_to(np.asarray(low, dtype=np.float64), x.shape[1:])
    high = np.broadcast_to(np.asarray(high, dtype=np.float64), x.shape[1:])
    bins = np.broadcast_to(np.asarray(bins, dtype=np.int64), x.shape[1:])
    if np.any(high <= low) or np.any(bins < 1):
        raise ValueError(f"need high > low and bins >= 1 per dimension; got {low}, {high}, {bins}")
    cells = np.floor((x - low) / (high - low) * bins).astype(np.int64)
    return np.clip(cells, 0, bins - 1)


def unique_state_actions(
    states: ArrayLike, actions: ArrayLike, low: ArrayLike, high: ArrayLike, bins: int | ArrayLike
) -> int:
    """How many distinct discretised ``[state, action]`` cells the N pairs occupy."""
    states = np.asarray(states, dtype=np.float64).reshape(len(states), -1)
    actions = np.asarray(actions, dtype=np.float64).reshape(len(actions), -1)
    if len(states) != len(actions):
        raise ValueError(f"{len(states)} states but {len(actions)} actions")
    if len(states) == 0:
        return 0
    cells = discretise(np.concatenate([states, actions], axis=1), low, high, bins)
    return int(len(np.unique(cells, axis=0)))


def state_action_coverage(count: int, reference_count: int) -> float:
    """SACo: unique pairs of a dataset over those of the reference dataset."""
    if reference_count <= 0:
        raise ValueError(f"reference_count={reference_count}; the reference must have pairs")
    return count / reference_count


def episode_returns(rewards: Iterable[ArrayLike]) -> np.ndarray:
    """Undiscounted return of each episode from its rewards."""
    return np.array([float(np.sum(r)) for r in rewards], dtype=np.float64)


# ---------------------------------------------------------------------------- replay buffers
def buffer_episode_returns(buffer: Any) -> np.ndarray:
    """Returns of the complete episodes in a `ReplayBuffer`, in (actor_id, episode_id) order.

    An episode counts when its first step (t = 0) is still stored and one of its transitions
    ended it (terminated or truncated); episodes still running or partly overwritten by the
    ring buffer are left out, so TQ of a live buffer uses whole episodes only.
    """
    a = buffer.state_arrays()
    slots = np.flatnonzero(a["valid"])
    if slots.size == 0:
        return np.zeros(0)
    keys = np.stack([a["actor_id"][slots], a["episode_id"][slots]], axis=1)
    _, episode = np.unique(keys, axis=0, return_inverse=True)
    episode = episode.reshape(-1)
    n = int(episode.max()) + 1
    returns = np.bincount(episode, weights=a["reward"][slots].astype(np.float64), minlength=n)
    ended = np.bincount(episode, weights=(a["terminated"][slots] | a["truncated"][slots]),
                        minlength=n)  # fmt: skip
    started = np.bincount(episode, weights=a["t"][slots] == 0, minlength=n)
    return returns[(ended > 0) & (started > 0)]


def buffer_state_actions(buffer: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, state_dim) vector observations and (N, action_dim) actions of the stored
    transitions, for SACo; camera keys are skipped, vector keys concatenated in sorted order."""
    a = buffer.state_arrays()
    slots = np.flatnonzero(a["valid"])
    keys = sorted(
        k for k in a if k.startswith("obs/") and a[k].dtype != np.uint8
    )  # camera frames are uint8
    states = np.concatenate([a[k][slots].reshape(len(slots), -1) for k in keys], axis=1)
    return states.astype(np.float64), a["action"][slots].astype(np.float64)
